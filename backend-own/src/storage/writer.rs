//! The append path: every change to volume files happens under one lock
//! shared by all threads and processes that open the store. This module is
//! the group commit; deletes, the volume lifecycle and crash recovery are
//! beside it, and every SQL statement they run is in [`block_index`].
//!
//! Order of a put: verify every block (outside the lock), take the lock,
//! recover the active volume's tail if a previous writer died mid-append,
//! append records, `fsync` the volume, then commit the index. A put is
//! acknowledged only after both, so an acknowledged block survives any
//! crash; bytes appended by a writer that died before its index commit are
//! found by the next writer and either indexed (complete, verified records)
//! or cut (a torn record).
//!
//! [`block_index`]: super::block_index

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use pouch_backend::{Block, Error, Result};
use rusqlite::Connection;

use super::lifecycle::active_file;
use super::volume::{
    RECORD_HEADER_LEN, RecordKind, VOLUME_HEADER_LEN, push_block_record, push_meta_record,
};
use super::{Store, block_index};

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

/// Where an appended record landed: its volume, its offset, and the
/// volume's length after it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Placed {
    pub(super) volume: u64,
    pub(super) offset: u64,
    pub(super) end: u64,
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
        let mut stored = Vec::new();
        for block in blocks {
            if block_index::is_stored(&conn, &block.id())? {
                stored.push(block.id());
            } else {
                fresh.push(block);
            }
        }
        // A put of a block the collector marked revives it (fresh ones
        // lose any old mark as they are indexed).
        block_index::revive(&mut conn, &stored)?;

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

        block_index::index_appended(conn, active.id, active.len, offset, &locations)?;
        Ok(offset)
    }

    /// Appends journal entries' or snapshots' records (`(kind, seq,
    /// bytes)` each) to the active volume, rolling to a new one when it is
    /// full, and fsyncs; the caller indexes them where they landed.
    pub(super) fn write_meta_records(
        &self,
        handle: &mut Option<(u64, File)>,
        conn: &mut Connection,
        mut active: Active,
        records: &[(RecordKind, u64, &[u8])],
    ) -> Result<Vec<Placed>> {
        let mut placed = Vec::with_capacity(records.len());
        let mut buf = Vec::new();
        let mut start = active.len;
        for (kind, seq, data) in records {
            let record_len = RECORD_HEADER_LEN + 8 + data.len() as u64;
            if active.len + record_len > self.options.volume_size && active.len > VOLUME_HEADER_LEN
            {
                self.write_synced(handle, active.id, start, &buf)?;
                buf.clear();
                active = self.roll(handle, conn, &active)?;
                start = active.len;
            }
            let offset = active.len;
            active.len += push_meta_record(&mut buf, *kind, *seq, data);
            placed.push(Placed {
                volume: active.id,
                offset,
                end: active.len,
            });
        }
        self.write_synced(handle, active.id, start, &buf)?;
        Ok(placed)
    }

    fn write_synced(
        &self,
        handle: &Option<(u64, File)>,
        volume: u64,
        at: u64,
        buf: &[u8],
    ) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let file = active_file(handle, volume);
        file.write_all_at(buf, at)
            .map_err(Error::io("writing a volume"))?;
        file.sync_data().map_err(Error::io("syncing a volume"))
    }
}
