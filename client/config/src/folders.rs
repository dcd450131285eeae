//! The folders this machine syncs: every `pouch init` records its config
//! and folder in one list (`folders.toml` in the config folder), so that a
//! later `init` can refuse a folder inside, around or equal to one already
//! synced (each change would be uploaded twice and the two syncs would
//! fight over it). An entry counts only while its config still exists and
//! still names that folder, so a deleted config frees its folder.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Config, project_dirs};

/// The list's file, `None` when the system names no config folder.
pub fn registry_path() -> Option<PathBuf> {
    project_dirs().map(|d| d.config_dir().join("folders.toml"))
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Registry {
    #[serde(default)]
    folder: Vec<Folder>,
}

/// One synced folder and the config that syncs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Folder {
    /// The config file.
    pub config: PathBuf,
    /// The folder it syncs.
    pub root: PathBuf,
}

fn read(path: &Path) -> Registry {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| toml::from_str(&text).ok())
        .unwrap_or_default()
}

/// The folders synced on this machine now (their configs exist and name
/// them), from the list at `path`.
pub fn synced_folders(path: &Path) -> Vec<Folder> {
    read(path)
        .folder
        .into_iter()
        .filter(|f| Config::load(&f.config).is_ok_and(|c| c.root == f.root))
        .collect()
}

/// Adds `config` syncing `root` to the list at `path`, dropping entries
/// that no longer hold.
pub fn register(path: &Path, config: &Path, root: &Path) -> crate::Result<()> {
    let mut folders = synced_folders(path);
    folders.retain(|f| f.config != config);
    folders.push(Folder {
        config: config.to_owned(),
        root: root.to_owned(),
    });
    let text = toml::to_string(&Registry { folder: folders }).expect("paths serialise");
    crate::files::write_atomically(path, text.as_bytes(), 0o644)
        .map_err(|(path, source)| crate::Error::Io { path, source })
}

/// Why `root` cannot be synced by `config` beside `others`, if it cannot:
/// it is one of them, inside one, or holds one.
pub fn overlap(root: &Path, config: &Path, others: &[Folder]) -> Option<String> {
    others.iter().filter(|f| f.config != config).find_map(|f| {
        let (other, by) = (&f.root, f.config.display());
        if root == other {
            Some(format!(
                "{} is already synced on this machine (by {by}); use that config (`pouch --config {by} ...`)",
                root.display()
            ))
        } else if root.starts_with(other) {
            Some(format!(
                "{} is inside {}, which this machine already syncs (by {by}): its files would be synced twice",
                root.display(),
                other.display()
            ))
        } else if other.starts_with(root) {
            Some(format!(
                "{} holds {}, which this machine already syncs (by {by}): its files would be synced twice; sync one or the other",
                root.display(),
                other.display()
            ))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_and_equal_folders_overlap_siblings_do_not() {
        let others = [Folder {
            config: "/c/a.toml".into(),
            root: "/home/u/Sync".into(),
        }];
        let me = Path::new("/c/b.toml");
        assert!(overlap(Path::new("/home/u/Sync"), me, &others).is_some());
        assert!(overlap(Path::new("/home/u/Sync/photos"), me, &others).is_some());
        assert!(overlap(Path::new("/home/u"), me, &others).is_some());
        assert!(overlap(Path::new("/home/u/Sync2"), me, &others).is_none());
        assert!(overlap(Path::new("/home/u/Sync"), Path::new("/c/a.toml"), &others).is_none());
    }
}
