//! Pouch's own files (its config, its local state and the files beside it,
//! an embedded store) are never synced, wherever they are: with
//! `pouch init --root ~` and the default folders under `~/.config` and
//! `~/.local/share`, they sit inside the synced folder. They are left out
//! of all three trees (so no journal entry can overwrite them either) and
//! their changes do not wake the daemon.

use std::path::{Path, PathBuf};

use crate::path::RelPath;

/// The files and folders of Pouch's own for one folder's sync.
#[derive(Debug, Clone, Default)]
pub struct OwnFiles {
    paths: Vec<PathBuf>,
}

impl OwnFiles {
    /// The config at `config`, the local state at `state` (and its
    /// journal, lock, socket, log and cache beside it), and `stores` (the
    /// embedded stores the folder uses).
    pub fn new(config: &Path, state: &Path, stores: &[PathBuf]) -> Self {
        let mut paths = vec![config.to_owned(), state.to_owned()];
        for ext in [
            "sqlite-wal",
            "sqlite-shm",
            "sqlite-journal",
            "lock",
            "sock",
            "log",
            "s3-cache",
        ] {
            paths.push(state.with_extension(ext));
        }
        paths.extend(stores.iter().cloned());
        paths.extend(pouch_config::folders::registry_path());
        Self {
            paths: paths.iter().map(|p| resolved(p)).collect(),
        }
    }

    /// Those inside `root` (canonical), relative to it.
    pub fn inside(&self, root: &Path) -> Vec<RelPath> {
        self.paths
            .iter()
            .filter_map(|p| p.strip_prefix(root).ok())
            .filter_map(|rel| RelPath::from_fs(rel).and_then(Result::ok))
            .collect()
    }

    /// Whether `path` (absolute) is one of them or inside one.
    pub fn contains(&self, path: &Path) -> bool {
        self.paths.iter().any(|own| path.starts_with(own))
    }
}

/// `path` with symlinks resolved as far as it exists (it, or its folders,
/// may not exist yet), so that two names of one place compare equal, and
/// with the canonical root.
pub fn resolved(path: &Path) -> PathBuf {
    if let Ok(path) = path.canonicalize() {
        return path;
    }
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => resolved(dir).join(name),
        _ => path.to_owned(),
    }
}
