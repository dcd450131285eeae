//! Compaction: volumes whose dead bytes pass a threshold are rewritten —
//! their live blocks copied (verified) to the active volume, the index
//! moved in one transaction — and then deleted, so the disk space really
//! comes back.
//!
//! Crash safety: copies become visible only with the index commit; a crash
//! before it leaves copies that the next writer's tail recovery counts as
//! garbage; a crash after it leaves an orphan file, removed by the next
//! compaction.

use std::collections::HashSet;
use std::os::unix::fs::FileExt;

use pouch_backend::{Block, BlockId, Error, Result};
use rusqlite::{TransactionBehavior, params};

use super::index::db_error;
use super::lifecycle::active_file;
use super::volume::{RECORD_HEADER_LEN, VOLUME_HEADER_LEN, push_block_record};
use super::writer::Flock;
use super::{Location, Store, fsync_dir, located_block};

/// What one compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactReport {
    /// Volumes rewritten and deleted.
    pub volumes: u64,
    /// Live blocks copied.
    pub blocks_moved: u64,
    /// File bytes given back to the file system.
    pub bytes_reclaimed: u64,
    /// Volumes left alone because a live block in them is corrupt
    /// (compaction never copies or drops a damaged block).
    pub skipped_corrupt: Vec<u64>,
}

