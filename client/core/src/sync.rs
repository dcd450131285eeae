//! The executor: one full sync in both directions.
//!
//! 1. **Pull**: fold new journal entries into the Remote tree; every path
//!    is validated first, and a refused one never reaches the disk.
//! 2. **Apply**: scan, plan, and run the operations that change the disk
//!    (downloads, local deletes, renames, conflicted copies), recording
//!    each in the local journal as it completes.
//! 3. **Push**: scan and plan again, upload the blocks the store lacks,
//!    then append one commit. A lost race (`SlotTaken`) means another
//!    device committed first: pull, re-plan, retry.
//!
//! Blocks are always durable before the commit naming them is appended,
//! so a crash anywhere leaves at worst unreferenced blocks, which the next
//! run finds already stored instead of uploading again.

mod restore;
mod selective;

pub use restore::Pick;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pouch_backend::{Backend, Block, BlockId, Error as BackendError};
use serde::{Deserialize, Serialize};

use crate::chunk;
use crate::commit::{COMMIT_VERSION, Change, Commit};
use crate::db::{LocalDb, LocalEntry, Origin, Tree};
use crate::fsops::{self, commit_temp, conflict_name, prepare_parent, unchanged};
use crate::ignore_rules::IgnoreRules;
use crate::node::{BlockRef, Node};
use crate::path::RelPath;
use crate::plan::{Op, plan};
use crate::scan::{Stat, scan};
use crate::{Error, Result};

/// How many commits in a row may be lost to other devices before giving up.
const MAX_COMMIT_ATTEMPTS: u32 = 8;
/// Raw bytes of blocks gathered before one `has_blocks` + `put_blocks`.
const UPLOAD_BATCH_BYTES: usize = 16 << 20;
/// Journal entries read per request while pulling.
const PULL_PAGE: usize = 256;

/// The wall clock, injected so tests can fix the date of conflicted copies.
pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn unix_secs(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn unix_secs(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    }
}

/// Where a sync reports its progress (a progress bar, log lines).
pub trait Progress: Send + Sync {
    /// A phase starts that will move about `total_bytes` in `items` files
    /// (or blocks, for a migration).
    fn phase(&self, name: &'static str, items: u64, total_bytes: u64);
    /// `bytes` more were moved.
    fn advance(&self, bytes: u64);
}

/// Progress that goes nowhere.
#[derive(Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn phase(&self, _: &'static str, _: u64, _: u64) {}
    fn advance(&self, _: u64) {}
}

/// What one sync did.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct SyncReport {
    /// Journal entries pulled.
    pub entries_pulled: u64,
    /// Paths brought to disk (files, folders, links).
    pub downloaded: u64,
    /// Paths removed from disk.
    pub deleted_local: u64,
    /// Remote renames applied on disk without downloading.
    pub renamed_local: u64,
    /// Conflicted copies made.
    pub conflicts: u64,
    /// Paths sent to the remote side.
    pub uploaded: u64,
    /// Paths deleted on the remote side.
    pub deleted_remote: u64,
    /// Blocks sent to the store (already stored ones are not sent).
    pub blocks_uploaded: u64,
    /// Raw bytes of those blocks.
    pub bytes_uploaded: u64,
    /// Blocks fetched from the store.
    pub blocks_downloaded: u64,
    /// Commits appended to the journal.
    pub commits: u64,
    /// Things that could not be synced this time, each with why.
    pub problems: Vec<String>,
    /// The paths this sync changed, in order (the first
    /// [`MAX_CHANGED_LISTED`]; the counts above are complete).
    #[serde(default)]
    pub changed: Vec<Changed>,
}

/// How many changed paths one report lists.
pub const MAX_CHANGED_LISTED: usize = 1000;

/// One path a sync changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changed {
    /// The path.
    pub path: String,
    /// What happened to it.
    pub action: Action,
}

