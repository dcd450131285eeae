//! The store's half of garbage collection (see [`pouch_backend::gc`]): the
//! collector's lease, marks, revival and the conditional sweep.
//!
//! Every change to marks, the lease and the blocks table that a sweep
//! depends on happens under the store's writer lock (the mutex and the
//! cross-process file lock): a sweep decides and deletes in one hold of
//! it, so no put or `has_blocks` revival can land between its check of a
//! block's mark and the block's tombstone.

use pouch_backend::gc::now_ms;
use pouch_backend::{BlockId, Error, GcLease, LeaseRequest, Result, StoredBlock, SweepReport};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::index::db_error;
use super::volume::{RECORD_HEADER_LEN, RecordHeader, RecordKind};
use super::writer::Flock;
use super::{Store, block_index};

/// The lease row: holder, generation, expiry.
type LeaseRow = (String, u64, i64);

fn lease_row(conn: &Connection) -> Result<Option<LeaseRow>> {
    conn.query_row(
        "SELECT holder, generation, expires_ms FROM gc_lease WHERE id = 1",
        [],
        |row| Ok((row.get(0)?, row.get::<_, i64>(1)? as u64, row.get(2)?)),
    )
    .optional()
    .map_err(db_error("reading the collector's lease"))
}

/// Refuses unless `generation` is the current, unexpired lease at `now`.
fn check_lease(conn: &Connection, generation: u64, now: i64) -> Result<()> {
    match lease_row(conn)? {
        Some((_, held, expires)) if held == generation && expires > now => Ok(()),
        Some((holder, held, _)) if held != generation => Err(Error::Fenced(format!(
            "the lease was taken by {holder} (generation {held}; this collector has {generation})"
        ))),
        _ => Err(Error::Fenced(format!(
            "lease generation {generation} expired; take the lease again"
        ))),
    }
}

impl Store {
    /// Refuses with [`Error::Fenced`] unless `generation` is the current,
    /// unexpired lease (for work a collector does outside marks and
    /// sweeps, such as compacting after them).
    pub fn gc_check_lease(&self, generation: u64) -> Result<()> {
        check_lease(&*self.pool.get()?, generation, now_ms())
    }

