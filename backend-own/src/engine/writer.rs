//! The append path: every change to volume files happens here, under one
//! lock shared by all threads and processes that open the store.
//!
//! Order of a put: verify every block (outside the lock), take the lock,
//! recover the active volume's tail if a previous writer died mid-append,
//! append records, `fsync` the volume, then commit the index. A put is
//! acknowledged only after both, so an acknowledged block survives any
//! crash; bytes appended by a writer that died before its index commit are
//! found by the next writer and either indexed (complete, verified records)
//! or cut (a torn record).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex, MutexGuard};

use pouch_backend::{Block, BlockId, Codec, Error, Result};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::index::{bump, db_error};
use super::volume::{
    RECORD_HEADER_LEN, RecordHeader, RecordKind, VOLUME_HEADER_LEN, check_volume_header,
    push_block_record, read_record, volume_header,
};
use super::{Store, fsync_dir};

/// Appends are written out in pieces of this size (one fsync at the end).
const WRITE_CHUNK: usize = 8 << 20;

/// The writer's state, behind the store's writer mutex.
pub(super) struct Writer {
    /// The file whose advisory lock serialises writers across processes.
    pub(super) lock_file: File,
    /// The active volume's id and open handle, cached between appends.
    pub(super) active: Option<(u64, File)>,
}

/// One caller's blocks waiting for a group commit, and its outcome.
pub(super) struct PutRequest {
    blocks: Mutex<Option<Vec<Block>>>,
    outcome: Mutex<Option<Result<()>>>,
}

/// A copy of `e` for every other caller of a failed group commit: same
/// variant where the type allows, so retry decisions stay right.
fn duplicate(e: &Error) -> Error {
    match e {
        Error::Io { context, source } => Error::Io {
            context,
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        Error::Unavailable { source } => Error::Unavailable {
            source: source.to_string().into(),
        },
        Error::Corrupt { id, reason } => Error::Corrupt { id: *id, reason },
        Error::Format { what } => Error::Format { what: what.clone() },
        Error::InvalidInput(what) => Error::InvalidInput(what),
        other => Error::Internal {
            context: "a group commit",
            source: other.to_string().into(),
        },
    }
}

/// Holds the cross-process writer lock until dropped.
pub(super) struct Flock<'a>(&'a File);

impl<'a> Flock<'a> {
    pub(super) fn acquire(file: &'a File) -> Result<Self> {
        file.lock()
            .map_err(Error::io("locking the store for writing"))?;
        Ok(Self(file))
    }
}

impl Drop for Flock<'_> {
    fn drop(&mut self) {
        // Closing the file would release it too; an unlock error leaves the
        // lock to the kernel when the process exits.
        let _ = self.0.unlock();
    }
}

/// The active volume, ready for appending at `len`.
pub(super) struct Active {
    pub(super) id: u64,
    pub(super) len: u64,
}

impl Store {
    /// Stores blocks; see [`pouch_backend::Backend::put_blocks`].
    ///
    /// Group commit: concurrent callers queue their blocks; whoever holds
    /// the writer lock next appends everything queued with one fsync and
    /// one index transaction, and acknowledges every caller in the group.
    pub fn put_blocks(&self, blocks: Vec<Block>) -> Result<()> {
        // Verify outside the lock, so hashing runs on every caller's core
        // and one caller's bad block never fails another's group.
        for block in &blocks {
            block.verify()?;
        }
        self.put_verified_blocks(blocks)
    }

    /// [`Store::put_blocks`] for blocks the caller has already verified
    /// (the server checks each one as it streams in), so none is hashed
    /// twice.
    pub(crate) fn put_verified_blocks(&self, blocks: Vec<Block>) -> Result<()> {
        let request = Arc::new(PutRequest {
            blocks: Mutex::new(Some(blocks)),
            outcome: Mutex::new(None),
        });
        self.put_queue
            .lock()
            .expect("queue lock")
            .push(request.clone());

        let mut writer = self.writer.lock().expect("writer lock");
        if let Some(outcome) = request.outcome.lock().expect("outcome lock").take() {
            return outcome; // a previous holder of the lock wrote ours
        }
        let group = std::mem::take(&mut *self.put_queue.lock().expect("queue lock"));
        let mut blocks = Vec::new();
        for member in &group {
            blocks.extend(
                member
                    .blocks
                    .lock()
                    .expect("blocks lock")
                    .take()
                    .unwrap_or_default(),
            );
        }
        let outcome = self.write_blocks(&mut writer, blocks);
        if group.len() > 1 {
            tracing::trace!(callers = group.len(), "group commit");
        }
        for member in &group {
            if !Arc::ptr_eq(member, &request) {
                let copy = outcome.as_ref().map(|_| ()).map_err(duplicate);
                *member.outcome.lock().expect("outcome lock") = Some(copy);
            }
        }
        outcome
    }

