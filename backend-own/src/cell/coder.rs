//! The coder: a sealed volume whose replicas are all on live nodes is
//! re-encoded as Reed–Solomon shards (4 data + 2 parity, `coding.rs`) on
//! six distinct live nodes, a window at a time; the shards are read back
//! and checked; then, in one transaction, the volume becomes `coded` and
//! its replicas are dropped (3× its size on disk becomes 1.5×).
//!
//! The bytes coded are the replicas' bytes, but every indexed block in
//! them is checked on the way (its record names it and hashes right) and
//! taken from another replica when it does not: a damaged copy is never
//! frozen into parity.
//!
//! A put that reserved space in the volume before it was sealed may still
//! index blocks there. The switch share-locks nothing it does not own: it
//! locks the volume's row (puts index under a share lock of it), and codes
//! only if the generation is the one read and every block indexed in the
//! volume was among those coded; otherwise the shards are dropped and the
//! next pass tries again. The switch bumps the generation, so a put
//! indexing after it writes its blocks elsewhere.
//!
//! It runs after repair, under the same coordinator lease, for at most
//! `CellOptions::coding_budget` a pass (one volume at least).

use bytes::Bytes;
use pouch_backend::{BlockId, Error, Result};

use super::backend::{Cell, parse_record};
use super::coding::{self, DATA_SHARDS, SHARDS, WINDOW};
use super::db;
use super::node::{Piece, node_error};
use super::repair::RepairReport;

/// How long a volume whose coding failed waits before it is tried again.
const CODING_RETRY: std::time::Duration = std::time::Duration::from_secs(600);

/// An indexed block of a volume: id, offset, record length.
type Record = (BlockId, i64, i32);