/// What a sync did to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Sent to the other devices.
    Uploaded,
    /// Deleted on the other devices.
    DeletedRemotely,
    /// Brought here.
    Downloaded,
    /// Deleted here, as another device did.
    DeletedHere,
    /// Moved here, as another device did.
    Renamed,
    /// Both sides changed it; the local version became a conflicted copy.
    Conflict,
}

impl SyncReport {
    fn note(&mut self, path: &RelPath, action: Action) {
        if self.changed.len() < MAX_CHANGED_LISTED {
            self.changed.push(Changed {
                path: path.to_string(),
                action,
            });
        }
    }
}

/// The sync engine for one device.
pub struct Engine {
    root: PathBuf,
    device: String,
    db: LocalDb,
    backend: Arc<dyn Backend>,
    clock: Arc<dyn Clock>,
    progress: Arc<dyn Progress>,
    guard: MassDeleteGuard,
}

/// When a scan's deletes are too many to propagate without asking.
#[derive(Debug, Clone, Copy)]
pub struct MassDeleteGuard {
    /// Deletes above this share of the synced tree trip the guard...
    pub share: f64,
    /// ...when they are at least this many.
    pub min_paths: usize,
    /// Lets the next sync through anyway (reset after it).
    pub allow_once: bool,
}

impl Default for MassDeleteGuard {
    fn default() -> Self {
        Self {
            share: 0.5,
            min_paths: 100,
            allow_once: false,
        }
    }
}

