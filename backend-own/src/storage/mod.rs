//! The block store on a local folder: volumes, their index, the journal.
//!
//! ```text
//! STORE/identity         the store's id (see `identity`)
//! STORE/index.sqlite     block index, volume table, journal, snapshot, counters
//! STORE/lock             advisory lock that serialises writers across processes
//! STORE/volumes/N.vol    append-only volume files (see `volume`): blocks,
//!                        deletes, journal entries and snapshots
//! ```
//!
//! The volumes hold everything; the index is a copy for fast lookups and is
//! rebuilt from them when it is lost (see `rebuild`).
//!
//! The same [`Store`] is opened in-process by the embedded backend and
//! (in its own issue) served over HTTP by `pouch-store`. Any number of
//! threads and processes may open one folder at once: writers take the lock
//! file, the index is SQLite in WAL mode, and readers only read bytes the
//! index names, which are immutable once written.

mod block_index;
mod compact;
mod delete;
mod gc;
mod identity;
mod index;
mod journal;
mod lifecycle;
mod rebuild;
mod recovery;
mod scrub;
mod volume;
mod writer;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use pouch_backend::{Block, BlockId, Error, Result, Seq};
use rusqlite::OptionalExtension;
use tokio::sync::watch;

pub use compact::CompactReport;
pub(crate) use identity::identity_path;
pub use rebuild::RebuildReport;
pub use scrub::ScrubStep;
pub use volume::FORMAT_VERSION;
use volume::{RECORD_HEADER_LEN, RecordKind, check_volume_header, read_record};

/// Tunables of a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// A volume is sealed and a new one started once it would grow past
    /// this many bytes.
    pub volume_size: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            volume_size: 1 << 30,
        }
    }
}

/// Where a block's record sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// The volume's number.
    pub volume: u64,
    /// Offset of the record header in the volume file.
    pub offset: u64,
    /// Offset of the payload.
    pub payload_offset: u64,
    /// Length of the payload.
    pub payload_len: u64,
}

/// Figures about a store, for `stats`, tests and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Blocks stored now.
    pub blocks: u64,
    /// Payload bytes of the blocks stored now.
    pub payload_bytes: u64,
    /// Volume files.
    pub volumes: u64,
    /// Bytes of dead records waiting for compaction.
    pub garbage_bytes: u64,
    /// Blocks ever appended (a put of a stored block appends nothing).
    pub blocks_written: u64,
    /// Bytes ever appended for blocks, headers included.
    pub bytes_written: u64,
    /// Appends of blocks to a volume, each one fsync and one index commit;
    /// fewer than puts when group commit merged concurrent puts.
    pub append_groups: u64,
    /// Blocks ever deleted.
    pub blocks_deleted: u64,
    /// Torn tails found and cut after crashes.
    pub torn_tails_cut: u64,
    /// The journal's last entry.
    pub journal_head: Seq,
    /// Blocks in quarantine: found damaged and not sent again yet.
    pub quarantined: u64,
}

/// What [`Store::verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Blocks read back and hashed.
    pub checked: u64,
    /// Blocks whose bytes are damaged or missing, with the reason
    /// (quarantined now).
    pub corrupt: Vec<(BlockId, String)>,
    /// Blocks in quarantine after the check, this one's and earlier ones'.
    pub quarantined: u64,
}

