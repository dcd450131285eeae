//! Download: bring one node to disk through a temp file in the same
//! folder, verified, fsynced and renamed into place, never over a local
//! change the plan did not see.

use std::path::Path;

use pouch_backend::Error as BackendError;

use super::{Engine, changed_since_plan};
use crate::fsops::{self, commit_temp, prepare_parent, unchanged};
use crate::local::Stat;
use crate::names::temp_path;
use crate::node::{BlockRef, Node};
use crate::path::RelPath;
use crate::report::SyncReport;
use crate::state::Tree;
use crate::{Error, Result};

/// Downloaded files recorded in the local state together.
const RECORD_BATCH: usize = 256;

/// Files written and renamed into place, not yet recorded as synced.
#[derive(Debug, Default)]
pub(super) struct Downloaded {
    /// Whether an apply is running (which flushes at its end); otherwise
    /// each download is recorded at once.
    pub(super) batching: bool,
    files: Vec<(RelPath, crate::local::LocalEntry)>,
    dirs: std::collections::BTreeSet<std::path::PathBuf>,
}

impl Engine {
    /// Makes the downloads written so far durable (one fsync per folder
    /// they are in) and then records them as synced, in one transaction.
    /// In that order: a file is never recorded as here before its rename
    /// is on disk (a lost rename would then read as a local delete), and a
    /// crash before the record only makes the next sync find the file
    /// already in place.
    pub(super) fn flush_downloads(&mut self) -> Result<()> {
        if self.downloaded.files.is_empty() {
            return Ok(());
        }
        for dir in std::mem::take(&mut self.downloaded.dirs) {
            fsops::fsync_dir(&dir)?;
        }
        let files = std::mem::take(&mut self.downloaded.files);
        self.db.record_downloads(&files)?;
        self.written.extend(files.into_iter().map(|(path, _)| path));
        Ok(())
    }

    /// Brings `node` to `path`, replacing what is there only if it still
    /// has the stat data `expected` (`None`: nothing may be there).
    pub(super) async fn download(
        &mut self,
        path: &RelPath,
        node: &Node,
        expected: Option<Stat>,
        report: &mut SyncReport,
    ) -> Result<()> {
        let full = path.to_fs(&self.root);
        let parent = prepare_parent(&self.root, path)?;
        if !unchanged(&full, expected.as_ref())? {
            return Err(changed_since_plan());
        }
        let existing = std::fs::symlink_metadata(&full).ok();
        match node {
            Node::Dir => {
                match existing {
                    Some(meta) if meta.is_dir() => {}
                    Some(_) => {
                        std::fs::remove_file(&full).map_err(Error::io(&full))?;
                        std::fs::create_dir(&full).map_err(Error::io(&full))?;
                    }
                    None => std::fs::create_dir(&full).map_err(Error::io(&full))?,
                }
                fsops::fsync_dir(&parent)?;
            }
            Node::File {
                blocks,
                mtime_ns,
                size,
                ..
            } => {
                let mode = self.mode_for(path, node, existing.as_ref())?;
                let temp = temp_path(&parent);
                let result = self.fetch_into(&temp, blocks, *size, report).await;
                let file = match result {
                    Ok(file) => file,
                    Err(e) => {
                        let _ = std::fs::remove_file(&temp);
                        return Err(e);
                    }
                };
                // Re-check right before the rename: the fetch took time.
                if !unchanged(&full, expected.as_ref())? {
                    let _ = std::fs::remove_file(&temp);
                    return Err(changed_since_plan());
                }
                if existing.as_ref().is_some_and(|m| m.is_dir())
                    && let Err(e) = std::fs::remove_dir(&full)
                {
                    // Files not synced yet live in the folder: keep them.
                    let _ = std::fs::remove_file(&temp);
                    return Err(Error::io(&full)(e));
                }
                commit_temp(file, &temp, &full, mode, *mtime_ns).inspect_err(|_| {
                    let _ = std::fs::remove_file(&temp);
                })?;
                // Recorded with a batch of others, after their folders'
                // fsyncs: see `flush_downloads`.
                let stat = Stat::of(&std::fs::symlink_metadata(&full).map_err(Error::io(&full))?);
                self.downloaded.dirs.insert(parent);
                self.downloaded
                    .files
                    .push((path.clone(), (stat, node.clone())));
                if !self.downloaded.batching || self.downloaded.files.len() >= RECORD_BATCH {
                    self.flush_downloads()?;
                }
                return Ok(());
            }
            Node::Symlink { target } => {
                let temp = temp_path(&parent);
                std::os::unix::fs::symlink(target, &temp).map_err(Error::io(&temp))?;
                if existing.as_ref().is_some_and(|m| m.is_dir())
                    && let Err(e) = std::fs::remove_dir(&full)
                {
                    let _ = std::fs::remove_file(&temp);
                    return Err(Error::io(&full)(e));
                }
                std::fs::rename(&temp, &full).map_err(Error::io(&full))?;
                fsops::fsync_dir(&parent)?;
            }
        }
        let stat = Stat::of(&std::fs::symlink_metadata(&full).map_err(Error::io(&full))?);
        self.db.set_local(path, Some(&(stat, node.clone())))?;
        self.written.push(path.clone());
        self.db.set_synced(path, Some(node))
    }

