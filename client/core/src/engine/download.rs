//! Download: bring one node to disk through a temp file in the same
//! folder, verified, made durable and renamed into place, never over a
//! local change the plan did not see.
//!
//! Files are finished in batches: an apply writes many temp files (and
//! makes folders), then makes them all durable at once (one `syncfs` per
//! file system on Linux, where an fsync per small file or folder used to
//! cost more than its download), renames them in, makes the renames
//! durable, and only then records them as synced, in one transaction.

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use bytes::Bytes;
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

/// Files at most this large are written to their temp files by a
/// blocking thread while the engine goes on with the next ones: making a
/// file costs the kernel far more than writing a few KiB into it (an inode
/// to find, a folder entry), and one thread doing it for every file of a
/// new device was the download's bottleneck. Larger files stream from the
/// engine as their blocks arrive (never held whole in memory).
const WRITE_AHEAD_SIZE: u64 = 1 << 20;

/// Small files written by blocking threads at once, at most.
const WRITERS: usize = 4;

/// A file written whole to its temp file, not yet durable nor renamed in.
#[derive(Debug)]
struct Written {
    /// Open, so that it can be fsynced whatever its mode.
    handle: std::fs::File,
    target: Target,
}

/// A small file a blocking thread is writing to its temp file.
#[derive(Debug)]
struct Writing {
    task: tokio::task::JoinHandle<Result<std::fs::File>>,
    target: Target,
}

/// Where a downloaded file goes, and what may stand there.
#[derive(Debug)]
struct Target {
    path: RelPath,
    node: Node,
    temp: PathBuf,
    full: PathBuf,
    parent: PathBuf,
    /// The stat data the plan saw at `full` (`None`: nothing).
    expected: Option<Stat>,
    /// A folder stands at `full` and goes (if empty) for the file.
    replaces_dir: bool,
}

/// A folder made on disk, its entry in its parent not yet durable.
#[derive(Debug)]
struct Made {
    path: RelPath,
    full: PathBuf,
    parent: PathBuf,
}

/// Downloads written to temp files (and folders made), not yet finished.
#[derive(Debug, Default)]
pub(super) struct Downloaded {
    /// Whether an apply is running (which finishes them at its end and
    /// before any other kind of operation); otherwise each download is
    /// finished at once.
    pub(super) batching: bool,
    files: Vec<Written>,
    /// Oldest first.
    writing: VecDeque<Writing>,
    /// Small files whose writing failed, with why.
    failed: Vec<(RelPath, Error)>,
    dirs: Vec<Made>,
    bytes: u64,
}

impl Downloaded {
    /// Whether enough waits to be finished now.
    fn full(&self) -> bool {
        self.files.len() + self.writing.len() + self.dirs.len() >= BATCH_FILES
            || self.bytes >= BATCH_BYTES
    }

    /// Waits for the oldest small file being written.
    async fn collect_one(&mut self) {
        let Some(Writing { task, target }) = self.writing.pop_front() else {
            return;
        };
        let written = task.await.unwrap_or_else(|e| {
            Err(Error::io(&target.temp)(std::io::Error::other(format!(
                "the writing thread failed: {e}"
            ))))
        });
        match written {
            Ok(handle) => self.files.push(Written { handle, target }),
            Err(e) => {
                let _ = std::fs::remove_file(&target.temp);
                self.failed.push((target.path, e));
            }
        }
    }
}