impl Engine {
    /// Opens the engine: `root` must exist; the journal is created if new.
    pub fn open(
        root: &Path,
        device: &str,
        journal: &Path,
        backend: Arc<dyn Backend>,
        clock: Arc<dyn Clock>,
        progress: Arc<dyn Progress>,
    ) -> Result<Self> {
        let meta = std::fs::metadata(root).map_err(Error::io(root))?;
        if !meta.is_dir() {
            return Err(Error::io(root)(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                "the sync root is not a folder",
            )));
        }
        let root = root.canonicalize().map_err(Error::io(root))?;
        Ok(Self {
            root,
            device: device.to_owned(),
            db: LocalDb::open(journal)?,
            backend,
            clock,
            progress,
            guard: MassDeleteGuard::default(),
        })
    }

    /// Sends progress to `progress` from now on (the daemon reports it in
    /// its status).
    pub fn set_progress(&mut self, progress: Arc<dyn Progress>) {
        self.progress = progress;
    }

    /// The move this device pulled and has not followed yet: the entry
    /// that announced it and the new store.
    pub fn moved(&self) -> Result<Option<(u64, crate::config::BackendConfig)>> {
        Ok(self
            .db
            .meta("moved_to")?
            .and_then(|text| serde_json::from_str(&text).ok()))
    }

    /// Forgets a followed move: call once this engine's store is the new one.
    pub fn forget_move(&self) -> Result<()> {
        self.db.delete_meta("moved_to")
    }

    /// The mass-delete guard, to tune it or let one sync through.
    pub fn guard_mut(&mut self) -> &mut MassDeleteGuard {
        &mut self.guard
    }

    /// The local journal, for status and listings.
    pub fn db(&self) -> &LocalDb {
        &self.db
    }

    /// One full sync in both directions.
    pub async fn sync_once(&mut self) -> Result<SyncReport> {
        let mut report = SyncReport::default();
        for _ in 0..MAX_COMMIT_ATTEMPTS {
            self.pull(&mut report).await?;
            // Nothing may be written to a store the namespace left.
            if let Some((seq, to)) = self.moved()? {
                return Err(Error::Moved {
                    seq,
                    to: Box::new(to),
                });
            }
            let local = self.rescan(&mut report)?;
            let ops = self.plan(&local)?;
            self.apply(
                ops.into_iter().filter(|op| !op.is_push()),
                &local,
                &mut report,
            )
            .await?;

            let local = self.rescan(&mut report)?;
            let ops = self.plan(&local)?;
            let (push, rest): (Vec<Op>, Vec<Op>) = ops.into_iter().partition(Op::is_push);
            // Only agreements are safe to act on without a fresh pull.
            let agreements = rest.into_iter().filter(|op| matches!(op, Op::Agree { .. }));
            self.apply(agreements, &local, &mut report).await?;
            match self.push(push, &local, &mut report).await {
                Ok(()) => return Ok(report),
                Err(Error::Backend(BackendError::SlotTaken(seq))) => {
                    tracing::info!(%seq, "another device committed first; pulling and re-planning");
                }
                Err(other) => return Err(other),
            }
        }
        Err(Error::Contended {
            attempts: MAX_COMMIT_ATTEMPTS,
        })
    }

    /// What a sync would do now, without changing the disk: pulls the
    /// journal, scans, and plans. Returns the operations and any problems.
    pub async fn pending(&mut self) -> Result<(Vec<Op>, Vec<String>)> {
        let mut report = SyncReport::default();
        self.pull(&mut report).await?;
        let outcome = scan(
            &self.root,
            &self.db.local()?,
            self.db.scan_started()?,
            &self.rules()?,
        )?;
        let ops = self.plan(&outcome.entries)?;
        report.problems.extend(outcome.problems);
        Ok((ops, report.problems))
    }

    /// Folds new journal entries into the Remote tree, nothing else.
    pub async fn pull_only(&mut self) -> Result<SyncReport> {
        let mut report = SyncReport::default();
        self.pull(&mut report).await?;
        Ok(report)
    }

    /// `.pouchignore`, the built-in ignores, and this device's excluded
    /// folders.
    fn rules(&self) -> Result<IgnoreRules> {
        Ok(IgnoreRules::load(&self.root).with_excluded(self.db.excluded()?))
    }

    /// Plans over the three trees, leaving ignored paths out of all of
    /// them: an ignored path is neither sent, nor fetched, nor deleted.
    fn plan(&self, local: &BTreeMap<RelPath, LocalEntry>) -> Result<Vec<Op>> {
        let rules = self.rules()?;
        let keep = |tree: BTreeMap<RelPath, Node>| -> BTreeMap<RelPath, Node> {
            tree.into_iter()
                .filter(|(path, node)| !rules.is_ignored(path, node.is_dir()))
                .collect()
        };
        let local_nodes = keep(
            local
                .iter()
                .map(|(p, (_, n))| (p.clone(), n.clone()))
                .collect(),
        );
        Ok(plan(
            &local_nodes,
            &keep(self.db.tree(Tree::Remote)?),
            &keep(self.db.tree(Tree::Synced)?),
        ))
    }

    fn rescan(&mut self, report: &mut SyncReport) -> Result<BTreeMap<RelPath, LocalEntry>> {
        let previous = self.db.local()?;
        let rules = self.rules()?;
        let started = crate::scan::now_ns();
        let outcome = scan(&self.root, &previous, self.db.scan_started()?, &rules)?;
        for problem in outcome.problems.into_iter().chain(rules.problems) {
            if !report.problems.contains(&problem) {
                report.problems.push(problem);
            }
        }
        self.db.replace_local(&outcome.entries, started)?;
        Ok(outcome.entries)
    }

    /// Folds every journal entry after the cursor into the Remote tree.
    async fn pull(&mut self, report: &mut SyncReport) -> Result<()> {
        loop {
            let cursor = self.db.cursor()?;
            let entries = self.backend.read_journal(cursor, PULL_PAGE).await?;
            if entries.is_empty() {
                return Ok(());
            }
            for entry in entries {
                let mut origin = Origin {
                    device: String::new(),
                    time: None,
                };
                let changes = match Commit::decode(entry.seq.0, &entry.data) {
                    Ok(commit) => {
                        if let Some(to) = &commit.moved_to {
                            tracing::warn!(seq = %entry.seq, "the namespace moved to another store");
                            self.db.set_meta(
                                "moved_to",
                                &serde_json::to_string(&(entry.seq.0, to))
                                    .expect("a backend config always serialises"),
                            )?;
                        }
                        origin = Origin {
                            device: commit.device,
                            time: commit.time,
                        };
                        validated(entry.seq.0, commit.changes, &mut report.problems)
                    }
                    Err(e) => {
                        tracing::error!(seq = %entry.seq, "refusing a journal entry: {e}");
                        report.problems.push(e.to_string());
                        Vec::new()
                    }
                };
                self.db.fold(entry.seq, &origin, &changes, false)?;
                report.entries_pulled += 1;
            }
        }
    }

    async fn apply(
        &mut self,
        ops: impl Iterator<Item = Op>,
        local: &BTreeMap<RelPath, LocalEntry>,
        report: &mut SyncReport,
    ) -> Result<()> {
        let ops: Vec<Op> = ops.collect();
        let (files, total) = ops
            .iter()
            .filter_map(|op| match op {
                Op::Download { node, .. } | Op::Conflict { node, .. } => Some(node.size()),
                _ => None,
            })
            .fold((0, 0), |(files, bytes), size| (files + 1, bytes + size));
        if total > 0 {
            self.progress.phase("downloading", files, total);
        }
        // Folders a conflict moved aside, with everything the plan said
        // about their insides: those operations are stale, and the next
        // plan (after a rescan) sees the copy as new local paths.
        let mut moved: Vec<RelPath> = Vec::new();
        for op in ops {
            let path = op.path().clone();
            let inside_moved = |p: &RelPath| p.ancestors().any(|a| moved.contains(&a));
            if inside_moved(&path)
                || matches!(&op, Op::RenameLocal { from, .. } if inside_moved(from))
            {
                continue;
            }
            if matches!(op, Op::Conflict { .. })
                && local.get(&path).is_some_and(|(_, node)| node.is_dir())
            {
                moved.push(path.clone());
            }
            match self.apply_one(op, local, report).await {
                Ok(()) => {}
                Err(Error::Backend(e))
                    if !matches!(
                        e,
                        BackendError::Corrupt { .. } | BackendError::BlockNotFound(_)
                    ) =>
                {
                    return Err(Error::Backend(e));
                }
                Err(e) => {
                    tracing::warn!(%path, "not synced: {e}");
                    report.problems.push(format!("{path}: {e}"));
                }
            }
        }
        Ok(())
    }

    async fn apply_one(
        &mut self,
        op: Op,
        local: &BTreeMap<RelPath, LocalEntry>,
        report: &mut SyncReport,
    ) -> Result<()> {
        let stat_of = |path: &RelPath| local.get(path).map(|(stat, _)| *stat);
        match op {
            Op::Agree { path, node } => self.db.set_synced(&path, node.as_ref()),
            Op::Download { path, node } => {
                let current = local.get(&path).map(|(_, node)| node);
                if let (
                    Node::File {
                        blocks,
                        exec,
                        mtime_ns,
                        ..
                    },
                    Some(Node::File { blocks: have, .. }),
                ) = (&node, current)
                    && blocks == have
                {
                    // Only the mode changed: the bytes are already here.
                    let full = path.to_fs(&self.root);
                    if !unchanged(&full, stat_of(&path).as_ref())? {
                        return Err(changed_since_plan());
                    }
                    fsops::set_mode_and_mtime(&full, *exec, *mtime_ns)?;
                    let stat =
                        Stat::of(&std::fs::symlink_metadata(&full).map_err(Error::io(&full))?);
                    self.db.set_local(&path, Some(&(stat, node.clone())))?;
                    self.db.set_synced(&path, Some(&node))?;
                    report.downloaded += 1;
                    report.note(&path, Action::Downloaded);
                    return Ok(());
                }
                self.download(&path, &node, stat_of(&path), report).await?;
                report.downloaded += 1;
                report.note(&path, Action::Downloaded);
                Ok(())
            }
            Op::DeleteLocal { path } => {
                let full = path.to_fs(&self.root);
                if !unchanged(&full, stat_of(&path).as_ref())? {
                    return Err(changed_since_plan());
                }
                let meta = std::fs::symlink_metadata(&full).map_err(Error::io(&full))?;
                let removed = if meta.is_dir() {
                    std::fs::remove_dir(&full)
                } else {
                    std::fs::remove_file(&full)
                };
                match removed {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {
                        // Something not synced (yet) lives inside: keep it.
                        return Ok(());
                    }
                    Err(e) => return Err(Error::io(&full)(e)),
                }
                fsops::fsync_dir(full.parent().expect("inside the root"))?;
                self.db.set_local(&path, None)?;
                self.db.set_synced(&path, None)?;
                report.deleted_local += 1;
                report.note(&path, Action::DeletedHere);
                Ok(())
            }
            Op::RenameLocal { from, to, node } => {
                let (src, dst) = (from.to_fs(&self.root), to.to_fs(&self.root));
                if !unchanged(&src, stat_of(&from).as_ref())? || !unchanged(&dst, None)? {
                    return Err(changed_since_plan());
                }
                prepare_parent(&self.root, &to)?;
                std::fs::rename(&src, &dst).map_err(Error::io(&dst))?;
                fsops::fsync_dir(dst.parent().expect("inside the root"))?;
                let stat = Stat::of(&std::fs::symlink_metadata(&dst).map_err(Error::io(&dst))?);
                self.db.set_local(&from, None)?;
                self.db.set_synced(&from, None)?;
                self.db.set_local(&to, Some(&(stat, node.clone())))?;
                self.db.set_synced(&to, Some(&node))?;
                report.renamed_local += 1;
                report.note(&to, Action::Renamed);
                Ok(())
            }
            Op::Conflict { path, node } => {
                let full = path.to_fs(&self.root);
                if !unchanged(&full, stat_of(&path).as_ref())? {
                    return Err(changed_since_plan());
                }
                let remote = self.db.tree(Tree::Remote)?;
                let root = self.root.clone();
                let copy =
                    conflict_name(&path, &self.device, self.clock.unix_secs(), |candidate| {
                        remote.contains_key(candidate)
                            || local.contains_key(candidate)
                            || std::fs::symlink_metadata(candidate.to_fs(&root)).is_ok()
                    })?;
                let copy_full = copy.to_fs(&self.root);
                std::fs::rename(&full, &copy_full).map_err(Error::io(&copy_full))?;
                fsops::fsync_dir(copy_full.parent().expect("inside the root"))?;
                tracing::info!(%path, copy = %copy, "conflict: kept the local version as a copy");
                self.db.set_local(&path, None)?;
                report.conflicts += 1;
                report.note(&copy, Action::Conflict);
                self.download(&path, &node, None, report).await?;
                report.downloaded += 1;
                report.note(&path, Action::Downloaded);
                Ok(())
            }
            Op::Upload { .. } | Op::DeleteRemote { .. } => unreachable!("pushed, not applied"),
        }
    }

    /// Brings `node` to `path`, replacing what is there only if it still
    /// has the stat data `expected` (`None`: nothing may be there).
    async fn download(
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
                exec,
                mtime_ns,
                size,
            } => {
                let temp = fsops::temp_path(&parent);
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
                commit_temp(file, &temp, &full, *exec, *mtime_ns).inspect_err(|_| {
                    let _ = std::fs::remove_file(&temp);
                })?;
            }
            Node::Symlink { target } => {
                let temp = fsops::temp_path(&parent);
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
        self.db.set_synced(path, Some(node))
    }

    /// Writes a file's blocks, each verified by the backend, into `temp`.
    async fn fetch_into(
        &self,
        temp: &Path,
        blocks: &[BlockRef],
        size: u64,
        report: &mut SyncReport,
    ) -> Result<std::fs::File> {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(temp)
            .map_err(Error::io(temp))?;
        let mut written = 0u64;
        for block in blocks {
            let bytes = self.backend.get_block(block.id).await?;
            if bytes.len() != block.len as usize {
                return Err(Error::Backend(BackendError::Corrupt {
                    id: block.id,
                    reason: "the block's length differs from the blocklist's",
                }));
            }
            file.write_all(&bytes).map_err(Error::io(temp))?;
            written += bytes.len() as u64;
            report.blocks_downloaded += 1;
            self.progress.advance(bytes.len() as u64);
        }
        if written != size {
            return Err(Error::BadEntry {
                seq: 0,
                reason: format!("a file's blocks add up to {written} bytes, not its size {size}"),
            });
        }
        Ok(file)
    }

    /// Uploads what the push operations need and appends one commit.
    async fn push(
        &mut self,
        ops: Vec<Op>,
        local: &BTreeMap<RelPath, LocalEntry>,
        report: &mut SyncReport,
    ) -> Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let deletes = ops
            .iter()
            .filter(|op| matches!(op, Op::DeleteRemote { .. }))
            .count();
        let synced = self.db.tree(Tree::Synced)?.len();
        if !self.guard.allow_once
            && deletes >= self.guard.min_paths
            && deletes as f64 > self.guard.share * synced as f64
        {
            return Err(Error::MassDelete {
                deletes,
                total: synced,
            });
        }
        let (files, total) = ops
            .iter()
            .filter_map(|op| match op {
                Op::Upload { node, .. } => Some(node.size()),
                _ => None,
            })
            .fold((0, 0), |(files, bytes), size| (files + 1, bytes + size));
        self.progress.phase("uploading", files, total);
        // Blocks named in the journal are stored (blocks go before commits),
        // so the store is asked only about the others.
        let mut outbox = Outbox::default();
        for node in self.db.tree(Tree::Remote)?.values() {
            if let Node::File { blocks, .. } = node {
                outbox.known.extend(blocks.iter().map(|b| b.id));
            }
        }
        let mut changes = Vec::new();
        for op in ops {
            match op {
                Op::Upload { path, node } => {
                    if let Node::File { blocks, .. } = &node {
                        match self.upload_file(&path, blocks, &mut outbox, report).await {
                            Ok(()) => {}
                            Err(Error::Backend(e)) => return Err(Error::Backend(e)),
                            Err(e) => {
                                report.problems.push(format!("{path}: {e}"));
                                continue;
                            }
                        }
                    }
                    changes.push((path, Some(node)));
                }
                Op::DeleteRemote { path } => changes.push((path, None)),
                other => unreachable!("not a push operation: {other:?}"),
            }
        }
        // Blocks go before the commit that names them.
        self.send(&mut outbox, report).await?;
        if changes.is_empty() {
            return Ok(());
        }
        let time = self.clock.unix_secs();
        let commit = Commit {
            v: COMMIT_VERSION,
            device: self.device.clone(),
            time: Some(time),
            moved_to: None,
            changes: changes
                .iter()
                .map(|(path, node)| Change {
                    path: path.to_string(),
                    node: node.clone(),
                })
                .collect(),
        };
        let seq = self.db.cursor()?.next();
        self.backend.append(seq, commit.encode()).await?;
        self.guard.allow_once = false;
        let origin = Origin {
            device: self.device.clone(),
            time: Some(time),
        };
        self.db.fold(seq, &origin, &changes, true)?;
        for (path, node) in &changes {
            // The local entry's stat data is the scan's; keep it in step.
            if let (Some(node), Some((stat, _))) = (node, local.get(path)) {
                self.db.set_local(path, Some(&(*stat, node.clone())))?;
            }
        }
        report.commits += 1;
        for (path, node) in &changes {
            let action = match node {
                Some(_) => Action::Uploaded,
                None => Action::DeletedRemotely,
            };
            report.note(path, action);
        }
        report.uploaded += changes.iter().filter(|(_, n)| n.is_some()).count() as u64;
        report.deleted_remote += changes.iter().filter(|(_, n)| n.is_none()).count() as u64;
        tracing::info!(%seq, changes = changes.len(), "committed");
        Ok(())
    }

    /// Reads a file again, queues the blocks the store may lack (sending
    /// whenever the queue is full), and checks that the file still has the
    /// blocklist the plan saw. The queue is shared by all the files of a
    /// push, so many small files travel in one `put_blocks` call (one pack
    /// on an object store) rather than one call each.
    async fn upload_file(
        &self,
        path: &RelPath,
        planned: &[BlockRef],
        outbox: &mut Outbox,
        report: &mut SyncReport,
    ) -> Result<()> {
        let full = path.to_fs(&self.root);
        let file = std::fs::File::open(&full).map_err(Error::io(&full))?;
        let mut seen = Vec::with_capacity(planned.len());
        for piece in chunk::chunks(std::io::BufReader::with_capacity(1 << 20, file)) {
            let piece = piece.map_err(Error::io(&full))?;
            seen.push(piece.block);
            if seen.len() > planned.len() || seen[seen.len() - 1] != planned[seen.len() - 1] {
                return Err(changed_since_plan());
            }
            self.progress.advance(u64::from(piece.block.len));
            if outbox.known.contains(&piece.block.id) {
                continue;
            }
            outbox.bytes += piece.data.len();
            outbox.queue.push(piece);
            if outbox.bytes >= UPLOAD_BATCH_BYTES {
                self.send(outbox, report).await?;
            }
        }
        if seen.len() != planned.len() {
            // Blocks of it already queued or sent are harmless: unnamed by
            // any commit, they are garbage for the collector.
            return Err(changed_since_plan());
        }
        Ok(())
    }

    /// Sends the queued blocks the store lacks.
    async fn send(&self, outbox: &mut Outbox, report: &mut SyncReport) -> Result<()> {
        let batch = std::mem::take(&mut outbox.queue);
        outbox.bytes = 0;
        if batch.is_empty() {
            return Ok(());
        }
        let ids: Vec<BlockId> = batch.iter().map(|c| c.block.id).collect();
        let stored = self.backend.has_blocks(&ids).await?;
        let mut missing = Vec::new();
        let mut missing_ids = HashSet::new();
        for (piece, stored) in batch.into_iter().zip(stored) {
            if !stored && missing_ids.insert(piece.block.id) {
                report.bytes_uploaded += piece.data.len() as u64;
                missing.push(piece.data);
            }
        }
        report.blocks_uploaded += missing.len() as u64;
        if !missing.is_empty() {
            let blocks = tokio::task::spawn_blocking(move || {
                missing.into_iter().map(Block::encode).collect::<Vec<_>>()
            })
            .await
            .expect("encoding blocks does not panic");
            self.backend.put_blocks(blocks).await?;
        }
        outbox.known.extend(ids);
        Ok(())
    }
}

/// Blocks waiting to be sent, and the ids known to be stored.
#[derive(Default)]
struct Outbox {
    queue: Vec<chunk::Chunk>,
    bytes: usize,
    known: HashSet<BlockId>,
}

fn changed_since_plan() -> Error {
    Error::ChangedDuringSync
}

/// Keeps the changes whose paths are safe, reporting each refused one.
fn validated(
    seq: u64,
    changes: Vec<Change>,
    problems: &mut Vec<String>,
) -> Vec<(RelPath, Option<Node>)> {
    changes
        .into_iter()
        .filter_map(|change| match RelPath::parse(&change.path) {
            Ok(path) if path.name().starts_with(fsops::TEMP_PREFIX) => {
                problems.push(format!(
                    "journal entry {seq}: refused a temp-file name {path}"
                ));
                None
            }
            Ok(path) => Some((path, change.node)),
            Err(e) => {
                tracing::error!(seq, "refusing a change from the journal: {e}");
                problems.push(format!("journal entry {seq}: refused: {e}"));
                None
            }
        })
        .collect()
}
