//! Pouch's config file (TOML): which folder, which device, which store.
//!
//! A crate of its own, below the sync engine, so that every program that
//! needs only to find a folder's daemon and files (the tray) reads the one
//! format without linking the engine. The file may come to hold
//! credentials, so it is always written 0600.

pub mod files;
pub mod folders;
pub mod limits;
pub mod mounts;

pub use limits::{Limits, parse_rate, show_rate};
pub use mounts::Mount;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A result with [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong reading or writing the config.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is missing or wrong.
    #[error("configuration {path}: {reason}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// Writing it failed.
    #[error("{path}: {source}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
}

/// The config format this build writes.
pub const CONFIG_VERSION: u32 = 1;

/// Everything one device needs to sync one folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Format version of this file.
    pub version: u32,
    /// The folder kept in sync.
    pub root: PathBuf,
    /// This device's name, shown in conflicted copies' names.
    pub device: String,
    /// This device's local state database (SQLite): the three trees, the
    /// cursor into the namespace journal, history. Written `journal` by
    /// earlier versions, which is still read.
    #[serde(alias = "journal")]
    pub state: PathBuf,
    /// Where the blocks and the namespace journal live.
    pub backend: BackendConfig,
    /// The store this folder moved away from, kept until `pouch migrate
    /// finish` retires it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_backend: Option<BackendConfig>,
    /// A migration under way (`pouch migrate start`): every write goes to
    /// this store too, and a share of reads is checked against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<Migration>,
    /// Bandwidth limits (`[limits] up = "2 MiB"`), for `pouch sync` and
    /// the daemon; the daemon's can change at run time (`pouch limit`).
    #[serde(default, skip_serializing_if = "Limits::is_unlimited")]
    pub limits: Limits,
    /// Garbage collection by the daemon (`[gc] every_hours = 24`).
    #[serde(default, skip_serializing_if = "GcSettings::is_default")]
    pub gc: GcSettings,
    /// Shared folders mounted into this folder (an account's home on a
    /// `pouch-store` server), as this device last learned them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
}

/// How often the daemon collects garbage on stores that can be collected
/// (the embedded store, pouch-store); a run holds the store's lease, so
/// several devices doing so take turns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcSettings {
    /// Hours between collections; 0 turns the daemon's collection off
    /// (`pouch gc` still runs one).
    pub every_hours: u64,
}

impl Default for GcSettings {
    fn default() -> Self {
        Self { every_hours: 24 }
    }
}

impl GcSettings {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// A migration under way to another store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Migration {
    /// The store the folder is moving to.
    pub target: BackendConfig,
    /// Share of block reads repeated against the target and compared
    /// (shadow reads), from 0 to 1.
    #[serde(default = "default_shadow_reads")]
    pub shadow_reads: f64,
}

impl Migration {
    /// The share of reads shadowed unless the user chose another.
    pub const DEFAULT_SHADOW_READS: f64 = 0.05;
}

fn default_shadow_reads() -> f64 {
    Migration::DEFAULT_SHADOW_READS
}

/// Which store holds the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum BackendConfig {
    /// Pouch's own block store: embedded, or a `pouch-store` server.
    Own(OwnStore),
    /// Amazon S3 or an S3-compatible store. The table's keys (`bucket`,
    /// `prefix`, `region`, `endpoint`, `path_style`, …) belong to the S3
    /// backend crate, which checks them when the backend is opened; the core
    /// keeps them as written so that it depends on no concrete store.
    S3(toml::Table),
}

/// Where Pouch's own block store runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OwnStore {
    /// Embedded: a folder on this machine; several devices on one machine
    /// may share it.
    Embedded {
        /// The store folder.
        store: PathBuf,
    },
    /// A `pouch-store` server.
    Server {
        /// Its address, e.g. `http://store.lan:7878`.
        url: String,
        /// The namespace on the server.
        #[serde(default = "default_namespace")]
        namespace: String,
        /// The bearer token. Leave it out to read `POUCH_STORE_TOKEN` from
        /// the environment instead; if it is here, the file is kept 0600.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
}

impl BackendConfig {
    /// The same store without secrets (a `pouch-store` token, S3 keys), as
    /// it may be announced to other devices in the journal: each device
    /// brings its own credentials.
    pub fn public(&self) -> BackendConfig {
        match self {
            BackendConfig::Own(OwnStore::Server { url, namespace, .. }) => {
                BackendConfig::Own(OwnStore::Server {
                    url: url.clone(),
                    namespace: namespace.clone(),
                    token: None,
                })
            }
            BackendConfig::S3(table) => {
                let mut table = table.clone();
                table.remove("credentials");
                BackendConfig::S3(table)
            }
            embedded => embedded.clone(),
        }
    }
}