    /// Appends and indexes blocks, holding the writer.
    fn write_blocks(&self, writer: &mut Writer, mut blocks: Vec<Block>) -> Result<()> {
        let mut seen = HashSet::with_capacity(blocks.len());
        blocks.retain(|block| seen.insert(block.id()));
        let _flock = Flock::acquire(&writer.lock_file)?;
        let mut conn = self.pool.get()?;
        let mut active = self.prepare_active(&mut writer.active, &mut conn)?;

        let mut fresh = Vec::with_capacity(blocks.len());
        {
            let mut stmt = conn
                .prepare_cached("SELECT 1 FROM blocks WHERE id = ?1")
                .map_err(db_error("checking for stored blocks"))?;
            for block in blocks {
                let stored = stmt
                    .exists([block.id().as_bytes()])
                    .map_err(db_error("checking for stored blocks"))?;
                if !stored {
                    fresh.push(block);
                }
            }
        }

        let mut segment: Vec<&Block> = Vec::new();
        let mut segment_len = 0u64;
        for block in &fresh {
            let record_len = RECORD_HEADER_LEN + block.payload().len() as u64;
            let end = active.len + segment_len;
            if end + record_len > self.options.volume_size && end > VOLUME_HEADER_LEN {
                active.len =
                    self.append_blocks(&mut writer.active, &mut conn, &active, &segment)?;
                segment.clear();
                segment_len = 0;
                active = self.roll(&mut writer.active, &mut conn, &active)?;
            }
            segment.push(block);
            segment_len += record_len;
        }
        if !segment.is_empty() {
            self.append_blocks(&mut writer.active, &mut conn, &active, &segment)?;
        }
        Ok(())
    }

