//! The volume lifecycle: finding and opening the active volume (creating
//! the first), checking its tail against the index, and rolling to a new
//! one when it is full.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;

use pouch_backend::{Error, Result};
use rusqlite::Connection;

use super::recovery::recover_tail;
use super::volume::{VOLUME_HEADER_LEN, check_volume_header, volume_header};
use super::writer::Active;
use super::{Store, block_index, fsync_dir};

impl Store {
    /// Finds the active volume (creating the first one), opens it, and
    /// brings its tail in line with the index. Called with the writer lock.
    pub(super) fn prepare_active(
        &self,
        handle: &mut Option<(u64, File)>,
        conn: &mut Connection,
    ) -> Result<Active> {
        let Some((id, len)) = block_index::active_volume(conn)? else {
            let last = block_index::last_volume_id(conn)?;
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
        block_index::add_volume(conn, id, VOLUME_HEADER_LEN, seal)?;
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
