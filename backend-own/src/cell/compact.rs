//! Compaction: space back from blocks garbage collection swept. A sealed
//! or coded volume whose indexed blocks fill less than half of it has
//! them read (verified, from a replica or the shards), written into an
//! open volume like any put, and their index rows pointed there (only rows
//! still in the old volume: a block swept meanwhile stays gone). Once no
//! row names the old volume, its row is deleted under a lock (a put
//! indexing into it then finds it gone and writes elsewhere) and its
//! replicas or shards are dropped from the nodes.
//!
//! It holds the repair coordinator's lease (no repair or coding of a
//! volume it moves) and the verifier's (which would otherwise write back
//! the copies of a volume being dropped).

use std::collections::BTreeMap;
use std::sync::Arc;

use pouch_backend::{Block, BlockId, Result};

use super::backend::Cell;
use super::db;
use super::node::Piece;

/// Blocks moved in one write.
const MOVE_BATCH: usize = 64;

/// What one compaction pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CompactReport {
    /// Volumes rewritten and dropped.
    pub volumes_compacted: u64,
    /// Live blocks written anew.
    pub blocks_moved: u64,
    /// Their bytes.
    pub bytes_moved: u64,
    /// Bytes of the volumes dropped (as written; on the nodes 1.5× or 3×
    /// that).
    pub bytes_dropped: u64,
    /// Files nodes held that the database no longer placed there (kept
    /// while a node was away), deleted.
    pub orphans_deleted: u64,
    /// Blocks that could not be read back intact: their volume stays.
    pub blocks_unreadable: u64,
}

impl Cell {
    /// Runs a compaction pass every `every` (on the current tokio runtime)
    /// for as long as the process lives.
    pub fn start_compaction(self: &Arc<Self>, every: std::time::Duration) {
        self.every(every, "compaction pass", |cell| async move {
            cell.compact_once(0.5, super::reconcile::ORPHAN_GRACE).await
        });
    }

    /// Compacts every sealed or coded volume whose live blocks fill less
    /// than `threshold` of it, then deletes the files nodes hold that the
    /// database does not place there and that were not written for
    /// `grace`; unless the repair coordinator or a verifier is at work
    /// (`None` then).
    pub async fn compact_once(
        self: &Arc<Self>,
        threshold: f64,
        grace: std::time::Duration,
    ) -> Result<Option<CompactReport>> {
        let both = async {
            let mut report = self.compact_pass(threshold).await?;
            report.orphans_deleted = self.reconcile_pass(grace).await?;
            Ok(report)
        };
        let pass = async { self.under_lock(super::verify::VERIFIER_LOCK, both).await };
        let report = self
            .under_lock(super::repair::COORDINATOR_LOCK, pass)
            .await?
            .flatten();
        if let Some(report) = &report {
            self.findings.compacted(report);
        }
        Ok(report)
    }

    async fn compact_pass(self: &Arc<Self>, threshold: f64) -> Result<CompactReport> {
        let mut report = CompactReport::default();
        let volumes = {
            let client = db::client(&self.pool).await?;
            client
                .query(
                    "SELECT v.id, v.size FROM volumes v \
                     WHERE v.state IN ('sealed', 'coded') AND v.size > 0 \
                       AND COALESCE((SELECT sum(b.length) FROM blocks b WHERE b.volume = v.id), 0) \
                           < v.size * $1::float8 \
                     ORDER BY v.id",
                    &[&threshold],
                )
                .await
                .map_err(db::error("finding volumes to compact"))?
        };
        for row in volumes {
            let (volume, size): (i64, i64) = (row.get(0), row.get(1));
            if self.move_live_blocks(volume, &mut report).await? && self.drop_volume(volume).await?
            {
                report.volumes_compacted += 1;
                report.bytes_dropped += size as u64;
            }
        }
        Ok(report)
    }

    /// Writes `volume`'s indexed blocks into open volumes; `false` if some
    /// could not be read.
    async fn move_live_blocks(
        self: &Arc<Self>,
        volume: i64,
        report: &mut CompactReport,
    ) -> Result<bool> {
        let rows = {
            let client = db::client(&self.pool).await?;
            client
                .query(
                    "SELECT ns, id FROM blocks WHERE volume = $1 ORDER BY ns, \"offset\"",
                    &[&volume],
                )
                .await
                .map_err(db::error("listing a volume's blocks"))?
        };
        let mut by_ns: BTreeMap<String, Vec<BlockId>> = BTreeMap::new();
        for row in rows {
            if let Some(id) = BlockId::from_slice(&row.get::<_, Vec<u8>>(1)) {
                by_ns.entry(row.get(0)).or_default().push(id);
            }
        }
        let mut whole = true;
        for (ns, ids) in by_ns {
            let ns = self.existing_namespace(&ns);
            for batch in ids.chunks(MOVE_BATCH) {
                let mut blocks: Vec<Block> = Vec::with_capacity(batch.len());
                for id in batch {
                    match ns.get_block_encoded(*id).await {
                        Ok(block) => blocks.push(block),
                        // Swept since the listing.
                        Err(pouch_backend::Error::BlockNotFound(_)) => {}
                        Err(e) => {
                            tracing::error!(%id, volume, "cannot move a block: {e}");
                            report.blocks_unreadable += 1;
                            whole = false;
                        }
                    }
                }
                if blocks.is_empty() {
                    continue;
                }
                report.blocks_moved += blocks.len() as u64;
                report.bytes_moved += blocks.iter().map(|b| b.payload().len() as u64).sum::<u64>();
                ns.write_and_index(&blocks, Some(volume)).await?;
            }
        }
        Ok(whole)
    }

    /// Deletes `volume`'s row if no block is indexed in it any more, then
    /// has its nodes drop their replicas or shards. `false` if blocks
    /// remain.
    async fn drop_volume(&self, volume: i64) -> Result<bool> {
        let mut client = db::client(&self.pool).await?;
        let context = "dropping a compacted volume";
        let tx = client.transaction().await.map_err(db::error(context))?;
        let row = tx
            .query_opt(
                "SELECT replicas, shards FROM volumes WHERE id = $1 FOR UPDATE",
                &[&volume],
            )
            .await
            .map_err(db::error(context))?;
        let Some(row) = row else {
            return Ok(false);
        };
        let (replicas, shards): (Vec<i64>, Vec<i64>) = (row.get(0), row.get(1));
        let left: i64 = tx
            .query_one("SELECT count(*) FROM blocks WHERE volume = $1", &[&volume])
            .await
            .map_err(db::error(context))?
            .get(0);
        if left > 0 {
            return Ok(false);
        }
        tx.execute("DELETE FROM volumes WHERE id = $1", &[&volume])
            .await
            .map_err(db::error(context))?;
        tx.commit().await.map_err(db::error(context))?;
        let live = self.live_nodes().await?;
        let addr_of = |id: &i64| live.iter().find(|(n, _)| n == id).map(|(_, a)| a.clone());
        let pieces = replicas
            .iter()
            .map(|node| (*node, Piece::Replica(volume)))
            .chain(
                shards
                    .iter()
                    .enumerate()
                    .map(|(i, node)| (*node, Piece::Shard(volume, i))),
            );
        for (node, piece) in pieces {
            // A node down now keeps the file; nothing names it any more.
            if let Some(addr) = addr_of(&node)
                && let Err(e) = self.drop_from(&addr, piece).await
            {
                tracing::warn!(volume, node, "a compacted volume's file stays: {e}");
            }
        }
        tracing::info!(volume, "volume compacted and dropped");
        Ok(true)
    }
}
