//! What changed on disk since the last sync: the paths the watcher named,
//! or "everything" when it may have missed something.
//!
//! A sync scans only these paths (see [`Scope`]); the daemon asks for a
//! whole scan at start, on the periodic safety rescan, and whenever an
//! event was lost, named a path it cannot place, or the set grew so large
//! that one walk of the tree is cheaper.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::engine::Scope;
use crate::path::RelPath;

/// More distinct paths than this and a whole scan is cheaper (and the
/// set's memory stays bounded).
pub const MAX_PATHS: usize = 50_000;

/// `path` (absolute under `root`) as a path in the sync root, if it is one.
pub fn relative(root: &Path, path: &Path) -> Option<RelPath> {
    match RelPath::from_fs(path.strip_prefix(root).ok()?) {
        Some(Ok(path)) => Some(path),
        _ => None,
    }
}

/// The paths to scan at the next sync.
#[derive(Debug, Default)]
pub struct Dirty {
    everything: bool,
    paths: BTreeSet<RelPath>,
}

impl Dirty {
    /// Starts with a whole scan due.
    pub fn everything() -> Self {
        Self {
            everything: true,
            paths: BTreeSet::new(),
        }
    }

    /// Asks for a whole scan.
    pub fn all(&mut self) {
        self.everything = true;
        self.paths.clear();
    }

    /// Notes a path the watcher named, absolute under `root` (canonical,
    /// as watched). The root itself, a path outside it, or one whose
    /// folder cannot be named either, asks for a whole scan.
    pub fn add(&mut self, root: &Path, path: &Path) {
        if self.everything {
            return;
        }
        let Some(relative) = path.strip_prefix(root).ok() else {
            return self.all();
        };
        // A name that cannot be synced (not UTF-8) is reported by the
        // scan of its folder.
        let mut relative: PathBuf = relative.to_owned();
        loop {
            if relative.as_os_str().is_empty() {
                return self.all();
            }
            match RelPath::from_fs(&relative) {
                Some(Ok(path)) => {
                    self.paths.insert(path);
                    break;
                }
                _ => {
                    relative.pop();
                }
            }
        }
        if self.paths.len() > MAX_PATHS {
            self.all();
        }
    }

    /// Whether anything is due.
    pub fn is_empty(&self) -> bool {
        !self.everything && self.paths.is_empty()
    }

    /// What the next sync scans; the set starts over.
    pub fn take(&mut self) -> Scope {
        let scope = if self.everything {
            Scope::Everything
        } else {
            Scope::Paths(std::mem::take(&mut self.paths).into_iter().collect())
        };
        self.everything = false;
        scope
    }

    /// Puts back what a failed sync was to scan, with whatever was noted
    /// meanwhile.
    pub fn restore(&mut self, scope: Scope) {
        match scope {
            Scope::Everything => self.all(),
            Scope::Paths(paths) if !self.everything => {
                self.paths.extend(paths);
                if self.paths.len() > MAX_PATHS {
                    self.all();
                }
            }
            Scope::Paths(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(scope: Scope) -> Vec<String> {
        match scope {
            Scope::Everything => vec!["*".into()],
            Scope::Paths(paths) => paths.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn paths_under_the_root_are_scanned_alone() {
        let root = Path::new("/home/u/Pouch");
        let mut dirty = Dirty::default();
        assert!(dirty.is_empty());
        dirty.add(root, &root.join("a/b.txt"));
        dirty.add(root, &root.join("a/b.txt"));
        dirty.add(root, &root.join("c"));
        assert_eq!(paths(dirty.take()), ["a/b.txt", "c"]);
        assert!(dirty.is_empty());
    }

    #[test]
    fn the_root_itself_or_a_lost_event_scans_everything() {
        let root = Path::new("/r");
        let mut dirty = Dirty::default();
        dirty.add(root, root);
        assert_eq!(paths(dirty.take()), ["*"]);
        dirty.add(root, Path::new("/elsewhere/x"));
        assert_eq!(paths(dirty.take()), ["*"]);
        dirty.all();
        dirty.add(root, &root.join("x"));
        assert_eq!(paths(dirty.take()), ["*"]);
    }

    #[test]
    fn a_name_that_cannot_be_synced_scans_its_folder() {
        use std::os::unix::ffi::OsStrExt;
        let root = Path::new("/r");
        let mut dirty = Dirty::default();
        let bad = root
            .join("docs")
            .join(std::ffi::OsStr::from_bytes(b"bad\xff"));
        dirty.add(root, &bad);
        assert_eq!(paths(dirty.take()), ["docs"]);
        dirty.add(root, &root.join(std::ffi::OsStr::from_bytes(b"\xfe")));
        assert_eq!(paths(dirty.take()), ["*"]);
    }

    #[test]
    fn too_many_paths_become_a_whole_scan_and_failures_are_kept() {
        let root = Path::new("/r");
        let mut dirty = Dirty::default();
        for i in 0..=MAX_PATHS {
            dirty.add(root, &root.join(format!("f{i}")));
        }
        assert_eq!(paths(dirty.take()), ["*"]);
        dirty.add(root, &root.join("new"));
        dirty.restore(Scope::Paths(vec![RelPath::parse("old").unwrap()]));
        assert_eq!(paths(dirty.take()), ["new", "old"]);
        dirty.restore(Scope::Everything);
        assert_eq!(paths(dirty.take()), ["*"]);
    }
}
