//! Healing: blocks the store lost (a damaged block it quarantined, a
//! volume restored from an old backup, an object deleted by hand) are sent
//! again by any device that still has their bytes in its folder.
//!
//! Push trusts that every block the journal names is stored (blocks go
//! before the commits naming them), so a lost block is found two ways:
//!
//! - **Reported.** A device that cannot read a block (missing, or refused
//!   as damaged) names it in a commit's `missing` list. Every device reads
//!   that list when it pulls, and at the same sync checks the store for
//!   those blocks and sends the ones it has. So a damaged block is healed
//!   at the next sync of a device that has it.
//! - **Audited.** Once an hour (and on `pouch doctor --blocks`) a device
//!   asks the store about every block of its files that the journal names,
//!   in batches, and sends the ones the store lacks.
//!
//! Blocks are content-addressed: bytes read from a local file are sent only
//! under the id they hash to, so a device can never "heal" a block with
//! wrong bytes, and a hostile `missing` list costs at most a few checks.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use futures_util::StreamExt;

use pouch_backend::{Block, BlockId};

use super::{Engine, UPLOAD_BATCH_BYTES};
use crate::chunk;
use crate::commit::{COMMIT_VERSION, Commit};
use crate::node::Node;
use crate::path::RelPath;
use crate::report::SyncReport;
use crate::state::{Origin, Tree};
use crate::{Error, Result};

/// The local state's key for blocks other devices reported missing.
const WANTED_META: &str = "wanted_blocks";
/// The local state's key for when this device last audited the store.
const AUDITED_META: &str = "blocks_audited_at";
/// The local state's key for blocks this device reported, and when.
const REPORTED_META: &str = "missing_reported";
/// How often a device asks the store about all of its blocks.
pub const AUDIT_INTERVAL_SECS: i64 = 3600;
/// How long before a device reports a block it still cannot read again.
const REPORT_AGAIN_SECS: i64 = 3600;
/// Ids asked about per `has_blocks` call.
const CHECK_BATCH: usize = 10_000;

/// What a heal found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealReport {
    /// Blocks asked about.
    pub checked: u64,
    /// Blocks the store lacked.
    pub lacking: u64,
    /// Of those, blocks this device sent again.
    pub resent: u64,
    /// Paths of this device's files that name a lacking block it could not
    /// send (the file changed since), for `pouch doctor`.
    pub unrepaired: Vec<String>,
}

/// What reading back every block of the current tree found.
#[derive(Debug, Clone, Default)]
pub struct Readback {
    /// Distinct blocks read.
    pub checked: u64,
    /// Blocks the store refused as damaged (and quarantined), with why and
    /// the paths naming them.
    pub damaged: Vec<(BlockId, String, Vec<String>)>,
    /// Blocks the store does not have, with the paths naming them.
    pub missing: Vec<(BlockId, Vec<String>)>,
}

