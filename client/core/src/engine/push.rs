//! Push: upload the blocks the store lacks, then append one commit. Blocks
//! always go before the commit naming them. A lost race (`SlotTaken`)
//! surfaces to `sync_once`, which pulls, re-plans and retries.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use pouch_backend::{Block, BlockId};

use super::{Engine, MassDeleteGuard, SyncOptions, UPLOAD_BATCH_BYTES, changed_since_plan};
use crate::chunk;
use crate::commit::{COMMIT_VERSION, Change, Commit};
use crate::local::LocalEntry;
use crate::node::{BlockRef, Node};
use crate::path::RelPath;
use crate::plan::Op;
use crate::progress::Phase;
use crate::report::{Action, SyncReport};
use crate::state::{LocalState, Origin, Tree};
use crate::{Error, Result};

/// Changes in one commit, at most (a few MiB of journal entry).
const COMMIT_CHANGES: usize = 10_000;

/// What a push holds back of what it planned, decided over all of it
/// (every slice of a large plan) before anything is sent.
#[derive(Debug, Default)]
pub(super) struct Holds {
    /// Deletes that wait.
    deletes: HashSet<RelPath>,
    /// Their ancestors: a folder turned into a file goes with the deletes
    /// of what was in it, so the remote tree never has a file with
    /// children.
    above: HashSet<RelPath>,
    /// New paths that wait with new deletes (a move stays one commit).
    new_paths: HashSet<RelPath>,
    /// What to do once the rest is pushed.
    after: AfterPush,
}

/// What a push does once it sent what it holds.
#[derive(Debug, Default)]
enum AfterPush {
    /// Nothing: it deleted nothing.
    #[default]
    Nothing,
    /// Counts the deletes it sent into the window (`deleted_remote` of the
    /// report stood at `before` when it was decided).
    Count { window: DeleteWindow, before: u64 },
    /// Saves a new window (the user allowed a mass delete).
    Save(DeleteWindow),
    /// Fails: it held back a mass delete.
    MassDelete { deletes: usize, total: usize },
}

impl Holds {
    /// Takes what waits out of `ops`.
    pub(super) fn filter(&self, ops: &mut Vec<Op>) {
        if self.deletes.is_empty() && self.new_paths.is_empty() {
            return;
        }
        ops.retain(|op| match op {
            Op::DeleteRemote { path } => !self.deletes.contains(path),
            Op::Upload { path, .. } => !self.above.contains(path) && !self.new_paths.contains(path),
            _ => true,
        });
    }

    fn hold_deletes(&mut self, held: HashSet<RelPath>) {
        self.above = held.iter().flat_map(RelPath::ancestors).collect();
        self.deletes = held;
    }
}

impl Engine {
    /// Decides what a push of `deletes` (every delete it planned) holds
    /// back: its deletes when, with the deletes sent in the last ten
    /// minutes, they would be a mass delete (a slow `rm -rf`, a dying
    /// disk): everything else is sent, and [`Engine::after_push`] then
    /// fails with [`Error::MassDelete`] until the user allows them. The
    /// daemon's new deletes, and new paths with them, wait too
    /// (`new_paths` names the paths it uploads that the Remote tree lacks;
    /// asked for only then).
    pub(super) fn holds(
        &mut self,
        deletes: HashSet<RelPath>,
        new_paths: impl FnOnce(&Self) -> Result<HashSet<RelPath>>,
        options: &SyncOptions,
        report: &SyncReport,
    ) -> Result<Holds> {
        self.deletes_due = None;
        let mut holds = Holds::default();
        if deletes.is_empty() {
            self.held_since.clear();
            return Ok(holds);
        }
        let now = self.clock.unix_secs();
        let synced = self.db.count(Tree::Synced)?;
        let window = DeleteWindow::load(&self.db, now, synced)?;
        if options.allow_mass_delete {
            // The user confirmed: these count, and a new window begins.
            holds.after = AfterPush::Save(DeleteWindow::fresh(
                now,
                synced.saturating_sub(deletes.len()),
            ));
            return Ok(holds);
        }
        if MassDeleteGuard::trips(window.committed + deletes.len(), window.baseline) {
            tracing::warn!(
                deletes = deletes.len(),
                "holding back a mass delete; syncing everything else"
            );
            holds.after = AfterPush::MassDelete {
                deletes: window.committed + deletes.len(),
                total: window.baseline,
            };
            holds.hold_deletes(deletes);
            return Ok(holds);
        }
        if let Some(hold) = options.hold_new_deletes {
            self.hold_new_deletes(&mut holds, &deletes, new_paths, hold)?;
        }
        holds.after = AfterPush::Count {
            window,
            before: report.deleted_remote,
        };
        Ok(holds)
    }

