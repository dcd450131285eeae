//! The namespace journal and its snapshot, kept in the store's index
//! database: an append is one transaction whose primary key makes it
//! create-only across threads and processes.

use bytes::Bytes;
use pouch_backend::{Error, JournalEntry, Result, Seq, Snapshot};
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::Store;
use super::index::db_error;

impl Store {
    /// Appends entry `seq`; see [`pouch_backend::Backend::append`].
    pub fn append(&self, seq: Seq, data: &[u8]) -> Result<()> {
        if seq == Seq::ZERO {
            return Err(Error::InvalidInput("journal entries are numbered from 1"));
        }
        let mut conn = self.pool.get()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_error("appending to the journal"))?;
        let head = Seq(tx
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM journal", [], |row| {
                row.get::<_, i64>(0)
            })
            .map_err(db_error("appending to the journal"))? as u64);
        if seq <= head {
            return Err(Error::SlotTaken(seq));
        }
        if seq != head.next() {
            return Err(Error::Gap { seq, head });
        }
        tx.execute(
            "INSERT INTO journal (seq, data) VALUES (?1, ?2)",
            params![seq.0 as i64, data],
        )
        .map_err(db_error("appending to the journal"))?;
        tx.commit().map_err(db_error("appending to the journal"))?;
        self.head.send_if_modified(|known| {
            let newer = seq > *known;
            if newer {
                *known = seq;
            }
            newer
        });
        Ok(())
    }

    /// Reads up to `limit` entries after `after`; see
    /// [`pouch_backend::Backend::read_journal`].
    pub fn read_journal(&self, after: Seq, limit: usize) -> Result<Vec<JournalEntry>> {
        let conn = self.pool.get()?;
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
        let conn = self.pool.get()?;
        let head = conn
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM journal", [], |row| {
                row.get::<_, i64>(0)
            })
            .map_err(db_error("reading the journal head"))?;
        Ok(Seq(head as u64))
    }

    /// Replaces the snapshot.
    pub fn put_snapshot(&self, snapshot: &Snapshot) -> Result<()> {
        let conn = self.pool.get()?;
        conn.execute(
            "INSERT OR REPLACE INTO snapshot (id, seq, data) VALUES (1, ?1, ?2)",
            params![snapshot.seq.0 as i64, &snapshot.data[..]],
        )
        .map_err(db_error("storing the snapshot"))?;
        Ok(())
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
