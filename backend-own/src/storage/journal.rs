//! The namespace journal, its snapshot and its trim point. Each entry,
//! each snapshot and each trim is a record in the volumes (so the volumes alone hold the whole store; see
//! `rebuild`) and a row in the index, which is what reads use. An append
//! holds the writer lock, so checking the head and writing the next entry
//! are one step across threads and processes: appends are create-only.

use bytes::Bytes;
use pouch_backend::{Error, JournalEntry, Result, Seq, Snapshot};
use rusqlite::{OptionalExtension, params};

use super::index::db_error;
use super::volume::RecordKind;
use super::writer::Flock;
use super::{Store, block_index};

impl Store {
    /// Appends entry `seq`; see [`pouch_backend::Backend::append`].
    pub fn append(&self, seq: Seq, data: &[u8]) -> Result<()> {
        if seq == Seq::ZERO {
            return Err(Error::InvalidInput("journal entries are numbered from 1"));
        }
        {
            let mut writer = self.writer.lock().expect("writer lock");
            let writer = &mut *writer;
            let _flock = Flock::acquire(&writer.lock_file)?;
            let mut conn = self.pool.get()?;
            // After the tail check, which may have indexed an entry a
            // writer that died left behind.
            let active = self.prepare_active(&mut writer.active, &mut conn)?;
            let head = block_index::journal_head(&conn)?;
            if seq <= head {
                return Err(Error::SlotTaken(seq));
            }
            if seq != head.next() {
                return Err(Error::Gap { seq, head });
            }
            let placed = self.write_meta_records(
                &mut writer.active,
                &mut conn,
                active,
                &[(RecordKind::Journal, seq.0, data)],
            )?;
            block_index::index_journal_entry(&mut conn, seq, data, placed[0])?;
        }
        self.head.send_if_modified(|known| {
            let newer = seq > *known;
            if newer {
                *known = seq;
            }
            newer
        });
        Ok(())
    }

    /// Drops entries up to `through`; see
    /// [`pouch_backend::Backend::trim_journal`].
    pub fn trim_journal(&self, through: Seq) -> Result<()> {
        let mut writer = self.writer.lock().expect("writer lock");
        let writer = &mut *writer;
        let _flock = Flock::acquire(&writer.lock_file)?;
        let mut conn = self.pool.get()?;
        let folded = self.get_snapshot()?.map(|s| s.seq);
        if folded.is_none_or(|s| s < through) {
            return Err(Error::InvalidInput(
                "a journal is trimmed only up to a snapshot that folds it",
            ));
        }
        if block_index::journal_trim(&conn)? >= through {
            return Ok(());
        }
        let active = self.prepare_active(&mut writer.active, &mut conn)?;
        let point = through.0.to_string();
        let placed = self.write_meta_records(
            &mut writer.active,
            &mut conn,
            active,
            &[(RecordKind::Journal, 0, point.as_bytes())],
        )?;
        block_index::index_trim(&mut conn, through, placed[0])?;
        drop(conn);
        // The dropped entries are garbage a server's compaction takes.
        self.swept.notify_one();
        self.head.send_if_modified(|known| {
            let newer = through > *known;
            if newer {
                *known = through;
            }
            newer
        });
        Ok(())
    }

    /// Reads up to `limit` entries after `after`; see
    /// [`pouch_backend::Backend::read_journal`].
    pub fn read_journal(&self, after: Seq, limit: usize) -> Result<Vec<JournalEntry>> {
        let conn = self.pool.get()?;
        let trim = block_index::journal_trim(&conn)?;
        if after < trim {
            return Err(Error::Trimmed { through: trim });
        }
        let mut stmt = conn
            .prepare_cached("SELECT seq, data FROM journal WHERE seq > ?1 ORDER BY seq LIMIT ?2")
            .map_err(db_error("reading the journal"))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let after = i64::try_from(after.0).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![after, limit], |row| {
                Ok(JournalEntry {
                    seq: Seq(row.get::<_, i64>(0)? as u64),
                    data: Bytes::from(row.get::<_, Vec<u8>>(1)?),
                })
            })
            .map_err(db_error("reading the journal"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(db_error("reading the journal"))
    }

    /// The last entry's number, `Seq::ZERO` for an empty journal.
    pub fn journal_head(&self) -> Result<Seq> {
        block_index::journal_head(&*self.pool.get()?)
    }

    /// Replaces the snapshot; one older than the trim point is refused.
    pub fn put_snapshot(&self, snapshot: &Snapshot) -> Result<()> {
        let mut writer = self.writer.lock().expect("writer lock");
        let writer = &mut *writer;
        let _flock = Flock::acquire(&writer.lock_file)?;
        let mut conn = self.pool.get()?;
        if snapshot.seq < block_index::journal_trim(&conn)? {
            return Err(Error::InvalidInput(
                "a snapshot must fold every entry the journal dropped",
            ));
        }
        let active = self.prepare_active(&mut writer.active, &mut conn)?;
        let placed = self.write_meta_records(
            &mut writer.active,
            &mut conn,
            active,
            &[(RecordKind::Snapshot, snapshot.seq.0, &snapshot.data)],
        )?;
        block_index::index_snapshot(&mut conn, snapshot.seq, &snapshot.data, placed[0])
    }

    /// The snapshot, if one was put.
    pub fn get_snapshot(&self) -> Result<Option<Snapshot>> {
        let conn = self.pool.get()?;
        conn.query_row("SELECT seq, data FROM snapshot WHERE id = 1", [], |row| {
            Ok(Snapshot {
                seq: Seq(row.get::<_, i64>(0)? as u64),
                data: Bytes::from(row.get::<_, Vec<u8>>(1)?),
            })
        })
        .optional()
        .map_err(db_error("reading the snapshot"))
    }
}
