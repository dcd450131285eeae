//! The whole-root scan in path order, merged with the Local tree read in
//! the same order: each change is handed on as soon as it is found, so a
//! scan holds the listings of the folders it is in the middle of, never
//! the tree (a million files scan in the memory of a few folders).
//!
//! Paths are visited in byte order of their text, the order of the local
//! state's index: a folder's children are listed when the folder comes up
//! and wait in a heap with everything else not yet visited ("a", "a.txt",
//! "a/b", "a0": the heap puts them so). A Local entry the walk passes
//! without meeting on disk is gone; one it meets is the fast path's
//! previous entry.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::Path;

use super::{Look, Recorded, look};
use crate::ignore_rules::IgnoreRules;
use crate::local::LocalEntry;
use crate::path::RelPath;
use crate::state::LocalChange;

/// What a merged scan found, besides the changes it handed on.
#[derive(Debug, Default)]
pub struct MergedOutcome {
    /// Paths that could not be read, with why; their previous entries
    /// (and, for a folder, everything under it) stand.
    pub problems: Vec<String>,
    /// Files read and hashed (the fast path missed).
    pub hashed: u64,
    /// Changes handed on.
    pub changes: usize,
}

/// Scans `root` against `previous` (the next Local entry in path order,
/// each call, with when Pouch took its stat data right after writing the
/// file, if it did; every entry was taken by the scan that started at
/// `previous_started_ns` or later, or by Pouch),
/// handing each change to `record` in path order: a new or changed entry,
/// or `None` for a path gone from disk.
///
/// Fails when the root itself cannot be listed: an unmounted disk must
/// never read as "everything was deleted".
pub fn scan_merged(
    root: &Path,
    mut previous: impl FnMut() -> crate::Result<Option<(RelPath, LocalEntry, Option<i64>)>>,
    previous_started_ns: Option<i64>,
    rules: &IgnoreRules,
    mut record: impl FnMut(LocalChange) -> crate::Result<()>,
) -> crate::Result<MergedOutcome> {
    let mut out = MergedOutcome::default();
    let mut pending: BinaryHeap<Reverse<RelPath>> = BinaryHeap::new();
    if let Err(source) = list(root, root, &mut pending, &mut out.problems) {
        return Err(crate::Error::RootUnavailable {
            root: root.to_owned(),
            source,
        });
    }
    // Paths whose insides could not be looked at: the Local entries under
    // them stand.
    let mut unread: Vec<RelPath> = Vec::new();
    let mut next = previous()?;
    while let Some(Reverse(path)) = pending.pop() {
        // Local entries the walk passed are gone from disk.
        while next.as_ref().is_some_and(|(p, _, _)| *p < path) {
            let (p, _, _) = next.take().expect("just checked");
            gone(p, &unread, &mut out, &mut record)?;
            next = previous()?;
        }
        let (prev, taken) = match next.take() {
            Some((p, entry, taken)) if p == path => {
                next = previous()?;
                (Some(entry), taken)
            }
            other => {
                next = other;
                (None, None)
            }
        };
        let full = path.to_fs(root);
        let recorded = Recorded {
            scan_from: previous_started_ns,
            written_from: taken,
        };
        let seen = look(
            &full,
            &path,
            prev.as_ref(),
            recorded,
            rules,
            &mut out.problems,
            &mut out.hashed,
        );
        match seen {
            Look::Entry(entry) => {
                if entry.1.is_dir()
                    && let Err(e) = list(root, &full, &mut pending, &mut out.problems)
                {
                    out.problems
                        .push(format!("{}: cannot list: {e}", full.display()));
                    unread.push(path.clone());
                }
                if prev.as_ref() != Some(&entry) {
                    out.changes += 1;
                    record((path, Some(entry)))?;
                }
            }
            // Its previous entry and everything under it stand.
            Look::Keep => unread.push(path),
            Look::Nothing => {
                if prev.is_some() {
                    gone(path, &unread, &mut out, &mut record)?;
                }
            }
        }
    }
    while let Some((p, _, _)) = next.take() {
        gone(p, &unread, &mut out, &mut record)?;
        next = previous()?;
    }
    Ok(out)
}

/// Hands on that `path` is gone from disk, unless it is under a path that
/// could not be read.
fn gone(
    path: RelPath,
    unread: &[RelPath],
    out: &mut MergedOutcome,
    record: &mut impl FnMut(LocalChange) -> crate::Result<()>,
) -> crate::Result<()> {
    if unread.iter().any(|u| path.is_inside(u)) {
        return Ok(());
    }
    out.changes += 1;
    record((path, None))
}