    /// Holds back the deletes first planned less than `hold` ago, and
    /// notes when they are due. The guard above counted them: a sync that
    /// lands while an `rm -rf` is still running sends none of what it saw,
    /// and the next, seeing the rest too, holds the whole of it back as one
    /// mass delete instead of letting its first slice through. While
    /// deletes wait, new paths first planned less than `hold` ago wait
    /// too: a move is a delete and a new path, and the other device sees it
    /// as a move (a rename, not a copy and a delete) only when both come in
    /// one commit. A folder turned into a file waits with the deletes of
    /// its insides. Nothing waits much longer than `hold`, and edits of
    /// existing paths go at once.
    fn hold_new_deletes(
        &mut self,
        holds: &mut Holds,
        deletes: &HashSet<RelPath>,
        new_paths: impl FnOnce(&Self) -> Result<HashSet<RelPath>>,
        hold: Duration,
    ) -> Result<()> {
        let now = Instant::now();
        let fresh = |seen: &HashMap<RelPath, Instant>, path: &RelPath| {
            seen.get(path).is_none_or(|at| *at + hold > now)
        };
        if !deletes.iter().any(|path| fresh(&self.held_since, path)) {
            // Nothing new to wait for: everything goes.
            self.held_since.clear();
            return Ok(());
        }
        let new_paths = new_paths(self)?;
        // A path no longer planned so (it came back, it went) starts over.
        self.held_since
            .retain(|path, _| deletes.contains(path) || new_paths.contains(path));
        for path in deletes.iter().chain(&new_paths) {
            self.held_since.entry(path.clone()).or_insert(now);
        }
        let seen = &self.held_since;
        let held: HashSet<RelPath> = deletes
            .iter()
            .filter(|path| fresh(seen, path))
            .cloned()
            .collect();
        self.deletes_due = held.iter().map(|path| seen[path] + hold).min();
        holds.new_paths = new_paths
            .into_iter()
            .filter(|path| fresh(seen, path))
            .collect();
        holds.hold_deletes(held);
        tracing::debug!("holding new deletes and new paths back for {hold:?}");
        Ok(())
    }

    /// Once a push sent what `holds` let go: counts its deletes into the
    /// mass-delete window, or fails if it held back a mass delete.
    pub(super) fn after_push(&self, holds: Holds, report: &SyncReport) -> Result<()> {
        match holds.after {
            AfterPush::Nothing => Ok(()),
            AfterPush::Count { mut window, before } => {
                window.committed += (report.deleted_remote - before) as usize;
                window.save(&self.db)
            }
            AfterPush::Save(window) => window.save(&self.db),
            AfterPush::MassDelete { deletes, total } => Err(Error::MassDelete { deletes, total }),
        }
    }

