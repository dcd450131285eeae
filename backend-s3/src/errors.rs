//! From `object_store`'s errors to Pouch's.

use pouch_backend::Error;

/// Maps a failed request. `NotFound` and the precondition failures mean
/// different things per call, so callers match those first; what reaches
/// here is about the store as a whole.
pub(crate) fn map(context: &'static str, e: object_store::Error) -> Error {
    use object_store::Error as E;
    match e {
        E::Unauthenticated { .. } | E::PermissionDenied { .. } => Error::Unauthorized,
        E::NotImplemented { .. } | E::NotSupported { .. } => {
            Error::Unsupported(format!("{context}: {e}"))
        }
        E::NotFound { .. } => Error::Format {
            what: format!("{context}: {e} (does the bucket exist?)"),
        },
        E::InvalidPath { .. } | E::UnknownConfigurationKey { .. } => Error::Internal {
            context,
            source: Box::new(e),
        },
        // Everything else reached us after object_store's own retries of
        // 5xx, throttling and timeouts: a store that is not answering well.
        other => Error::Unavailable {
            source: Box::new(Context {
                context,
                source: other,
            }),
        },
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{context}: {source}")]
struct Context {
    context: &'static str,
    #[source]
    source: object_store::Error,
}

/// Whether the object is simply absent.
pub(crate) fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

/// Whether a create-only put found the key taken.
pub(crate) fn is_taken(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }
    )
}
