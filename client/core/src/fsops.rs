//! Changes to the sync root, made safely: parents checked for symlinks,
//! files written to a temp file, verified, fsynced and renamed into place,
//! and nothing replaced that changed since the plan was made.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::local::Stat;
use crate::path::RelPath;
use crate::{Error, Result};

/// Checks that every existing ancestor of `path` under `root` is a real
/// directory, not a symlink or a file: writing through a symlinked parent
/// would leave the root. Missing ancestors are created.
pub fn prepare_parent(root: &Path, path: &RelPath) -> Result<PathBuf> {
    let mut ancestors: Vec<RelPath> = path.ancestors().collect();
    ancestors.reverse();
    for ancestor in ancestors {
        let full = ancestor.to_fs(root);
        match std::fs::symlink_metadata(&full) {
            Ok(meta) if meta.file_type().is_dir() => {}
            Ok(_) => {
                return Err(Error::UnsafePath {
                    path: path.to_string(),
                    reason: "a parent is a symlink or a file, not a directory",
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&full).map_err(Error::io(&full))?;
            }
            Err(e) => return Err(Error::io(&full)(e)),
        }
    }
    Ok(path
        .parent()
        .map_or_else(|| root.to_path_buf(), |p| p.to_fs(root)))
}

/// Whether `full` still has the stat data the plan saw (`None`: absent).
pub fn unchanged(full: &Path, expected: Option<&Stat>) -> Result<bool> {
    match std::fs::symlink_metadata(full) {
        Ok(meta) => Ok(expected.is_some_and(|e| {
            let now = Stat::of(&meta);
            // A directory's mtime and ctime move whenever its entries
            // change, which Pouch itself does; only its identity matters.
            if meta.is_dir() {
                now.ino == e.ino
            } else {
                now == *e
            }
        })),
        // Nothing is there when a folder above is gone or is a file now.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(expected.is_none())
        }
        Err(e) => Err(Error::io(full)(e)),
    }
}

/// Makes a directory entry durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    pouch_config::files::fsync_dir(dir).map_err(Error::io(dir))
}

/// Finishes a fully written temp file: sets its permission bits to `mode`
/// and its mtime. Its bytes are durable only after `make_durable`, which
/// must come before it is renamed over its target.
pub fn finish_temp(file: &mut File, temp: &Path, mode: u32, mtime_ns: i64) -> Result<()> {
    file.flush().map_err(Error::io(temp))?;
    file.set_permissions(std::fs::Permissions::from_mode(mode & 0o777))
        .map_err(Error::io(temp))?;
    file.set_modified(system_time(mtime_ns))
        .map_err(Error::io(temp))
}

/// Batches at least this large are made durable by a `syncfs` of each file
/// system they are on; smaller ones by an fsync of each file and folder,
/// which waits for nothing else written to the disk meanwhile.
#[cfg(target_os = "linux")]
const SYNCFS_FROM: usize = 16;

/// Makes `files` (open handles, with their paths; contents and metadata)
/// and the entries of `dirs` (each file's folder among them) durable.
pub fn make_durable(files: &[(&File, &Path)], dirs: &BTreeSet<&Path>) -> Result<()> {
    #[cfg(target_os = "linux")]
    if files.len() + dirs.len() >= SYNCFS_FROM {
        // A file is on its folder's file system: one folder of each is
        // enough to name it.
        use std::os::unix::fs::MetadataExt;
        let mut systems = BTreeSet::new();
        for dir in dirs {
            let handle = File::open(dir).map_err(Error::io(dir))?;
            let device = handle.metadata().map_err(Error::io(dir))?.dev();
            if systems.insert(device) {
                rustix::fs::syncfs(&handle).map_err(|e| Error::io(dir)(e.into()))?;
            }
        }
        return Ok(());
    }
    for (file, path) in files {
        file.sync_all().map_err(Error::io(path))?;
    }
    for dir in dirs {
        fsync_dir(dir)?;
    }
    Ok(())
}

/// Sets a file's permission bits and mtime in place and makes that durable.
pub fn set_mode_and_mtime(full: &Path, mode: u32, mtime_ns: i64) -> Result<()> {
    // Read-only: the owner may change both through any handle, and a file
    // whose mode forbids writing (0o444) still opens.
    let file = File::open(full).map_err(Error::io(full))?;
    file.set_modified(system_time(mtime_ns))
        .map_err(Error::io(full))?;
    file.set_permissions(std::fs::Permissions::from_mode(mode & 0o777))
        .map_err(Error::io(full))?;
    file.sync_all().map_err(Error::io(full))
}

fn system_time(ns: i64) -> SystemTime {
    if ns >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}
