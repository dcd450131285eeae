//! Local block reuse: a block a download needs is often already on this
//! device, in a file the local state knows (a folder copied or moved on
//! the other device, a version restored, an edit of a big file). It is
//! read from there instead of fetched, and checked against its id first,
//! so a file changed since the scan simply falls back to the store.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use bytes::Bytes;
use pouch_backend::BlockId;

use crate::local::LocalEntry;
use crate::node::{BlockRef, Node};
use crate::path::RelPath;

/// Where this device's files hold each block: a file, an offset, a length.
#[derive(Debug, Default)]
pub(super) struct LocalBlocks {
    at: HashMap<BlockId, (PathBuf, u64, u32)>,
}

impl LocalBlocks {
    /// The blocks of every file of `local` (the scan), under `root`.
    pub(super) fn of<'a>(
        root: &std::path::Path,
        local: impl IntoIterator<Item = (&'a RelPath, &'a LocalEntry)>,
    ) -> Self {
        let mut at = HashMap::new();
        for (path, (_, node)) in local {
            if let Node::File { blocks, .. } = node {
                let full = path.to_fs(root);
                let mut offset = 0u64;
                for block in blocks {
                    at.entry(block.id)
                        .or_insert_with(|| (full.clone(), offset, block.len));
                    offset += u64::from(block.len);
                }
            }
        }
        Self { at }
    }

    /// Notes that the file at `full` holds block `id` at `offset`, unless
    /// another file already does.
    pub(super) fn add(&mut self, id: BlockId, full: PathBuf, offset: u64, len: u32) {
        self.at.entry(id).or_insert((full, offset, len));
    }

    /// Whether `id` is in a local file.
    pub(super) fn has(&self, id: &BlockId) -> bool {
        self.at.contains_key(id)
    }

    /// Block `block`'s bytes from a local file, if one still holds them.
    pub(super) fn read(&self, block: &BlockRef) -> Option<Bytes> {
        let (path, offset, len) = self.at.get(&block.id)?;
        if *len != block.len {
            return None;
        }
        let file = std::fs::File::open(path).ok()?;
        let mut bytes = vec![0u8; *len as usize];
        file.read_exact_at(&mut bytes, *offset).ok()?;
        (BlockId::of(&bytes) == block.id).then(|| Bytes::from(bytes))
    }
}
