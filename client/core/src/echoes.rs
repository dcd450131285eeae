//! The watcher's echo of the engine's own writes, told apart as it comes.
//!
//! Every download, local delete and rename the engine makes comes back
//! from the file-system watcher as an event. Scanning those paths again
//! would cost as much as the download did (a million files: a million
//! events), and holding them until the sync ends would cost memory in
//! proportion to the download. So the engine says here which path it is
//! about to change ([`Echoes::expect`]) and what it left there once the
//! change is recorded ([`Echoes::left`]); the watcher's thread drops an
//! event at such a path while the disk still holds what the engine left
//! ([`Echoes::is_echo`]), and a few seconds later the entry is forgotten.
//!
//! Nothing a user does is lost to this: an event dropped while the engine
//! was changing a path is checked when the change is recorded (the disk
//! must still hold what the engine left, stat for stat), and a change the
//! engine started but did not record names its path for the next sync's
//! scan ([`Echoes::after_sync`]).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::engine::Left;
use crate::path::RelPath;

/// How long after the engine recorded a change its echo is expected (and
/// how often the daemon lets old entries go). The
/// watcher's thread tells echoes apart as the events come, so they arrive
/// within milliseconds unless the machine is overloaded; a late one costs
/// a scan of its path, no more.
pub const KEEP: Duration = Duration::from_secs(5);

/// Entries kept at most (oldest go first): bounds memory when no echo
/// comes at all (events lost, a watcher that stopped).
const MAX_ENTRIES: usize = 100_000;

/// Paths named for the next scan at most; past this, a whole scan.
const MAX_UNCONFIRMED: usize = crate::daemon::dirty::MAX_PATHS;

/// What the engine is doing or did at a path.
#[derive(Debug, Clone, Copy)]
enum Entry {
    /// Changing it now: every event there is its own.
    Changing,
    /// Recorded that it left this there, at this moment.
    Left(Left, Instant),
}

#[derive(Debug, Default)]
struct Table {
    entries: HashMap<RelPath, Entry>,
    /// Paths in the order they were left, to forget them by age.
    order: VecDeque<(Instant, RelPath)>,
    /// Paths whose change was not recorded as made, or whose disk no
    /// longer held what the engine left when it recorded it.
    unconfirmed: BTreeSet<RelPath>,
    /// More than [`MAX_UNCONFIRMED`] of those: a whole scan.
    overflow: bool,
}

/// The engine's recent writes, shared between the engine (which writes
/// them) and the watcher's thread (which reads them). See the module.
#[derive(Debug, Default)]
pub struct Echoes {
    table: Mutex<Table>,
}

impl Echoes {
    /// The engine is about to change the disk at `path`.
    pub fn expect(&self, path: &RelPath) {
        let mut table = self.lock();
        table.entries.insert(path.clone(), Entry::Changing);
    }

    /// The engine changed the disk at `path` (at `full`) and recorded that
    /// it left `left` there. If the disk already holds something else, a
    /// user's change may have come with the engine's and been taken for its
    /// echo: the path is named for the next scan.
    pub fn left(&self, path: &RelPath, left: Left, full: &Path) {
        let on_disk = left.is_on_disk(full);
        let now = Instant::now();
        let mut table = self.lock();
        if !on_disk {
            table.unconfirm(path.clone());
        }
        table.entries.insert(path.clone(), Entry::Left(left, now));
        table.order.push_back((now, path.clone()));
        table.forget_before(now.checked_sub(KEEP));
    }

    /// Whether the watcher's event at `path` (at `full`) is the echo of the
    /// engine's own change: the engine is changing it, or the disk holds
    /// what it left there lately. Called on the watcher's thread.
    pub fn is_echo(&self, path: &RelPath, full: &Path) -> bool {
        let entry = {
            let mut table = self.lock();
            table.forget_before(Instant::now().checked_sub(KEEP));
            table.entries.get(path).copied()
        };
        // The stat is made outside the lock: the engine goes on meanwhile.
        match entry {
            None => false,
            Some(Entry::Changing) => true,
            Some(Entry::Left(left, _)) => left.is_on_disk(full),
        }
    }

    /// After a sync: the paths to scan at the next one (changes the engine
    /// started and did not record, and those whose disk differed when it
    /// recorded them), or `None` when they were too many to list (a whole
    /// scan). The list starts over.
    pub fn after_sync(&self) -> Option<Vec<RelPath>> {
        let mut table = self.lock();
        let changing: Vec<RelPath> = table
            .entries
            .iter()
            .filter(|(_, entry)| matches!(entry, Entry::Changing))
            .map(|(path, _)| path.clone())
            .collect();
        for path in changing {
            table.entries.remove(&path);
            table.unconfirm(path);
        }
        let unconfirmed = std::mem::take(&mut table.unconfirmed);
        (!std::mem::take(&mut table.overflow)).then(|| unconfirmed.into_iter().collect())
    }

    /// Forgets what was left long enough ago that its echo is not
    /// expected any more, and gives the memory back once nothing is held
    /// (the daemon calls this on a timer: after a large download no event
    /// may come to do it).
    pub fn forget_old(&self) {
        self.lock().forget_before(Instant::now().checked_sub(KEEP));
    }

