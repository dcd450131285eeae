//! The verifier (Magic Pocket's "Pocket Watch", in small): every block the
//! index names is read back from every live copy of its volume and checked
//! (its record's header names it, its bytes hash to it). A copy that is
//! missing (a volume file deleted, a node's disk replaced) or damaged (a
//! flipped byte) is written again from an intact one, at the same offset.
//! Copies on dead nodes are the repair's business, not this. Then every
//! block the namespaces' journals name (every version their retention
//! keeps) is looked up in the index: one missing there was lost by the
//! cell itself (a put is acknowledged only once indexed, and blocks go
//! before the entries naming them), and is reported, for the devices that
//! still have the file send its blocks again at their next check.
//!
//! One verifier at a time, through a transaction-scoped advisory lock.

use std::sync::Arc;

use bytes::Bytes;
use pouch_backend::{Backend, BlockId, Result};

use super::backend::{Cell, parse_record};
use super::coding::{self, DATA_SHARDS, SHARDS, WINDOW};
use super::db;
use super::node::Piece;
use super::shards::Coded;

/// The advisory lock a verifier holds.
pub(super) const VERIFIER_LOCK: i64 = 7_021_107;

/// What one verification pass found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    /// Blocks checked.
    pub blocks: u64,
    /// Copies read and checked.
    pub copies_checked: u64,
    /// Copies found missing or damaged and written again.
    pub copies_repaired: u64,
    /// Copies found missing or damaged with no intact copy to take from.
    pub copies_unrepairable: u64,
    /// Blocks the namespaces' journals name, looked up in the index.
    pub journal_blocks_checked: u64,
    /// Of those, blocks the index lacks.
    pub journal_blocks_missing: u64,
    /// Namespaces whose journal could not be read whole (an entry of a
    /// newer format, a damaged one): what they name is not all checked.
    pub journals_unreadable: u64,
}

/// Block ids looked up in the index at once.
const LOOKUP_BATCH: usize = 1000;

impl Cell {
    /// Runs a verification pass every `every` (on the current tokio
    /// runtime) for as long as the process lives.
    pub fn start_verifier(self: &std::sync::Arc<Self>, every: std::time::Duration) {
        self.every(every, "verification pass", |cell| async move {
            cell.verify_once().await
        });
    }

    /// One verification pass over the whole cell, if no other verifier
    /// runs one (`None` then).
    pub async fn verify_once(self: &Arc<Self>) -> Result<Option<VerifyReport>> {
        let report = self.under_lock(VERIFIER_LOCK, self.verify_pass()).await?;
        if let Some(report) = &report {
            self.findings.verified(report);
        }
        Ok(report)
    }