impl Store {
    /// Rewrites every volume whose garbage is at least `threshold` (0..=1)
    /// of its length.
    pub fn compact(&self, threshold: f64) -> Result<CompactReport> {
        let mut writer = self.writer.lock().expect("writer lock");
        let writer = &mut *writer;
        let _flock = Flock::acquire(&writer.lock_file)?;
        let mut conn = self.pool.get()?;
        let mut report = CompactReport::default();
        self.remove_orphan_volumes(&conn, &mut report)?;
        let mut active = self.prepare_active(&mut writer.active, &mut conn)?;

        let candidates: Vec<(u64, u64)> = {
            let mut stmt = conn
                .prepare("SELECT id, length FROM volumes WHERE length > ?1 AND garbage >= length * ?2 ORDER BY id")
                .map_err(db_error("choosing volumes to compact"))?;
            stmt.query_map(params![VOLUME_HEADER_LEN as i64, threshold], |row| {
                Ok((row.get::<_, i64>(0)? as u64, row.get::<_, i64>(1)? as u64))
            })
            .and_then(|rows| rows.collect())
            .map_err(db_error("choosing volumes to compact"))?
        };
        for (volume, length) in candidates {
            if volume == active.id {
                // The active volume cannot be deleted: start a new one.
                active = self.roll(&mut writer.active, &mut conn, &active)?;
            }
            let live: Vec<(BlockId, Location)> = self.live_blocks(&conn, volume)?;
            let mut blocks = Vec::with_capacity(live.len());
            let mut corrupt = false;
            for (id, loc) in &live {
                match self
                    .read_block_at(*id, *loc)
                    .and_then(|b| b.verify().map(|()| b))
                {
                    Ok(block) => blocks.push(block),
                    Err(Error::Corrupt { .. }) => {
                        tracing::error!(volume, block = %id, "not compacting a volume with a corrupt block");
                        corrupt = true;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            if corrupt {
                report.skipped_corrupt.push(volume);
                continue;
            }
            // Copy in pieces that fit the active volume, each made durable
            // before the index moves to it.
            let mut moved = Vec::with_capacity(blocks.len());
            let mut piece: Vec<&Block> = Vec::new();
            let mut piece_len = 0u64;
            for block in &blocks {
                let record = RECORD_HEADER_LEN + block.payload().len() as u64;
                if active.len + piece_len + record > self.options.volume_size
                    && active.len + piece_len > VOLUME_HEADER_LEN
                {
                    moved.extend(self.copy_records(&writer.active, &mut active, &piece)?);
                    piece.clear();
                    piece_len = 0;
                    active = self.roll(&mut writer.active, &mut conn, &active)?;
                }
                piece.push(block);
                piece_len += record;
            }
            moved.extend(self.copy_records(&writer.active, &mut active, &piece)?);

            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_error("moving compacted blocks"))?;
            for (id, new_volume, offset) in &moved {
                tx.execute(
                    "UPDATE blocks SET volume = ?2, offset = ?3 WHERE id = ?1",
                    params![id.as_bytes(), *new_volume as i64, *offset as i64],
                )
                .map_err(db_error("moving compacted blocks"))?;
            }
            for (new_volume, end) in ends(&moved, &blocks) {
                tx.execute(
                    "UPDATE volumes SET length = MAX(length, ?2) WHERE id = ?1",
                    params![new_volume as i64, end as i64],
                )
                .map_err(db_error("moving compacted blocks"))?;
            }
            tx.execute("DELETE FROM volumes WHERE id = ?1", [volume as i64])
                .map_err(db_error("moving compacted blocks"))?;
            tx.commit().map_err(db_error("moving compacted blocks"))?;

            self.delete_volume_file(volume)?;
            report.volumes += 1;
            report.blocks_moved += moved.len() as u64;
            report.bytes_reclaimed += length;
            tracing::info!(volume, blocks = moved.len(), "compacted a volume");
        }
        Ok(report)
    }

    fn live_blocks(
        &self,
        conn: &rusqlite::Connection,
        volume: u64,
    ) -> Result<Vec<(BlockId, Location)>> {
        let mut stmt = conn
            .prepare(
                "SELECT id, volume, offset, length FROM blocks WHERE volume = ?1 ORDER BY offset",
            )
            .map_err(db_error("listing a volume's blocks"))?;
        stmt.query_map([volume as i64], located_block)
            .and_then(|rows| rows.collect())
            .map_err(db_error("listing a volume's blocks"))
    }

    /// Appends records for `blocks` to the active volume and fsyncs;
    /// returns where each landed. The index is not touched.
    fn copy_records(
        &self,
        handle: &Option<(u64, std::fs::File)>,
        active: &mut super::writer::Active,
        blocks: &[&Block],
    ) -> Result<Vec<(BlockId, u64, u64)>> {
        if blocks.is_empty() {
            return Ok(Vec::new());
        }
        let file = active_file(handle, active.id);
        let mut buf = Vec::new();
        let mut placed = Vec::with_capacity(blocks.len());
        let mut offset = active.len;
        for block in blocks {
            placed.push((block.id(), active.id, offset));
            offset += push_block_record(&mut buf, block);
        }
        file.write_all_at(&buf, active.len)
            .map_err(Error::io("writing a volume"))?;
        file.sync_data().map_err(Error::io("syncing a volume"))?;
        active.len = offset;
        Ok(placed)
    }

    fn delete_volume_file(&self, volume: u64) -> Result<()> {
        self.readers.lock().expect("readers lock").remove(&volume);
        match std::fs::remove_file(self.volume_path(volume)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("deleting a compacted volume")(e)),
        }
        fsync_dir(&self.dir.join("volumes"))
    }

    /// Deletes volume files the index no longer names (a compaction that
    /// crashed between its commit and the unlink). Files numbered above
    /// every known volume are left: a writer may be creating one.
    fn remove_orphan_volumes(
        &self,
        conn: &rusqlite::Connection,
        report: &mut CompactReport,
    ) -> Result<()> {
        let known: HashSet<u64> = {
            let mut stmt = conn
                .prepare("SELECT id FROM volumes")
                .map_err(db_error("listing volumes"))?;
            stmt.query_map([], |row| row.get::<_, i64>(0).map(|v| v as u64))
                .and_then(|rows| rows.collect())
                .map_err(db_error("listing volumes"))?
        };
        let Some(&newest) = known.iter().max() else {
            return Ok(());
        };
        let listing =
            std::fs::read_dir(self.dir.join("volumes")).map_err(Error::io("listing volumes"))?;
        for entry in listing {
            let entry = entry.map_err(Error::io("listing volumes"))?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".vol"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if id < newest && !known.contains(&id) {
                let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
                tracing::warn!(
                    volume = id,
                    "removing a volume left by an interrupted compaction"
                );
                self.delete_volume_file(id)?;
                report.bytes_reclaimed += len;
            }
        }
        Ok(())
    }
}

/// The end offset of the moved records in each volume they landed in.
fn ends(moved: &[(BlockId, u64, u64)], blocks: &[Block]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for ((_, volume, offset), block) in moved.iter().zip(blocks) {
        let end = offset + RECORD_HEADER_LEN + block.payload().len() as u64;
        match out.iter_mut().find(|(v, _)| v == volume) {
            Some((_, e)) => *e = (*e).max(end),
            None => out.push((*volume, end)),
        }
    }
    out
}