/// A block store on a local folder.
pub struct Store {
    dir: PathBuf,
    options: StoreOptions,
    pool: index::Pool,
    writer: Mutex<writer::Writer>,
    /// Puts waiting for the next group commit.
    put_queue: Mutex<Vec<Arc<writer::PutRequest>>>,
    readers: Mutex<HashMap<u64, Arc<File>>>,
    /// The highest journal entry this process appended or saw, so that
    /// in-process waiters wake at once.
    head: watch::Sender<Seq>,
    /// Told when a sweep deleted blocks, so that compaction (the server's
    /// worker) gives the space back soon rather than at its next round.
    swept: tokio::sync::Notify,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store in `dir`, creating it if needed.
    ///
    /// Fails with [`Error::Format`] if the folder holds a store of a newer
    /// format. If a writer died mid-append, its torn tail is cut here.
    pub fn open(dir: &Path, options: StoreOptions) -> Result<Self> {
        std::fs::create_dir_all(dir.join("volumes"))
            .map_err(Error::io("creating the store folder"))?;
        let lock_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("lock"))
            .map_err(Error::io("opening the store's lock file"))?;
        let index = dir.join(rebuild::INDEX_FILE);
        if !index.exists() && rebuild::has_volumes(dir)? {
            let _flock = writer::Flock::acquire(&lock_file)?;
            // Another process may have rebuilt it while this one waited.
            if !index.exists() {
                tracing::warn!(store = %dir.display(), "the store's index is missing: rebuilding it from the volumes");
                let report = rebuild::rebuild_index(dir)?;
                tracing::info!(?report, "rebuilt the store's index");
            }
        }
        let pool = index::Pool::open(&index)?;
        let store = Self {
            dir: dir.to_owned(),
            options,
            pool,
            writer: Mutex::new(writer::Writer {
                lock_file,
                active: None,
            }),
            put_queue: Mutex::new(Vec::new()),
            readers: Mutex::new(HashMap::new()),
            head: watch::Sender::new(Seq::ZERO),
            swept: tokio::sync::Notify::new(),
        };
        recovery::check_tail_at_open(&store)?;
        let head = store.journal_head()?;
        store.head.send_replace(head);
        Ok(store)
    }

    /// Rebuilds the index of the store in `dir` from its volumes alone,
    /// moving the current index (if any) aside; for an index that is
    /// damaged. No other process may have the store open meanwhile.
    pub fn rebuild(dir: &Path) -> Result<RebuildReport> {
        if !rebuild::has_volumes(dir)? {
            return Err(Error::Format {
                what: format!("{} holds no volume files to rebuild from", dir.display()),
            });
        }
        let lock_file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.join("lock"))
            .map_err(Error::io("opening the store's lock file"))?;
        let _flock = writer::Flock::acquire(&lock_file)?;
        rebuild::rebuild_index(dir)
    }

    /// The folder the store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of volume `id`'s file.
    pub fn volume_path(&self, id: u64) -> PathBuf {
        volume_path(&self.dir, id)
    }

    /// A receiver that changes whenever this process appends to the journal.
    pub fn subscribe_head(&self) -> watch::Receiver<Seq> {
        self.head.subscribe()
    }

    /// Completes after the next sweep that deletes blocks (or at once if
    /// one did since the last wait).
    pub async fn swept(&self) {
        self.swept.notified().await;
    }

    /// Where block `id` is stored, `None` if it is not.
    pub fn locate(&self, id: BlockId) -> Result<Option<Location>> {
        let conn = self.pool.get()?;
        let row = conn
            .prepare_cached("SELECT volume, offset, length FROM blocks WHERE id = ?1")
            .and_then(|mut stmt| {
                stmt.query_row([id.as_bytes()], |row| {
                    Ok((
                        row.get::<_, i64>(0)? as u64,
                        row.get::<_, i64>(1)? as u64,
                        row.get::<_, i64>(2)? as u64,
                    ))
                })
                .optional()
            })
            .map_err(index::db_error("looking up a block"))?;
        Ok(row.map(|(volume, offset, payload_len)| Location {
            volume,
            offset,
            payload_offset: offset + RECORD_HEADER_LEN,
            payload_len,
        }))
    }

    /// Reads block `id`, verified; see [`pouch_backend::Backend::get_block`].
    /// A damaged block is quarantined (see [`Store::quarantine`]).
    pub fn get_block(&self, id: BlockId) -> Result<Bytes> {
        let (block, loc) = self.read_current(id)?;
        let decoded = block.decode();
        self.quarantine_if_damaged(id, loc, decoded)
    }

    /// Reads block `id`'s record where the index says it is, and where.
    /// If a compaction (maybe in another process) moved it between the
    /// lookup and the read, the lookup is done once more. A record that
    /// is damaged where the index still names it is quarantined.
    fn read_current(&self, id: BlockId) -> Result<(Block, Location)> {
        let loc = self.locate(id)?.ok_or(Error::BlockNotFound(id))?;
        match self.read_block_at(id, loc) {
            Err(Error::Format { .. } | Error::Corrupt { .. }) if self.locate(id)? != Some(loc) => {
                let moved = self.locate(id)?.ok_or(Error::BlockNotFound(id))?;
                let read = self.read_block_at(id, moved);
                self.quarantine_if_damaged(id, moved, read)
                    .map(|block| (block, moved))
            }
            other => self
                .quarantine_if_damaged(id, loc, other)
                .map(|block| (block, loc)),
        }
    }

    /// Reads block `id` in its stored encoding, verified (decoded and
    /// hashed) first: what a server sends, so that a damaged block is
    /// refused (and quarantined) here rather than shipped.
    pub fn get_block_encoded(&self, id: BlockId) -> Result<Block> {
        let (block, loc) = self.read_current(id)?;
        let verified = block.verify();
        self.quarantine_if_damaged(id, loc, verified)?;
        Ok(block)
    }

    /// Passes `result` on; if it says block `id` at `loc` is damaged, the
    /// block is quarantined first.
    fn quarantine_if_damaged<T>(&self, id: BlockId, loc: Location, result: Result<T>) -> Result<T> {
        if let Err(Error::Corrupt { reason, .. }) = &result {
            self.quarantine(id, loc, reason)?;
        }
        result
    }

    /// Takes a block found damaged at `loc` out of the index, into the
    /// quarantine table: `has_blocks` then says it is missing, so any
    /// device that still has its bytes sends it again (which replaces the
    /// quarantined copy), and it is never served. Its record stays in the
    /// volume (compaction leaves that volume alone) for inspection.
    pub fn quarantine(&self, id: BlockId, loc: Location, reason: &str) -> Result<()> {
        let mut conn = self.pool.get()?;
        if block_index::quarantine(&mut conn, &id, loc.volume, loc.offset, reason)? {
            tracing::error!(block = %id, volume = loc.volume, offset = loc.offset, "quarantined a damaged block: {reason}");
        }
        Ok(())
    }

    /// Reads the stored (encoded) record of block `id` at `loc`, checking
    /// that the record is intact and names `id` but not yet decoding it.
    fn read_block_at(&self, id: BlockId, loc: Location) -> Result<Block> {
        let file = self.reader(loc.volume)?;
        let end = loc.payload_offset + loc.payload_len;
        let corrupt = |reason| Error::Corrupt { id, reason };
        let record = match read_record(&file, loc.offset, end) {
            Ok(record) => record,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(corrupt("the volume is shorter than the index says"));
            }
            Err(e) => return Err(Error::io("reading a volume")(e)),
        };
        let Some((header, payload)) = record else {
            return Err(corrupt("the record header is damaged"));
        };
        if header.kind != RecordKind::Block || header.id != id {
            return Err(corrupt(
                "the record at the indexed place is another block's",
            ));
        }
        Ok(Block::from_parts(id, header.codec, payload))
    }

    fn reader(&self, volume: u64) -> Result<Arc<File>> {
        let mut readers = self.readers.lock().expect("readers lock");
        if let Some(file) = readers.get(&volume) {
            return Ok(file.clone());
        }
        let file = File::open(self.volume_path(volume)).map_err(|e| Error::Format {
            what: format!("volume {volume} cannot be opened: {e}"),
        })?;
        check_volume_header(&file, volume).map_err(|what| Error::Format { what })?;
        let file = Arc::new(file);
        readers.insert(volume, file.clone());
        Ok(file)
    }

    /// For each id, whether it is stored; see
    /// [`pouch_backend::Backend::has_blocks`].
    pub fn has_blocks(&self, ids: &[BlockId]) -> Result<Vec<bool>> {
        let mut conn = self.pool.get()?;
        // One read transaction: a consistent answer and no per-lookup locking.
        let tx = conn
            .transaction()
            .map_err(index::db_error("checking blocks"))?;
        let answer = {
            let mut stmt = tx
                .prepare_cached("SELECT 1 FROM blocks WHERE id = ?1")
                .map_err(index::db_error("checking blocks"))?;
            ids.iter()
                .map(|id| stmt.exists([id.as_bytes()]))
                .collect::<rusqlite::Result<Vec<bool>>>()
                .map_err(index::db_error("checking blocks"))?
        };
        let marked = Self::any_marked(&tx, ids)?;
        tx.finish().map_err(index::db_error("checking blocks"))?;
        if marked {
            // The answer "stored" must hold until the asker commits: a
            // marked block is revived under the writer lock, where no
            // sweep can come between.
            drop(conn);
            return self.revive_and_check(ids);
        }
        Ok(answer)
    }

    /// Reads back every stored block and checks its hash; damaged ones are
    /// quarantined.
    pub fn verify(&self) -> Result<VerifyReport> {
        let locations: Vec<(BlockId, Location)> = {
            let conn = self.pool.get()?;
            let mut stmt = conn
                .prepare("SELECT id, volume, offset, length FROM blocks ORDER BY volume, offset")
                .map_err(index::db_error("listing blocks"))?;
            let rows = stmt
                .query_map([], located_block)
                .map_err(index::db_error("listing blocks"))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(index::db_error("listing blocks"))?
        };
        let mut report = VerifyReport::default();
        for (id, loc) in locations {
            report.checked += 1;
            let read = self.read_block_at(id, loc).and_then(|block| block.verify());
            match self.quarantine_if_damaged(id, loc, read) {
                Ok(()) => {}
                Err(Error::Corrupt { reason, .. }) => report.corrupt.push((id, reason.to_owned())),
                Err(Error::Format { what }) => report.corrupt.push((id, what)),
                Err(other) => return Err(other),
            }
        }
        report.quarantined = self.stats()?.quarantined;
        Ok(report)
    }

    /// Payload bytes of the stored blocks (what an account's quota counts),
    /// kept by the index as blocks come and go.
    pub fn payload_bytes(&self) -> Result<u64> {
        let conn = self.pool.get()?;
        index::counter(&conn, "payload_bytes").map_err(index::db_error("reading store figures"))
    }

    /// Current figures.
    pub fn stats(&self) -> Result<StoreStats> {
        let conn = self.pool.get()?;
        let q = |sql: &str| -> Result<u64> {
            conn.query_row(sql, [], |row| row.get::<_, i64>(0))
                .map(|v| v as u64)
                .map_err(index::db_error("reading store figures"))
        };
        let counter =
            |name| index::counter(&conn, name).map_err(index::db_error("reading counters"));
        Ok(StoreStats {
            blocks: q("SELECT COUNT(*) FROM blocks")?,
            payload_bytes: q("SELECT COALESCE(SUM(length), 0) FROM blocks")?,
            volumes: q("SELECT COUNT(*) FROM volumes")?,
            garbage_bytes: q("SELECT COALESCE(SUM(garbage), 0) FROM volumes")?,
            blocks_written: counter("blocks_written")?,
            bytes_written: counter("bytes_written")?,
            append_groups: counter("append_groups")?,
            blocks_deleted: counter("blocks_deleted")?,
            torn_tails_cut: counter("torn_tails_cut")?,
            journal_head: Seq(q("SELECT COALESCE(MAX(seq), 0) FROM journal")?),
            quarantined: q("SELECT COUNT(*) FROM quarantine")?,
        })
    }
}

/// Reads an `(id, volume, offset, length)` row of the `blocks` table.
pub(crate) fn located_block(row: &rusqlite::Row<'_>) -> rusqlite::Result<(BlockId, Location)> {
    let id: Vec<u8> = row.get(0)?;
    let id = BlockId::from_slice(&id).ok_or_else(|| {
        rusqlite::Error::InvalidColumnType(0, "id".to_owned(), rusqlite::types::Type::Blob)
    })?;
    let offset = row.get::<_, i64>(2)? as u64;
    Ok((
        id,
        Location {
            volume: row.get::<_, i64>(1)? as u64,
            offset,
            payload_offset: offset + RECORD_HEADER_LEN,
            payload_len: row.get::<_, i64>(3)? as u64,
        },
    ))
}

/// The file of volume `id` of the store in `dir`.
pub(crate) fn volume_path(dir: &Path, id: u64) -> PathBuf {
    dir.join("volumes").join(format!("{id:08}.vol"))
}

/// Makes a directory entry (a new or renamed file) durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("syncing a directory"))
}
