//! [`RelPath`]: a path inside the sync root that is safe to touch.
//!
//! Every path read from the remote journal goes through [`RelPath::parse`]
//! before it reaches the disk. A valid path is relative, made of non-empty
//! components separated by single `/`, with no `.` or `..` component and
//! no NUL, so joining it to the root can never leave the root.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// A validated path relative to the sync root, `/`-separated.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelPath(String);

impl RelPath {
    /// Validates `path`.
    pub fn parse(path: &str) -> Result<Self> {
        let unsafe_path = |reason| Error::UnsafePath {
            path: path.to_owned(),
            reason,
        };
        if path.is_empty() {
            return Err(unsafe_path("the path is empty"));
        }
        if path.starts_with('/') {
            return Err(unsafe_path("absolute paths are not allowed"));
        }
        if path.contains('\0') {
            return Err(unsafe_path("NUL is not allowed in names"));
        }
        for component in path.split('/') {
            match component {
                "" => return Err(unsafe_path("empty path components are not allowed")),
                "." | ".." => return Err(unsafe_path("`.` and `..` components are not allowed")),
                _ => {}
            }
        }
        Ok(Self(path.to_owned()))
    }

    /// Builds a path from a name on disk relative to the root: `None` if a
    /// component is not UTF-8 (such names cannot be synced).
    pub fn from_fs(relative: &Path) -> Option<Result<Self>> {
        let mut parts = Vec::new();
        for component in relative.components() {
            parts.push(component.as_os_str().to_str()?);
        }
        Some(Self::parse(&parts.join("/")))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last component.
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// The parent path, `None` at the top level.
    pub fn parent(&self) -> Option<RelPath> {
        self.0
            .rsplit_once('/')
            .map(|(parent, _)| Self(parent.to_owned()))
    }

    /// All ancestors, nearest first.
    pub fn ancestors(&self) -> impl Iterator<Item = RelPath> {
        std::iter::successors(self.parent(), RelPath::parent)
    }

    /// A sibling with another last component (which must be a valid name).
    pub fn with_name(&self, name: &str) -> Result<RelPath> {
        match self.parent() {
            Some(parent) => RelPath::parse(&format!("{}/{name}", parent.0)),
            None => RelPath::parse(name),
        }
    }

    /// Whether `self` lies strictly inside `dir`.
    pub fn is_inside(&self, dir: &RelPath) -> bool {
        self.0.len() > dir.0.len()
            && self.0.starts_with(&dir.0)
            && self.0.as_bytes()[dir.0.len()] == b'/'
    }

    /// The path on disk under `root`.
    pub fn to_fs(&self, root: &Path) -> PathBuf {
        let mut out = root.to_path_buf();
        out.extend(self.0.split('/'));
        out
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_paths_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "../outside",
            "a/../../b",
            "a/./b",
            ".",
            "..",
            "a//b",
            "a/",
            "/",
            "a\0b",
            "..\u{0}",
        ] {
            assert!(RelPath::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn ordinary_and_odd_names_are_accepted() {
        for good in [
            "a",
            "a/b/c",
            "..a",
            "a..",
            ".hidden",
            "spaced name/ünïcødé 文件.txt",
            "a\\b",
        ] {
            let path = RelPath::parse(good).unwrap();
            assert_eq!(path.as_str(), good);
            assert!(path.to_fs(Path::new("/root")).starts_with("/root"));
        }
    }

    #[test]
    fn family_relations() {
        let p = RelPath::parse("a/b/c.txt").unwrap();
        assert_eq!(p.name(), "c.txt");
        assert_eq!(p.parent().unwrap().as_str(), "a/b");
        let ancestors: Vec<String> = p.ancestors().map(|a| a.0).collect();
        assert_eq!(ancestors, ["a/b", "a"]);
        assert!(p.is_inside(&RelPath::parse("a").unwrap()));
        assert!(
            !RelPath::parse("ab")
                .unwrap()
                .is_inside(&RelPath::parse("a").unwrap())
        );
        assert_eq!(p.with_name("d").unwrap().as_str(), "a/b/d");
        assert!(p.with_name("..").is_err());
    }
}
