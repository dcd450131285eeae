//! Apply: run the operations that change the disk (downloads, local
//! deletes, renames, conflicted copies), recording each in the local state
//! as it completes. An operation whose path changed since the plan is left
//! for the next sync.

use std::collections::BTreeMap;

use pouch_backend::Error as BackendError;

use super::{Engine, Left, changed_since_plan};
use crate::fsops::{self, prepare_parent, unchanged};
use crate::local::{LocalEntry, Stat};
use crate::names::conflict_name;
use crate::node::Node;
use crate::path::RelPath;
use crate::plan::Op;
use crate::progress::Phase;
use crate::report::{Action, SyncReport};
use crate::state::Tree;
use crate::{Error, Result};

/// Downloads at least this large look for their blocks in every file this
/// device holds, not only in the planned ones.
const REUSE_LOOKUP_BYTES: u64 = 8 << 20;

impl Engine {
    /// Runs `ops`; downloads are prefetched, and recorded in batches once
    /// durable (also when the apply stops early).
    pub(super) async fn apply(
        &mut self,
        ops: impl Iterator<Item = Op>,
        local: &BTreeMap<RelPath, LocalEntry>,
        report: &mut SyncReport,
        announce: bool,
    ) -> Result<()> {
        self.downloaded.batching = true;
        let applied = self.apply_ops(ops.collect(), local, report, announce).await;
        self.downloaded.batching = false;
        self.prefetch = None;
        self.local_blocks = super::reuse::LocalBlocks::default();
        let recorded = self.flush_downloads(report).await;
        applied.and(recorded)
    }