    /// Deletes blocks; see [`pouch_backend::Backend::delete_blocks`].
    ///
    /// A tombstone record goes into the active volume, so that the volumes
    /// alone still tell the truth; the space comes back at compaction.
    pub fn delete_blocks(&self, ids: &[BlockId]) -> Result<()> {
        let mut writer = self.writer.lock().expect("writer lock");
        let writer = &mut *writer;
        let _flock = Flock::acquire(&writer.lock_file)?;
        let mut conn = self.pool.get()?;
        let active = self.prepare_active(&mut writer.active, &mut conn)?;

        let mut doomed: Vec<(BlockId, u64, u64)> = Vec::new();
        {
            let mut stmt = conn
                .prepare_cached("SELECT volume, length FROM blocks WHERE id = ?1")
                .map_err(db_error("looking up blocks to delete"))?;
            let mut seen = HashSet::new();
            for id in ids.iter().filter(|id| seen.insert(**id)) {
                let row = stmt
                    .query_row([id.as_bytes()], |row| {
                        Ok((row.get::<_, i64>(0)? as u64, row.get::<_, i64>(1)? as u64))
                    })
                    .optional()
                    .map_err(db_error("looking up blocks to delete"))?;
                if let Some((volume, length)) = row {
                    doomed.push((*id, volume, length));
                }
            }
        }
        if doomed.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(doomed.len() * RECORD_HEADER_LEN as usize);
        for (id, _, _) in &doomed {
            let header = RecordHeader {
                kind: RecordKind::Tombstone,
                codec: Codec::Raw,
                payload_len: 0,
                id: *id,
            };
            buf.extend_from_slice(&header.encode());
        }
        let file = active_file(&writer.active, active.id);
        file.write_all_at(&buf, active.len)
            .map_err(Error::io("writing tombstones"))?;
        file.sync_data().map_err(Error::io("syncing a volume"))?;

        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_error("indexing deletes"))?;
        for (id, volume, length) in &doomed {
            tx.execute("DELETE FROM blocks WHERE id = ?1", [id.as_bytes()])
                .map_err(db_error("indexing deletes"))?;
            tx.execute(
                "UPDATE volumes SET garbage = garbage + ?2 WHERE id = ?1",
                params![*volume as i64, (RECORD_HEADER_LEN + length) as i64],
            )
            .map_err(db_error("indexing deletes"))?;
        }
        tx.execute(
            "UPDATE volumes SET length = ?2, garbage = garbage + ?3 WHERE id = ?1",
            params![
                active.id as i64,
                (active.len + buf.len() as u64) as i64,
                buf.len() as i64
            ],
        )
        .map_err(db_error("indexing deletes"))?;
        bump(&tx, "blocks_deleted", doomed.len() as u64).map_err(db_error("indexing deletes"))?;
        tx.commit().map_err(db_error("indexing deletes"))
    }

    /// Appends `blocks` at the end of the active volume, fsyncs, indexes
    /// them, and returns the volume's new length.
    fn append_blocks(
        &self,
        handle: &mut Option<(u64, File)>,
        conn: &mut Connection,
        active: &Active,
        blocks: &[&Block],
    ) -> Result<u64> {
        let file = active_file(handle, active.id);
        let mut buf = Vec::with_capacity(
            WRITE_CHUNK.min(
                blocks
                    .iter()
                    .map(|b| RECORD_HEADER_LEN as usize + b.payload().len())
                    .sum(),
            ),
        );
        let mut offset = active.len;
        let mut written = active.len;
        let mut locations = Vec::with_capacity(blocks.len());
        for block in blocks {
            locations.push((block.id(), offset, block.payload().len() as u64));
            offset += push_block_record(&mut buf, block);
            if buf.len() >= WRITE_CHUNK {
                file.write_all_at(&buf, written)
                    .map_err(Error::io("writing a volume"))?;
                written += buf.len() as u64;
                buf.clear();
            }
        }
        file.write_all_at(&buf, written)
            .map_err(Error::io("writing a volume"))?;
        file.sync_data().map_err(Error::io("syncing a volume"))?;

        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_error("indexing blocks"))?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO blocks (id, volume, offset, length) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(db_error("indexing blocks"))?;
            for (id, at, length) in &locations {
                insert
                    .execute(params![
                        id.as_bytes(),
                        active.id as i64,
                        *at as i64,
                        *length as i64
                    ])
                    .map_err(db_error("indexing blocks"))?;
            }
        }
        tx.execute(
            "UPDATE volumes SET length = ?2 WHERE id = ?1",
            params![active.id as i64, offset as i64],
        )
        .map_err(db_error("indexing blocks"))?;
        bump(&tx, "blocks_written", locations.len() as u64).map_err(db_error("indexing blocks"))?;
        bump(&tx, "append_groups", 1).map_err(db_error("indexing blocks"))?;
        bump(&tx, "bytes_written", offset - active.len).map_err(db_error("indexing blocks"))?;
        tx.commit().map_err(db_error("indexing blocks"))?;
        Ok(offset)
    }

    /// Finds the active volume (creating the first one), opens it, and
    /// brings its tail in line with the index. Called with the writer lock.
    pub(super) fn prepare_active(
        &self,
        handle: &mut Option<(u64, File)>,
        conn: &mut Connection,
    ) -> Result<Active> {
        let row = conn
            .query_row(
                "SELECT id, length FROM volumes WHERE sealed = 0 ORDER BY id DESC LIMIT 1",
                [],
                |row| Ok((row.get::<_, i64>(0)? as u64, row.get::<_, i64>(1)? as u64)),
            )
            .optional()
            .map_err(db_error("finding the active volume"))?;
        let Some((id, len)) = row else {
            let last = conn
                .query_row("SELECT COALESCE(MAX(id), 0) FROM volumes", [], |row| {
                    row.get::<_, i64>(0)
                })
                .map_err(db_error("finding the active volume"))? as u64;
            return self.create_volume(handle, conn, last + 1, None);
        };
        if handle.as_ref().map(|(open, _)| *open) != Some(id) {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(self.volume_path(id))
                .map_err(|e| Error::Format {
                    what: format!("active volume {id} cannot be opened: {e}"),
                })?;
            check_volume_header(&file, id).map_err(|what| Error::Format { what })?;
            *handle = Some((id, file));
        }
        let file = active_file(handle, id);
        let file_len = file
            .metadata()
            .map_err(Error::io("reading a volume's length"))?
            .len();
        if file_len < len {
            return Err(Error::Format {
                what: format!(
                    "volume {id} is {file_len} bytes but its index says {len}: the store lost acknowledged data; run `pouch-store verify`"
                ),
            });
        }
        let len = if file_len > len {
            recover_tail(file, conn, id, len, file_len)?
        } else {
            len
        };
        Ok(Active { id, len })
    }

    /// Seals the active volume and starts the next one.
    pub(super) fn roll(
        &self,
        handle: &mut Option<(u64, File)>,
        conn: &mut Connection,
        active: &Active,
    ) -> Result<Active> {
        self.create_volume(handle, conn, active.id + 1, Some(active.id))
    }

    fn create_volume(
        &self,
        handle: &mut Option<(u64, File)>,
        conn: &mut Connection,
        id: u64,
        seal: Option<u64>,
    ) -> Result<Active> {
        // No index row names this id yet, so a file left by a crash between
        // creating it and committing the row holds nothing acknowledged.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(self.volume_path(id))
            .map_err(Error::io("creating a volume"))?;
        file.write_all_at(&volume_header(id), 0)
            .map_err(Error::io("creating a volume"))?;
        file.sync_all().map_err(Error::io("creating a volume"))?;
        fsync_dir(&self.dir.join("volumes"))?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_error("adding a volume"))?;
        if let Some(old) = seal {
            tx.execute("UPDATE volumes SET sealed = 1 WHERE id = ?1", [old as i64])
                .map_err(db_error("sealing a volume"))?;
        }
        tx.execute(
            "INSERT INTO volumes (id, length) VALUES (?1, ?2)",
            params![id as i64, VOLUME_HEADER_LEN as i64],
        )
        .map_err(db_error("adding a volume"))?;
        tx.commit().map_err(db_error("adding a volume"))?;
        tracing::debug!(volume = id, "started a volume");
        *handle = Some((id, file));
        Ok(Active {
            id,
            len: VOLUME_HEADER_LEN,
        })
    }
}

