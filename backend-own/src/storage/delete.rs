//! Deletes: a tombstone record per block goes into the active volume, so
//! that the volumes alone still tell the truth; the index forgets the
//! block, and the space comes back at compaction.

use std::collections::HashSet;
use std::os::unix::fs::FileExt;

use pouch_backend::{BlockId, Error, Result};

use super::lifecycle::active_file;
use super::volume::RECORD_HEADER_LEN;
use super::writer::{Active, Flock, Writer};
use super::{Store, block_index};

impl Store {
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
        let mut seen = HashSet::new();
        for id in ids.iter().filter(|id| seen.insert(**id)) {
            if let Some((volume, length)) = block_index::volume_and_length(&conn, id)? {
                doomed.push((*id, volume, length));
            }
        }
        if doomed.is_empty() {
            return Ok(());
        }
        self.write_deletes(writer, &mut conn, &active, &doomed)
    }

    /// Appends a tombstone per block of `doomed` (`(id, volume, payload
    /// length)`) to the active volume, makes them durable, then takes the
    /// blocks out of the index. Called with the writer lock held.
    pub(super) fn write_deletes(
        &self,
        writer: &Writer,
        conn: &mut rusqlite::Connection,
        active: &Active,
        doomed: &[(BlockId, u64, u64)],
    ) -> Result<()> {
        let mut buf = Vec::with_capacity(doomed.len() * RECORD_HEADER_LEN as usize);
        for (id, _, _) in doomed {
            buf.extend_from_slice(&super::gc::tombstone(*id).encode());
        }
        let file = active_file(&writer.active, active.id);
        file.write_all_at(&buf, active.len)
            .map_err(Error::io("writing tombstones"))?;
        file.sync_data().map_err(Error::io("syncing a volume"))?;
        block_index::index_deletes(
            conn,
            active.id,
            active.len + buf.len() as u64,
            buf.len() as u64,
            doomed,
        )
    }
}
