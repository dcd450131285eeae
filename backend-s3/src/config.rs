//! What a user configures for an S3 backend.

use std::time::Duration;

use crate::Credentials;

/// One namespace in one bucket of an S3-compatible store.
///
/// Serialised into Pouch's `config.toml` as the `[backend]` table. Keys are
/// normally absent: the standard AWS chain supplies them (environment,
/// `AWS_PROFILE` and the shared credentials file, instance roles).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// The bucket, which must exist.
    pub bucket: String,
    /// A key prefix, so that one bucket can hold many namespaces.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    /// The region; from the environment or the profile when absent, then
    /// `us-east-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The endpoint of an S3-compatible store (`http://127.0.0.1:9000`);
    /// AWS when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which most
    /// S3-compatible stores want; virtual-hosted style when false.
    #[serde(default)]
    pub path_style: bool,
    /// Keys written into the config by the user (the file is then 0600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,
    /// Target size of one pack object, in bytes.
    #[serde(default = "defaults::pack_size")]
    pub pack_size: usize,
    /// Transfers in flight at once.
    #[serde(default = "defaults::parallel")]
    pub parallel: usize,
    /// Time limit of one request, in seconds.
    #[serde(default = "defaults::request_timeout_secs")]
    pub request_timeout_secs: u64,
    /// How often a waiting device looks for a new journal entry, in
    /// milliseconds. S3 cannot push; every look is one HEAD request.
    #[serde(default = "defaults::poll_interval_ms")]
    pub poll_interval_ms: u64,
}

mod defaults {
    /// As large as one upload batch of the engine (16 MiB): fewer packs
    /// are fewer index reads for every new device, and one ranged read
    /// covers a pack's run of blocks.
    pub(super) fn pack_size() -> usize {
        16 << 20
    }
    pub(super) fn parallel() -> usize {
        8
    }
    pub(super) fn request_timeout_secs() -> u64 {
        120
    }
    pub(super) fn poll_interval_ms() -> u64 {
        2000
    }
}

impl S3Config {
    /// A config for `bucket` with every tunable at its default.
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            prefix: String::new(),
            region: None,
            endpoint: None,
            path_style: false,
            credentials: None,
            pack_size: defaults::pack_size(),
            parallel: defaults::parallel(),
            request_timeout_secs: defaults::request_timeout_secs(),
            poll_interval_ms: defaults::poll_interval_ms(),
        }
    }

    pub(crate) fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms.max(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_table_gets_the_defaults() {
        let config: S3Config = toml::from_str("bucket = \"b\"").unwrap();
        assert_eq!(config, S3Config::new("b"));
        let shown = toml::to_string(&config).unwrap();
        assert!(!shown.contains("credentials"), "{shown}");
    }
}
