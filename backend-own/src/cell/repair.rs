//! Repair: a volume whose replica sits on a dead node (no heartbeat for
//! [`CellOptions::dead_after`](super::CellOptions)) or on a node being
//! drained gets a new replica on a live node that is not, copied block by
//! block from the live ones (the draining node among them), each block
//! verified on the way.
//!
//! One coordinator at a time: a pass runs only while its process holds a
//! transaction-scoped advisory lock in PostgreSQL (a process that dies lets
//! it go with its connection). Every change of where a volume lives bumps
//! the volume's generation and is made only if the generation is still the
//! one the pass read, so a coordinator that stalled and woke up late
//! cannot undo newer work.

use std::collections::HashSet;

use bytes::{Bytes, BytesMut};
use pouch_backend::{BlockId, Result};

use super::backend::{Cell, parse_record};
use super::coding::{DATA_SHARDS, WINDOW};
use super::db;
use super::node::Piece;
use super::shards::Coded;

/// The advisory lock the repair coordinator holds.
pub(super) const COORDINATOR_LOCK: i64 = 7_021_106;

/// Contiguous records copied in one write, at most.
const COPY_BYTES: usize = 8 << 20;

/// The address of node `id` among the `live` ones, if it is one.
fn address(live: &[(i64, String, bool)], id: i64) -> Option<String> {
    live.iter()
        .find(|(node, _, _)| *node == id)
        .map(|(_, addr, _)| addr.clone())
}

/// What became of a damaged range.
enum Mended {
    /// Written again from redundancy.
    Written,
    /// Its volume is gone or no longer on that node.
    Gone,
    /// Nothing indexed lies there.
    Harmless,
}

/// What one repair pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RepairReport {
    /// Replicas made again on a live node.
    pub replicas_rebuilt: u64,
    /// Blocks copied for them.
    pub blocks_copied: u64,
    /// Bytes copied.
    pub bytes_copied: u64,
    /// Volumes with no live replica left: nothing to copy from.
    pub volumes_lost: u64,
    /// Blocks no live replica could give back intact.
    pub blocks_unreadable: u64,
    /// Replicas that wait for a live node to put them on (none was free,
    /// or the copy to it failed): the next pass tries again.
    pub replicas_waiting: u64,
    /// Shards of coded volumes rebuilt on a live node.
    pub shards_rebuilt: u64,
    /// Bytes of shards rebuilt.
    pub shard_bytes_rebuilt: u64,
    /// Shards that wait for a live node that holds none of their volume's.
    pub shards_waiting: u64,
    /// Ranges nodes' scrubbers found damaged, written again.
    pub damage_mended: u64,
    /// Sealed volumes coded into shards (their replicas dropped).
    pub volumes_coded: u64,
    /// Their bytes.
    pub bytes_coded: u64,
    /// Sealed volumes whose coding failed or raced a put, or that the
    /// pass left once its coding budget was spent: the next pass tries
    /// again.
    pub volumes_waiting_to_code: u64,
}

impl Cell {
    /// Runs a repair pass every `every` (on the current tokio runtime) for
    /// as long as the process lives; front ends take turns through the
    /// lease.
    pub fn start_repairs(self: &std::sync::Arc<Self>, every: std::time::Duration) {
        self.every(every, "repair pass", |cell| async move {
            cell.repair_once().await
        });
    }

    /// One repair pass, if no other coordinator runs one (`None` then).
    pub async fn repair_once(&self) -> Result<Option<RepairReport>> {
        let pass = async {
            let mut report = self.repair_pass().await?;
            self.code_pass(&mut report).await?;
            Ok(report)
        };
        let report = self.under_lock(COORDINATOR_LOCK, pass).await?;
        if let Some(report) = &report {
            self.findings.repaired(report);
        }
        Ok(report)
    }