    /// Uploads what the push operations need and appends their commits:
    /// one, or one per [`COMMIT_CHANGES`] changes for a large push (a
    /// first sync of a big folder), so that no journal entry, and nothing
    /// a device holds to write or read one, grows with the folder. Deletes
    /// go first, children before their folders, then the rest, folders
    /// before what is in them: the tree the journal describes after each
    /// commit is whole (no path without its folder, no file with
    /// children).
    pub(super) async fn push_ops(
        &mut self,
        mut ops: Vec<Op>,
        local: &BTreeMap<RelPath, LocalEntry>,
        report: &mut SyncReport,
        announce: bool,
    ) -> Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        ops.sort_by(|a, b| match (a, b) {
            (Op::DeleteRemote { path: a }, Op::DeleteRemote { path: b }) => b.cmp(a),
            (Op::DeleteRemote { .. }, _) => std::cmp::Ordering::Less,
            (_, Op::DeleteRemote { .. }) => std::cmp::Ordering::Greater,
            (a, b) => a.path().cmp(b.path()),
        });
        if announce {
            let (files, total) = upload_totals(&ops);
            self.progress.phase(Phase::Uploading, files, total);
        }
        // Blocks named in the journal are stored (blocks go before commits),
        // so the store is asked only about the others. Those of the
        // versions being replaced are the ones an edit shares; looking
        // them up path by path keeps a push's cost that of its files.
        // (Named by the Remote tree at the head this push commits on, they
        // are live for the collector until a later entry drops them, and
        // such an entry would take the slot this push needs.)
        let mut outbox = Outbox::default();
        for op in &ops {
            if let Op::Upload { path, .. } = op
                && let Some(Node::File { blocks, .. }) = self.db.node(Tree::Remote, path)?
            {
                outbox.known.extend(blocks.iter().map(|b| (b.id, None)));
            }
        }
        let mut ops = ops.into_iter().peekable();
        while ops.peek().is_some() {
            let mut changes = Vec::new();
            for op in ops.by_ref() {
                if let Some(change) = self.stage(op, &mut outbox, report).await? {
                    changes.push(change);
                    if changes.len() >= COMMIT_CHANGES {
                        break;
                    }
                }
            }
            // Blocks go before the commit that names them.
            self.send(&mut outbox, report).await?;
            outbox.finish(report).await?;
            self.confirm_window(&changes, &mut outbox).await?;
            if !changes.is_empty() {
                self.commit(changes, local, report).await?;
            }
        }
        Ok(())
    }

    /// Uploads the blocks of one push operation (queued, sent in batches)
    /// and returns the change it commits; `None` if the file changed since
    /// the plan (a problem, left for the next sync).
    async fn stage(
        &mut self,
        op: Op,
        outbox: &mut Outbox,
        report: &mut SyncReport,
    ) -> Result<Option<(RelPath, Option<Node>)>> {
        match op {
            Op::Upload { path, node } => {
                if let Node::File { blocks, .. } = &node {
                    match self.upload_file(&path, blocks, outbox, report).await {
                        Ok(()) => {}
                        Err(Error::Backend(e)) => return Err(Error::Backend(e)),
                        Err(e) => {
                            report.problems.push(format!("{path}: {e}"));
                            return Ok(None);
                        }
                    }
                }
                Ok(Some((path, Some(node))))
            }
            Op::DeleteRemote { path } => Ok(Some((path, None))),
            other => unreachable!("not a push operation: {other:?}"),
        }
    }

    /// Appends one commit of `changes` (their blocks are stored) and folds
    /// it into the local state.
    async fn commit(
        &mut self,
        changes: Vec<(RelPath, Option<Node>)>,
        local: &BTreeMap<RelPath, LocalEntry>,
        report: &mut SyncReport,
    ) -> Result<()> {
        let time = self.clock.unix_secs();
        let commit = Commit {
            v: COMMIT_VERSION,
            retention: None,
            device: self.device.clone(),
            time: Some(time),
            moved_to: None,
            migration: None,
            missing: Vec::new(),
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

    /// Reads a file's planned blocks, checks that the file still has the
    /// blocklist the plan saw, and queues the blocks the store may lack
    /// (sending whenever the queue is full). The queue is shared by all the
    /// files of a push, so many small files travel in one `put_blocks` call
    /// (one pack on an object store) rather than one call each.
    async fn upload_file(
        &self,
        path: &RelPath,
        planned: &[BlockRef],
        outbox: &mut Outbox,
        report: &mut SyncReport,
    ) -> Result<()> {
        use std::io::Read;
        let full = path.to_fs(&self.root);
        let mut file = std::fs::File::open(&full).map_err(Error::io(&full))?;
        // The scan cut the file into these blocks: read them at their
        // offsets and check each one's hash, rather than cutting it again
        // (the rolling hash costs more than BLAKE3). A file that changed
        // since has other bytes somewhere, so some hash (or its length)
        // differs.
        for block in planned {
            let mut data = vec![0; block.len as usize];
            match file.read_exact(&mut data) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(changed_since_plan());
                }
                Err(e) => return Err(Error::io(&full)(e)),
            }
            if BlockId::of(&data) != block.id {
                // Blocks of it already queued or sent are harmless: unnamed
                // by any commit, they are garbage for the collector.
                return Err(changed_since_plan());
            }
            self.progress.advance(u64::from(block.len));
            if outbox.known.contains_key(&block.id) {
                continue;
            }
            outbox.bytes += data.len();
            outbox.queue.push(chunk::Chunk {
                data: data.into(),
                block: *block,
            });
            if outbox.bytes >= UPLOAD_BATCH_BYTES {
                self.send(outbox, report).await?;
            }
        }
        let mut more = [0u8; 1];
        match file.read(&mut more) {
            Ok(0) => Ok(()),
            Ok(_) => Err(changed_since_plan()),
            Err(e) => Err(Error::io(&full)(e)),
        }
    }

    /// Asks the store again about the blocks `changes` name that were put
    /// or found stored longer than the commit window ago (see
    /// [`pouch_backend::gc::COMMIT_WINDOW`]; a push of many commits, a
    /// laptop that slept): the collector sweeps only blocks no one touched
    /// for longer than that, and asking revives a marked one. A block gone
    /// meanwhile fails the push; the next sync sends it again.
    async fn confirm_window(
        &self,
        changes: &[(RelPath, Option<Node>)],
        outbox: &mut Outbox,
    ) -> Result<()> {
        let now = crate::clock::since_boot();
        let mut stale: Vec<BlockId> = changes
            .iter()
            .filter_map(|(_, node)| match node {
                Some(Node::File { blocks, .. }) => Some(blocks),
                _ => None,
            })
            .flatten()
            .filter(|block| {
                matches!(outbox.known.get(&block.id), Some(Some(at)) if now.saturating_sub(*at) >= self.commit_window)
            })
            .map(|block| block.id)
            .collect();
        stale.sort_unstable();
        stale.dedup();
        if stale.is_empty() {
            return Ok(());
        }
        let stored = self.backend.has_blocks(&stale).await?;
        if stored.iter().any(|s| !s) {
            tracing::warn!(
                blocks = stored.iter().filter(|s| !**s).count(),
                "blocks sent earlier in this push are gone from the store (collected); sending them again next sync"
            );
            return Err(Error::ChangedDuringSync);
        }
        for id in stale {
            outbox.known.insert(id, Some(now));
        }
        Ok(())
    }

    /// Hands the queued blocks to a task that sends those the store lacks,
    /// after the batch before it is done: one batch is sent while the next
    /// is read.
    async fn send(&self, outbox: &mut Outbox, report: &mut SyncReport) -> Result<()> {
        let batch = std::mem::take(&mut outbox.queue);
        outbox.bytes = 0;
        if batch.is_empty() {
            return Ok(());
        }
        outbox.finish(report).await?;
        // Counted as stored from now on: if the send fails, so does the
        // push, and nothing names them. The store's answer is trusted for
        // the commit window from before it was asked.
        let asked = crate::clock::since_boot();
        outbox
            .known
            .extend(batch.iter().map(|c| (c.block.id, Some(asked))));
        let backend = self.backend.clone();
        outbox.in_flight = Some(tokio::spawn(async move {
            let ids: Vec<BlockId> = batch.iter().map(|c| c.block.id).collect();
            let stored = backend.has_blocks(&ids).await?;
            let mut missing = Vec::new();
            let mut missing_ids = HashSet::new();
            let mut sent = Sent::default();
            for (piece, stored) in batch.into_iter().zip(stored) {
                if !stored && missing_ids.insert(piece.block.id) {
                    sent.bytes += piece.data.len() as u64;
                    missing.push(piece.data);
                }
            }
            sent.blocks = missing.len() as u64;
            if !missing.is_empty() {
                let blocks = tokio::task::spawn_blocking(move || {
                    missing.into_iter().map(Block::encode).collect::<Vec<_>>()
                })
                .await
                .expect("encoding blocks does not panic");
                backend.put_blocks(blocks).await?;
            }
            Ok(sent)
        }));
        Ok(())
    }
}

