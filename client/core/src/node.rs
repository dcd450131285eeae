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
        /// Whether the owner's execute bit is set.
        exec: bool,
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
    /// A file's mtime alone changing is not a change worth syncing.
    pub fn same_content(&self, other: &Node) -> bool {
        match (self, other) {
            (
                Node::File {
                    exec: e1,
                    blocks: b1,
                    ..
                },
                Node::File {
                    exec: e2,
                    blocks: b2,
                    ..
                },
            ) => e1 == e2 && b1 == b2,
            (Node::Dir, Node::Dir) => true,
            (Node::Symlink { target: t1 }, Node::Symlink { target: t2 }) => t1 == t2,
            _ => false,
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