    async fn repair_pass(&self) -> Result<RepairReport> {
        let mut report = RepairReport::default();
        let live = self.heard_from().await?;
        self.mend_damage(&live, &mut report).await?;
        // Copies go to live nodes not being drained; a draining node's
        // copies move like a dead node's, and it still serves as a source.
        let writable: Vec<i64> = live
            .iter()
            .filter(|(_, _, draining)| !draining)
            .map(|(id, _, _)| *id)
            .collect();
        let stays = |id: &i64| writable.contains(id);
        let addr_of = |id: &i64| address(&live, *id);
        let volumes = {
            let client = db::client(&self.pool).await?;
            client
                .query(
                    "SELECT id, replicas, generation FROM volumes ORDER BY id",
                    &[],
                )
                .await
                .map_err(db::error("listing volumes"))?
        };
        for row in volumes {
            let (volume, replicas, mut generation): (i64, Vec<i64>, i64) =
                (row.get(0), row.get(1), row.get(2));
            let leaving: Vec<i64> = replicas.iter().copied().filter(|r| !stays(r)).collect();
            if leaving.is_empty() {
                continue;
            }
            let sources: Vec<String> = replicas.iter().filter_map(addr_of).collect();
            if sources.is_empty() {
                report.volumes_lost += 1;
                continue;
            }
            // No new appends while its copies change.
            self.seal(volume).await?;
            let mut spare: Vec<i64> = writable
                .iter()
                .copied()
                .filter(|id| !replicas.contains(id))
                .collect();
            for gone in leaving {
                if spare.is_empty() {
                    report.replicas_waiting += 1;
                    continue;
                }
                let target = super::backend::choose(&spare, 1)[0];
                spare.retain(|id| *id != target);
                let target_addr = addr_of(&target).expect("a live node");
                let mut copied = HashSet::new();
                if let Err(e) = self
                    .copy_volume(volume, &sources, &target_addr, &mut copied, &mut report)
                    .await
                {
                    // The new node failed too (it may have died since its
                    // last heartbeat): the next pass tries another.
                    tracing::warn!(volume, to = target, "a copy failed: {e}");
                    report.replicas_waiting += 1;
                    continue;
                }
                let client = db::client(&self.pool).await?;
                let moved = client
                    .query_opt(
                        "UPDATE volumes SET replicas = array_replace(replicas, $2, $3), generation = generation + 1 \
                         WHERE id = $1 AND generation = $4 RETURNING generation",
                        &[&volume, &gone, &target, &generation],
                    )
                    .await
                    .map_err(db::error("recording a new replica"))?;
                match moved {
                    Some(row) => {
                        generation = row.get(0);
                        report.replicas_rebuilt += 1;
                        tracing::info!(volume, from = gone, to = target, "replica rebuilt");
                        // A put that wrote its records before the node died
                        // and indexed them after the listing above (before
                        // the move: a later one sees the new generation and
                        // writes elsewhere) is copied now.
                        if let Err(e) = self
                            .copy_volume(volume, &sources, &target_addr, &mut copied, &mut report)
                            .await
                        {
                            tracing::warn!(
                                volume,
                                to = target,
                                "a late copy failed (the verifier mends it): {e}"
                            );
                        }
                    }
                    // Someone changed the volume meanwhile: theirs stands;
                    // the next pass looks again.
                    None => break,
                }
            }
        }
        self.repair_shards(&live, &writable, &mut report).await?;
        Ok(report)
    }