    /// How many entries are held (for tests of the bound).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().expect("echoes lock")
    }
}

impl Table {
    fn unconfirm(&mut self, path: RelPath) {
        if self.overflow {
            return;
        }
        self.unconfirmed.insert(path);
        if self.unconfirmed.len() > MAX_UNCONFIRMED {
            self.unconfirmed = BTreeSet::new();
            self.overflow = true;
        }
    }

    /// Forgets what was left before `cutoff`, and the oldest past
    /// [`MAX_ENTRIES`].
    fn forget_before(&mut self, cutoff: Option<Instant>) {
        while let Some((at, _)) = self.order.front() {
            let old = cutoff.is_some_and(|cutoff| *at < cutoff);
            if !old && self.order.len() <= MAX_ENTRIES {
                break;
            }
            let (at, path) = self.order.pop_front().expect("looked at");
            // A path left again since is kept for its newer entry.
            if matches!(self.entries.get(&path), Some(Entry::Left(_, when)) if *when == at) {
                self.entries.remove(&path);
            }
        }
        if self.order.is_empty() && self.entries.capacity() > 1024 && self.entries.is_empty() {
            self.entries.shrink_to_fit();
            self.order.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::Stat;

    fn rel(path: &str) -> RelPath {
        RelPath::parse(path).unwrap()
    }

    fn stat_of(full: &Path) -> Stat {
        Stat::of(&std::fs::symlink_metadata(full).unwrap())
    }

    #[test]
    fn events_at_a_path_being_changed_or_left_as_is_are_echoes() {
        let dir = tempfile::tempdir().unwrap();
        let full = dir.path().join("a.txt");
        let echoes = Echoes::default();
        assert!(!echoes.is_echo(&rel("a.txt"), &full));

        echoes.expect(&rel("a.txt"));
        assert!(echoes.is_echo(&rel("a.txt"), &full));
        std::fs::write(&full, b"downloaded").unwrap();
        echoes.left(&rel("a.txt"), Left::Entry(stat_of(&full)), &full);
        assert!(echoes.is_echo(&rel("a.txt"), &full));
        assert_eq!(echoes.after_sync(), Some(vec![]));

        // The user writes after the engine: the event is news.
        std::thread::sleep(Duration::from_millis(10));
        std::fs::write(&full, b"the user's, longer").unwrap();
        assert!(!echoes.is_echo(&rel("a.txt"), &full));
        // Another path: news.
        assert!(!echoes.is_echo(&rel("b.txt"), &dir.path().join("b.txt")));
    }

    #[test]
    fn a_change_not_recorded_or_overtaken_is_scanned_next() {
        let dir = tempfile::tempdir().unwrap();
        let full = dir.path().join("a.txt");
        std::fs::write(&full, b"downloaded").unwrap();
        let stat = stat_of(&full);
        let echoes = Echoes::default();
        // Expected, never recorded (the download failed, or found the
        // user's change first): its events were dropped, so it is named.
        echoes.expect(&rel("gone-wrong"));
        // Recorded, but the user wrote meanwhile (an event dropped).
        echoes.expect(&rel("a.txt"));
        std::thread::sleep(Duration::from_millis(10));
        std::fs::write(&full, b"the user's, longer").unwrap();
        echoes.left(&rel("a.txt"), Left::Entry(stat), &full);
        // Deleted by the engine, and still absent: confirmed.
        echoes.expect(&rel("deleted"));
        echoes.left(&rel("deleted"), Left::Gone, &dir.path().join("deleted"));
        assert_eq!(
            echoes.after_sync(),
            Some(vec![rel("a.txt"), rel("gone-wrong")])
        );
        assert_eq!(echoes.after_sync(), Some(vec![]));
        assert!(!echoes.is_echo(&rel("gone-wrong"), &dir.path().join("gone-wrong")));
    }

    #[test]
    fn entries_are_bounded_and_too_many_unconfirmed_ask_for_everything() {
        let dir = tempfile::tempdir().unwrap();
        let echoes = Echoes::default();
        for i in 0..MAX_ENTRIES + 10 {
            echoes.left(
                &rel(&format!("f{i}")),
                Left::Gone,
                &dir.path().join(format!("f{i}")),
            );
        }
        assert_eq!(echoes.len(), MAX_ENTRIES);
        // The oldest went first.
        assert!(!echoes.is_echo(&rel("f0"), &dir.path().join("f0")));
        assert!(echoes.is_echo(
            &rel(&format!("f{}", MAX_ENTRIES + 9)),
            &dir.path().join(format!("f{}", MAX_ENTRIES + 9))
        ));
        assert_eq!(echoes.after_sync(), Some(vec![]));

        for i in 0..=MAX_UNCONFIRMED {
            echoes.expect(&rel(&format!("g{i}")));
        }
        assert_eq!(echoes.after_sync(), None);
        assert_eq!(echoes.after_sync(), Some(vec![]));
    }
}