    async fn apply_ops(
        &mut self,
        ops: Vec<Op>,
        local: &BTreeMap<RelPath, LocalEntry>,
        report: &mut SyncReport,
        announce: bool,
    ) -> Result<()> {
        let (files, total) = download_totals(&ops);
        if announce && total > 0 {
            self.progress.phase(Phase::Downloading, files, total);
        }
        // Folders a conflict moved aside, with everything the plan said
        // about their insides: those operations are stale, and the next
        // plan (after a rescan) sees the copy as new local paths.
        let mut moved: Vec<RelPath> = Vec::new();
        self.prepare_downloads(&ops, local);
        for (k, op) in ops.into_iter().enumerate() {
            if let Some(prefetch) = &mut self.prefetch {
                prefetch.begin(k);
            }
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
            // Only downloads wait to be finished together: anything else
            // may move or delete a folder a written file waits in.
            if !matches!(op, Op::Download { .. } | Op::Agree { .. }) {
                self.flush_downloads(report).await?;
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
                    if let Error::Backend(
                        BackendError::Corrupt { id, .. } | BackendError::BlockNotFound(id),
                    ) = &e
                    {
                        // Reported after the push, so a device that has
                        // it sends it again.
                        self.unreadable.insert(*id);
                    }
                    tracing::warn!(%path, "not synced: {e}");
                    report.problems.push(format!("{path}: {e}"));
                }
            }
        }
        Ok(())
    }

    /// When `ops` download files: finds the blocks this device's files
    /// already hold, and starts the batched read of the others, in the
    /// order they are written. Nothing when they download nothing (most
    /// syncs): no walk over the local tree.
    fn prepare_downloads(&mut self, ops: &[Op], local: &BTreeMap<RelPath, LocalEntry>) {
        let mut fetching = Vec::new();
        for (k, op) in ops.iter().enumerate() {
            let (path, blocks) = match op {
                Op::Download {
                    path,
                    node: Node::File { blocks, .. },
                }
                | Op::Conflict {
                    path,
                    node: Node::File { blocks, .. },
                } => (path, blocks),
                _ => continue,
            };
            // Only the mode changed: nothing to fetch.
            if matches!(op, Op::Download { .. })
                && matches!(local.get(path), Some((_, Node::File { blocks: have, .. })) if have == blocks)
            {
                continue;
            }
            fetching.push((k, blocks));
        }
        if fetching.is_empty() {
            return;
        }
        // Looking through every file this device holds costs a pass over
        // the whole Local tree (once per sync, into an index in the local
        // state): worth it for a large download (a copied folder arrives
        // with none), not for an edit, whose planned paths (`local`) are
        // enough to catch a move.
        let fetch_bytes: u64 = fetching
            .iter()
            .flat_map(|(_, blocks)| blocks.iter().map(|b| u64::from(b.len)))
            .sum();
        self.local_blocks = super::reuse::LocalBlocks::of(&self.root, local);
        if fetch_bytes >= REUSE_LOOKUP_BYTES {
            if self.local_blocks_indexed.is_none() {
                self.local_blocks_indexed =
                    Some(self.db.index_local_blocks().unwrap_or_else(|e| {
                        tracing::warn!("cannot list this device's blocks for reuse: {e}");
                        0
                    }));
            }
            if self.local_blocks_indexed > Some(0) {
                for (_, blocks) in &fetching {
                    for block in blocks.iter() {
                        if self.local_blocks.has(&block.id) {
                            continue;
                        }
                        if let Ok(Some((path, offset, len))) = self.db.local_block(&block.id) {
                            self.local_blocks
                                .add(block.id, path.to_fs(&self.root), offset, len);
                        }
                    }
                }
            }
        }
        // Blocks a local file holds are read from there.
        let planned: Vec<_> = fetching
            .into_iter()
            .flat_map(|(k, blocks)| blocks.iter().map(move |b| (k, b.id)))
            .filter(|(_, id)| !self.local_blocks.has(id))
            .collect();
        if !planned.is_empty() {
            self.prefetch = Some(super::prefetch::Prefetch::start(
                self.backend.clone(),
                planned,
            ));
        }
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
                        blocks, mtime_ns, ..
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
                    self.expect_change(&path);
                    fsops::set_mode_and_mtime(&full, node.file_mode(), *mtime_ns)?;
                    let stat =
                        Stat::of(&std::fs::symlink_metadata(&full).map_err(Error::io(&full))?);
                    self.db.set_local(&path, Some(&(stat, node.clone())))?;
                    self.changed(&path, Left::Entry(stat));
                    self.db.set_synced(&path, Some(&node))?;
                    report.downloaded += 1;
                    report.note(&path, Action::Downloaded);
                    return Ok(());
                }
                self.download(&path, &node, stat_of(&path), report).await
            }
            Op::DeleteLocal { path } => {
                let full = path.to_fs(&self.root);
                if !unchanged(&full, stat_of(&path).as_ref())? {
                    return Err(changed_since_plan());
                }
                let meta = std::fs::symlink_metadata(&full).map_err(Error::io(&full))?;
                self.expect_change(&path);
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
                self.changed(&path, Left::Gone);
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
                self.expect_change(&from);
                self.expect_change(&to);
                std::fs::rename(&src, &dst).map_err(Error::io(&dst))?;
                fsops::fsync_dir(dst.parent().expect("inside the root"))?;
                let stat = Stat::of(&std::fs::symlink_metadata(&dst).map_err(Error::io(&dst))?);
                self.db.set_local(&from, None)?;
                self.db.set_synced(&from, None)?;
                self.db.set_local(&to, Some(&(stat, node.clone())))?;
                self.db.set_synced(&to, Some(&node))?;
                self.changed(&from, Left::Gone);
                self.changed(&to, Left::of(stat, &node));
                report.renamed_local += 1;
                report.note(&to, Action::Renamed);
                Ok(())
            }
            Op::Conflict { path, node } => {
                let full = path.to_fs(&self.root);
                if !unchanged(&full, stat_of(&path).as_ref())? {
                    return Err(changed_since_plan());
                }
                let root = self.root.clone();
                let db = &self.db;
                let copy =
                    conflict_name(&path, &self.device, self.clock.unix_secs(), |candidate| {
                        // A name the state cannot vouch for counts as taken.
                        db.node(Tree::Remote, candidate)
                            .map_or(true, |n| n.is_some())
                            || db.local_entry(candidate).map_or(true, |e| e.is_some())
                            || local.contains_key(candidate)
                            || std::fs::symlink_metadata(candidate.to_fs(&root)).is_ok()
                    })?;
                let copy_full = copy.to_fs(&self.root);
                std::fs::rename(&full, &copy_full).map_err(Error::io(&copy_full))?;
                fsops::fsync_dir(copy_full.parent().expect("inside the root"))?;
                tracing::info!(%path, copy = %copy, "conflict: kept the local version as a copy");
                self.db.set_local(&path, None)?;
                // The copy is a new local path (and a folder's old entries
                // go): the next scan looks there, whatever its scope.
                self.scan_next.extend([path.clone(), copy.clone()]);
                report.conflicts += 1;
                report.note(&copy, Action::Conflict);
                self.download(&path, &node, None, report).await
            }
            Op::Upload { .. } | Op::DeleteRemote { .. } => unreachable!("pushed, not applied"),
        }
    }
}

/// How many files `ops` download, and their bytes.
pub(super) fn download_totals(ops: &[Op]) -> (u64, u64) {
    ops.iter()
        .filter_map(|op| match op {
            Op::Download { node, .. } | Op::Conflict { node, .. } => Some(node.size()),
            _ => None,
        })
        .fold((0, 0), |(files, bytes), size| (files + 1, bytes + size))
}
