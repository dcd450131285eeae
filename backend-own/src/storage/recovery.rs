//! Crash recovery of the active volume: bytes past its indexed end, left by
//! a writer that died between its append and its index commit.

use std::fs::File;
use std::sync::MutexGuard;

use bytes::Bytes;
use pouch_backend::{Error, Result};
use rusqlite::Connection;

use super::volume::{RecordKind, payload_is_intact, read_record};
use super::writer::{Flock, Writer};
use super::{Store, block_index};

/// Handles bytes past the indexed end of the active volume, left by a writer
/// that died after writing and before committing: complete records that
/// verify are indexed, and everything from the first bad record on is cut.
/// Returns the volume's new length.
pub(super) fn recover_tail(
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
        if !payload_is_intact(&header, &payload) {
            break;
        }
        // Only journal and snapshot records need their bytes indexed.
        let payload = match header.kind {
            RecordKind::Journal | RecordKind::Snapshot => payload,
            RecordKind::Block | RecordKind::Tombstone => Bytes::new(),
        };
        records.push((header, offset, payload));
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

    block_index::index_recovered(conn, volume, offset, &records, offset < file_len)?;
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
    if block_index::any_volume(&conn)? {
        store.prepare_active(&mut writer.active, &mut conn)?;
    }
    write_unplaced_meta(store, &mut writer.active, &mut conn)
}

/// Writes into the volumes the journal entries and snapshot that a store
/// from before they were kept there has only in its index, once, so that
/// from then on the index can be rebuilt from the volumes.
fn write_unplaced_meta(
    store: &Store,
    handle: &mut Option<(u64, File)>,
    conn: &mut Connection,
) -> Result<()> {
    let unplaced = block_index::unplaced_meta(conn)?;
    if unplaced.is_empty() {
        return Ok(());
    }
    let active = store.prepare_active(handle, conn)?;
    let records: Vec<(RecordKind, u64, &[u8])> = unplaced
        .iter()
        .map(|(kind, seq, data)| (*kind, *seq, data.as_slice()))
        .collect();
    let placed = store.write_meta_records(handle, conn, active, &records)?;
    let placed: Vec<_> = unplaced
        .iter()
        .zip(placed)
        .map(|((kind, seq, _), at)| (*kind, *seq, at))
        .collect();
    block_index::place_meta(conn, &placed)?;
    tracing::info!(
        records = placed.len(),
        "wrote the journal and snapshot into the volumes (once, after an upgrade)"
    );
    Ok(())
}