    /// Writes again the ranges nodes' scrubbers found damaged (the
    /// `damage` table): a replica's records from the other replicas, a
    /// shard's windows rebuilt from the other shards. A range of a volume
    /// that is gone, or that the node no longer holds, is forgotten; one
    /// where nothing indexed lies is kept as harmless (so the scrubber does
    /// not report it again).
    async fn mend_damage(
        &self,
        live: &[(i64, String, bool)],
        report: &mut RepairReport,
    ) -> Result<()> {
        let addr_of = |id: &i64| address(live, *id);
        let damage = {
            let client = db::client(&self.pool).await?;
            client
                .query(
                    "SELECT d.node, d.volume, d.shard, d.\"offset\", d.length, \
                            v.replicas, v.shards, v.shard_size \
                     FROM damage d LEFT JOIN volumes v ON v.id = d.volume \
                     WHERE NOT d.harmless ORDER BY d.found",
                    &[],
                )
                .await
                .map_err(db::error("listing damage"))?
        };
        for row in damage {
            let (node, volume, shard, offset, len): (i64, i64, i32, i64, i64) =
                (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
            let (replicas, shards, shard_size): (Option<Vec<i64>>, Option<Vec<i64>>, Option<i64>) =
                (row.get(5), row.get(6), row.get(7));
            let Some(addr) = addr_of(&node) else {
                // Down: its copy is repair's business once it is dead.
                continue;
            };
            let outcome = match (replicas, shards) {
                (Some(replicas), _) if shard < 0 && replicas.contains(&node) => {
                    let sources: Vec<String> = replicas
                        .iter()
                        .filter(|r| **r != node)
                        .filter_map(addr_of)
                        .collect();
                    self.mend_replica_range(volume, offset, len, &sources, &addr, report)
                        .await
                }
                (_, Some(shards)) if shard >= 0 && shards.get(shard as usize) == Some(&node) => {
                    let coded = Coded {
                        volume,
                        shard_size: shard_size.unwrap_or(0) as u64,
                        addrs: shards.iter().map(addr_of).collect(),
                    };
                    let (from, to) = (offset as u64, (offset + len) as u64);
                    self.rebuild_shard(&coded, shard as usize, from, to, &addr)
                        .await
                        .map(|()| Mended::Written)
                }
                // The volume is gone, or moved off that node.
                _ => Ok(Mended::Gone),
            };
            let client = db::client(&self.pool).await?;
            let key: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
                [&node, &volume, &shard, &offset, &len];
            match outcome {
                Ok(Mended::Written) | Ok(Mended::Gone) => {
                    if matches!(outcome, Ok(Mended::Written)) {
                        report.damage_mended += 1;
                        tracing::info!(
                            node,
                            volume,
                            shard,
                            offset,
                            len,
                            "damaged range written again"
                        );
                    }
                    client
                        .execute(
                            "DELETE FROM damage WHERE node = $1 AND volume = $2 AND shard = $3 \
                             AND \"offset\" = $4 AND length = $5",
                            &key,
                        )
                        .await
                        .map_err(db::error("forgetting mended damage"))?;
                }
                Ok(Mended::Harmless) => {
                    client
                        .execute(
                            "UPDATE damage SET harmless = true WHERE node = $1 AND volume = $2 \
                             AND shard = $3 AND \"offset\" = $4 AND length = $5",
                            &key,
                        )
                        .await
                        .map_err(db::error("recording harmless damage"))?;
                }
                Err(e) => {
                    tracing::warn!(node, volume, shard, offset, "damage not mended yet: {e}");
                }
            }
        }
        Ok(())
    }

    /// Writes every indexed record overlapping `[offset, offset + len)` of
    /// the replica `volume` on the node at `target`, from `sources`.
    async fn mend_replica_range(
        &self,
        volume: i64,
        offset: i64,
        len: i64,
        sources: &[String],
        target: &str,
        report: &mut RepairReport,
    ) -> Result<Mended> {
        let records = {
            let client = db::client(&self.pool).await?;
            client
                .query(
                    "SELECT id, \"offset\", length FROM blocks WHERE volume = $1 \
                     AND \"offset\" < $2 AND \"offset\" + length > $3 ORDER BY \"offset\"",
                    &[&volume, &(offset + len), &offset],
                )
                .await
                .map_err(db::error("listing a damaged range's blocks"))?
        };
        if records.is_empty() {
            return Ok(Mended::Harmless);
        }
        for row in records {
            let (id, at, rlen): (Vec<u8>, i64, i32) = (row.get(0), row.get(1), row.get(2));
            let Some(id) = BlockId::from_slice(&id) else {
                continue;
            };
            let Some(record) = self.read_intact(id, volume, at, rlen, sources).await else {
                report.blocks_unreadable += 1;
                return Err(pouch_backend::Error::Corrupt {
                    id,
                    reason: "no other replica holds an intact copy",
                });
            };
            self.write_to(target, volume, at, record).await?;
        }
        Ok(Mended::Written)
    }

    /// Rebuilds the shards of coded volumes that sit on dead or draining
    /// nodes, each on a live node holding no other shard of its volume,
    /// window by window from four of the others.
    async fn repair_shards(
        &self,
        live: &[(i64, String, bool)],
        writable: &[i64],
        report: &mut RepairReport,
    ) -> Result<()> {
        let addr_of = |id: &i64| address(live, *id);
        let volumes = {
            let client = db::client(&self.pool).await?;
            client
                .query(
                    "SELECT id, shards, shard_size, generation FROM volumes \
                     WHERE state = 'coded' ORDER BY id",
                    &[],
                )
                .await
                .map_err(db::error("listing coded volumes"))?
        };
        for row in volumes {
            let (volume, mut shards, shard_size, mut generation): (i64, Vec<i64>, i64, i64) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
            let leaving: Vec<usize> = (0..shards.len())
                .filter(|i| !writable.contains(&shards[*i]))
                .collect();
            if leaving.is_empty() {
                continue;
            }
            let mut coded = Coded {
                volume,
                shard_size: shard_size as u64,
                addrs: shards.iter().map(addr_of).collect(),
            };
            if coded.addrs.iter().flatten().count() < DATA_SHARDS {
                report.volumes_lost += 1;
                continue;
            }
            let mut spare: Vec<i64> = writable
                .iter()
                .copied()
                .filter(|id| !shards.contains(id))
                .collect();
            for index in leaving {
                if spare.is_empty() {
                    report.shards_waiting += 1;
                    continue;
                }
                let target = super::backend::choose(&spare, 1)[0];
                spare.retain(|id| *id != target);
                let target_addr = addr_of(&target).expect("a live node");
                if let Err(e) = self
                    .rebuild_shard(&coded, index, 0, coded.shard_size, &target_addr)
                    .await
                {
                    tracing::warn!(
                        volume,
                        shard = index,
                        to = target,
                        "a shard rebuild failed: {e}"
                    );
                    report.shards_waiting += 1;
                    continue;
                }
                let client = db::client(&self.pool).await?;
                let moved = client
                    .query_opt(
                        "UPDATE volumes SET shards[$2] = $3, generation = generation + 1 \
                         WHERE id = $1 AND generation = $4 RETURNING generation",
                        &[&volume, &(index as i32 + 1), &target, &generation],
                    )
                    .await
                    .map_err(db::error("recording a rebuilt shard"))?;
                let Some(row) = moved else { break };
                generation = row.get(0);
                report.shards_rebuilt += 1;
                report.shard_bytes_rebuilt += coded.shard_size;
                tracing::info!(
                    volume,
                    shard = index,
                    from = shards[index],
                    to = target,
                    "shard rebuilt"
                );
                // A draining node still answers: its copy goes.
                if let Some(old) = coded.addrs[index].replace(target_addr) {
                    let _ = self.drop_from(&old, Piece::Shard(volume, index)).await;
                }
                shards[index] = target;
            }
        }
        Ok(())
    }

    /// Writes the windows of shard `index` of `coded` that overlap `[from,
    /// to)` (the whole shard: `0..shard_size`) to the node at `target`,
    /// each rebuilt from the other shards. Windows start on multiples of
    /// [`WINDOW`], as the coder wrote them, so a rewritten window
    /// replaces its entry in the node's sidecar of hashes.
    async fn rebuild_shard(
        &self,
        coded: &Coded,
        index: usize,
        from: u64,
        to: u64,
        target: &str,
    ) -> Result<()> {
        let end = to.min(coded.shard_size);
        let mut at = from / WINDOW * WINDOW;
        while at < end {
            let len = WINDOW.min(coded.shard_size - at);
            let mut all = self.rebuild_window(coded, at, len, &[index]).await?;
            let window = Bytes::from(all.swap_remove(index));
            self.write_to(target, Piece::Shard(coded.volume, index), at as i64, window)
                .await?;
            at += len;
        }
        Ok(())
    }

    /// Copies every indexed block of `volume` whose offset is not in
    /// `copied` to the node at `target`, at the same offsets, each read from
    /// the first of `sources` that gives it back intact; adds their offsets
    /// to `copied`.
    async fn copy_volume(
        &self,
        volume: i64,
        sources: &[String],
        target: &str,
        copied: &mut HashSet<i64>,
        report: &mut RepairReport,
    ) -> Result<()> {
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
        let mut run = BytesMut::new();
        let mut run_at = 0i64;
        for row in blocks {
            let (id, offset, len): (Vec<u8>, i64, i32) = (row.get(0), row.get(1), row.get(2));
            let Some(id) = BlockId::from_slice(&id) else {
                continue;
            };
            if !copied.insert(offset) {
                continue;
            }
            let Some(record) = self.read_intact(id, volume, offset, len, sources).await else {
                report.blocks_unreadable += 1;
                tracing::error!(%id, volume, "no live replica holds an intact copy");
                continue;
            };
            if !run.is_empty() && (run_at + run.len() as i64 != offset || run.len() >= COPY_BYTES) {
                let bytes = std::mem::take(&mut run).freeze();
                report.bytes_copied += bytes.len() as u64;
                self.write_to(target, volume, run_at, bytes).await?;
            }
            if run.is_empty() {
                run_at = offset;
            }
            run.extend_from_slice(&record);
            report.blocks_copied += 1;
        }
        if !run.is_empty() {
            let bytes = run.freeze();
            report.bytes_copied += bytes.len() as u64;
            self.write_to(target, volume, run_at, bytes).await?;
        }
        Ok(())
    }

    /// Block `id`'s record from the first source with an intact copy.
    pub(super) async fn read_intact(
        &self,
        id: BlockId,
        volume: i64,
        offset: i64,
        len: i32,
        sources: &[String],
    ) -> Option<Bytes> {
        for source in sources {
            match self.read_from(source, volume, offset, len).await {
                Ok(record) if parse_record(id, record.clone()).is_ok() => return Some(record),
                Ok(_) => tracing::warn!(%id, volume, %source, "a damaged copy"),
                Err(e) => tracing::warn!(%id, volume, %source, "unreadable: {e}"),
            }
        }
        None
    }
}
