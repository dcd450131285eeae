//! Shared folders mounted into a folder synced through an account: each
//! is a namespace of its own on the same server, synced by an engine of
//! its own (its own local state, cursor and trees) into a folder of the
//! home, which the home's engine leaves alone.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{BackendConfig, Config, OwnStore};

/// A shared folder this device syncs inside its home folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    /// Its namespace on the home's server (`share.…`).
    pub namespace: String,
    /// The name its owner gave it.
    pub name: String,
    /// Where it is, relative to the home folder (`/`-separated).
    pub path: String,
    /// This account's role there, as the server last said (`owner`,
    /// `editor`, `viewer`); the server decides every request by its own.
    pub role: String,
    /// The account was removed from it (or unmounted it elsewhere): its
    /// folder stays here, no longer synced, and the home leaves it alone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub detached: bool,
}

impl Mount {
    /// Whether this account may only read it.
    pub fn read_only(&self) -> bool {
        self.role == "viewer"
    }
}

impl Config {
    /// Whether this folder is an account's home on a `pouch-store` server
    /// (which may have shared folders mounted).
    pub fn is_account_home(&self) -> bool {
        matches!(&self.backend, BackendConfig::Own(OwnStore::Server { namespace, .. }) if namespace.starts_with("home."))
    }

    /// The config of mount `mount`: the same device, server and
    /// credential, the share's namespace, the mount's folder as root and a
    /// local state of its own beside the home's. `None` unless the home
    /// syncs through a `pouch-store` server.
    pub fn mount_config(&self, mount: &Mount) -> Option<Config> {
        let BackendConfig::Own(OwnStore::Server { url, token, .. }) = &self.backend else {
            return None;
        };
        let stem = self
            .state
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "state".to_owned());
        let state = self
            .state
            .with_file_name(format!("{stem}.{}.sqlite", mount.namespace));
        Some(Config {
            root: self.root.join(PathBuf::from(&mount.path)),
            state,
            backend: BackendConfig::Own(OwnStore::Server {
                url: url.clone(),
                namespace: mount.namespace.clone(),
                token: token.clone(),
            }),
            previous_backend: None,
            migration: None,
            mounts: Vec::new(),
            ..self.clone()
        })
    }
}
