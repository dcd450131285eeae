//! The vocabulary of the Local tree: what a scan records of each path.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;

use crate::node::Node;

/// The stat data that decides whether a file must be re-read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stat {
    /// Length in bytes.
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
    /// Inode number.
    pub ino: u64,
    /// Status change time, ns since the epoch.
    pub ctime_ns: i64,
}

impl Stat {
    /// The stat data of `meta`.
    pub fn of(meta: &Metadata) -> Self {
        Self {
            size: meta.len(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ino: meta.ino(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        }
    }
}

/// One path of the Local tree: its stat data and what it holds.
pub type LocalEntry = (Stat, Node);
