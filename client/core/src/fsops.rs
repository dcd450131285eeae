//! Changes to the sync root, made safely: parents checked for symlinks,
//! files written to a temp file, verified, fsynced and renamed into place,
//! and nothing replaced that changed since the plan was made.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::path::RelPath;
use crate::scan::Stat;
use crate::{Error, Result};

/// Names of Pouch's temp files start with this; the scanner skips them.
pub const TEMP_PREFIX: &str = ".pouch-tmp-";

/// Whether `name` is one of Pouch's temp files.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX)
}

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
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(expected.is_none()),
        Err(e) => Err(Error::io(full)(e)),
    }
}

/// A fresh temp path in `dir`.
pub fn temp_path(dir: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("{TEMP_PREFIX}{}-{n}", std::process::id()))
}

/// Makes a directory entry durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io(dir))
}

/// Finishes a fully written temp file: sets mode and mtime, fsyncs, and
/// renames it over `target`.
pub fn commit_temp(
    mut file: File,
    temp: &Path,
    target: &Path,
    exec: bool,
    mtime_ns: i64,
) -> Result<()> {
    file.flush().map_err(Error::io(temp))?;
    let mode = if exec { 0o755 } else { 0o644 };
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(Error::io(temp))?;
    file.set_modified(system_time(mtime_ns))
        .map_err(Error::io(temp))?;
    file.sync_all().map_err(Error::io(temp))?;
    drop(file);
    std::fs::rename(temp, target).map_err(Error::io(target))?;
    fsync_dir(target.parent().expect("a file has a parent"))
}

/// Sets a file's exec bit and mtime in place and makes that durable.
pub fn set_mode_and_mtime(full: &Path, exec: bool, mtime_ns: i64) -> Result<()> {
    let file = File::options()
        .write(true)
        .open(full)
        .map_err(Error::io(full))?;
    let mode = if exec { 0o755 } else { 0o644 };
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(Error::io(full))?;
    file.set_modified(system_time(mtime_ns))
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

/// The civil date (year, month, day) of a Unix time, UTC.
pub fn civil_date(unix_secs: i64) -> (i64, u32, u32) {
    // Howard Hinnant's days-to-civil algorithm.
    let z = unix_secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The name Dropbox users know for the losing side of a conflict:
/// `name (DEVICE's conflicted copy YYYY-MM-DD).ext`, with ` 2`, ` 3`, ...
/// inside the parentheses when `taken` says a name is in use.
pub fn conflict_name(
    path: &RelPath,
    device: &str,
    unix_secs: i64,
    taken: impl Fn(&RelPath) -> bool,
) -> Result<RelPath> {
    let name = path.name();
    let (stem, ext) = match name.rfind('.') {
        Some(dot) if dot > 0 => (&name[..dot], &name[dot..]),
        _ => (name, ""),
    };
    let device = device.replace('/', "_");
    let (y, m, d) = civil_date(unix_secs);
    for n in 1.. {
        let counter = if n == 1 {
            String::new()
        } else {
            format!(" {n}")
        };
        let candidate = path.with_name(&format!(
            "{stem} ({device}'s conflicted copy {y:04}-{m:02}-{d:02}{counter}){ext}"
        ))?;
        if !taken(&candidate) {
            return Ok(candidate);
        }
    }
    unreachable!("some counter is free")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(951_782_400), (2000, 2, 29));
        assert_eq!(civil_date(1_795_478_400), (2026, 11, 24));
        assert_eq!(civil_date(-86_400), (1969, 12, 31));
    }

    #[test]
    fn conflict_names() {
        let day = 1_795_478_400;
        let p = RelPath::parse("docs/report.final.txt").unwrap();
        let name = conflict_name(&p, "B", day, |_| false).unwrap();
        assert_eq!(
            name.as_str(),
            "docs/report.final (B's conflicted copy 2026-11-24).txt"
        );
        let bare = RelPath::parse(".bashrc").unwrap();
        assert_eq!(
            conflict_name(&bare, "B", day, |_| false).unwrap().as_str(),
            ".bashrc (B's conflicted copy 2026-11-24)"
        );
        let second = conflict_name(&p, "B", day, |c| c == &name).unwrap();
        assert_eq!(
            second.as_str(),
            "docs/report.final (B's conflicted copy 2026-11-24 2).txt"
        );
    }
}
