//! Crash recovery of the active volume: bytes past its indexed end, left by
//! a writer that died between its append and its index commit.

use std::fs::File;
use std::sync::MutexGuard;

use pouch_backend::{Block, Error, Result};
use rusqlite::Connection;

use super::volume::{RecordKind, read_record};
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
    Ok(())
}