fn default_namespace() -> String {
    "default".to_owned()
}

/// Pouch's standard folders on this system.
pub fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "pouch")
}

/// The default config file: `config.toml` in the system's config folder.
pub fn default_config_path() -> Option<PathBuf> {
    project_dirs().map(|d| d.config_dir().join("config.toml"))
}

/// The default embedded store folder, in the system's data folder.
pub fn default_store_path() -> Option<PathBuf> {
    project_dirs().map(|d| d.data_dir().join("store"))
}

impl Config {
    /// Reads and checks the config at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            path: path.to_owned(),
            reason: if e.kind() == std::io::ErrorKind::NotFound {
                "not found; run `pouch init --root DIR` first".to_owned()
            } else {
                e.to_string()
            },
        })?;
        let config: Config = toml::from_str(&text).map_err(|e| Error::Config {
            path: path.to_owned(),
            reason: toml_reason(&text, &e),
        })?;
        if config.version > CONFIG_VERSION {
            return Err(Error::Config {
                path: path.to_owned(),
                reason: format!(
                    "version {} is newer than this Pouch; upgrade Pouch",
                    config.version
                ),
            });
        }
        Ok(config)
    }

    /// The daemon's control socket: next to the local state, so every
    /// device on a machine has its own.
    pub fn socket_path(&self) -> PathBuf {
        self.state.with_extension("sock")
    }

    /// Where a daemon started by the tray writes its log.
    pub fn daemon_log_path(&self) -> PathBuf {
        self.state.with_extension("log")
    }

    /// Where an S3 store keeps its cache of pack indexes: beside the local
    /// state.
    pub fn s3_cache_dir(&self) -> PathBuf {
        self.state.with_extension("s3-cache")
    }

    /// Writes the config to `path` atomically, readable by its owner only
    /// (a config may come to hold credentials).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = toml::to_string_pretty(self).expect("a config always serialises");
        files::write_atomically(path, text.as_bytes(), 0o600)
            .map_err(|(path, source)| Error::Io { path, source })
    }
}

/// A TOML error on one line, with where it is: `toml`'s own message draws
/// the line over several, which a terminal-safe printer shows as `\n`.
fn toml_reason(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim_end_matches('\n');
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("{message} (line {line}, column {column})")
        }
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn saves_private_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c/config.toml");
        let config = Config {
            version: CONFIG_VERSION,
            root: "/home/me/Pouch".into(),
            device: "laptop".into(),
            state: "/home/me/.local/share/pouch/laptop.sqlite".into(),
            backend: BackendConfig::Own(OwnStore::Embedded {
                store: "/srv/store".into(),
            }),
            previous_backend: None,
            migration: None,
            limits: Limits::default(),
            gc: GcSettings::default(),
            mounts: Vec::new(),
        };
        let server = Config {
            backend: BackendConfig::Own(OwnStore::Server {
                url: "http://127.0.0.1:7878".into(),
                namespace: "default".into(),
                token: None,
            }),
            ..config.clone()
        };
        server.save(&path).unwrap();
        assert_eq!(Config::load(&path).unwrap(), server);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("token"), "{text}");
        let mut table = toml::Table::new();
        table.insert("bucket".into(), "photos".into());
        table.insert("path_style".into(), true.into());
        let s3 = Config {
            backend: BackendConfig::S3(table),
            ..config.clone()
        };
        s3.save(&path).unwrap();
        assert_eq!(Config::load(&path).unwrap(), s3);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("kind = \"s3\""), "{text}");
        config.save(&path).unwrap();
        assert_eq!(Config::load(&path).unwrap(), config);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("kind = \"own\""), "{text}");
    }

    #[test]
    fn reads_the_state_path_earlier_versions_called_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "version = 1\nroot = \"/r\"\ndevice = \"d\"\njournal = \"/s.sqlite\"\n\n[backend]\nkind = \"own\"\nstore = \"/st\"\n",
        )
        .unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!(config.state, Path::new("/s.sqlite"));
        config.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("state = \"/s.sqlite\""), "{text}");
    }

    #[test]
    fn a_missing_config_says_what_to_do() {
        let err = Config::load(Path::new("/nonexistent/config.toml")).unwrap_err();
        assert!(err.to_string().contains("pouch init"), "{err}");
    }
}
