//! The scanner: walks the sync root and builds the Local tree.
//!
//! Fast path: a file whose size, mtime, inode and ctime match the previous
//! scan keeps its blocklist without being read. Anything it cannot read
//! (permissions, a name that is not UTF-8, a file changing under it) is
//! reported and keeps its previous entry, so a problem never looks like a
//! delete.

use std::collections::BTreeMap;
use std::fs::Metadata;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::chunk;
use crate::ignore_rules::IgnoreRules;
use crate::local::{LocalEntry, Stat};
use crate::names::is_temp_name;
use crate::node::Node;
use crate::path::RelPath;

mod merged;

pub use merged::{MergedOutcome, scan_merged};

/// What a scan found.
#[derive(Debug, Default)]
pub struct ScanOutcome {
    /// Every path on disk that can be synced.
    pub entries: BTreeMap<RelPath, LocalEntry>,
    /// Paths that could not be read, with why; their previous entries are
    /// kept in `entries`.
    pub problems: Vec<String>,
    /// Files read and hashed (the fast path missed).
    pub hashed: u64,
}

/// How close to the previous scan a file's timestamps may be before its
/// stat data is no longer trusted. File-system clocks are coarse (a few ms
/// on ext4, 2 s on FAT): a same-size rewrite within one tick of the scan
/// that recorded the file leaves size, mtime and ctime unchanged. Git calls
/// such entries "racily clean" and re-reads them; so does Pouch.
pub const RACY_WINDOW_NS: i64 = 2_000_000_000;

/// Scans `root`, reusing `previous` entries whose stat data is unchanged
/// and which were recorded safely after their last change:
/// `previous_started_ns` is when the scan that recorded them started
/// (`None`: unknown, so every file is read).
///
/// Fails when the root itself cannot be listed: an unmounted disk must
/// never read as "everything was deleted".
pub fn scan(
    root: &Path,
    previous: &BTreeMap<RelPath, LocalEntry>,
    previous_started_ns: Option<i64>,
    rules: &IgnoreRules,
) -> crate::Result<ScanOutcome> {
    let mut walk = Walk::new(root, previous, previous_started_ns, rules)?;
    walk.stack.push(root.to_path_buf());
    walk.run();
    Ok(walk.out)
}

/// Scans only `paths` (each with everything under it), as [`scan`] does
/// the whole root: `previous` needs to hold only their entries. A path
/// gone from disk is simply absent from the outcome.
pub fn scan_paths(
    root: &Path,
    paths: &[RelPath],
    previous: &BTreeMap<RelPath, LocalEntry>,
    previous_started_ns: Option<i64>,
    rules: &IgnoreRules,
) -> crate::Result<ScanOutcome> {
    let mut walk = Walk::new(root, previous, previous_started_ns, rules)?;
    for path in paths {
        walk.item(path.to_fs(root), path.clone());
    }
    walk.run();
    Ok(walk.out)
}

/// One scan in progress: folders still to list, and what was found.
struct Walk<'a> {
    root: &'a Path,
    previous: &'a BTreeMap<RelPath, LocalEntry>,
    previous_started_ns: Option<i64>,
    rules: &'a IgnoreRules,
    stack: Vec<PathBuf>,
    out: ScanOutcome,
}

impl<'a> Walk<'a> {
    fn new(
        root: &'a Path,
        previous: &'a BTreeMap<RelPath, LocalEntry>,
        previous_started_ns: Option<i64>,
        rules: &'a IgnoreRules,
    ) -> crate::Result<Self> {
        if let Err(source) = std::fs::read_dir(root) {
            return Err(crate::Error::RootUnavailable {
                root: root.to_owned(),
                source,
            });
        }
        Ok(Self {
            root,
            previous,
            previous_started_ns,
            rules,
            stack: Vec::new(),
            out: ScanOutcome::default(),
        })
    }

    /// Lists every folder on the stack, and those found inside them.
    fn run(&mut self) {
        while let Some(dir) = self.stack.pop() {
            let listing = match std::fs::read_dir(&dir) {
                Ok(listing) => listing,
                Err(e) => {
                    self.out
                        .problems
                        .push(format!("{}: cannot list: {e}", dir.display()));
                    keep_previous_subtree(self.root, &dir, self.previous, &mut self.out);
                    continue;
                }
            };
            for item in listing {
                let item = match item {
                    Ok(item) => item,
                    Err(e) => {
                        self.out
                            .problems
                            .push(format!("{}: cannot list: {e}", dir.display()));
                        continue;
                    }
                };
                let full = item.path();
                let relative = full.strip_prefix(self.root).expect("under root");
                let path = match RelPath::from_fs(relative) {
                    Some(Ok(path)) => path,
                    Some(Err(e)) => {
                        self.out.problems.push(format!("{}: {e}", full.display()));
                        continue;
                    }
                    None => {
                        self.out.problems.push(format!(
                            "{}: the name is not valid UTF-8 and cannot be synced; rename it",
                            full.display()
                        ));
                        continue;
                    }
                };
                self.item(full, path);
            }
        }
    }

