//! Where a namespace lives, as the journal names it ([`StoreLocation`],
//! defined with the journal format in `pouch-journal`), and how the
//! config's [`BackendConfig`] converts to and from it.

use pouch_config::{BackendConfig, OwnStore};

pub use pouch_journal::location::{OwnLocation, S3Location, StoreLocation};

/// The config's side of a [`StoreLocation`].
pub trait ConfigLocation: Sized {
    /// The location of a configured store; `None` for an S3 table that
    /// names no bucket (such a config does not open either).
    fn of(backend: &BackendConfig) -> Option<Self>;
    /// Whether `backend` is the store at this location.
    fn is(&self, backend: &BackendConfig) -> bool;
    /// A config for this store with no credentials and default tunables:
    /// a device that follows brings its own keys or token.
    fn to_config(&self) -> BackendConfig;
}

impl ConfigLocation for StoreLocation {
    fn of(backend: &BackendConfig) -> Option<StoreLocation> {
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

    fn is(&self, backend: &BackendConfig) -> bool {
        StoreLocation::of(backend).as_ref() == Some(self)
    }

    fn to_config(&self) -> BackendConfig {
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