    /// See [`pouch_backend::Backend::gc_lease`].
    pub fn gc_lease(&self, request: &LeaseRequest) -> Result<GcLease> {
        let writer = self.writer.lock().expect("writer lock");
        let _flock = Flock::acquire(&writer.lock_file)?;
        let mut conn = self.pool.get()?;
        let context = "writing the collector's lease";
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_error(context))?;
        let now = now_ms();
        let ttl = i64::try_from(request.ttl.as_millis()).unwrap_or(i64::MAX / 2);
        let current = lease_row(&tx)?;
        let generation = match (request.generation, &current) {
            (None, Some((holder, _, expires))) if *expires > now => {
                return Err(Error::Fenced(format!(
                    "{holder} holds the collector's lease for {} s more",
                    (expires - now + 999) / 1000
                )));
            }
            (None, current) => {
                // Higher than any before, and than the clock: a lease table
                // rebuilt empty still never hands out an old generation.
                let last = current.as_ref().map_or(0, |(_, g, _)| *g);
                (last + 1).max(now as u64)
            }
            (Some(generation), _) => {
                check_lease(&tx, generation, now)?;
                generation
            }
        };
        let expires = if ttl == 0 { 0 } else { now + ttl };
        tx.execute(
            "INSERT OR REPLACE INTO gc_lease (id, holder, generation, expires_ms) VALUES (1, ?1, ?2, ?3)",
            params![request.holder, generation as i64, expires],
        )
        .map_err(db_error(context))?;
        tx.commit().map_err(db_error(context))?;
        Ok(GcLease {
            generation,
            expires_ms: expires,
            now_ms: now,
        })
    }

    /// See [`pouch_backend::Backend::gc_list`].
    pub fn gc_list(&self, after: Option<BlockId>, limit: usize) -> Result<Vec<StoredBlock>> {
        let conn = self.pool.get()?;
        let context = "listing blocks";
        let after = after.map(|id| id.as_bytes().to_vec()).unwrap_or_default();
        let mut stmt = conn
            .prepare_cached(
                "SELECT b.id, b.length, m.time_ms FROM blocks b LEFT JOIN gc_marks m ON m.id = b.id
                 WHERE b.id > ?1 ORDER BY b.id LIMIT ?2",
            )
            .map_err(db_error(context))?;
        let rows = stmt
            .query_map(params![after, limit.min(i64::MAX as usize) as i64], |row| {
                let id: Vec<u8> = row.get(0)?;
                Ok((id, row.get::<_, i64>(1)?, row.get::<_, Option<i64>>(2)?))
            })
            .map_err(db_error(context))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, length, marked_ms) = row.map_err(db_error(context))?;
            let id = BlockId::from_slice(&id).ok_or(Error::Format {
                what: "the block index holds an id that is not 32 bytes".into(),
            })?;
            out.push(StoredBlock {
                id,
                stored_len: RECORD_HEADER_LEN + length as u64,
                marked_ms,
            });
        }
        Ok(out)
    }

    /// See [`pouch_backend::Backend::gc_mark`].
    pub fn gc_mark(&self, generation: u64, mark: &[BlockId], unmark: &[BlockId]) -> Result<()> {
        let writer = self.writer.lock().expect("writer lock");
        let _flock = Flock::acquire(&writer.lock_file)?;
        let mut conn = self.pool.get()?;
        let context = "marking blocks";
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_error(context))?;
        let now = now_ms();
        check_lease(&tx, generation, now)?;
        {
            let mut add = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO gc_marks (id, time_ms) SELECT id, ?2 FROM blocks WHERE id = ?1",
                )
                .map_err(db_error(context))?;
            for id in mark {
                add.execute(params![id.as_bytes(), now])
                    .map_err(db_error(context))?;
            }
            let mut remove = tx
                .prepare_cached("DELETE FROM gc_marks WHERE id = ?1")
                .map_err(db_error(context))?;
            for id in unmark {
                remove.execute([id.as_bytes()]).map_err(db_error(context))?;
            }
        }
        tx.commit().map_err(db_error(context))
    }

    /// See [`pouch_backend::Backend::gc_sweep`]. Decides and deletes in one
    /// hold of the writer lock; the tombstones are durable in the active
    /// volume before the index forgets the blocks, as for any delete.
    pub fn gc_sweep(
        &self,
        generation: u64,
        ids: &[BlockId],
        marked_by_ms: i64,
    ) -> Result<SweepReport> {
        let mut writer = self.writer.lock().expect("writer lock");
        let writer = &mut *writer;
        let _flock = Flock::acquire(&writer.lock_file)?;
        let mut conn = self.pool.get()?;
        let active = self.prepare_active(&mut writer.active, &mut conn)?;
        check_lease(&conn, generation, now_ms())?;

        let context = "choosing blocks to sweep";
        let mut doomed: Vec<(BlockId, u64, u64)> = Vec::new();
        {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT b.volume, b.length FROM blocks b JOIN gc_marks m ON m.id = b.id
                     WHERE b.id = ?1 AND m.time_ms <= ?2",
                )
                .map_err(db_error(context))?;
            let mut seen = std::collections::HashSet::new();
            for id in ids.iter().filter(|id| seen.insert(**id)) {
                let row = stmt
                    .query_row(params![id.as_bytes(), marked_by_ms], |row| {
                        Ok((row.get::<_, i64>(0)? as u64, row.get::<_, i64>(1)? as u64))
                    })
                    .optional()
                    .map_err(db_error(context))?;
                if let Some((volume, length)) = row {
                    doomed.push((*id, volume, length));
                }
            }
        }
        let report = SweepReport {
            blocks: doomed.len() as u64,
            bytes: doomed
                .iter()
                .map(|(_, _, len)| RECORD_HEADER_LEN + len)
                .sum(),
        };
        if doomed.is_empty() {
            return Ok(report);
        }
        self.write_deletes(writer, &mut conn, &active, &doomed)?;
        self.swept.notify_one();
        tracing::info!(
            blocks = report.blocks,
            bytes = report.bytes,
            "swept garbage blocks"
        );
        Ok(report)
    }

    /// Takes the marks of those of `ids` that have one, under the writer
    /// lock (after recovering a tail a crashed writer left, which may hold
    /// a sweep's tombstones), and answers which are stored: what
    /// `has_blocks` answers when it names a marked block.
    pub(super) fn revive_and_check(&self, ids: &[BlockId]) -> Result<Vec<bool>> {
        let mut writer = self.writer.lock().expect("writer lock");
        let writer = &mut *writer;
        let _flock = Flock::acquire(&writer.lock_file)?;
        let mut conn = self.pool.get()?;
        self.prepare_active(&mut writer.active, &mut conn)?;
        block_index::revive(&mut conn, ids)?;
        ids.iter()
            .map(|id| block_index::is_stored(&conn, id))
            .collect()
    }

    /// Whether any of `ids` is marked, in one read.
    pub(super) fn any_marked(conn: &Connection, ids: &[BlockId]) -> Result<bool> {
        let context = "checking for marked blocks";
        if block_index::nothing_marked(conn)? {
            return Ok(false);
        }
        let mut stmt = conn
            .prepare_cached("SELECT 1 FROM gc_marks WHERE id = ?1")
            .map_err(db_error(context))?;
        for id in ids {
            if stmt.exists([id.as_bytes()]).map_err(db_error(context))? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// The tombstone record of a deleted block.
pub(super) fn tombstone(id: BlockId) -> RecordHeader {
    RecordHeader {
        kind: RecordKind::Tombstone,
        codec: pouch_backend::Codec::Raw,
        payload_len: 0,
        id,
    }
}