    /// Records one path (a folder goes on the stack to be listed).
    fn item(&mut self, full: PathBuf, path: RelPath) {
        let previous = self.previous.get(&path);
        let seen = look(
            &full,
            &path,
            previous,
            Recorded::by_scan(self.previous_started_ns),
            self.rules,
            &mut self.out.problems,
            &mut self.out.hashed,
        );
        match seen {
            Look::Entry(entry) => {
                if entry.1.is_dir() {
                    self.stack.push(full);
                }
                self.out.entries.insert(path, entry);
            }
            Look::Keep => {
                if let Some(entry) = previous {
                    self.out.entries.insert(path, entry.clone());
                }
            }
            Look::Nothing => {}
        }
    }
}

/// What the scanner makes of one path.
pub(crate) enum Look {
    /// Its entry (a folder's is to be listed).
    Entry(LocalEntry),
    /// It could not be read (the problem is noted): its previous entry, if
    /// any, stands, so a problem never looks like a delete.
    Keep,
    /// Nothing to sync there: gone, ignored, one of Pouch's temp files, a
    /// special file.
    Nothing,
}

/// When a previous entry's stat data was taken, for telling racily clean
/// entries (see [`RACY_WINDOW_NS`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Recorded {
    /// By a scan that started then (ns), or later: the entry is trusted if
    /// the file's last change (its mtime and ctime) came well before.
    pub scan_from: Option<i64>,
    /// By Pouch right after it wrote the file itself (a download), from
    /// then on: the file's mtime is the synced one Pouch set, which any
    /// later write moves to its own time, so the entry is trusted if that
    /// mtime is well before then (its ctime is the write's own).
    pub written_from: Option<i64>,
}

impl Recorded {
    /// Taken by the scan that started at `started`, or later.
    pub(crate) fn by_scan(started: Option<i64>) -> Self {
        Self {
            scan_from: started,
            written_from: None,
        }
    }

    /// Whether an entry with stat data `old`, still on disk, can be
    /// trusted without reading the file.
    fn settled(&self, old: &Stat) -> bool {
        self.scan_from
            .is_some_and(|started| old.mtime_ns.max(old.ctime_ns) < started - RACY_WINDOW_NS)
            || self
                .written_from
                .is_some_and(|written| old.mtime_ns < written - RACY_WINDOW_NS)
    }
}

/// Looks at `path` (at `full`), with `previous` its entry in the Local
/// tree, recorded as `recorded` says.
pub(crate) fn look(
    full: &Path,
    path: &RelPath,
    previous: Option<&LocalEntry>,
    recorded: Recorded,
    rules: &IgnoreRules,
    problems: &mut Vec<String>,
    hashed: &mut u64,
) -> Look {
    if is_temp_name(path.name()) {
        remove_if_abandoned(full, path.name());
        return Look::Nothing;
    }
    let meta = match std::fs::symlink_metadata(full) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Look::Nothing,
        Err(e) => {
            if rules.is_ignored(path, false) {
                return Look::Nothing;
            }
            problems.push(format!("{}: {e}", full.display()));
            return Look::Keep;
        }
    };
    let kind = meta.file_type();
    if rules.is_ignored(path, kind.is_dir()) {
        return Look::Nothing;
    }
    let stat = Stat::of(&meta);
    if kind.is_dir() {
        Look::Entry((stat, Node::Dir))
    } else if kind.is_symlink() {
        match std::fs::read_link(full).map(|t| t.to_str().map(str::to_owned)) {
            Ok(Some(target)) => Look::Entry((stat, Node::Symlink { target })),
            Ok(None) => {
                problems.push(format!(
                    "{}: the link target is not valid UTF-8 and cannot be synced",
                    full.display()
                ));
                Look::Nothing
            }
            Err(e) => {
                problems.push(format!("{}: {e}", full.display()));
                Look::Keep
            }
        }
    } else if kind.is_file() {
        scan_file(full, &meta, previous, recorded, problems, hashed)
    } else {
        problems.push(format!(
            "{}: {} cannot be synced; skipped",
            full.display(),
            special_kind(&kind)
        ));
        Look::Nothing
    }
}

