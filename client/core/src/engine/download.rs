//! Download: bring one node to disk through a temp file in the same
//! folder, verified, made durable and renamed into place, never over a
//! local change the plan did not see.
//!
//! Files are finished in batches: an apply writes many temp files, then
//! makes them all durable at once (one `syncfs` per file system on Linux,
//! where an fsync per small file used to cost more than its download),
//! renames them in, makes the renames durable, and only then records them
//! as synced.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use pouch_backend::Error as BackendError;

use super::{Engine, Left, changed_since_plan};
use crate::fsops::{self, finish_temp, prepare_parent, unchanged};
use crate::local::Stat;
use crate::names::temp_path;
use crate::node::{BlockRef, Node};
use crate::path::RelPath;
use crate::report::{Action, SyncReport};
use crate::state::Tree;
use crate::{Error, Result};

/// Files finished together, at most.
const BATCH_FILES: usize = 256;

/// Bytes written but not yet durable, at most, before a batch is finished:
/// bounds what a crash throws away and how much a `syncfs` waits for.
const BATCH_BYTES: u64 = 64 << 20;

/// A file written whole to its temp file, not yet durable nor renamed in.
#[derive(Debug)]
struct Written {
    path: RelPath,
    node: Node,
    /// Open, so that it can be fsynced whatever its mode.
    handle: std::fs::File,
    temp: PathBuf,
    full: PathBuf,
    parent: PathBuf,
    /// The stat data the plan saw at `full` (`None`: nothing).
    expected: Option<Stat>,
    /// A folder stands at `full` and goes (if empty) for the file.
    replaces_dir: bool,
}

/// Downloads written to temp files, not yet finished.
#[derive(Debug, Default)]
pub(super) struct Downloaded {
    /// Whether an apply is running (which finishes them at its end and
    /// before any other kind of operation); otherwise each download is
    /// finished at once.
    pub(super) batching: bool,
    files: Vec<Written>,
    bytes: u64,
}

impl Engine {
    /// Finishes the downloads written so far and counts them in `report`;
    /// one whose path changed meanwhile is a problem, left for the next
    /// sync.
    pub(super) fn flush_downloads(&mut self, report: &mut SyncReport) -> Result<()> {
        for (path, outcome) in self.finish_downloads()? {
            match outcome {
                Ok(()) => {
                    report.downloaded += 1;
                    report.note(&path, Action::Downloaded);
                }
                Err(e) => {
                    tracing::warn!(%path, "not synced: {e}");
                    report.problems.push(format!("{path}: {e}"));
                }
            }
        }
        Ok(())
    }

    /// Makes the written temp files durable, renames each in (if its path
    /// still holds what the plan saw), makes the renames durable, and then
    /// records them as synced, in one transaction. In that order: a file
    /// is never renamed in before its bytes are on disk (a crash would
    /// leave a torn file under the real name), never recorded before its
    /// rename is (a lost rename would then read as a local delete), and a
    /// crash before the record only makes the next sync find the file
    /// already in place.
    fn finish_downloads(&mut self) -> Result<Vec<(RelPath, Result<()>)>> {
        let files = std::mem::take(&mut self.downloaded.files);
        self.downloaded.bytes = 0;
        if files.is_empty() {
            return Ok(Vec::new());
        }
        let durable = {
            let temps: Vec<_> = files
                .iter()
                .map(|f| (&f.handle, f.temp.as_path()))
                .collect();
            let parents: BTreeSet<&Path> = files.iter().map(|f| f.parent.as_path()).collect();
            fsops::make_durable(&temps, &parents)
        };
        if let Err(e) = durable {
            for file in &files {
                let _ = std::fs::remove_file(&file.temp);
            }
            return Err(e);
        }
        // The stat data below is taken after this: from 2 s after it, a
        // whole scan trusts it without reading the files again.
        let stat_taken_from = crate::clock::now_ns();
        let mut outcomes = Vec::with_capacity(files.len());
        let mut done = Vec::with_capacity(files.len());
        let mut renamed_in = BTreeSet::new();
        for file in files {
            self.expect_change(&file.path);
            let outcome = rename_in(&file);
            if outcome.is_ok() {
                match std::fs::symlink_metadata(&file.full) {
                    Ok(meta) => {
                        renamed_in.insert(file.parent.clone());
                        done.push((file.path.clone(), (Stat::of(&meta), file.node)));
                    }
                    Err(e) => {
                        outcomes.push((file.path, Err(Error::io(&file.full)(e))));
                        continue;
                    }
                }
            } else {
                let _ = std::fs::remove_file(&file.temp);
            }
            outcomes.push((file.path, outcome));
        }
        let renamed_in: BTreeSet<&Path> = renamed_in.iter().map(PathBuf::as_path).collect();
        fsops::make_durable(&[], &renamed_in)?;
        self.db.record_downloads(&done, stat_taken_from)?;
        for (path, (stat, node)) in done {
            self.changed(&path, Left::of(stat, &node));
        }
        Ok(outcomes)
    }