pub(super) fn active_file(handle: &Option<(u64, File)>, id: u64) -> &File {
    match handle {
        Some((open, file)) if *open == id => file,
        _ => unreachable!("the active volume is opened before use"),
    }
}

/// Handles bytes past the indexed end of the active volume, left by a writer
/// that died after writing and before committing: complete records that
/// verify are indexed, and everything from the first bad record on is cut.
/// Returns the volume's new length.
fn recover_tail(
    file: &File,
    conn: &mut Connection,
    volume: u64,
    indexed_len: u64,
    file_len: u64,
) -> Result<u64> {
    let mut offset = indexed_len;
    let mut records = Vec::new();
    while let Some((header, payload)) =
        read_record(file, offset, file_len).map_err(Error::io("reading a volume's tail"))?
    {
        if header.kind == RecordKind::Block
            && Block::from_parts(header.id, header.codec, payload)
                .verify()
                .is_err()
        {
            break;
        }
        records.push((header, offset));
        offset += header.record_len();
    }
    if offset < file_len {
        tracing::warn!(
            volume,
            offset,
            torn_bytes = file_len - offset,
            "cutting a torn tail left by an interrupted write"
        );
        file.set_len(offset)
            .map_err(Error::io("cutting a volume's torn tail"))?;
    }
    file.sync_all().map_err(Error::io("syncing a volume"))?;

    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_error("recovering a volume's tail"))?;
    let mut garbage = 0u64;
    for (header, at) in &records {
        match header.kind {
            RecordKind::Block => {
                let added = tx
                    .execute(
                        "INSERT OR IGNORE INTO blocks (id, volume, offset, length) VALUES (?1, ?2, ?3, ?4)",
                        params![header.id.as_bytes(), volume as i64, *at as i64, header.payload_len as i64],
                    )
                    .map_err(db_error("recovering a volume's tail"))?;
                if added == 0 {
                    garbage += header.record_len();
                }
            }
            RecordKind::Tombstone => {
                garbage += header.record_len();
                let old: Option<(i64, i64)> = tx
                    .query_row(
                        "DELETE FROM blocks WHERE id = ?1 RETURNING volume, length",
                        [header.id.as_bytes()],
                        |row| Ok((row.get(0)?, row.get(1)?)),
                    )
                    .optional()
                    .map_err(db_error("recovering a volume's tail"))?;
                if let Some((old_volume, length)) = old {
                    tx.execute(
                        "UPDATE volumes SET garbage = garbage + ?2 WHERE id = ?1",
                        params![old_volume, RECORD_HEADER_LEN as i64 + length],
                    )
                    .map_err(db_error("recovering a volume's tail"))?;
                }
            }
        }
    }
    tx.execute(
        "UPDATE volumes SET length = ?2, garbage = garbage + ?3 WHERE id = ?1",
        params![volume as i64, offset as i64, garbage as i64],
    )
    .map_err(db_error("recovering a volume's tail"))?;
    bump(&tx, "torn_tails_cut", u64::from(offset < file_len))
        .map_err(db_error("recovering a volume's tail"))?;
    bump(&tx, "records_recovered", records.len() as u64)
        .map_err(db_error("recovering a volume's tail"))?;
    tx.commit()
        .map_err(db_error("recovering a volume's tail"))?;
    if !records.is_empty() {
        tracing::info!(
            volume,
            records = records.len(),
            "indexed records an interrupted writer left"
        );
    }
    Ok(offset)
}

/// Runs the tail check once at open, so a store reopened after a crash is
/// consistent before anyone reads from it.
pub(super) fn check_tail_at_open(store: &Store) -> Result<()> {
    let mut writer: MutexGuard<'_, Writer> = store.writer.lock().expect("writer lock");
    let writer = &mut *writer;
    let _flock = Flock::acquire(&writer.lock_file)?;
    let mut conn = store.pool.get()?;
    let any = conn
        .query_row("SELECT EXISTS (SELECT 1 FROM volumes)", [], |row| {
            row.get::<_, bool>(0)
        })
        .map_err(db_error("opening the store"))?;
    if any {
        store.prepare_active(&mut writer.active, &mut conn)?;
    }
    Ok(())
}
