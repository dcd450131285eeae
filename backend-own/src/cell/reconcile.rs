//! Reconciliation: a node that comes back after being counted dead (or a
//! file a crashed coordinator left) may hold replicas and shards the
//! database no longer places there: its copies were rebuilt elsewhere, its
//! volume was coded, compacted or dropped meanwhile. Such a file is never
//! read (reads go where the database says) and only takes space; it is
//! deleted once it has not been written for a grace period.
//!
//! Safe against every writer: the node's files are listed *before* the
//! database is read (a volume's row exists before any byte of it is
//! written, so a file seen in the listing is named by the later read if
//! it belongs there), and it runs in the compaction pass, under both the
//! repair coordinator's and the verifier's locks (no copy, shard or
//! mended range is being written meanwhile).

use std::collections::HashMap;
use std::time::Duration;

use pouch_backend::Result;

use super::backend::Cell;
use super::db;
use super::node::Piece;

/// Files unwritten for less than this are left, whatever the database
/// says.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(3600);

impl Cell {
    /// Deletes, on every live node, the replicas and shards the database
    /// does not place there and that were not written for `grace`.
    /// Returns how many it deleted.
    pub(super) async fn reconcile_pass(&self, grace: Duration) -> Result<u64> {
        let live = self.live_nodes().await?;
        let mut held = Vec::new();
        for (node, addr) in &live {
            match self.held_by(addr).await {
                Ok(pieces) => held.push((*node, addr.clone(), pieces)),
                Err(e) => tracing::warn!(node, "cannot list what it holds: {e}"),
            }
        }
        // Read after the listings.
        let placed: HashMap<i64, (Vec<i64>, Vec<i64>)> = {
            let client = db::client(&self.pool).await?;
            client
                .query("SELECT id, replicas, shards FROM volumes", &[])
                .await
                .map_err(db::error("listing volumes"))?
                .iter()
                .map(|r| (r.get(0), (r.get(1), r.get(2))))
                .collect()
        };
        let mut dropped = 0;
        for (node, addr, pieces) in held {
            for piece in pieces {
                if piece.idle_secs < grace.as_secs_f64() {
                    continue;
                }
                let named = placed
                    .get(&piece.volume)
                    .is_some_and(|(replicas, shards)| match piece.piece() {
                        Piece::Replica(_) => replicas.contains(&node),
                        Piece::Shard(_, index) => shards.get(index) == Some(&node),
                    });
                if named {
                    continue;
                }
                match self.drop_from(&addr, piece.piece()).await {
                    Ok(()) => {
                        dropped += 1;
                        tracing::info!(node, piece = ?piece.piece(), "a file the cell no longer names was deleted");
                    }
                    Err(e) => tracing::warn!(node, piece = ?piece.piece(), "not deleted: {e}"),
                }
            }
        }
        Ok(dropped)
    }
}