    /// Brings `node` to `path`, replacing what is there only if it still
    /// has the stat data `expected` (`None`: nothing may be there), and
    /// counts it in `report` once it is there. A file may be only written
    /// to its temp file when this returns (see `Downloaded`).
    pub(super) async fn download(
        &mut self,
        path: &RelPath,
        node: &Node,
        expected: Option<Stat>,
        report: &mut SyncReport,
    ) -> Result<()> {
        let full = path.to_fs(&self.root);
        let parent = prepare_parent(&self.root, path)?;
        let existing = std::fs::symlink_metadata(&full).ok();
        // A folder already there takes nothing's place: a rename of a plan's
        // earlier slice made it for a file inside, or the user did.
        let folder_onto_folder = node.is_dir() && existing.as_ref().is_some_and(|m| m.is_dir());
        if !folder_onto_folder && !unchanged(&full, expected.as_ref())? {
            return Err(changed_since_plan());
        }
        match node {
            Node::Dir => {
                self.expect_change(path);
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
                let written = match self.fetch_into(&temp, blocks, *size, report).await {
                    Ok(mut file) => finish_temp(&mut file, &temp, mode, *mtime_ns).map(|()| file),
                    Err(e) => Err(e),
                };
                let handle = match written {
                    Ok(handle) => handle,
                    Err(e) => {
                        let _ = std::fs::remove_file(&temp);
                        return Err(e);
                    }
                };
                self.downloaded.bytes += size;
                self.downloaded.files.push(Written {
                    path: path.clone(),
                    node: node.clone(),
                    handle,
                    temp,
                    full,
                    parent,
                    expected,
                    replaces_dir: existing.as_ref().is_some_and(|m| m.is_dir()),
                });
                if !self.downloaded.batching {
                    // One file: its own outcome is the download's.
                    let mut outcomes = self.finish_downloads()?;
                    let (path, outcome) = outcomes.pop().expect("the file just written");
                    outcome?;
                    report.downloaded += 1;
                    report.note(&path, Action::Downloaded);
                } else if self.downloaded.files.len() >= BATCH_FILES
                    || self.downloaded.bytes >= BATCH_BYTES
                {
                    self.flush_downloads(report)?;
                }
                return Ok(());
            }
            Node::Symlink { target } => {
                let temp = temp_path(&parent);
                std::os::unix::fs::symlink(target, &temp).map_err(Error::io(&temp))?;
                self.expect_change(path);
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
        self.changed(path, Left::of(stat, node));
        self.db.set_synced(path, Some(node))?;
        report.downloaded += 1;
        report.note(path, Action::Downloaded);
        Ok(())
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
                    report.bytes_downloaded += bytes.len() as u64;
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

/// Renames a durable temp file over its target, if the target still holds
/// what the plan saw.
fn rename_in(file: &Written) -> Result<()> {
    if !unchanged(&file.full, file.expected.as_ref())? {
        return Err(changed_since_plan());
    }
    if file.replaces_dir {
        // Files not synced yet live in the folder: keep them.
        std::fs::remove_dir(&file.full).map_err(Error::io(&file.full))?;
    }
    std::fs::rename(&file.temp, &file.full).map_err(Error::io(&file.full))
}
