//! `pouch-store cell status`: the cell as its operator sees it, from the
//! database alone: which nodes are up, volumes by state, and how many
//! blocks have every copy on a live node, only some, or none.

use pouch_backend::Result;

use super::backend::Cell;
use super::db;

/// One storage node.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NodeStatus {
    /// Its id.
    pub id: i64,
    /// Where front ends reach it.
    pub addr: String,
    /// Whether its heartbeat is recent.
    pub up: bool,
    /// Seconds since its last heartbeat.
    pub silent_secs: f64,
    /// Whether it is being drained (`pouch-store cell drain`).
    pub draining: bool,
    /// Volumes it holds a copy of: 0 once a drained node can be stopped.
    pub volumes: u64,
}

/// The whole cell.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct CellStatus {
    /// Every node ever registered.
    pub nodes: Vec<NodeStatus>,
    /// Volumes taking appends.
    pub volumes_open: u64,
    /// Volumes full or sealed for repair, still replicated.
    pub volumes_sealed: u64,
    /// Volumes erasure-coded into shards.
    pub volumes_coded: u64,
    /// Bytes of volumes (as written by puts, whether or not still indexed).
    pub logical_bytes: u64,
    /// Bytes the nodes hold for them: each replica, each shard.
    pub stored_bytes: u64,
    /// Blocks indexed, in every namespace.
    pub blocks: u64,
    /// Blocks whose volume has every copy (or shard) on a live node.
    pub blocks_redundant: u64,
    /// Blocks whose volume lost some copies but not all (for a coded
    /// volume: at most two shards): readable, to be repaired.
    pub blocks_degraded: u64,
    /// Blocks whose volume has no copy on a live node (or, coded, fewer
    /// than four shards).
    pub blocks_lost: u64,
    /// Volumes with a copy or shard on a dead node or a node being
    /// drained: the repair backlog.
    pub volumes_to_repair: u64,
}

impl Cell {
    /// The cell's status now.
    pub async fn status(&self) -> Result<CellStatus> {
        let client = db::client(&self.pool).await?;
        let dead_after = self.options.dead_after.as_secs_f64();
        let nodes = client
            .query(
                "SELECT n.id, n.addr, n.heartbeat > now() - make_interval(secs => $1), \
                        extract(epoch FROM now() - n.heartbeat)::float8, n.draining, \
                        (SELECT count(*) FROM volumes v WHERE n.id = ANY(v.replicas) OR n.id = ANY(v.shards)) \
                 FROM nodes n ORDER BY n.id",
                &[&dead_after],
            )
            .await
            .map_err(db::error("listing the nodes"))?;
        let volumes = client
            .query(
                "SELECT v.state, cardinality(v.replicas) + cardinality(v.shards), \
                        (SELECT count(*) FROM unnest(v.replicas || v.shards) AS c(node) JOIN nodes n ON n.id = c.node \
                           WHERE n.heartbeat > now() - make_interval(secs => $1)), \
                        (SELECT count(*) FROM blocks b WHERE b.volume = v.id), \
                        (SELECT count(*) FROM unnest(v.replicas || v.shards) AS c(node) JOIN nodes n ON n.id = c.node \
                           WHERE n.draining), \
                        v.size, v.shard_size, cardinality(v.replicas), cardinality(v.shards) \
                 FROM volumes v",
                &[&dead_after],
            )
            .await
            .map_err(db::error("listing the volumes"))?;
        let mut status = CellStatus {
            nodes: nodes
                .iter()
                .map(|r| NodeStatus {
                    id: r.get(0),
                    addr: r.get(1),
                    up: r.get(2),
                    silent_secs: r.get(3),
                    draining: r.get(4),
                    volumes: r.get::<_, i64>(5) as u64,
                })
                .collect(),
            ..CellStatus::default()
        };
        for row in volumes {
            let (state, copies, up, blocks, draining): (String, i32, i64, i64, i64) =
                (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
            let (size, shard_size, replicas, shards): (i64, i64, i32, i32) =
                (row.get(5), row.get(6), row.get(7), row.get(8));
            let blocks = blocks as u64;
            status.logical_bytes += size as u64;
            status.stored_bytes +=
                (size * i64::from(replicas) + shard_size * i64::from(shards)) as u64;
            // Shards beyond the data shards' count can be lost.
            let needed = if state == "coded" {
                super::coding::DATA_SHARDS as i64
            } else {
                1
            };
            match state.as_str() {
                "open" => status.volumes_open += 1,
                "coded" => status.volumes_coded += 1,
                _ => status.volumes_sealed += 1,
            }
            status.blocks += blocks;
            if up < needed {
                status.blocks_lost += blocks;
            } else if up < i64::from(copies) {
                status.blocks_degraded += blocks;
            } else {
                status.blocks_redundant += blocks;
            }
            if up < i64::from(copies) || draining > 0 {
                status.volumes_to_repair += 1;
            }
        }
        Ok(status)
    }
}
