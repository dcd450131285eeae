//! [`Node`]: what one path holds in one of the three trees.

use pouch_backend::BlockId;
use serde::{Deserialize, Serialize};

/// One block of a file: its id and raw length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlockRef {
    /// The block's id.
    pub id: BlockId,
    /// Its raw length in bytes.
    pub len: u32,
}

/// The ordered blocks of a file.
pub type Blocklist = Vec<BlockRef>;

/// A file's content hash, derived from its blocklist: BLAKE3 over each
/// block's id and length, so two files with the same blocks share it.
pub fn content_hash(blocks: &[BlockRef]) -> BlockId {
    let mut hasher = blake3::Hasher::new();
    for block in blocks {
        hasher.update(block.id.as_bytes());
        hasher.update(&block.len.to_le_bytes());
    }
    hasher.finalize().into()
}

/// What a path holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Node {
    /// A regular file.
    File {
        /// Length in bytes (the sum of the block lengths).
        size: u64,
        /// Modification time, nanoseconds since the Unix epoch.
        mtime_ns: i64,
        /// Whether the owner's execute bit is set (also in `mode`; kept for
        /// readers from before `mode`).
        exec: bool,
        /// The permission bits (`0o777`). Absent in entries written before
        /// they were synced: those read as 0o755 or 0o644 by `exec`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<u32>,
        /// The file's blocks, in order.
        blocks: Blocklist,
    },
    /// A directory.
    Dir,
    /// A symbolic link, synced as a link and never followed.
    Symlink {
        /// Where the link points, as written.
        target: String,
    },
}

impl Node {
    /// Whether two nodes hold the same content: what the planner compares.
    /// A file's mtime alone changing is not a change worth syncing; its
    /// permission bits changing is.
    pub fn same_content(&self, other: &Node) -> bool {
        match (self, other) {
            (Node::File { blocks: b1, .. }, Node::File { blocks: b2, .. }) => {
                self.file_mode() == other.file_mode() && b1 == b2
            }
            (Node::Dir, Node::Dir) => true,
            (Node::Symlink { target: t1 }, Node::Symlink { target: t2 }) => t1 == t2,
            _ => false,
        }
    }

    /// A file's permission bits (`0o777`): as recorded, or from the exec
    /// bit for entries from before modes were synced. 0 for others.
    pub fn file_mode(&self) -> u32 {
        match self {
            Node::File {
                mode: Some(mode), ..
            } => mode & 0o777,
            Node::File { exec: true, .. } => 0o755,
            Node::File { exec: false, .. } => 0o644,
            _ => 0,
        }
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        matches!(self, Node::Dir)
    }

    /// A short word for the kind, for listings.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Node::File { .. } => "file",
            Node::Dir => "dir",
            Node::Symlink { .. } => "symlink",
        }
    }

    /// The file size (0 for others).
    pub fn size(&self) -> u64 {
        match self {
            Node::File { size, .. } => *size,
            _ => 0,
        }
    }
}

/// Whether two optional nodes hold the same content (both absent counts).
pub fn same(a: Option<&Node>, b: Option<&Node>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.same_content(b),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_from_before_modes_read_their_mode_from_the_exec_bit() {
        let old: Node = serde_json::from_str(
            r#"{"kind":"file","size":0,"mtime_ns":0,"exec":true,"blocks":[]}"#,
        )
        .unwrap();
        assert_eq!(old.file_mode(), 0o755);
        let private: Node = serde_json::from_str(
            r#"{"kind":"file","size":0,"mtime_ns":0,"exec":false,"mode":384,"blocks":[]}"#,
        )
        .unwrap();
        assert_eq!(private.file_mode(), 0o600);
        assert!(!old.same_content(&private));
        // What a new Pouch writes, an old one still reads (exec stays).
        let text = serde_json::to_string(&private).unwrap();
        assert!(
            text.contains(r#""exec":false"#) && text.contains(r#""mode":384"#),
            "{text}"
        );
        let legacy_644: Node = serde_json::from_str(
            r#"{"kind":"file","size":0,"mtime_ns":0,"exec":false,"blocks":[]}"#,
        )
        .unwrap();
        let scanned_644: Node = serde_json::from_str(
            r#"{"kind":"file","size":0,"mtime_ns":0,"exec":false,"mode":420,"blocks":[]}"#,
        )
        .unwrap();
        assert!(
            legacy_644.same_content(&scanned_644),
            "no spurious change after an upgrade"
        );
    }
}