impl Engine {
    /// Reads back, verified, every block the current tree names (after
    /// pulling): what `pouch doctor --blocks` reports. A store quarantines
    /// each damaged block it meets.
    pub async fn read_back_blocks(&mut self) -> Result<Readback> {
        self.check_store().await?;
        let mut report = SyncReport::default();
        self.pull(&mut report).await?;
        // In file order, each block once: neighbours in the store are
        // asked for together by the batched read.
        let mut named: HashMap<BlockId, Vec<String>> = HashMap::new();
        let mut order = Vec::new();
        for (path, node) in self.db.tree(Tree::Remote)? {
            if let Node::File { blocks, .. } = node {
                for block in blocks {
                    let paths = named.entry(block.id).or_default();
                    if paths.is_empty() {
                        order.push(block.id);
                    }
                    if paths.last() != Some(&path.to_string()) {
                        paths.push(path.to_string());
                    }
                }
            }
        }
        let mut readback = Readback::default();
        let backend = self.backend.clone();
        let mut read = backend
            .get_blocks(order.clone())
            .zip(futures_util::stream::iter(order));
        while let Some((item, id)) = read.next().await {
            readback.checked += 1;
            let paths = named.remove(&id).unwrap_or_default();
            match item {
                Ok(_) => {}
                Err(pouch_backend::Error::Corrupt { reason, .. }) => {
                    readback.damaged.push((id, reason.to_owned(), paths));
                }
                Err(pouch_backend::Error::BlockNotFound(_)) => readback.missing.push((id, paths)),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(readback)
    }

    /// Sends again the blocks in `unreadable` this device has, reports the
    /// others in a commit for the devices that have them, and audits every
    /// block of this device's files: `pouch doctor --blocks`'s repair.
    pub async fn repair_blocks(
        &mut self,
        unreadable: impl IntoIterator<Item = BlockId>,
    ) -> Result<HealReport> {
        self.check_store().await?;
        let mut report = SyncReport::default();
        self.pull(&mut report).await?;
        let unreadable: Vec<BlockId> = unreadable.into_iter().collect();
        self.want(&unreadable)?;
        let heal = self.heal(true, &mut report).await?;
        // What this device could not send, others may have.
        let still: HashSet<BlockId> = if unreadable.is_empty() {
            HashSet::new()
        } else {
            let stored = self.backend.has_blocks(&unreadable).await?;
            unreadable
                .into_iter()
                .zip(stored)
                .filter(|(_, stored)| !stored)
                .map(|(id, _)| id)
                .collect()
        };
        self.unreadable.extend(still);
        self.report_unreadable().await?;
        Ok(heal)
    }

    /// Remembers blocks another device reported missing, to check and send
    /// at this sync.
    pub(super) fn want(&self, ids: &[BlockId]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut wanted = self.wanted()?;
        wanted.extend(ids.iter().copied());
        self.save_ids(WANTED_META, &wanted)
    }

    fn wanted(&self) -> Result<BTreeSet<BlockId>> {
        Ok(self
            .db
            .meta(WANTED_META)?
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default())
    }

    fn save_ids(&self, key: &str, ids: &impl serde::Serialize) -> Result<()> {
        self.db.set_meta(
            key,
            &serde_json::to_string(ids).expect("block ids always serialise"),
        )
    }

    /// After a sync's push: sends the reported blocks this device has, and
    /// all lacking ones when an audit is due (or `audit` asks for one now).
    pub(super) async fn heal(
        &mut self,
        audit: bool,
        report: &mut SyncReport,
    ) -> Result<HealReport> {
        let now = self.clock.unix_secs();
        let last_audit: i64 = match self.db.meta(AUDITED_META)?.and_then(|t| t.parse().ok()) {
            Some(at) => at,
            None => {
                // A device's first sync just put or fetched every block it
                // has: the hourly audits start from here.
                self.db.set_meta(AUDITED_META, &now.to_string())?;
                now
            }
        };
        let audit = audit || !(0..AUDIT_INTERVAL_SECS).contains(&(now - last_audit));
        let mut ask: BTreeSet<BlockId> = self.wanted()?;
        if ask.is_empty() && !audit {
            return Ok(HealReport::default());
        }
        let local = self.db.local()?;
        if audit {
            let named: HashSet<BlockId> = self
                .db
                .tree(Tree::Remote)?
                .values()
                .filter_map(|node| match node {
                    Node::File { blocks, .. } => Some(blocks.iter().map(|b| b.id)),
                    _ => None,
                })
                .flatten()
                .collect();
            for (_, node) in local.values() {
                if let Node::File { blocks, .. } = node {
                    ask.extend(blocks.iter().map(|b| b.id).filter(|id| named.contains(id)));
                }
            }
        }
        let mut heal = HealReport::default();
        if !ask.is_empty() {
            let ask: Vec<BlockId> = ask.into_iter().collect();
            let mut lacking = HashSet::new();
            for batch in ask.chunks(CHECK_BATCH) {
                let stored = self.backend.has_blocks(batch).await?;
                lacking.extend(
                    batch
                        .iter()
                        .zip(stored)
                        .filter(|(_, stored)| !stored)
                        .map(|(id, _)| *id),
                );
            }
            heal.checked = ask.len() as u64;
            heal.lacking = lacking.len() as u64;
            if !lacking.is_empty() {
                tracing::warn!(
                    blocks = lacking.len(),
                    "the store lacks blocks the journal names; sending the ones this device has"
                );
                self.resend(&local, &mut lacking, &mut heal).await?;
                report.blocks_resent += heal.resent;
            }
        }
        self.db.delete_meta(WANTED_META)?;
        if audit {
            self.db.set_meta(AUDITED_META, &now.to_string())?;
        }
        Ok(heal)
    }

    /// Reads the local files naming a block in `lacking` and sends those
    /// blocks, taking each sent one out of `lacking`.
    async fn resend(
        &self,
        local: &BTreeMap<RelPath, crate::local::LocalEntry>,
        lacking: &mut HashSet<BlockId>,
        heal: &mut HealReport,
    ) -> Result<()> {
        let mut batch: Vec<Block> = Vec::new();
        let mut batch_bytes = 0usize;
        for (path, (_, node)) in local {
            let Node::File { blocks, .. } = node else {
                continue;
            };
            if !blocks.iter().any(|b| lacking.contains(&b.id)) {
                continue;
            }
            let full = path.to_fs(&self.root);
            let file = match std::fs::File::open(&full) {
                Ok(file) => file,
                Err(e) => {
                    tracing::warn!(%path, "cannot read a file to send its lost blocks again: {e}");
                    heal.unrepaired.push(path.to_string());
                    continue;
                }
            };
            for piece in chunk::chunks(std::io::BufReader::with_capacity(1 << 20, file)) {
                let piece = piece.map_err(Error::io(&full))?;
                // The id is the bytes' own hash: only true bytes are sent.
                if lacking.remove(&piece.block.id) {
                    batch_bytes += piece.data.len();
                    batch.push(Block::encode(piece.data));
                    heal.resent += 1;
                    if batch_bytes >= UPLOAD_BATCH_BYTES {
                        self.backend.put_blocks(std::mem::take(&mut batch)).await?;
                        batch_bytes = 0;
                    }
                }
            }
            if blocks.iter().any(|b| lacking.contains(&b.id)) {
                heal.unrepaired.push(path.to_string());
            }
        }
        if !batch.is_empty() {
            self.backend.put_blocks(batch).await?;
        }
        if heal.resent > 0 {
            tracing::info!(blocks = heal.resent, "sent lost blocks to the store again");
        }
        Ok(())
    }

    /// Names in a commit the blocks this sync could not read from the
    /// store, so that devices that have them send them again; each block
    /// at most once an hour.
    pub(super) async fn report_unreadable(&mut self) -> Result<()> {
        if self.unreadable.is_empty() {
            return Ok(());
        }
        let now = self.clock.unix_secs();
        let mut reported: BTreeMap<BlockId, i64> = self
            .db
            .meta(REPORTED_META)?
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        reported.retain(|_, at| (0..REPORT_AGAIN_SECS).contains(&(now - *at)));
        let missing: Vec<BlockId> = std::mem::take(&mut self.unreadable)
            .into_iter()
            .filter(|id| !reported.contains_key(id))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let commit = Commit {
            v: COMMIT_VERSION,
            retention: None,
            device: self.device.clone(),
            time: Some(now),
            moved_to: None,
            migration: None,
            changes: Vec::new(),
            missing: missing.clone(),
        };
        let seq = self.db.cursor()?.next();
        match self.backend.append(seq, commit.encode()).await {
            Ok(()) => {}
            // Another device committed first: report at the next sync.
            Err(pouch_backend::Error::SlotTaken(_)) => {
                self.unreadable.extend(missing);
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        let origin = Origin {
            device: self.device.clone(),
            time: Some(now),
        };
        self.db.fold(seq, &origin, &[], true)?;
        tracing::warn!(%seq, blocks = missing.len(), "reported blocks the store could not give");
        reported.extend(missing.into_iter().map(|id| (id, now)));
        self.save_ids(REPORTED_META, &reported)
    }
}