/// What a file that is neither a file, a folder nor a link is, for the
/// report.
fn special_kind(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_socket() {
        "a socket"
    } else if kind.is_fifo() {
        "a named pipe (FIFO)"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device file"
    } else {
        "a special file"
    }
}

/// Removes a temp file of Pouch's whose writer is gone (a download killed
/// midway), so it neither wastes space nor keeps a deleted folder alive.
/// Its name carries the writer's process id; a file of a live process,
/// this one included, is left alone.
fn remove_if_abandoned(full: &Path, name: &str) {
    let Some(pid) = crate::names::temp_owner(name) else {
        return;
    };
    if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
        return;
    }
    match std::fs::remove_file(full) {
        Ok(()) => {
            tracing::info!(path = %full.display(), "removed a temp file a killed download left")
        }
        Err(e) => {
            tracing::debug!(path = %full.display(), "cannot remove a leftover temp file: {e}")
        }
    }
}

fn scan_file(
    full: &Path,
    meta: &Metadata,
    previous: Option<&LocalEntry>,
    recorded: Recorded,
    problems: &mut Vec<String>,
    hashed: &mut u64,
) -> Look {
    let stat = Stat::of(meta);
    let mode = meta.permissions().mode() & 0o777;
    let exec = mode & 0o100 != 0;
    if let Some((old_stat, node @ Node::File { .. })) = previous
        && *old_stat == stat
        && recorded.settled(old_stat)
    {
        // The bytes are as recorded; the mode is read again (an entry
        // recorded before modes were synced gets it without a re-read).
        let mut node = node.clone();
        if let Node::File {
            exec: old_exec,
            mode: old_mode,
            ..
        } = &mut node
        {
            (*old_exec, *old_mode) = (exec, Some(mode));
        }
        return Look::Entry((stat, node));
    }
    let read = std::fs::File::open(full).and_then(|file| {
        let (blocks, size) = chunk::blocklist_of_file(file, stat.size)?;
        let after = std::fs::symlink_metadata(full)?;
        Ok((blocks, size, Stat::of(&after)))
    });
    *hashed += 1;
    match read {
        Ok((blocks, size, after)) if after == stat && size == stat.size => {
            let node = Node::File {
                size,
                mtime_ns: stat.mtime_ns,
                exec,
                mode: Some(mode),
                blocks,
            };
            Look::Entry((stat, node))
        }
        Ok(_) => {
            problems.push(format!(
                "{}: changed while being read; will retry",
                full.display()
            ));
            Look::Keep
        }
        Err(e) => {
            problems.push(format!("{}: {e}", full.display()));
            Look::Keep
        }
    }
}

fn keep_previous_subtree(
    root: &Path,
    dir: &Path,
    previous: &BTreeMap<RelPath, LocalEntry>,
    out: &mut ScanOutcome,
) {
    let Some(Some(Ok(dir))) = dir.strip_prefix(root).ok().map(RelPath::from_fs) else {
        return;
    };
    for (path, entry) in previous.iter().filter(|(p, _)| p.is_inside(&dir)) {
        out.entries.insert(path.clone(), entry.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A previous entry whose stat matches the file but whose content does
    /// not (what a same-size rewrite within one timestamp tick leaves):
    /// trusted only when recorded safely after the file's last change.
    #[test]
    fn racily_clean_entries_are_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"real").unwrap();
        let stat = Stat::of(&std::fs::symlink_metadata(&file).unwrap());
        let path = RelPath::parse("f").unwrap();
        let (stale_blocks, _) = chunk::blocklist(&b"fake"[..]).unwrap();
        let stale = Node::File {
            size: 4,
            mtime_ns: stat.mtime_ns,
            exec: false,
            mode: Some(0o644),
            blocks: stale_blocks,
        };
        let previous = BTreeMap::from([(path.clone(), (stat, stale.clone()))]);
        let rules = IgnoreRules::load(dir.path());
        let node_after = |started: Option<i64>| {
            scan(dir.path(), &previous, started, &rules)
                .unwrap()
                .entries[&path]
                .1
                .clone()
        };
        let much_later = stat.ctime_ns.max(stat.mtime_ns) + 10 * RACY_WINDOW_NS;
        assert_eq!(
            node_after(Some(much_later)),
            stale,
            "settled: the fast path holds"
        );
        let (real_blocks, _) = chunk::blocklist(&b"real"[..]).unwrap();
        for racy in [
            Some(stat.mtime_ns),
            Some(stat.mtime_ns + RACY_WINDOW_NS / 2),
            None,
        ] {
            let Node::File { blocks, .. } = node_after(racy) else {
                panic!("a file")
            };
            assert_eq!(
                blocks, real_blocks,
                "scan started at {racy:?}: must re-read"
            );
        }
    }
}