    async fn verify_pass(self: &Arc<Self>) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let live = self.live_nodes().await?;
        let volumes = {
            let client = db::client(&self.pool).await?;
            client
                .query(
                    "SELECT v.id, v.replicas, v.state, v.shards, v.shard_size, \
                            (SELECT count(*) FROM blocks b WHERE b.volume = v.id) \
                     FROM volumes v ORDER BY v.id",
                    &[],
                )
                .await
                .map_err(db::error("listing volumes"))?
        };
        for row in volumes {
            let (volume, replicas, state): (i64, Vec<i64>, String) =
                (row.get(0), row.get(1), row.get(2));
            if state == "coded" {
                let (shards, shard_size, blocks): (Vec<i64>, i64, i64) =
                    (row.get(3), row.get(4), row.get(5));
                let coded = Coded {
                    volume,
                    shard_size: shard_size as u64,
                    addrs: shards
                        .iter()
                        .map(|s| live.iter().find(|(id, _)| id == s).map(|(_, a)| a.clone()))
                        .collect(),
                };
                report.blocks += blocks as u64;
                self.verify_coded(&coded, &mut report).await;
                continue;
            }
            let copies: Vec<&str> = replicas
                .iter()
                .filter_map(|r| live.iter().find(|(id, _)| id == r))
                .map(|(_, addr)| addr.as_str())
                .collect();
            let blocks = {
                let client = db::client(&self.pool).await?;
                client
                    .query(
                        "SELECT id, \"offset\", length FROM blocks WHERE volume = $1 ORDER BY \"offset\"",
                        &[&volume],
                    )
                    .await
                    .map_err(db::error("listing a volume's blocks"))?
            };
            for block in blocks {
                let (id, offset, len): (Vec<u8>, i64, i32) =
                    (block.get(0), block.get(1), block.get(2));
                let Some(id) = BlockId::from_slice(&id) else {
                    continue;
                };
                report.blocks += 1;
                let mut intact = None;
                let mut bad = Vec::new();
                for addr in &copies {
                    report.copies_checked += 1;
                    match self.read_from(addr, volume, offset, len).await {
                        Ok(record) if parse_record(id, record.clone()).is_ok() => {
                            intact.get_or_insert(record);
                        }
                        Ok(_) => {
                            tracing::warn!(%id, volume, %addr, "a damaged copy");
                            bad.push(*addr);
                        }
                        Err(e) => {
                            tracing::warn!(%id, volume, %addr, "a missing copy: {e}");
                            bad.push(*addr);
                        }
                    }
                }
                match intact {
                    Some(record) => {
                        for addr in bad {
                            match self.write_to(addr, volume, offset, record.clone()).await {
                                Ok(()) => report.copies_repaired += 1,
                                // A node down since the look at the live
                                // ones: the repair's business.
                                Err(e) => {
                                    tracing::warn!(%id, volume, %addr, "not mended: {e}");
                                    report.copies_unrepairable += 1;
                                }
                            }
                        }
                    }
                    None => {
                        tracing::error!(%id, volume, "no intact copy is left");
                        report.copies_unrepairable += bad.len() as u64;
                    }
                }
            }
        }
        self.check_journals(&mut report).await?;
        Ok(report)
    }

    /// Checks every window of a coded volume's shards on live nodes: a
    /// missing window (a shard file deleted) is rebuilt from the others; a
    /// window whose six shards disagree (a flipped byte) is mended by
    /// finding the one shard without which the other five agree.
    async fn verify_coded(&self, coded: &Coded, report: &mut VerifyReport) {
        let mut at = 0;
        while at < coded.shard_size {
            let len = WINDOW.min(coded.shard_size - at);
            let windows = self.shard_windows(coded, at, len, &[]).await;
            let have: Vec<(usize, &[u8])> = windows
                .iter()
                .enumerate()
                .filter_map(|(i, w)| w.as_deref().map(|w| (i, w)))
                .collect();
            report.copies_checked += have.len() as u64;
            // Shards on live nodes that did not answer.
            let missing: Vec<usize> = (0..SHARDS)
                .filter(|i| coded.addrs[*i].is_some() && windows[*i].is_none())
                .collect();
            let mended = match coding::consistent_without(&have) {
                // All that answered agree (or too few to tell: four).
                Some(None) => Ok(missing.clone()),
                // One of them is damaged.
                Some(Some(bad)) => {
                    tracing::warn!(volume = coded.volume, shard = bad, at, "a damaged shard");
                    Ok(missing.iter().copied().chain([bad]).collect())
                }
                None => Err(()),
            };
            match mended {
                Ok(to_write) if !to_write.is_empty() => {
                    let good: Vec<(usize, &[u8])> = have
                        .iter()
                        .filter(|(i, _)| !to_write.contains(i))
                        .take(DATA_SHARDS)
                        .copied()
                        .collect();
                    match coding::every_shard(&good) {
                        Ok(all) => {
                            for i in to_write {
                                let addr = coded.addrs[i].as_deref().expect("a live node");
                                let piece = Piece::Shard(coded.volume, i);
                                let window = Bytes::from(all[i].clone());
                                match self.write_to(addr, piece, at as i64, window).await {
                                    Ok(()) => report.copies_repaired += 1,
                                    Err(e) => {
                                        tracing::warn!(
                                            volume = coded.volume,
                                            shard = i,
                                            "not mended: {e}"
                                        );
                                        report.copies_unrepairable += 1;
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            tracing::error!(volume = coded.volume, at, "cannot rebuild: {e}");
                            report.copies_unrepairable += missing.len() as u64;
                        }
                    }
                }
                Ok(_) => {}
                Err(()) => {
                    tracing::error!(
                        volume = coded.volume,
                        at,
                        "its shards disagree and no one shard is to blame"
                    );
                    report.copies_unrepairable += 1;
                }
            }
            at += len;
        }
    }

    /// Looks up every block each namespace's journal names in the index.
    async fn check_journals(self: &Arc<Self>, report: &mut VerifyReport) -> Result<()> {
        let names: Vec<String> = {
            let client = db::client(&self.pool).await?;
            client
                .query("SELECT name FROM namespaces ORDER BY name", &[])
                .await
                .map_err(db::error("listing the namespaces"))?
                .iter()
                .map(|r| r.get(0))
                .collect()
        };
        let now = pouch_backend::gc::now_ms() / 1000;
        for name in names {
            let ns = self.existing_namespace(&name);
            let mut fold = pouch_journal::gc::Fold::default();
            match fold.read(&ns).await {
                Ok(_) => {}
                Err(pouch_journal::Error::Backend(e)) => return Err(e),
                Err(e) => {
                    tracing::error!(namespace = %name, "its journal cannot be read whole: {e}");
                    report.journals_unreadable += 1;
                    continue;
                }
            }
            if !fold.unreadable.is_empty() {
                tracing::error!(namespace = %name, entries = ?fold.unreadable, "journal entries cannot be read");
                report.journals_unreadable += 1;
            }
            let ids: Vec<BlockId> = fold.live(now).blocks.into_keys().collect();
            for batch in ids.chunks(LOOKUP_BATCH) {
                let indexed = ns.has_blocks(batch).await?;
                for (id, indexed) in batch.iter().zip(indexed) {
                    report.journal_blocks_checked += 1;
                    if !indexed {
                        tracing::error!(namespace = %name, %id, "a block the journal names is not in the index");
                        report.journal_blocks_missing += 1;
                    }
                }
            }
        }
        Ok(())
    }
}
