//! Deterministic simulation of several devices syncing through one store.
//!
//! A run is a list of [`Step`]s generated from a seed: local operations on a
//! device's real folder (in `/dev/shm` where there is one), syncs under
//! injected faults (failed calls, crashes, late journal reads), and
//! restarts. Steps name paths from a small vocabulary rather than "the
//! third file", so a step means the same thing in any list: that is what
//! lets a failing list be shrunk by deleting steps. After the steps, faults
//! stop and every device syncs until nothing changes; then the invariants
//! are checked:
//!
//! - all devices hold the same tree, file modes (`0o777`) included;
//! - no content is lost: every file content a sync ever saw on a device is
//!   still somewhere (at its path, renamed, or as a conflicted copy) unless
//!   a user's own operation overwrote or deleted it;
//! - garbage collection (collector steps between syncs, with time moved
//!   forward past retention and grace, faults and crashes of the collector;
//!   and collections in the middle of a device's sync, between its uploads
//!   and its commit) never deletes a block of a version retention keeps:
//!   every block of a version retained now, and by every collection that
//!   saw it, is stored; and after a last collection with no grace, nothing
//!   else is;
//! - device 0 runs on a migration's store pair (`Dual`), double-writing to
//!   a second namespace that fails on its own schedule: that target's
//!   journal stays a prefix of the journal naming only blocks it holds, and
//!   a copy then makes it verify;
//! - no temp file is left behind;
//! - syncing terminates (a bounded number of rounds reaches quiet).

#![allow(dead_code, missing_docs)]

pub mod backend;
pub mod rng;
mod steps;

pub use steps::{LocalOp, Step, generate};

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use pouch_core::commit::Commit;
use pouch_core::dual::Dual;
use pouch_core::node::Node;
use pouch_core::path::RelPath;
use pouch_core::{Clock, Engine, NoProgress, Scope, SyncOptions};

use backend::{Collection, Faults, Namespace, SimBackend};

/// Conflicted copies are named with the date; a fixed clock keeps runs
/// identical.
struct FixedClock;

impl Clock for FixedClock {
    fn unix_secs(&self) -> i64 {
        1_790_000_000
    }
}

struct Device {
    name: String,
    root: PathBuf,
    journal: PathBuf,
    backend: Arc<SimBackend>,
    /// The store this device is migrating to (device 0 only): its engine
    /// runs on the pair, double-writing and shadow-reading.
    target: Option<Arc<SimBackend>>,
    engine: Option<Engine>,
    /// The paths a watcher would have named since the last sync that
    /// succeeded; `None`: a whole scan is due (a restarted daemon).
    dirty: Option<BTreeSet<String>>,
    /// Unsettled paths its engine plans together: small slices make the
    /// simulation's small trees take the path of a large plan.
    plan_slice: usize,
}

/// The plan slices devices use, by their number (see
/// `Device::plan_slice`): fixed per device, so a shrunk run keeps them.
const PLAN_SLICES: [usize; 4] = [1, 3, 7, pouch_core::PLAN_SLICE];

impl Device {
    /// What the next sync scans: the dirty paths, or everything (a
    /// restarted daemon, and now and then the periodic rescan).
    fn scope(&self, rescan: bool) -> Scope {
        match &self.dirty {
            Some(paths) if !rescan => Scope::Paths(
                paths
                    .iter()
                    .map(|p| RelPath::parse(p).expect("the vocabulary's paths are valid"))
                    .collect(),
            ),
            _ => Scope::Everything,
        }
    }

    /// One sync of what the watcher would have seen.
    fn sync(
        &mut self,
        runtime: &tokio::runtime::Runtime,
        rescan: bool,
    ) -> Result<pouch_core::Result<pouch_core::SyncReport>, String> {
        let options = SyncOptions {
            scope: self.scope(rescan),
            // As the daemon does, but due at the next sync: deletes and
            // new paths are held back one sync, then sent.
            hold_new_deletes: Some(std::time::Duration::from_millis(1)),
            ..SyncOptions::default()
        };
        let outcome = runtime.block_on(self.engine()?.sync_with(options));
        if outcome.is_ok() {
            self.dirty = Some(BTreeSet::new());
        }
        Ok(outcome)
    }