/// Puts the paths in folder `dir` into `pending`; a name that cannot be
/// synced is a problem. Fails if the folder cannot be listed at all.
fn list(
    root: &Path,
    dir: &Path,
    pending: &mut BinaryHeap<Reverse<RelPath>>,
    problems: &mut Vec<String>,
) -> std::io::Result<()> {
    for item in std::fs::read_dir(dir)? {
        let item = match item {
            Ok(item) => item,
            Err(e) => {
                problems.push(format!("{}: cannot list: {e}", dir.display()));
                continue;
            }
        };
        let full = item.path();
        let relative = full.strip_prefix(root).expect("under root");
        match RelPath::from_fs(relative) {
            Some(Ok(path)) => pending.push(Reverse(path)),
            Some(Err(e)) => problems.push(format!("{}: {e}", full.display())),
            None => problems.push(format!(
                "{}: the name is not valid UTF-8 and cannot be synced; rename it",
                full.display()
            )),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::node::Node;

    fn merged(
        root: &Path,
        previous: &BTreeMap<RelPath, LocalEntry>,
        started: Option<i64>,
    ) -> (Vec<LocalChange>, MergedOutcome) {
        let rules = IgnoreRules::load(root);
        let mut entries = previous.clone().into_iter().map(|(p, e)| (p, e, None));
        let mut changes = Vec::new();
        let outcome = scan_merged(
            root,
            || Ok(entries.next()),
            started,
            &rules,
            |change| {
                changes.push(change);
                Ok(())
            },
        )
        .unwrap();
        (changes, outcome)
    }

    fn p(path: &str) -> RelPath {
        RelPath::parse(path).unwrap()
    }

    /// Names that sort around the separator ('-' and '.' before '/', '0'
    /// after it) come out in the local state's order, and the merged scan
    /// finds exactly what the in-memory scan finds.
    #[test]
    fn changes_come_in_path_order_and_match_the_whole_scan() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for folder in ["a/b", "a-c", "a0/z", "a.d/e"] {
            std::fs::create_dir_all(root.join(folder)).unwrap();
        }
        for file in ["a.txt", "a/b/x", "a/y", "a-c/x", "a0/z/q", "a.d/e/f", "b"] {
            std::fs::write(root.join(file), file).unwrap();
        }
        let (changes, outcome) = merged(root, &BTreeMap::new(), None);
        let paths: Vec<&RelPath> = changes.iter().map(|(path, _)| path).collect();
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(paths, sorted);
        let whole = crate::scan::scan(root, &BTreeMap::new(), None, &IgnoreRules::load(root))
            .unwrap()
            .entries;
        let found: BTreeMap<RelPath, LocalEntry> = changes
            .into_iter()
            .map(|(path, entry)| (path, entry.expect("all new")))
            .collect();
        assert_eq!(found, whole);
        assert_eq!(outcome.changes, whole.len());
        assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
    }

    /// Against the previous tree: nothing for what stayed, the new entry
    /// for what changed, a delete for each path gone, the insides of a
    /// folder that became a file among them.
    #[test]
    fn only_differences_are_handed_on() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("keep/deep")).unwrap();
        std::fs::create_dir_all(root.join("gone/inner")).unwrap();
        std::fs::create_dir_all(root.join("turned")).unwrap();
        for file in [
            "keep/deep/f",
            "keep/g",
            "gone/inner/h",
            "turned/i",
            "edited",
        ] {
            std::fs::write(root.join(file), file).unwrap();
        }
        let rules = IgnoreRules::load(root);
        let before = crate::scan::scan(root, &BTreeMap::new(), None, &rules)
            .unwrap()
            .entries;
        // Recorded long after the files' last change: the fast path holds.
        let started = Some(crate::clock::now_ns() + 10 * crate::scan::RACY_WINDOW_NS);

        std::fs::remove_dir_all(root.join("gone")).unwrap();
        std::fs::remove_dir_all(root.join("turned")).unwrap();
        std::fs::write(root.join("turned"), b"a file now").unwrap();
        std::fs::write(root.join("edited"), b"other bytes").unwrap();
        std::fs::write(root.join("new"), b"new").unwrap();

        let (changes, _) = merged(root, &before, started);
        let summary: Vec<(&str, bool)> = changes
            .iter()
            .map(|(path, entry)| (path.as_str(), entry.is_some()))
            .collect();
        assert_eq!(
            summary,
            [
                ("edited", true),
                ("gone", false),
                ("gone/inner", false),
                ("gone/inner/h", false),
                ("new", true),
                ("turned", true),
                ("turned/i", false),
            ]
        );
        let turned = &changes[5].1.as_ref().unwrap().1;
        assert!(matches!(turned, Node::File { size: 10, .. }), "{turned:?}");
    }

    /// Entries the Local tree holds and the disk does not are deletes,
    /// each one, in order.
    #[test]
    fn local_entries_missing_on_disk_are_deletes_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut previous = BTreeMap::new();
        let stat = crate::local::Stat {
            size: 0,
            mtime_ns: 0,
            ino: 1,
            ctime_ns: 0,
        };
        previous.insert(p("x"), (stat, Node::Dir));
        previous.insert(p("x/y"), (stat, Node::Dir));
        let (changes, _) = merged(root, &previous, None);
        assert_eq!(changes, [(p("x"), None), (p("x/y"), None)]);
    }
}
