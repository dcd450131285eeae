//! Compaction: volumes whose dead bytes pass a threshold are rewritten —
//! their live records (blocks, journal entries, the snapshot) copied,
//! verified, to the active volume, the index moved in one transaction —
//! and then deleted, so the disk space really comes back.
//!
//! Crash safety: copies become visible only with the index commit; a crash
//! before it leaves copies that the next writer's tail recovery counts as
//! garbage; a crash after it leaves an orphan file, removed by the next
//! compaction.

use std::collections::HashSet;
use std::os::unix::fs::FileExt;

use bytes::Bytes;
use pouch_backend::{BlockId, Error, Result};
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::block_index::{self, meta_record_len};
use super::index::db_error;
use super::lifecycle::active_file;
use super::volume::{
    RECORD_HEADER_LEN, RecordHeader, RecordKind, VOLUME_HEADER_LEN, payload_is_intact, read_record,
};
use super::writer::Flock;
use super::{Store, fsync_dir, located_block};

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
            if block_index::has_quarantined(&conn, volume)? {
                // Quarantined blocks are kept, not dropped: leave the volume.
                report.skipped_corrupt.push(volume);
                continue;
            }
            let live = live_records(&conn, volume)?;
            let mut records = Vec::with_capacity(live.len());
            let mut corrupt = false;
            for record in &live {
                match self.read_live(volume, record)? {
                    Some(read) => records.push(read),
                    None => {
                        tracing::error!(
                            volume,
                            offset = record.offset,
                            "not compacting a volume with a corrupt record"
                        );
                        corrupt = true;
                        break;
                    }
                }
            }
            if corrupt {
                report.skipped_corrupt.push(volume);
                continue;
            }
            // Copy in pieces that fit the active volume, each made durable
            // before the index moves to it.
            let mut moved: Vec<(u64, u64, u64)> = Vec::with_capacity(records.len());
            let mut piece: Vec<&(RecordHeader, Bytes)> = Vec::new();
            let mut piece_len = 0u64;
            for record in &records {
                let len = record.0.record_len();
                if active.len + piece_len + len > self.options.volume_size
                    && active.len + piece_len > VOLUME_HEADER_LEN
                {
                    moved.extend(self.copy_records(&writer.active, &mut active, &piece)?);
                    piece.clear();
                    piece_len = 0;
                    active = self.roll(&mut writer.active, &mut conn, &active)?;
                }
                piece.push(record);
                piece_len += len;
            }
            moved.extend(self.copy_records(&writer.active, &mut active, &piece)?);

            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_error("moving compacted records"))?;
            for (record, (new_volume, offset, end)) in live.iter().zip(&moved) {
                let (sql, key) = match record.what {
                    Live::Block(id) => (
                        "UPDATE blocks SET volume = ?2, offset = ?3 WHERE id = ?1",
                        rusqlite::types::Value::Blob(id.as_bytes().to_vec()),
                    ),
                    Live::Journal(seq) => (
                        "UPDATE journal SET volume = ?2, offset = ?3 WHERE seq = ?1",
                        rusqlite::types::Value::Integer(seq as i64),
                    ),
                    Live::Snapshot => (
                        "UPDATE snapshot SET volume = ?2, offset = ?3 WHERE id = ?1",
                        rusqlite::types::Value::Integer(1),
                    ),
                };
                tx.execute(sql, params![key, *new_volume as i64, *offset as i64])
                    .map_err(db_error("moving compacted records"))?;
                tx.execute(
                    "UPDATE volumes SET length = MAX(length, ?2) WHERE id = ?1",
                    params![*new_volume as i64, *end as i64],
                )
                .map_err(db_error("moving compacted records"))?;
            }
            tx.execute("DELETE FROM volumes WHERE id = ?1", [volume as i64])
                .map_err(db_error("moving compacted records"))?;
            tx.commit().map_err(db_error("moving compacted records"))?;

            self.delete_volume_file(volume)?;
            report.volumes += 1;
            report.blocks_moved += live
                .iter()
                .filter(|r| matches!(r.what, Live::Block(_)))
                .count() as u64;
            report.bytes_reclaimed += length;
            tracing::info!(volume, records = moved.len(), "compacted a volume");
        }
        report.bytes_reclaimed += shrink_index(&conn)?;
        Ok(report)
    }

    /// Reads a live record of `volume`, `None` if it is damaged.
    fn read_live(&self, volume: u64, record: &LiveRecord) -> Result<Option<(RecordHeader, Bytes)>> {
        let file = self.reader(volume)?;
        let read = match read_record(&file, record.offset, record.offset + record.len) {
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => None,
            Err(e) => return Err(Error::io("reading a volume")(e)),
        };
        Ok(read.filter(|(header, payload)| {
            let right = match record.what {
                Live::Block(id) => header.kind == RecordKind::Block && header.id == id,
                Live::Journal(_) => header.kind == RecordKind::Journal,
                Live::Snapshot => header.kind == RecordKind::Snapshot,
            };
            right && payload_is_intact(header, payload)
        }))
    }

    /// Appends `records` to the active volume and fsyncs; returns where
    /// each landed (volume, offset, end). The index is not touched.
    fn copy_records(
        &self,
        handle: &Option<(u64, std::fs::File)>,
        active: &mut super::writer::Active,
        records: &[&(RecordHeader, Bytes)],
    ) -> Result<Vec<(u64, u64, u64)>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let file = active_file(handle, active.id);
        let mut buf = Vec::new();
        let mut placed = Vec::with_capacity(records.len());
        let mut offset = active.len;
        for (header, payload) in records {
            buf.extend_from_slice(&header.encode());
            buf.extend_from_slice(payload);
            let end = offset + header.record_len();
            placed.push((active.id, offset, end));
            offset = end;
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
        for id in super::rebuild::volume_ids(&self.dir)? {
            if id < newest && !known.contains(&id) {
                let len = std::fs::metadata(self.volume_path(id)).map_or(0, |m| m.len());
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

/// What a live record of a volume is.
#[derive(Debug, Clone, Copy)]
enum Live {
    Block(BlockId),
    Journal(u64),
    Snapshot,
}

/// Rewrites the index database when most of its pages are free (after a
/// collection deleted most blocks, or a trim most of the journal: SQLite
/// keeps freed pages in the file), and returns the bytes that gave back.
/// Small indexes and mostly full ones are left alone.
fn shrink_index(conn: &rusqlite::Connection) -> Result<u64> {
    let context = "shrinking the index";
    let pragma = |name: &str| -> Result<u64> {
        conn.query_row(&format!("PRAGMA {name}"), [], |row| row.get::<_, i64>(0))
            .map(|v| v as u64)
            .map_err(db_error(context))
    };
    let (pages, free, page_size) = (
        pragma("page_count")?,
        pragma("freelist_count")?,
        pragma("page_size")?,
    );
    if pages < 1024 || free * 2 < pages {
        return Ok(0);
    }
    conn.execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")
        .map_err(db_error(context))?;
    let after = pragma("page_count")?;
    tracing::info!(pages, after, "shrank the index");
    Ok(pages.saturating_sub(after) * page_size)
}

/// A record the index still names: what it is, where, and how long.
#[derive(Debug, Clone, Copy)]
struct LiveRecord {
    what: Live,
    offset: u64,
    len: u64,
}

/// Every record of `volume` the index names (blocks, journal entries, the
/// snapshot), in file order.
fn live_records(conn: &rusqlite::Connection, volume: u64) -> Result<Vec<LiveRecord>> {
    let context = "listing a volume's records";
    let mut out: Vec<LiveRecord> = {
        let mut stmt = conn
            .prepare("SELECT id, volume, offset, length FROM blocks WHERE volume = ?1")
            .map_err(db_error(context))?;
        stmt.query_map([volume as i64], located_block)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(db_error(context))?
            .into_iter()
            .map(|(id, loc)| LiveRecord {
                what: Live::Block(id),
                offset: loc.offset,
                len: RECORD_HEADER_LEN + loc.payload_len,
            })
            .collect()
    };
    let mut stmt = conn
        .prepare("SELECT seq, offset, length(data) FROM journal WHERE volume = ?1")
        .map_err(db_error(context))?;
    let entries = stmt
        .query_map([volume as i64], |row| {
            Ok(LiveRecord {
                what: Live::Journal(row.get::<_, i64>(0)? as u64),
                offset: row.get::<_, i64>(1)? as u64,
                len: meta_record_len(row.get::<_, i64>(2)? as u64),
            })
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(db_error(context))?;
    out.extend(entries);
    let snapshot = conn
        .query_row(
            "SELECT offset, length(data) FROM snapshot WHERE id = 1 AND volume = ?1",
            [volume as i64],
            |row| {
                Ok(LiveRecord {
                    what: Live::Snapshot,
                    offset: row.get::<_, i64>(0)? as u64,
                    len: meta_record_len(row.get::<_, i64>(1)? as u64),
                })
            },
        )
        .optional()
        .map_err(db_error(context))?;
    out.extend(snapshot);
    out.sort_by_key(|r| r.offset);
    Ok(out)
}