    fn engine(&mut self) -> Result<&mut Engine, String> {
        if self.engine.is_none() {
            let backend: Arc<dyn pouch_backend::Backend> = match &self.target {
                Some(target) => {
                    Arc::new(Dual::migrating(self.backend.clone(), target.clone(), 0.5))
                }
                None => self.backend.clone(),
            };
            let engine = Engine::open(
                &self.root,
                &self.name,
                &self.journal,
                backend,
                Arc::new(FixedClock),
                Arc::new(NoProgress),
            )
            .map_err(|e| format!("{}: reopening the engine failed: {e}", self.name))?;
            let mut engine = engine;
            engine.set_plan_slice(self.plan_slice);
            self.engine = Some(engine);
        }
        Ok(self.engine.as_mut().expect("just opened"))
    }
}

/// Where runs keep their folders: memory when the system has it, so that
/// fsyncs cost nothing.
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::Builder::new()
            .prefix("pouch-sim-")
            .tempdir_in(shm)
    {
        return dir;
    }
    tempfile::Builder::new()
        .prefix("pouch-sim-")
        .tempdir()
        .expect("a temp folder")
}

/// What every sync saw and what users threw away, for the no-loss check.
#[derive(Default)]
struct Ledger {
    seen: HashSet<blake3::Hash>,
    retired: HashSet<blake3::Hash>,
}

/// Content hashes of the files under `dir` (recursively), for retiring.
fn contents(dir: &Path, out: &mut Vec<blake3::Hash>) {
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if meta.is_file() {
        if let Ok(bytes) = std::fs::read(dir) {
            out.push(blake3::hash(&bytes));
        }
    } else if meta.is_dir() {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            contents(&entry.path(), out);
        }
    }
}

/// What one path holds, for comparing devices.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Dir,
    File { hash: blake3::Hash, mode: u32 },
    Link(PathBuf),
}

impl Item {
    fn content(&self) -> Option<blake3::Hash> {
        match self {
            Item::File { hash, .. } => Some(*hash),
            _ => None,
        }
    }
}

