//! Pouch's own files on disk: the one naming rule for its temp files (the
//! scanner, the watcher and the journal reader all skip them) and the one
//! durable write: temp file, fsync, rename, fsync the folder.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Names of Pouch's temp files start with this.
pub const TEMP_PREFIX: &str = ".pouch-tmp-";

/// Whether `name` (a file name, not a path) is one of Pouch's temp files.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX)
}

/// A fresh temp path in `dir`: unique within this process, and naming the
/// process, so a leftover can be traced to whoever wrote it.
pub fn temp_path(dir: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("{TEMP_PREFIX}{}-{n}", std::process::id()))
}

/// The process that made temp file `name`, if it is one of Pouch's.
pub fn temp_owner(name: &str) -> Option<u32> {
    name.strip_prefix(TEMP_PREFIX)?
        .split('-')
        .next()?
        .parse()
        .ok()
}

/// Makes a directory entry durable.
pub fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `path` with `bytes` atomically and durably, with permission
/// bits `mode` from the first byte on (a secret is never readable by
/// others, not even for a moment). Creates the parent folder if missing.
/// On failure the path is unchanged and the temp file is gone; the error
/// names the path it concerns.
pub fn write_atomically(
    path: &Path,
    bytes: &[u8],
    mode: u32,
) -> Result<(), (PathBuf, std::io::Error)> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| (dir.to_owned(), e))?;
    let temp = temp_path(dir);
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err((temp, e));
    }
    if let Err(e) = std::fs::rename(&temp, path) {
        let _ = std::fs::remove_file(&temp);
        return Err((path.to_owned(), e));
    }
    fsync_dir(dir).map_err(|e| (dir.to_owned(), e))
}