    /// The permission bits a download of `node` to `path` gets. A new file
    /// gets the remote's; a file already here keeps its own unless the
    /// other device changed the mode itself: an edit of its content never
    /// widens (nor narrows) who may read it here.
    fn mode_for(
        &self,
        path: &RelPath,
        node: &Node,
        existing: Option<&std::fs::Metadata>,
    ) -> Result<u32> {
        use std::os::unix::fs::PermissionsExt;
        let remote = node.file_mode();
        let Some(here) = existing.filter(|m| m.is_file()) else {
            return Ok(remote);
        };
        let synced = self.db.node(Tree::Synced, path)?.map(|n| n.file_mode());
        Ok(match synced {
            Some(synced) if synced == remote => here.permissions().mode() & 0o777,
            _ => remote,
        })
    }

    /// Writes a file's blocks, each verified by the backend, into `temp`.
    async fn fetch_into(
        &mut self,
        temp: &Path,
        blocks: &[BlockRef],
        size: u64,
        report: &mut SyncReport,
    ) -> Result<std::fs::File> {
        use std::io::{Seek, Write};
        use std::os::unix::fs::OpenOptionsExt;
        // Readable by the owner only until it is whole and gets its mode:
        // a private file's new content is never readable by others.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(temp)
            .map_err(Error::io(temp))?;
        let mut written = 0u64;
        for block in blocks {
            let reused = self.local_blocks.read(block);
            let prefetched = match (&reused, &mut self.prefetch) {
                (None, Some(prefetch)) => prefetch.take(block.id).await,
                _ => None,
            };
            let bytes = match (reused, prefetched) {
                (Some(bytes), _) => {
                    report.blocks_reused += 1;
                    bytes
                }
                (None, prefetched) => {
                    let bytes = match prefetched {
                        Some(bytes) => bytes?,
                        None => self.backend.get_block(block.id).await?,
                    };
                    report.blocks_downloaded += 1;
                    bytes
                }
            };
            if bytes.len() != block.len as usize {
                return Err(Error::Backend(BackendError::Corrupt {
                    id: block.id,
                    reason: "the block's length differs from the blocklist's",
                }));
            }
            if bytes.iter().all(|&b| b == 0) {
                // A hole, not zeros on disk: a sparse file stays sparse.
                file.seek(std::io::SeekFrom::Current(bytes.len() as i64))
                    .map_err(Error::io(temp))?;
            } else {
                file.write_all(&bytes).map_err(Error::io(temp))?;
            }
            written += bytes.len() as u64;
            self.progress.advance(bytes.len() as u64);
        }
        if written != size {
            return Err(Error::BadEntry {
                seq: 0,
                reason: format!("a file's blocks add up to {written} bytes, not its size {size}"),
            });
        }
        // A file ending in a hole gets its length from here.
        file.set_len(size).map_err(Error::io(temp))?;
        Ok(file)
    }
}