impl Cell {
    /// Codes the sealed volumes that are fully replicated on live nodes,
    /// when at least six live nodes take writes, until
    /// [`CellOptions::coding_budget`](super::CellOptions) is spent; the
    /// rest wait for the next pass.
    pub(super) async fn code_pass(&self, report: &mut RepairReport) -> Result<()> {
        let stop_at = tokio::time::Instant::now() + self.options.coding_budget;
        let mut tried = 0u64;
        let live = self.heard_from().await?;
        let writable: Vec<(i64, String)> = live
            .iter()
            .filter(|(_, _, draining)| !draining)
            .map(|(id, addr, _)| (*id, addr.clone()))
            .collect();
        if writable.len() < SHARDS {
            return Ok(());
        }
        let ids: Vec<i64> = writable.iter().map(|(id, _)| *id).collect();
        let volumes = {
            let client = db::client(&self.pool).await?;
            client
                .query(
                    "SELECT id, replicas, generation, size FROM volumes WHERE state = 'sealed' ORDER BY id",
                    &[],
                )
                .await
                .map_err(db::error("listing sealed volumes"))?
        };
        for row in volumes {
            let (volume, replicas, generation, size): (i64, Vec<i64>, i64, i64) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
            // One with a copy on a dead or draining node is repair's first.
            if replicas.is_empty() || !replicas.iter().all(|r| ids.contains(r)) {
                continue;
            }
            let now = tokio::time::Instant::now();
            if tried > 0 && now >= stop_at {
                report.volumes_waiting_to_code += 1;
                continue;
            }
            if self
                .coding_failed
                .lock()
                .expect("coding failures")
                .get(&volume)
                .is_some_and(|until| *until > now)
            {
                report.volumes_waiting_to_code += 1;
                continue;
            }
            tried += 1;
            let sources: Vec<String> = replicas
                .iter()
                .filter_map(|r| writable.iter().find(|(id, _)| id == r))
                .map(|(_, addr)| addr.clone())
                .collect();
            let targets = super::backend::choose(&ids, SHARDS);
            let target_addrs: Vec<String> = targets
                .iter()
                .filter_map(|t| writable.iter().find(|(id, _)| id == t))
                .map(|(_, addr)| addr.clone())
                .collect();
            let coded = self
                .code_volume(volume, size as u64, &sources, &target_addrs, report)
                .await;
            let switched = match coded {
                Ok(offsets) => {
                    self.switch_to_shards(volume, generation, size as u64, &targets, &offsets)
                        .await
                }
                Err(e) => Err(e),
            };
            match switched {
                Ok(true) => {
                    self.coding_failed
                        .lock()
                        .expect("coding failures")
                        .remove(&volume);
                    report.volumes_coded += 1;
                    report.bytes_coded += size as u64;
                    tracing::info!(volume, shards = ?targets, "volume coded");
                    for addr in &sources {
                        if let Err(e) = self.drop_from(addr, Piece::Replica(volume)).await {
                            tracing::warn!(volume, %addr, "a coded volume's replica stays: {e}");
                        }
                    }
                }
                Ok(false) | Err(_) => {
                    if let Err(e) = switched {
                        tracing::warn!(volume, "coding failed: {e}");
                        // Not again for a while: the verifier or repair
                        // may mend what stopped it meanwhile.
                        self.coding_failed
                            .lock()
                            .expect("coding failures")
                            .insert(volume, now + CODING_RETRY);
                    }
                    report.volumes_waiting_to_code += 1;
                    for (i, addr) in target_addrs.iter().enumerate() {
                        let _ = self.drop_from(addr, Piece::Shard(volume, i)).await;
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes the shards of `volume` (`size` bytes, read from `sources`)
    /// to `targets` (one per shard) and reads them back; returns the
    /// offsets of the blocks coded.
    async fn code_volume(
        &self,
        volume: i64,
        size: u64,
        sources: &[String],
        targets: &[String],
        report: &mut RepairReport,
    ) -> Result<Vec<i64>> {
        if targets.len() != SHARDS {
            return Err(node_error("a chosen node is gone"));
        }
        let records: Vec<Record> = {
            let client = db::client(&self.pool).await?;
            client
                .query(
                    "SELECT id, \"offset\", length FROM blocks WHERE volume = $1 ORDER BY \"offset\"",
                    &[&volume],
                )
                .await
                .map_err(db::error("listing a volume's blocks"))?
                .iter()
                .filter_map(|r| {
                    BlockId::from_slice(&r.get::<_, Vec<u8>>(0)).map(|id| (id, r.get(1), r.get(2)))
                })
                .collect()
        };
        let shard_size = coding::shard_len(size);
        let mut written = vec![blake3::Hasher::new(); SHARDS];
        let mut at = 0;
        while at < shard_size {
            let len = WINDOW.min(shard_size - at);
            let mut data = Vec::with_capacity(DATA_SHARDS);
            for shard in 0..DATA_SHARDS as u64 {
                let start = shard * shard_size + at;
                data.push(
                    self.checked_range(volume, start, len, size, &records, sources, report)
                        .await?,
                );
            }
            let parity = {
                let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
                coding::parity(&refs)?
            };
            let windows: Vec<Bytes> = data.into_iter().chain(parity).map(Bytes::from).collect();
            let writes = windows.iter().enumerate().map(|(i, window)| {
                written[i].update(window);
                self.write_to(
                    &targets[i],
                    Piece::Shard(volume, i),
                    at as i64,
                    window.clone(),
                )
            });
            for result in futures_util::future::join_all(writes).await {
                result?;
            }
            at += len;
        }
        // Read back: what the nodes hold is what was coded.
        for (i, target) in targets.iter().enumerate() {
            let mut read = blake3::Hasher::new();
            let mut at = 0;
            while at < shard_size {
                let len = WINDOW.min(shard_size - at);
                let bytes = self
                    .read_from(target, Piece::Shard(volume, i), at as i64, len as i32)
                    .await?;
                read.update(&bytes);
                at += len;
            }
            if read.finalize() != written[i].finalize() {
                return Err(node_error(format!(
                    "{target} gave back another shard {i} of volume {volume} than was written"
                )));
            }
        }
        Ok(records.iter().map(|(_, offset, _)| *offset).collect())
    }

    /// Bytes `[start, start + len)` of `volume` (`size` bytes; zeros past
    /// it) from its replicas, with every indexed block overlapping the
    /// range checked and, if damaged there, taken from another replica.
    #[allow(clippy::too_many_arguments)]
    async fn checked_range(
        &self,
        volume: i64,
        start: u64,
        len: u64,
        size: u64,
        records: &[Record],
        sources: &[String],
        report: &mut RepairReport,
    ) -> Result<Vec<u8>> {
        let mut bytes = vec![0u8; len as usize];
        let end = start + len;
        let mut raw = false;
        if start < size {
            let want = (size.min(end) - start) as i32;
            for source in sources {
                // A replica whose file ends early (a put that failed at the
                // end of the volume) answers 404: the next one may not.
                if let Ok(read) = self.read_from(source, volume, start as i64, want).await {
                    bytes[..want as usize].copy_from_slice(&read);
                    raw = true;
                    break;
                }
            }
        }
        let first =
            records.partition_point(|(_, offset, len)| (*offset + i64::from(*len)) as u64 <= start);
        for (id, offset, rlen) in &records[first..] {
            let (rstart, rend) = (*offset as u64, *offset as u64 + *rlen as u64);
            if rstart >= end {
                break;
            }
            let inside = rstart >= start && rend <= end;
            if inside && raw {
                let slice = &bytes[(rstart - start) as usize..(rend - start) as usize];
                if parse_record(*id, Bytes::copy_from_slice(slice)).is_ok() {
                    continue;
                }
            }
            let Some(record) = self.read_intact(*id, volume, *offset, *rlen, sources).await else {
                report.blocks_unreadable += 1;
                return Err(Error::Corrupt {
                    id: *id,
                    reason: "no replica holds an intact copy to code",
                });
            };
            let (from, to) = (rstart.max(start), rend.min(end));
            bytes[(from - start) as usize..(to - start) as usize]
                .copy_from_slice(&record[(from - rstart) as usize..(to - rstart) as usize]);
        }
        Ok(bytes)
    }

    /// Makes `volume` coded on `shards` if it is still as coded: the
    /// generation read, sealed, and no block indexed in it since but at
    /// `offsets`. `false` when it changed.
    async fn switch_to_shards(
        &self,
        volume: i64,
        generation: i64,
        size: u64,
        shards: &[i64],
        offsets: &[i64],
    ) -> Result<bool> {
        let mut client = db::client(&self.pool).await?;
        let tx = client
            .transaction()
            .await
            .map_err(db::error("coding a volume"))?;
        let row = tx
            .query_one(
                "SELECT generation, state FROM volumes WHERE id = $1 FOR UPDATE",
                &[&volume],
            )
            .await
            .map_err(db::error("coding a volume"))?;
        let (now, state): (i64, String) = (row.get(0), row.get(1));
        if now != generation || state != "sealed" {
            return Ok(false);
        }
        let late: i64 = tx
            .query_one(
                "SELECT count(*) FROM blocks WHERE volume = $1 AND NOT (\"offset\" = ANY($2))",
                &[&volume, &offsets],
            )
            .await
            .map_err(db::error("coding a volume"))?
            .get(0);
        if late > 0 {
            return Ok(false);
        }
        tx.execute(
            "UPDATE volumes SET state = 'coded', shards = $2, shard_size = $3, replicas = '{}', \
             generation = generation + 1 WHERE id = $1",
            &[&volume, &shards, &(coding::shard_len(size) as i64)],
        )
        .await
        .map_err(db::error("coding a volume"))?;
        tx.commit().await.map_err(db::error("coding a volume"))?;
        Ok(true)
    }
}