/// A folder's tree: relative path to what it holds.
fn tree(root: &Path) -> BTreeMap<String, Item> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Item>) {
        use std::os::unix::fs::PermissionsExt;
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                out.insert(rel, Item::Dir);
                walk(root, &path, out);
            } else if meta.file_type().is_symlink() {
                out.insert(rel, Item::Link(std::fs::read_link(&path).unwrap()));
            } else {
                let hash = blake3::hash(&std::fs::read(&path).unwrap());
                let mode = meta.permissions().mode() & 0o777;
                out.insert(rel, Item::File { hash, mode });
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn noise(seed: u64, len: usize) -> Vec<u8> {
    pouch_backend::conformance::noise(seed, len).to_vec()
}

/// Applies a user's operation; operations that make no sense in the
/// current state (a missing file, a parent that is a file) do nothing.
/// Returns the paths a file-system watcher would name: those changed, and
/// the highest folder made on the way.
fn apply_op(root: &Path, op: &LocalOp, ledger: &mut Ledger) -> Vec<String> {
    let mut touched = Vec::new();
    apply_op_noting(root, op, ledger, &mut touched);
    touched
}

fn apply_op_noting(root: &Path, op: &LocalOp, ledger: &mut Ledger, touched: &mut Vec<String>) {
    let at = |p: &str| root.join(p);
    let retire = |path: &Path, ledger: &mut Ledger| {
        let mut gone = Vec::new();
        contents(path, &mut gone);
        ledger.retired.extend(gone);
    };
    // The path a watcher names: the real one (a folder reached through a
    // link is watched where it really is); none outside the root.
    let real_root = root.canonicalize().unwrap();
    let watched = |p: &Path| -> Option<String> {
        let parent = p.parent()?.canonicalize().ok()?;
        let real = parent.join(p.file_name()?);
        Some(real.strip_prefix(&real_root).ok()?.to_str()?.to_owned())
    };
    let parent_ok = |p: &Path, touched: &mut Vec<String>| {
        let parent = p.parent().expect("under root");
        let made = parent
            .ancestors()
            .take_while(|a| *a != root)
            .filter(|a| std::fs::symlink_metadata(a).is_err())
            .last()
            .map(Path::to_owned);
        let ok = std::fs::create_dir_all(parent).is_ok();
        touched.extend(made.as_deref().and_then(watched));
        ok
    };
    // Writing through a link would change its target behind the ledger's
    // back; users do it, but the no-loss check could not account for it.
    let is_link = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink());
    match op {
        LocalOp::Write { path, seed, len } => {
            let p = at(path);
            if p.is_dir() || is_link(&p) || !parent_ok(&p, touched) {
                return;
            }
            retire(&p, ledger);
            let _ = std::fs::write(&p, noise(*seed, *len));
            touched.extend(watched(&at(path)));
        }
        LocalOp::Append { path, seed, len } => {
            let p = at(path);
            if !p.is_file() || is_link(&p) {
                return;
            }
            retire(&p, ledger);
            let mut data = std::fs::read(&p).unwrap();
            data.extend(noise(*seed, *len));
            std::fs::write(&p, data).unwrap();
            touched.extend(watched(&at(path)));
        }
        LocalOp::Truncate { path, len } => {
            let p = at(path);
            if !p.is_file() || is_link(&p) {
                return;
            }
            let data = std::fs::read(&p).unwrap();
            if *len >= data.len() {
                return;
            }
            retire(&p, ledger);
            std::fs::write(&p, &data[..*len]).unwrap();
            touched.extend(watched(&at(path)));
        }
        LocalOp::Rename { from, to } => {
            let (f, t) = (at(from), at(to));
            if std::fs::symlink_metadata(&f).is_err()
                || std::fs::symlink_metadata(&t).is_ok()
                || t.starts_with(&f)
                || !parent_ok(&t, touched)
            {
                return;
            }
            let from_watched = watched(&f);
            let _ = std::fs::rename(&f, &t);
            touched.extend(from_watched.into_iter().chain(watched(&t)));
        }
        LocalOp::Delete { path } => {
            let p = at(path);
            retire(&p, ledger);
            if p.is_dir() {
                std::fs::remove_dir_all(&p).unwrap();
            } else if p.is_file() {
                std::fs::remove_file(&p).unwrap();
            }
            touched.extend(watched(&at(path)));
        }
        LocalOp::Mkdir { path } => {
            let p = at(path);
            if std::fs::symlink_metadata(&p).is_err() && parent_ok(&p, touched) {
                let _ = std::fs::create_dir(&p);
                touched.extend(watched(&at(path)));
            }
        }
        LocalOp::Symlink { path, target } => {
            let p = at(path);
            if std::fs::symlink_metadata(&p).is_err() && parent_ok(&p, touched) {
                let _ = std::os::unix::fs::symlink(target, &p);
                touched.extend(watched(&at(path)));
            }
        }
        LocalOp::Chmod { path } => {
            use std::os::unix::fs::PermissionsExt;
            let p = at(path);
            if let Ok(meta) = std::fs::symlink_metadata(&p)
                && meta.is_file()
            {
                // Between 0o644 and 0o711: the exec bits and who else may
                // read, so that every permission class is synced.
                let mode = meta.permissions().mode() ^ 0o155;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
                touched.extend(watched(&at(path)));
            }
        }
        LocalOp::TypeChange { path, seed } => {
            let p = at(path);
            if p.is_file() {
                retire(&p, ledger);
                std::fs::remove_file(&p).unwrap();
                std::fs::create_dir(&p).unwrap();
            } else if p.is_dir() {
                retire(&p, ledger);
                std::fs::remove_dir_all(&p).unwrap();
                std::fs::write(&p, noise(*seed, 100)).unwrap();
            }
            touched.extend(watched(&at(path)));
        }
    }
}

/// Syncs every device until a whole round changes nothing.
const QUIET_ROUNDS_LIMIT: usize = 8;

