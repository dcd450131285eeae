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
use crate::state::{Origin, Tree};
use crate::{Error, Result};

impl Engine {
    pub(super) async fn push(
        &mut self,
        ops: Vec<Op>,
        options: SyncOptions,
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
        if !options.allow_mass_delete && MassDeleteGuard::trips(deletes, synced) {
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
        self.progress.phase(Phase::Uploading, files, total);
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
