//! The one error type of every backend.
//!
//! Policy: each variant is something a caller can act on. `is_retryable`
//! says whether the same call may succeed later without anyone changing
//! anything; every other error needs a different call (pull and re-plan
//! after [`Error::SlotTaken`]) or a person (credentials, disk space).

use std::error::Error as StdError;

use crate::{BlockId, Seq};

/// A result with [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in a backend call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The block is not stored (never put, or deleted).
    #[error("block {0} is not stored")]
    BlockNotFound(BlockId),

    /// A journal append lost the race: entry `seq` already exists. The caller
    /// must read the entries it has not seen, re-plan, and append at the new
    /// head.
    #[error("journal entry {0} already exists (another device committed first)")]
    SlotTaken(Seq),

    /// A journal append that would leave a hole: entries are numbered
    /// without gaps, and `seq` is not the entry right after `head`.
    #[error("journal entry {seq} cannot follow entry {head}")]
    Gap {
        /// The entry the caller tried to append.
        seq: Seq,
        /// The last entry that exists.
        head: Seq,
    },

    /// A journal read from before the store's trim point: entries up to
    /// `through` were dropped, folded into the store's snapshot, which the
    /// reader starts from instead.
    #[error("journal entries up to {through} were folded into the snapshot and dropped")]
    Trimmed {
        /// The last entry dropped.
        through: Seq,
    },

    /// Bytes that do not hash to the block id they claim, on the way in
    /// (the put is refused) or on the way out (the read is refused).
    #[error("block {id} is corrupt: {reason}")]
    Corrupt {
        /// The block concerned.
        id: BlockId,
        /// What check failed.
        reason: &'static str,
    },

    /// A request the backend will never accept as sent (too large, malformed).
    #[error("invalid request: {0}")]
    InvalidInput(&'static str),

    /// The store lacks a feature Pouch cannot run safely without (for
    /// example conditional writes, which keep two devices from both winning
    /// one journal slot).
    #[error("the store cannot be used: {0}")]
    Unsupported(String),

    /// A garbage collector's lease is not this caller's: another collector
    /// holds it, or this one's expired or was taken over. Nothing was
    /// changed; a collector that gets this stops and starts over.
    #[error("garbage collection is fenced off: {0}")]
    Fenced(String),

    /// The store refused our credentials.
    #[error("access denied by the store: check the credentials or token")]
    Unauthorized,

    /// The store knows who is asking and refuses this request to them: a
    /// viewer's write to a shared folder, a member removed from it, an
    /// upload over the account's quota. The reason is the store's.
    #[error("the store refused: {0}")]
    Forbidden(String),

    /// The store could not be reached or answered with a temporary failure
    /// (connection reset, timeout, 5xx, throttling). Retrying may help.
    #[error("the store is unavailable: {source}")]
    Unavailable {
        /// The underlying failure.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },

    /// The store's data on disk does not have the shape this build knows:
    /// an unknown format version, a damaged index, a volume that is missing.
    #[error("the store at hand is unusable: {what}")]
    Format {
        /// What is wrong, for the person reading the message.
        what: String,
    },

    /// A local file-system error (permissions, a full disk).
    #[error("{context}: {source}")]
    Io {
        /// What Pouch was doing.
        context: &'static str,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },

    /// A failure inside the store's own machinery (its database, its
    /// protocol) that retrying will not fix.
    #[error("{context}: {source}")]
    Internal {
        /// What the store was doing.
        context: &'static str,
        /// The underlying failure.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
}

impl Error {
    /// Whether the same call may succeed later without anything changing.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Unavailable { .. } => true,
            Error::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::WouldBlock
            ),
            _ => false,
        }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(context: &'static str) -> impl FnOnce(std::io::Error) -> Error {
        move |source| Error::Io { context, source }
    }

    /// Wraps an internal failure with what was being done.
    pub fn internal<E: StdError + Send + Sync + 'static>(
        context: &'static str,
    ) -> impl FnOnce(E) -> Error {
        move |source| Error::Internal {
            context,
            source: Box::new(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_errors_are_retryable() {
        let unavailable = Error::Unavailable {
            source: Box::new(std::io::Error::other("reset")),
        };
        assert!(unavailable.is_retryable());
        assert!(!Error::SlotTaken(Seq(3)).is_retryable());
        assert!(!Error::BlockNotFound(BlockId::of(b"")).is_retryable());
        let full =
            Error::io("writing a volume")(std::io::Error::from(std::io::ErrorKind::StorageFull));
        assert!(!full.is_retryable());
        let timeout = Error::io("reading")(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert!(timeout.is_retryable());
    }
}

/// `err` and its causes on one line, `a: b: c`, leaving out a cause whose
/// text is already said (many errors, `object_store`'s and `reqwest`'s
/// among them, print their source in their own message too, which a plain
/// chain would repeat: `X: Y: Y`). For the messages users read.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(next) = cause {
        let said = next.to_string();
        if !said.is_empty() && !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = next.source();
    }
    text
}

#[cfg(test)]
mod chain_tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("request failed: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn a_cause_already_said_is_not_repeated() {
        let inner = std::io::Error::other("connection refused");
        let err = Error::Unavailable {
            source: Box::new(Repeats(inner)),
        };
        let text = error_chain(&err);
        assert_eq!(text.matches("connection refused").count(), 1, "{text}");
        assert_eq!(text.matches("request failed").count(), 1, "{text}");
    }
}