/// Runs one simulation; `Err` says which invariant broke.
pub fn run(devices: usize, steps: &[Step]) -> Result<(), String> {
    let scratch = scratch();
    // Made as `pouch init` makes a store.
    let shared = Arc::new(Mutex::new(Namespace {
        identity: Some(pouch_backend::StoreId::random()),
        ..Namespace::default()
    }));
    let target = Arc::new(Mutex::new(Namespace::default()));
    let mut fleet: Vec<Device> = (0..devices)
        .map(|i| {
            let root = scratch.path().join(format!("dev{i}"));
            std::fs::create_dir_all(&root).unwrap();
            Device {
                name: format!("D{i}"),
                journal: scratch.path().join(format!("dev{i}.sqlite")),
                root,
                backend: Arc::new(SimBackend::new(shared.clone())),
                target: (i == 0).then(|| Arc::new(SimBackend::new(target.clone()))),
                engine: None,
                dirty: None,
                plan_slice: PLAN_SLICES[(i + 1) % PLAN_SLICES.len()],
            }
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut ledger = Ledger::default();
    let mut collections: Vec<Collection> = Vec::new();
    let observe = |device: &Device, ledger: &mut Ledger| {
        ledger
            .seen
            .extend(tree(&device.root).values().filter_map(Item::content));
    };

    for step in steps {
        match step {
            Step::Op { device, op } => {
                let dev = &mut fleet[*device];
                let touched = apply_op(&dev.root, op, &mut ledger);
                if let Some(dirty) = &mut dev.dirty {
                    dirty.extend(touched);
                }
            }
            Step::Restart { device } => {
                fleet[*device].engine = None;
                fleet[*device].dirty = None;
            }
            Step::Collect {
                advance_secs,
                grace_secs,
                faults,
            } => {
                shared.lock().unwrap().now_ms += *advance_secs as i64 * 1000;
                let (done, outcome) = runtime.block_on(backend::collect(
                    &shared,
                    std::time::Duration::from_secs(*grace_secs),
                    *faults,
                ));
                collections.push(done);
                if let Err(e) = outcome
                    && *faults == Faults::NONE
                    && !e.contains("fenced")
                {
                    return Err(format!("a collection without faults failed: {e}"));
                }
            }
            Step::SetRetention {
                device,
                keep_secs,
                keep_last,
            } => {
                let policy = pouch_core::retention::Retention {
                    keep_secs: *keep_secs,
                    keep_last: *keep_last,
                };
                let dev = &mut fleet[*device];
                runtime
                    .block_on(dev.engine()?.set_retention(policy))
                    .map_err(|e| format!("{}: setting the retention failed: {e}", dev.name))?;
            }
            Step::Sync { device, faults } => {
                let dev = &mut fleet[*device];
                observe(dev, &mut ledger);
                dev.backend.arm(*faults);
                if let Some(target) = &dev.target {
                    // The target fails on its own schedule.
                    target.arm(Faults {
                        seed: faults.seed ^ 0x007a_26e7,
                        ..*faults
                    });
                }
                let outcome = dev.sync(&runtime, faults.seed % 8 == 0)?;
                let crashed = dev.backend.crashed();
                dev.backend.arm(Faults::NONE);
                if let Some(target) = &dev.target {
                    target.arm(Faults::NONE);
                }
                match outcome {
                    Ok(_) => {}
                    // Injected failures may fail a sync; nothing else may.
                    Err(e) if *faults != Faults::NONE => {
                        if crashed {
                            // A new process: the daemon starts with a
                            // whole scan.
                            dev.engine = None;
                            dev.dirty = None;
                        }
                        let _ = e;
                    }
                    Err(e) => {
                        return Err(format!("{}: a sync without faults failed: {e}", dev.name));
                    }
                }
            }
        }
    }

    // Faults stop; every device syncs until a round changes nothing.
    let mut quiet = false;
    for _ in 0..QUIET_ROUNDS_LIMIT {
        let mut changed = false;
        for dev in &mut fleet {
            observe(dev, &mut ledger);
            let report = dev
                .sync(&runtime, false)?
                .map_err(|e| format!("{}: a sync after the faults failed: {e}", dev.name))?;
            if !report.problems.is_empty() {
                return Err(format!(
                    "{}: problems reported: {:?}",
                    dev.name, report.problems
                ));
            }
            // Deletes held back are sent by the next round.
            changed |= dev
                .engine
                .as_ref()
                .is_some_and(|e| e.deletes_due().is_some());
            changed |= report.commits
                + report.downloaded
                + report.deleted_local
                + report.renamed_local
                + report.conflicts
                > 0;
        }
        if !changed {
            quiet = true;
            break;
        }
    }
    if !quiet {
        return Err(format!(
            "devices still changing things after {QUIET_ROUNDS_LIMIT} rounds of syncs"
        ));
    }

    // Same tree everywhere.
    let first = tree(&fleet[0].root);
    for dev in &fleet[1..] {
        let other = tree(&dev.root);
        if other != first {
            return Err(format!(
                "{} and {} differ: {}",
                fleet[0].name,
                dev.name,
                describe_difference(&first, &other)
            ));
        }
    }
    // No temp files.
    for path in first.keys() {
        let name = path.rsplit('/').next().unwrap_or(path);
        if pouch_core::names::is_temp_name(name) {
            return Err(format!("a temp file was left behind: {path}"));
        }
    }
    // Nothing lost.
    let present: HashSet<blake3::Hash> = first.values().filter_map(Item::content).collect();
    let lost: Vec<_> = ledger
        .seen
        .difference(&ledger.retired)
        .filter(|h| !present.contains(h))
        .collect();
    if !lost.is_empty() {
        return Err(format!(
            "{} file content(s) a sync saw are gone though no user removed them",
            lost.len()
        ));
    }
    // Collections run in the middle of syncs, then a last one with no
    // grace: what retention keeps is stored, and nothing else is.
    for dev in &fleet {
        collections.extend(dev.backend.collections.lock().unwrap().iter().copied());
    }
    // Past the lease of a collector that crashed holding it.
    shared.lock().unwrap().now_ms += 120_000;
    let (last, outcome) = runtime.block_on(backend::collect(
        &shared,
        std::time::Duration::ZERO,
        Faults::NONE,
    ));
    collections.push(last);
    outcome.map_err(|e| format!("the last collection failed: {e}"))?;
    {
        let ns = shared.lock().unwrap();
        let now = ns.now_ms / 1000;
        keeps_what_retention_keeps(&ns, &collections, now, "the store")?;
        let live = retained_blocks(&ns.journal, ns.journal.len(), now);
        if let Some(extra) = ns.blocks.keys().find(|id| !live.contains(id)) {
            return Err(format!(
                "block {extra} is still stored after a collection with no grace, though no retained version names it"
            ));
        }
    }

    // A device that joins now starts from the snapshot the last
    // collection wrote, reads none of the entries it folds, and ends with
    // the same tree.
    let mut newcomer = Device {
        name: "newcomer".into(),
        root: scratch.path().join("newcomer"),
        journal: scratch.path().join("newcomer.sqlite"),
        backend: Arc::new(SimBackend::new(shared.clone())),
        target: None,
        engine: None,
        dirty: None,
        plan_slice: PLAN_SLICES[1],
    };
    std::fs::create_dir_all(&newcomer.root).unwrap();
    let report = newcomer
        .sync(&runtime, false)?
        .map_err(|e| format!("a new device's first sync failed: {e}"))?;
    if report.entries_pulled != 0 {
        return Err(format!(
            "a new device replayed {} journal entries its snapshot folds",
            report.entries_pulled
        ));
    }
    let joined = tree(&newcomer.root);
    if joined != first {
        return Err(format!(
            "a new device started from the snapshot differs from {}: {}",
            fleet[0].name,
            describe_difference(&first, &joined)
        ));
    }

    // The migration target (written by device 0's double writes, under
    // its own faults) holds a prefix of the journal naming only blocks it
    // has; a copy then completes it, and it verifies.
    {
        let (ns, to) = (shared.lock().unwrap(), target.lock().unwrap());
        if to.journal.len() > ns.journal.len() || to.journal[..] != ns.journal[..to.journal.len()] {
            return Err("the migration target's journal is not a prefix of the journal".into());
        }
        let now = ns.now_ms / 1000;
        keeps_what_retention_keeps(&to, &collections, now, "the migration target")?;
    }
    let (from, to) = (
        SimBackend::new(shared.clone()),
        SimBackend::new(target.clone()),
    );
    // Retention is applied at the simulated store's clock, the collector's.
    let now = shared.lock().unwrap().now_ms / 1000;
    let options = pouch_core::migrate::CopyOptions {
        now: Some(now),
        ..Default::default()
    };
    runtime
        .block_on(pouch_core::migrate::copy_with(
            &from,
            &to,
            &NoProgress,
            &options,
        ))
        .map_err(|e| format!("copying to the migration target failed: {e}"))?;
    runtime
        .block_on(pouch_core::migrate::verify_at(&from, &to, &NoProgress, now))
        .map_err(|e| format!("the migration target does not verify: {e}"))?;
    Ok(())
}

/// One version in a journal: its entry's index, its path, and what it
/// names.
struct JournalVersion {
    entry: usize,
    path: String,
    blocks: Vec<pouch_backend::BlockId>,
}

/// Every version of `journal[..upto]`, and whether retention keeps each at
/// `now` under the policy of that prefix (the same rule the collector and
/// `restore` apply, computed here from the raw entries).
fn versions(journal: &[bytes::Bytes], upto: usize, now: i64) -> Vec<(JournalVersion, bool)> {
    use pouch_core::retention::{Retention, Version, entry_times, retained};
    let mut policy = Retention::default();
    let mut times = Vec::new();
    let mut by_path: BTreeMap<String, Vec<(usize, Option<Node>)>> = BTreeMap::new();
    for (i, entry) in journal[..upto].iter().enumerate() {
        let Ok(commit) = Commit::decode(i as u64 + 1, entry) else {
            times.push(None);
            continue;
        };
        if let Some(set) = commit.retention {
            policy = set;
        }
        times.push(commit.time);
        for change in commit.changes {
            by_path
                .entry(change.path)
                .or_default()
                .push((i, change.node));
        }
    }
    let times = entry_times(&times, now);
    let mut out = Vec::new();
    for (path, revs) in by_path {
        let rule: Vec<Version> = revs
            .iter()
            .enumerate()
            .map(|(j, (_, node))| Version {
                replaced_at: revs.get(j + 1).map(|(next, _)| times[*next]),
                content: matches!(node, Some(Node::File { .. } | Node::Symlink { .. })),
                deleted: node.is_none(),
            })
            .collect();
        for ((entry, node), keep) in revs.into_iter().zip(retained(&policy, &rule, now)) {
            let blocks = match node {
                Some(Node::File { blocks, .. }) => blocks.iter().map(|b| b.id).collect(),
                _ => Vec::new(),
            };
            out.push((
                JournalVersion {
                    entry,
                    path: path.clone(),
                    blocks,
                },
                keep,
            ));
        }
    }
    out
}

/// The blocks of the versions of `journal[..upto]` retained at `now`.
fn retained_blocks(
    journal: &[bytes::Bytes],
    upto: usize,
    now: i64,
) -> HashSet<pouch_backend::BlockId> {
    versions(journal, upto, now)
        .into_iter()
        .filter(|(_, keep)| *keep)
        .flat_map(|(v, _)| v.blocks)
        .collect()
}

/// Every block of a version that retention keeps at `now` and that every
/// collection kept too (one that had not read its entry had to keep it
/// by the protocol; one that had read it kept it if retention did then)
/// is stored in `ns`. A version retention let go at some collection may
/// be gone: a policy lowered, then raised, does not bring blocks back.
fn keeps_what_retention_keeps(
    ns: &Namespace,
    collections: &[Collection],
    now: i64,
    what: &str,
) -> Result<(), String> {
    let journal = &ns.journal;
    let seen_by: Vec<(Collection, HashSet<(usize, String)>)> = collections
        .iter()
        .map(|k| {
            let upto = (k.read_up_to as usize).min(journal.len());
            let kept = versions(journal, upto, k.now)
                .into_iter()
                .filter(|(_, keep)| *keep)
                .map(|(v, _)| (v.entry, v.path))
                .collect();
            (*k, kept)
        })
        .collect();
    for (version, keep) in versions(journal, journal.len(), now) {
        let kept_by_all = seen_by.iter().all(|(k, kept)| {
            version.entry as u64 >= k.read_up_to
                || kept.contains(&(version.entry, version.path.clone()))
        });
        if !(keep && kept_by_all) {
            continue;
        }
        if let Some(id) = version.blocks.iter().find(|id| !ns.blocks.contains_key(id)) {
            return Err(format!(
                "{what}: entry {} ({}) is retained, and was by every collection, but its block {id} is not stored",
                version.entry + 1,
                version.path
            ));
        }
    }
    Ok(())
}

fn describe_difference(a: &BTreeMap<String, Item>, b: &BTreeMap<String, Item>) -> String {
    let mut out = Vec::new();
    for (path, node) in a {
        match b.get(path) {
            None => out.push(format!("only first has {path}")),
            Some(other) if other != node => out.push(format!("{path} differs")),
            _ => {}
        }
    }
    for path in b.keys().filter(|p| !a.contains_key(*p)) {
        out.push(format!("only second has {path}"));
    }
    out.join(", ")
}

/// Deletes steps while the run still fails, chunks first, then one by one.
pub fn shrink(devices: usize, mut steps: Vec<Step>) -> Vec<Step> {
    let mut chunk = steps.len().div_ceil(2).max(1);
    loop {
        let mut i = 0;
        let mut removed_any = false;
        while i < steps.len() {
            let end = (i + chunk).min(steps.len());
            let candidate: Vec<Step> = steps[..i].iter().chain(&steps[end..]).cloned().collect();
            if run(devices, &candidate).is_err() {
                steps = candidate;
                removed_any = true;
            } else {
                i = end;
            }
        }
        if chunk == 1 && !removed_any {
            return steps;
        }
        chunk = (chunk / 2).max(1);
    }
}