/// What one batch's send stored.
#[derive(Debug, Default)]
struct Sent {
    blocks: u64,
    bytes: u64,
}

/// Blocks waiting to be sent, the batch being sent, and the ids known to
/// be stored (or on their way): since when the store said so (time since
/// boot), or `None` for blocks the Remote tree names.
#[derive(Default)]
struct Outbox {
    queue: Vec<chunk::Chunk>,
    bytes: usize,
    known: HashMap<BlockId, Option<Duration>>,
    in_flight: Option<tokio::task::JoinHandle<pouch_backend::Result<Sent>>>,
}

impl Outbox {
    /// Waits for the batch being sent, and counts what it stored.
    async fn finish(&mut self, report: &mut SyncReport) -> Result<()> {
        if let Some(task) = self.in_flight.take() {
            let sent = task.await.expect("a send does not panic")?;
            report.blocks_uploaded += sent.blocks;
            report.bytes_uploaded += sent.bytes;
        }
        Ok(())
    }
}

/// How many files `ops` upload, and their bytes.
pub(super) fn upload_totals(ops: &[Op]) -> (u64, u64) {
    ops.iter()
        .filter_map(|op| match op {
            Op::Upload { node, .. } => Some(node.size()),
            _ => None,
        })
        .fold((0, 0), |(files, bytes), size| (files + 1, bytes + size))
}

