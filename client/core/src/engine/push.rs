//! Push: upload the blocks the store lacks, then append one commit. Blocks
//! always go before the commit naming them. A lost race (`SlotTaken`)
//! surfaces to `sync_once`, which pulls, re-plans and retries.

use std::collections::{BTreeMap, HashSet};

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

impl Engine {
    /// Pushes `ops`, holding back its deletes when, with the deletes sent
    /// in the last ten minutes, they would be a mass delete (a slow `rm
    /// -rf`, a dying disk): everything else is sent, and the sync then
    /// fails with [`Error::MassDelete`] until the user allows them.
    pub(super) async fn push(
        &mut self,
        mut ops: Vec<Op>,
        options: &SyncOptions,
        local: &BTreeMap<RelPath, LocalEntry>,
        report: &mut SyncReport,
    ) -> Result<()> {
        let is_delete = |op: &Op| matches!(op, Op::DeleteRemote { .. });
        let deletes = ops.iter().filter(|op| is_delete(op)).count();
        if deletes == 0 {
            return self.push_ops(ops, local, report).await;
        }
        let now = self.clock.unix_secs();
        let synced = self.db.count(Tree::Synced)?;
        let mut window = DeleteWindow::load(&self.db, now, synced)?;
        if options.allow_mass_delete {
            // The user confirmed: these count, and a new window begins.
            window = DeleteWindow::fresh(now, synced.saturating_sub(deletes));
            self.push_ops(ops, local, report).await?;
            return window.save(&self.db);
        }
        if MassDeleteGuard::trips(window.committed + deletes, window.baseline) {
            ops.retain(|op| !is_delete(op));
            tracing::warn!(
                deletes,
                "holding back a mass delete; syncing everything else"
            );
            self.push_ops(ops, local, report).await?;
            return Err(Error::MassDelete {
                deletes: window.committed + deletes,
                total: window.baseline,
            });
        }
        let before = report.deleted_remote;
        self.push_ops(ops, local, report).await?;
        window.committed += (report.deleted_remote - before) as usize;
        window.save(&self.db)
    }

    /// Uploads what the push operations need and appends one commit.
    async fn push_ops(
        &mut self,
        ops: Vec<Op>,
        local: &BTreeMap<RelPath, LocalEntry>,
        report: &mut SyncReport,
    ) -> Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let (files, total) = ops
            .iter()
            .filter_map(|op| match op {
                Op::Upload { node, .. } => Some(node.size()),
                _ => None,
            })
            .fold((0, 0), |(files, bytes), size| (files + 1, bytes + size));
        self.progress.phase(Phase::Uploading, files, total);
        // Blocks named in the journal are stored (blocks go before commits),
        // so the store is asked only about the others. Those of the
        // versions being replaced are the ones an edit shares; looking
        // them up path by path keeps a push's cost that of its files.
        let mut outbox = Outbox::default();
        for op in &ops {
            if let Op::Upload { path, .. } = op
                && let Some(Node::File { blocks, .. }) = self.db.node(Tree::Remote, path)?
            {
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
