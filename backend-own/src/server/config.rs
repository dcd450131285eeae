//! The server's configuration file (TOML).
//!
//! ```toml
//! listen = "127.0.0.1:7878"
//! data = "/var/lib/pouch-store"
//!
//! [namespaces.alice]
//! token = "a long random secret"
//! ```
//!
//! The file holds tokens, so the server warns when others can read it.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The default listen address: loopback only until told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

/// Everything `pouch-store serve` needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The data folder: one store per namespace inside.
    pub data: PathBuf,
    /// The namespaces served, by name.
    #[serde(default)]
    pub namespaces: BTreeMap<String, NamespaceConfig>,
    /// Volume files are sealed once they reach this many bytes.
    #[serde(default = "default_volume_size")]
    pub volume_size: u64,
    /// Background verification and compaction.
    #[serde(default)]
    pub maintenance: Maintenance,
    /// The token `/metrics` wants before it shows per-namespace figures
    /// (which name the namespaces); without it, only server-wide counters.
    #[serde(default)]
    pub metrics_token: Option<Secret>,
    /// Bytes of request bodies all requests together may hold in flight;
    /// requests beyond it wait (their bodies unread) until others finish.
    #[serde(default = "default_bodies_in_flight")]
    pub bodies_in_flight: u64,
}

fn default_bodies_in_flight() -> u64 {
    256 << 20
}

/// Background work on every namespace's store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Maintenance {
    /// Payload bytes the scrubber re-reads and re-hashes per second; 0
    /// turns it off.
    pub scrub_bytes_per_sec: u64,
    /// How often the scrubber wakes, in milliseconds.
    pub scrub_tick_ms: u64,
    /// A volume is compacted once this share of it is dead (0..=1).
    pub compact_threshold: f64,
    /// Seconds between compaction passes; 0 turns compaction off.
    pub compact_every_secs: u64,
    /// Seconds between garbage collections of each namespace (the blocks
    /// no version its retention keeps names); 0 turns them off.
    pub collect_every_secs: u64,
    /// How long a block the collector marked waits before it is deleted:
    /// longer than any device's upload-to-commit window.
    pub collect_grace_secs: u64,
}

impl Default for Maintenance {
    fn default() -> Self {
        Self {
            scrub_bytes_per_sec: 32 << 20,
            scrub_tick_ms: 1000,
            compact_threshold: 0.5,
            compact_every_secs: 3600,
            collect_every_secs: 24 * 3600,
            collect_grace_secs: pouch_backend::gc::DEFAULT_GRACE.as_secs(),
        }
    }
}

/// One namespace.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceConfig {
    /// The bearer token clients must present. Never logged.
    pub token: String,
}

impl std::fmt::Debug for NamespaceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamespaceConfig")
            .field("token", &"<redacted>")
            .finish()
    }
}

/// A secret from the config: never shown by `Debug`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

fn default_volume_size() -> u64 {
    crate::storage::StoreOptions::default().volume_size
}

fn default_listen() -> String {
    DEFAULT_LISTEN.to_owned()
}

impl ServerConfig {
    /// Reads a config file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                "the config holds tokens but others can read it; run chmod 600"
            );
        }
        let config: Self = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        config.check()?;
        Ok(config)
    }

    /// The zero-file setup: one namespace `default` whose token comes from
    /// `POUCH_STORE_TOKEN`.
    pub fn from_env(data: PathBuf, listen: Option<String>) -> Result<Self, String> {
        let token = std::env::var("POUCH_STORE_TOKEN").map_err(|_| {
            "with no --config, set POUCH_STORE_TOKEN to the token of namespace `default`".to_owned()
        })?;
        let config = Self {
            listen: listen.unwrap_or_else(default_listen),
            data,
            namespaces: BTreeMap::from([("default".to_owned(), NamespaceConfig { token })]),
            volume_size: default_volume_size(),
            maintenance: Maintenance::default(),
            metrics_token: None,
            bodies_in_flight: default_bodies_in_flight(),
        };
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        if self.namespaces.is_empty() {
            return Err("no namespaces configured".to_owned());
        }
        if self.metrics_token.as_ref().is_some_and(|t| t.0.len() < 16) {
            return Err("metrics_token must be at least 16 characters".to_owned());
        }
        if self.bodies_in_flight < super::MAX_BODY as u64 {
            return Err(format!(
                "bodies_in_flight must be at least one largest body ({} bytes)",
                super::MAX_BODY
            ));
        }
        for (name, ns) in &self.namespaces {
            let valid = !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid {
                return Err(format!(
                    "namespace name {name:?}: use letters, digits, - and _"
                ));
            }
            if ns.token.len() < 16 {
                return Err(format!(
                    "namespace {name}: the token must be at least 16 characters"
                ));
            }
        }
        Ok(())
    }
}
