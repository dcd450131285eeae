//! One sync at a time per folder: an exclusive lock on a file beside the
//! local state, held by `pouch sync` and by the daemon for each of its
//! syncs. Advisory (`flock`), so a process that dies releases it.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// A held sync lock; released when dropped.
#[derive(Debug)]
pub struct SyncLock {
    _file: File,
}

/// The lock file of the local state at `state`.
pub fn lock_path(state: &Path) -> PathBuf {
    state.with_extension("lock")
}

fn open(state: &Path) -> Result<File> {
    let path = lock_path(state);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    }
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(Error::io(&path))
}

impl SyncLock {
    /// The lock, if no other sync of this folder holds it.
    pub fn try_acquire(state: &Path) -> Result<Option<SyncLock>> {
        let file = open(state)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(SyncLock { _file: file })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(Error::io(lock_path(state))(e)),
        }
    }

    /// The lock, waiting (off the async threads) while another sync of
    /// this folder holds it.
    pub async fn acquire(state: &Path) -> Result<SyncLock> {
        let file = open(state)?;
        let path = lock_path(state);
        tokio::task::spawn_blocking(move || {
            file.lock().map_err(Error::io(&path))?;
            Ok(SyncLock { _file: file })
        })
        .await
        .expect("locking does not panic")
    }
}