/// How long deletes count together for the mass-delete guard.
const DELETE_WINDOW_SECS: i64 = 600;
/// The local state's key for the current window.
const DELETE_WINDOW_META: &str = "delete_window";

/// The deletes sent since a window began, against the size of the synced
/// tree when it began: deletes that arrive in small batches count
/// together, against the tree as it stood before they started.
#[derive(Debug, Clone, Copy)]
struct DeleteWindow {
    start: i64,
    baseline: usize,
    committed: usize,
}

impl DeleteWindow {
    fn fresh(now: i64, baseline: usize) -> Self {
        Self {
            start: now,
            baseline,
            committed: 0,
        }
    }

    /// The window in force at `now`, or a fresh one over `synced` paths.
    fn load(db: &LocalState, now: i64, synced: usize) -> Result<Self> {
        let saved = db.meta(DELETE_WINDOW_META)?.and_then(|text| {
            let mut parts = text.split(' ').map(str::parse::<i64>);
            match (parts.next(), parts.next(), parts.next()) {
                (Some(Ok(start)), Some(Ok(baseline)), Some(Ok(committed))) => Some(Self {
                    start,
                    baseline: baseline as usize,
                    committed: committed as usize,
                }),
                _ => None,
            }
        });
        Ok(match saved {
            Some(window) if (0..DELETE_WINDOW_SECS).contains(&(now - window.start)) => window,
            _ => Self::fresh(now, synced),
        })
    }

    fn save(&self, db: &LocalState) -> Result<()> {
        db.set_meta(
            DELETE_WINDOW_META,
            &format!("{} {} {}", self.start, self.baseline, self.committed),
        )
    }
}
