//! Where a namespace lives, as the journal names it: the store a move
//! (`pouch migrate switch`) announces in its freeze entry.
//!
//! A location carries no secret (no token, no keys): every device that
//! follows brings its own credentials. It is the journal's own type, so the
//! journal format does not change when the config file does; the config's
//! [`BackendConfig`] converts to and from it.

use std::path::PathBuf;

use pouch_config::{BackendConfig, OwnStore};
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
    /// The location of a configured store; `None` for an S3 table that
    /// names no bucket (such a config does not open either).
    pub fn of(backend: &BackendConfig) -> Option<StoreLocation> {
        Some(match backend {
            BackendConfig::Own(OwnStore::Embedded { store }) => {
                StoreLocation::Own(OwnLocation::Embedded {
                    store: store.clone(),
                })
            }
            BackendConfig::Own(OwnStore::Server { url, namespace, .. }) => {
                StoreLocation::Own(OwnLocation::Server {
                    url: url.clone(),
                    namespace: namespace.clone(),
                })
            }
            BackendConfig::S3(table) => {
                StoreLocation::S3(toml::Value::Table(table.clone()).try_into().ok()?)
            }
        })
    }

    /// Whether `backend` is the store at this location.
    pub fn is(&self, backend: &BackendConfig) -> bool {
        StoreLocation::of(backend).as_ref() == Some(self)
    }

    /// A config for this store with no credentials and default tunables:
    /// a device that follows brings its own keys or token.
    pub fn to_config(&self) -> BackendConfig {
        match self {
            StoreLocation::Own(OwnLocation::Embedded { store }) => {
                BackendConfig::Own(OwnStore::Embedded {
                    store: store.clone(),
                })
            }
            StoreLocation::Own(OwnLocation::Server { url, namespace }) => {
                BackendConfig::Own(OwnStore::Server {
                    url: url.clone(),
                    namespace: namespace.clone(),
                    token: None,
                })
            }
            StoreLocation::S3(s3) => {
                let mut table = toml::Table::new();
                table.insert("bucket".into(), s3.bucket.clone().into());
                if !s3.prefix.is_empty() {
                    table.insert("prefix".into(), s3.prefix.clone().into());
                }
                if let Some(region) = &s3.region {
                    table.insert("region".into(), region.clone().into());
                }
                if let Some(endpoint) = &s3.endpoint {
                    table.insert("endpoint".into(), endpoint.clone().into());
                }
                table.insert("path_style".into(), s3.path_style.into());
                BackendConfig::S3(table)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_location_never_carries_a_secret() {
        let config = BackendConfig::Own(OwnStore::Server {
            url: "http://s".into(),
            namespace: "n".into(),
            token: Some("secret".into()),
        });
        let location = StoreLocation::of(&config).unwrap();
        assert!(!serde_json::to_string(&location).unwrap().contains("secret"));
        assert!(location.is(&config));
        let mut table = toml::Table::new();
        table.insert("bucket".into(), "b".into());
        let mut keys = toml::Table::new();
        keys.insert("secret_access_key".into(), "hush".into());
        table.insert("credentials".into(), keys.into());
        let location = StoreLocation::of(&BackendConfig::S3(table)).unwrap();
        assert!(!serde_json::to_string(&location).unwrap().contains("hush"));
        assert!(!format!("{:?}", location.to_config()).contains("hush"));
    }
}