impl Engine {
    /// Finishes the downloads written so far and counts them in `report`;
    /// one whose path changed meanwhile is a problem, left for the next
    /// sync.
    pub(super) async fn flush_downloads(&mut self, report: &mut SyncReport) -> Result<()> {
        for (path, outcome) in self.finish_downloads().await? {
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
    async fn finish_downloads(&mut self) -> Result<Vec<(RelPath, Result<()>)>> {
        while !self.downloaded.writing.is_empty() {
            self.downloaded.collect_one().await;
        }
        let files = std::mem::take(&mut self.downloaded.files);
        let dirs = std::mem::take(&mut self.downloaded.dirs);
        let failed = std::mem::take(&mut self.downloaded.failed);
        self.downloaded.bytes = 0;
        let mut outcomes: Vec<_> = failed.into_iter().map(|(p, e)| (p, Err(e))).collect();
        if files.is_empty() && dirs.is_empty() {
            return Ok(outcomes);
        }
        let durable = {
            let temps: Vec<_> = files
                .iter()
                .map(|f| (&f.handle, f.target.temp.as_path()))
                .collect();
            let parents: BTreeSet<&Path> = files
                .iter()
                .map(|f| f.target.parent.as_path())
                .chain(dirs.iter().map(|d| d.parent.as_path()))
                .collect();
            fsops::make_durable(&temps, &parents)
        };
        if let Err(e) = durable {
            for file in &files {
                let _ = std::fs::remove_file(&file.target.temp);
            }
            // The folders stay: the next sync finds them in place.
            return Err(e);
        }
        // The stat data below is taken after this: from 2 s after it, a
        // whole scan trusts it without reading the files again.
        let stat_taken_from = crate::clock::now_ns();
        outcomes.reserve(files.len() + dirs.len());
        let mut done = Vec::with_capacity(files.len() + dirs.len());
        for dir in dirs {
            match std::fs::symlink_metadata(&dir.full) {
                Ok(meta) => {
                    done.push((dir.path.clone(), (Stat::of(&meta), Node::Dir)));
                    outcomes.push((dir.path, Ok(())));
                }
                Err(e) => outcomes.push((dir.path, Err(Error::io(&dir.full)(e)))),
            }
        }
        let mut renamed_in = BTreeSet::new();
        for Written { target: file, .. } in files {
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
                if self.downloaded.batching {
                    // Made durable and recorded with the files around it.
                    self.downloaded.dirs.push(Made {
                        path: path.clone(),
                        full,
                        parent,
                    });
                    if self.downloaded.full() {
                        self.flush_downloads(report).await?;
                    }
                    return Ok(());
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
                let target = Target {
                    path: path.clone(),
                    node: node.clone(),
                    temp: temp_path(&parent),
                    full,
                    parent,
                    expected,
                    replaces_dir: existing.as_ref().is_some_and(|m| m.is_dir()),
                };
                let (size, mtime_ns) = (*size, *mtime_ns);
                self.downloaded.bytes += size;
                if self.downloaded.batching && size <= WRITE_AHEAD_SIZE {
                    let mut bytes = Vec::with_capacity(blocks.len());
                    for block in blocks {
                        bytes.push(self.block_bytes(block, report).await?);
                    }
                    let temp = target.temp.clone();
                    let task = tokio::task::spawn_blocking(move || {
                        let mut file = create_temp(&temp)?;
                        for block in &bytes {
                            put_block(&mut file, &temp, block)?;
                        }
                        end_temp(&mut file, &temp, size, mode, mtime_ns)?;
                        Ok(file)
                    });
                    self.downloaded.writing.push_back(Writing { task, target });
                    if self.downloaded.writing.len() > WRITERS {
                        self.downloaded.collect_one().await;
                    }
                } else {
                    let written = match self.fetch_into(&target.temp, blocks, report).await {
                        Ok(mut file) => {
                            end_temp(&mut file, &target.temp, size, mode, mtime_ns).map(|()| file)
                        }
                        Err(e) => Err(e),
                    };
                    match written {
                        Ok(handle) => self.downloaded.files.push(Written { handle, target }),
                        Err(e) => {
                            let _ = std::fs::remove_file(&target.temp);
                            return Err(e);
                        }
                    }
                }
                if !self.downloaded.batching {
                    // One file: its own outcome is the download's.
                    let mut outcomes = self.finish_downloads().await?;
                    let (path, outcome) = outcomes.pop().expect("the file just written");
                    outcome?;
                    report.downloaded += 1;
                    report.note(&path, Action::Downloaded);
                } else if self.downloaded.full() {
                    self.flush_downloads(report).await?;
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

    /// Writes a file's blocks, each verified by the backend, into `temp`,
    /// as they arrive.
    async fn fetch_into(
        &mut self,
        temp: &Path,
        blocks: &[BlockRef],
        report: &mut SyncReport,
    ) -> Result<std::fs::File> {
        let mut file = create_temp(temp)?;
        for block in blocks {
            let bytes = self.block_bytes(block, report).await?;
            put_block(&mut file, temp, &bytes)?;
        }
        Ok(file)
    }

    /// One of a file's blocks: from a local file that holds it, the batched
    /// read, or the backend, each verified; counted in `report` and the
    /// progress.
    async fn block_bytes(&mut self, block: &BlockRef, report: &mut SyncReport) -> Result<Bytes> {
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
        self.progress.advance(bytes.len() as u64);
        Ok(bytes)
    }
}

/// Creates a temp file, readable by the owner only until it is whole and
/// gets its mode: a private file's new content is never readable by others.
fn create_temp(temp: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(temp)
        .map_err(Error::io(temp))
}

/// Appends a block to a temp file; one of zeros as a hole, so that a sparse
/// file stays sparse.
fn put_block(file: &mut std::fs::File, temp: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::{Seek, Write};
    if bytes.iter().all(|&b| b == 0) {
        file.seek(std::io::SeekFrom::Current(bytes.len() as i64))
            .map_err(Error::io(temp))?;
    } else {
        file.write_all(bytes).map_err(Error::io(temp))?;
    }
    Ok(())
}

/// Checks that the blocks written add up to the file's `size`, and gives
/// the temp file its length (a file ending in a hole gets it only here),
/// mode and mtime.
fn end_temp(
    file: &mut std::fs::File,
    temp: &Path,
    size: u64,
    mode: u32,
    mtime_ns: i64,
) -> Result<()> {
    use std::io::Seek;
    let written = file.stream_position().map_err(Error::io(temp))?;
    if written != size {
        return Err(Error::BadEntry {
            seq: 0,
            reason: format!("a file's blocks add up to {written} bytes, not its size {size}"),
        });
    }
    file.set_len(size).map_err(Error::io(temp))?;
    finish_temp(file, temp, mode, mtime_ns)
}

/// Renames a durable temp file over its target, if the target still holds
/// what the plan saw.
fn rename_in(file: &Target) -> Result<()> {
    if !unchanged(&file.full, file.expected.as_ref())? {
        return Err(changed_since_plan());
    }
    if file.replaces_dir {
        // Files not synced yet live in the folder: keep them.
        std::fs::remove_dir(&file.full).map_err(Error::io(&file.full))?;
    }
    std::fs::rename(&file.temp, &file.full).map_err(Error::io(&file.full))
}
