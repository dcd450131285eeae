//! Where a namespace lives, as the journal names it: the store a move
//! (`pouch migrate switch`) announces in its freeze entry.
//!
//! A location carries no secret (no token, no keys): every device that
//! follows brings its own credentials. It is the journal's own type, so the
//! journal format does not change when the config file does; the client's
//! config converts to and from it (`pouch_core::location`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A store, without credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum StoreLocation {
    /// A pouch-store: a folder on this machine or a server.
    Own(OwnLocation),
    /// A namespace in an S3 bucket.
    S3(S3Location),
}

/// Where a pouch-store runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OwnLocation {
    /// Embedded: a folder on this machine.
    Embedded {
        /// The store folder.
        store: PathBuf,
    },
    /// A `pouch-store` server.
    Server {
        /// Its address.
        url: String,
        /// The namespace on the server.
        namespace: String,
    },
}

/// A namespace in an S3-compatible bucket: what names it, not how a device
/// tunes its transfers (pack size, parallelism stay each device's own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Location {
    /// The bucket.
    pub bucket: String,
    /// The key prefix of the namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    /// The region, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The endpoint of an S3-compatible store; AWS when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Path-style addressing.
    #[serde(default)]
    pub path_style: bool,
}

impl StoreLocation {
    /// Whether a device configured for `self` may follow a move to `to`
    /// without asking its user: only when `to` is on the same server, so
    /// that no credential is ever sent to a host the user did not choose
    /// (a move entry is written by anyone holding the namespace token, or
    /// by a compromised store). A folder on this machine to another folder
    /// on it, a pouch-store namespace to another on the same server, an S3
    /// prefix to another in the same bucket. Anything else waits for
    /// `pouch migrate follow`.
    pub fn follows_by_itself(&self, to: &StoreLocation) -> bool {
        fn origin(url: &str) -> String {
            url.trim_end_matches('/').to_ascii_lowercase()
        }
        match (self, to) {
            (
                StoreLocation::Own(OwnLocation::Embedded { .. }),
                StoreLocation::Own(OwnLocation::Embedded { .. }),
            ) => true,
            (
                StoreLocation::Own(OwnLocation::Server { url: here, .. }),
                StoreLocation::Own(OwnLocation::Server { url: there, .. }),
            ) => origin(here) == origin(there),
            (StoreLocation::S3(here), StoreLocation::S3(there)) => {
                here.bucket == there.bucket
                    && here.region == there.region
                    && here.endpoint.as_deref().map(origin) == there.endpoint.as_deref().map(origin)
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::Own(OwnLocation::Embedded { store }) => {
                write!(f, "the store folder {}", store.display())
            }
            StoreLocation::Own(OwnLocation::Server { url, namespace }) => {
                write!(f, "pouch-store {url} (namespace {namespace})")
            }
            StoreLocation::S3(s3) => {
                write!(f, "s3://{}/{}", s3.bucket, s3.prefix)?;
                match &s3.endpoint {
                    Some(endpoint) => write!(f, " at {endpoint}"),
                    None => Ok(()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_move_on_the_same_server_is_followed_without_asking() {
        let server = |url: &str, namespace: &str| {
            StoreLocation::Own(OwnLocation::Server {
                url: url.into(),
                namespace: namespace.into(),
            })
        };
        let s3 = |bucket: &str, prefix: &str, endpoint: Option<&str>| {
            StoreLocation::S3(S3Location {
                bucket: bucket.into(),
                prefix: prefix.into(),
                region: None,
                endpoint: endpoint.map(Into::into),
                path_style: true,
            })
        };
        let folder = |path: &str| StoreLocation::Own(OwnLocation::Embedded { store: path.into() });
        let here = server("http://store.example:7878", "home");
        assert!(here.follows_by_itself(&server("http://store.example:7878/", "other")));
        assert!(!here.follows_by_itself(&server("http://evil.example:7878", "home")));
        assert!(!here.follows_by_itself(&server("http://store.example:7879", "home")));
        assert!(!here.follows_by_itself(&s3("b", "", None)));
        assert!(!here.follows_by_itself(&folder("/tmp/x")));
        let bucket = s3("b", "a/", Some("http://s3.local"));
        assert!(bucket.follows_by_itself(&s3("b", "c/", Some("http://s3.local"))));
        assert!(!bucket.follows_by_itself(&s3("other", "a/", Some("http://s3.local"))));
        assert!(!bucket.follows_by_itself(&s3("b", "a/", Some("http://evil"))));
        assert!(!bucket.follows_by_itself(&server("http://s3.local", "a")));
        assert!(folder("/a").follows_by_itself(&folder("/b")));
        assert!(!folder("/a").follows_by_itself(&here));
    }

    #[test]
    fn reads_the_moves_earlier_versions_wrote() {
        // What `BackendConfig::public()` put in freeze entries before the
        // journal had its own type: the same JSON must still parse.
        let server: StoreLocation =
            serde_json::from_str(r#"{"kind":"own","url":"http://s:7878","namespace":"default"}"#)
                .unwrap();
        assert_eq!(
            server,
            StoreLocation::Own(OwnLocation::Server {
                url: "http://s:7878".into(),
                namespace: "default".into()
            })
        );
        let s3: StoreLocation = serde_json::from_str(
            r#"{"kind":"s3","bucket":"b","endpoint":"http://e","path_style":true,"pack_size":1024}"#,
        )
        .unwrap();
        let StoreLocation::S3(s3) = s3 else { panic!() };
        assert_eq!((s3.bucket.as_str(), s3.path_style), ("b", true));
        let embedded: StoreLocation =
            serde_json::from_str(r#"{"kind":"own","store":"/srv/store"}"#).unwrap();
        assert!(matches!(
            embedded,
            StoreLocation::Own(OwnLocation::Embedded { .. })
        ));
    }
}
