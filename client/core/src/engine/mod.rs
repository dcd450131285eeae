//! The engine: one full sync in both directions.
//!
//! 1. **Pull** (`pull`): fold new journal entries into the Remote
//!    tree; every path is validated first, and a refused one never reaches
//!    the disk.
//! 2. **Apply** (`apply`, `download`): scan, plan, and run the operations
//!    that change the disk (downloads, local deletes, renames, conflicted
//!    copies), recording each in the local state as it completes.
//! 3. **Push** (`push`): scan and plan again, upload the blocks the store
//!    lacks, then append one commit. A lost race (`SlotTaken`) means
//!    another device committed first: pull, re-plan, retry.
//!
//! Blocks are always durable before the commit naming them is appended,
//! so a crash anywhere leaves at worst unreferenced blocks, which the next
//! run finds already stored instead of uploading again.

mod announce;
mod apply;
mod download;
mod heal;
mod lock;
mod prefetch;
mod pull;
mod push;
mod restore;
mod retention;
mod reuse;
mod scan_plan;
mod selective;
mod slices;
mod store_check;

pub use heal::{AUDIT_INTERVAL_SECS, HealReport, Readback};
pub use lock::{SyncLock, lock_path};
pub use restore::Pick;
pub use retention::Kept;
pub use scan_plan::Scope;
pub use slices::{PLAN_SLICE, Pending};

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pouch_backend::{Backend, BlockId, Error as BackendError};

use crate::clock::Clock;
use crate::echoes::Echoes;
use crate::location::StoreLocation;
use crate::own_files::OwnFiles;
use crate::path::RelPath;
use crate::progress::Progress;
use crate::report::SyncReport;
use crate::state::LocalState;
use crate::{Error, Result};

/// How many commits in a row may be lost to other devices before giving up.
const MAX_COMMIT_ATTEMPTS: u32 = 8;
/// Raw bytes of blocks gathered before one `has_blocks` + `put_blocks`.
const UPLOAD_BATCH_BYTES: usize = 16 << 20;
/// Journal entries read per request while pulling.
const PULL_PAGE: usize = 256;
/// The local state's key for a move pulled and not followed yet.
const MOVED_META: &str = "moved_to";
/// The local state's key for the last migration notice pulled: (entry,
/// store or `None` when stopped).
const MIGRATION_META: &str = "migration";
/// The local state's key for the namespace's retention policy, as last
/// pulled.
const RETENTION_META: &str = "retention";

/// The sync engine for one device.
pub struct Engine {
    root: PathBuf,
    device: String,
    db: LocalState,
    backend: Arc<dyn Backend>,
    clock: Arc<dyn Clock>,
    progress: Arc<dyn Progress>,
    /// The local state's file, for messages.
    state_path: PathBuf,
    /// Whether the store's history was checked against this device's
    /// (once per engine; its identity is checked before every sync).
    store_checked: bool,
    /// Pouch's own files, never synced.
    own: OwnFiles,
    /// Blocks this sync could not read from the store, to report.
    unreadable: HashSet<BlockId>,
    /// What the last sync's heal found.
    last_heal: Option<HealReport>,
    /// Where the configured store is, to tell moves this device may follow
    /// by itself from those that wait for its user.
    here: Option<StoreLocation>,
    /// The store this device writes to beside its own (its config's
    /// migration), to tell an announced migration it has not joined.
    migrating: Option<StoreLocation>,
    /// The batched read of the blocks the running apply downloads.
    prefetch: Option<prefetch::Prefetch>,
    /// The blocks this device's files hold, while an apply runs.
    local_blocks: reuse::LocalBlocks,
    /// How many blocks of this device's files this sync listed in the
    /// local state for reuse (`None`: not listed yet).
    local_blocks_indexed: Option<u64>,
    /// Downloads waiting to be recorded together.
    downloaded: download::Downloaded,
    /// Paths the engine itself changed on disk without recording them
    /// (conflicted copies): scanned by the next scan of any scope.
    scan_next: Vec<RelPath>,
    /// Where the paths this engine changes on disk are told, so that the
    /// daemon's watcher drops their echo (see [`Engine::set_echoes`]).
    echoes: Option<Arc<Echoes>>,
    /// Whether this sync changed the disk (and recorded what it did).
    wrote: bool,
    /// When each delete (or new path) waiting to be sent was first
    /// planned (see [`SyncOptions::hold_new_deletes`]).
    held_since: HashMap<RelPath, Instant>,
    /// When the deletes held back as new are due.
    deletes_due: Option<Instant>,
    /// How long a store's "stored" answer is trusted before a commit
    /// names the block (see [`pouch_backend::gc::COMMIT_WINDOW`]).
    commit_window: Duration,
    /// Unsettled paths planned together (see `slices`).
    plan_slice: usize,
    /// Whether this device may only read the namespace (a viewer's shared
    /// folder): nothing is pushed, local changes are undone or kept here.
    read_only: bool,
}

/// What the engine left at a path it changed on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Left {
    /// Nothing: it deleted or moved away what was there.
    Gone,
    /// A folder (its stat data moves with what is put inside).
    Folder,
    /// A file or link with this stat data.
    Entry(crate::local::Stat),
}

impl Left {
    /// What a recorded Local entry says is at its path.
    pub fn of(stat: crate::local::Stat, node: &crate::node::Node) -> Self {
        if node.is_dir() {
            Left::Folder
        } else {
            Left::Entry(stat)
        }
    }

    /// Whether the disk at `full` still holds it.
    pub fn is_on_disk(&self, full: &Path) -> bool {
        match (self, std::fs::symlink_metadata(full)) {
            (Left::Gone, Err(e)) => e.kind() == std::io::ErrorKind::NotFound,
            (Left::Folder, Ok(meta)) => meta.is_dir(),
            (Left::Entry(stat), Ok(meta)) => crate::local::Stat::of(&meta) == *stat,
            _ => false,
        }
    }
}

/// What one sync may do beyond the usual.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// Send deletes even when the mass-delete guard would stop them (the
    /// user confirmed them).
    pub allow_mass_delete: bool,
    /// Ask the store about every block of this device's files now, and
    /// send the ones it lacks (otherwise done once an hour).
    pub check_blocks: bool,
    /// What to scan: the whole root, or only what the watcher saw change.
    pub scope: Scope,
    /// Deletes are sent only once they were seen for this long (the
    /// daemon's: a sync that lands in the middle of an `rm -rf` sends
    /// none of it, and the next one, seeing the whole of it, meets the
    /// mass-delete guard). `None`: sent at once (`pouch sync`, run after
    /// the deletes are done).
    pub hold_new_deletes: Option<Duration>,
}

/// When a scan's deletes are too many to propagate without asking.
#[derive(Debug, Clone, Copy)]
pub struct MassDeleteGuard;

impl MassDeleteGuard {
    /// Deletes above this share of the synced tree trip the guard...
    pub const SHARE: f64 = 0.5;
    /// ...when they are at least this many.
    pub const MIN_PATHS: usize = 100;

    /// Whether `deletes` out of `synced` paths trip it.
    pub fn trips(deletes: usize, synced: usize) -> bool {
        deletes >= Self::MIN_PATHS && deletes as f64 > Self::SHARE * synced as f64
    }
}

impl Engine {
    /// Opens the engine: `root` must exist; the local state at `state` is
    /// created if new.
    pub fn open(
        root: &Path,
        device: &str,
        state: &Path,
        backend: Arc<dyn Backend>,
        clock: Arc<dyn Clock>,
        progress: Arc<dyn Progress>,
    ) -> Result<Self> {
        let meta = std::fs::metadata(root).map_err(Error::io(root))?;
        if !meta.is_dir() {
            return Err(Error::io(root)(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                "the sync root is not a folder",
            )));
        }
        let root = root.canonicalize().map_err(Error::io(root))?;
        Ok(Self {
            root,
            device: device.to_owned(),
            db: LocalState::open(state)?,
            backend,
            clock,
            progress,
            state_path: state.to_owned(),
            store_checked: false,
            own: OwnFiles::default(),
            unreadable: HashSet::new(),
            last_heal: None,
            here: None,
            migrating: None,
            prefetch: None,
            local_blocks: reuse::LocalBlocks::default(),
            local_blocks_indexed: None,
            downloaded: download::Downloaded::default(),
            scan_next: Vec::new(),
            echoes: None,
            wrote: false,
            held_since: HashMap::new(),
            deletes_due: None,
            commit_window: pouch_backend::gc::COMMIT_WINDOW,
            plan_slice: PLAN_SLICE,
            read_only: false,
        })
    }

    /// Makes this engine never push: for a namespace its account may only
    /// read. A local edit of a synced file moves to a conflicted copy and
    /// the remote version comes back; a local delete is downloaded again;
    /// a file only here stays here and is reported at every sync.
    pub fn set_read_only(&mut self, read_only: bool) {
        self.read_only = read_only;
    }

    /// Makes `path` a mount point: another engine syncs it (a shared
    /// folder), so this one leaves it out of its three trees from now on,
    /// without touching the disk.
    pub fn leave_to_mount(&mut self, path: &RelPath) -> Result<()> {
        self.db.exclude(path)
    }

    /// Plans `paths` unsettled paths at a time instead of [`PLAN_SLICE`]:
    /// for tests that make small trees take the paths of large ones.
    pub fn set_plan_slice(&mut self, paths: usize) {
        self.plan_slice = paths.max(1);
    }

    /// Trusts the store's answers about blocks for `window` before a
    /// commit names them, instead of [`pouch_backend::gc::COMMIT_WINDOW`]:
    /// for tests that let a collector run between a push's upload and its
    /// commit (zero: every commit asks again).
    pub fn set_commit_window(&mut self, window: Duration) {
        self.commit_window = window;
    }

    /// Sends progress to `progress` from now on (the daemon reports it in
    /// its status).
    pub fn set_progress(&mut self, progress: Arc<dyn Progress>) {
        self.progress = progress;
    }

    /// The move this device pulled and has not followed yet: the entry
    /// that announced it and the new store.
    pub fn moved(&self) -> Result<Option<(u64, StoreLocation)>> {
        Ok(self
            .db
            .meta(MOVED_META)?
            .and_then(|text| serde_json::from_str(&text).ok()))
    }

    /// Forgets a followed move: call once this engine's store is the new one.
    pub fn forget_move(&self) -> Result<()> {
        self.db.delete_meta(MOVED_META)
    }

    /// Refuses the move this device pulled: it keeps syncing with its
    /// configured store, writing after the entry that announced the move.
    /// Returns the refused move.
    pub fn refuse_move(&self) -> Result<Option<(u64, StoreLocation)>> {
        let moved = self.moved()?;
        if let Some((seq, to)) = &moved {
            tracing::warn!(seq, %to, "the user refused a move; staying on the configured store");
            self.db.delete_meta(MOVED_META)?;
        }
        Ok(moved)
    }

    /// Tells the engine where its configured store is: a move to another
    /// server then fails syncs with [`Error::MoveWaits`] (the user decides)
    /// instead of [`Error::Moved`] (followed by itself). Without it, every
    /// move waits.
    pub fn set_location(&mut self, here: Option<StoreLocation>) {
        self.here = here;
    }

    /// Whether the move to `to` is one this device follows without asking.
    pub fn follows_by_itself(&self, to: &StoreLocation) -> bool {
        self.here
            .as_ref()
            .is_some_and(|here| here.follows_by_itself(to))
    }

    /// Never syncs `own` (Pouch's config, state and stores), even inside
    /// the root.
    pub fn skip_own(&mut self, own: OwnFiles) {
        self.own = own;
    }

    /// Pouch's own files, which the daemon does not watch either.
    pub fn own_files(&self) -> &OwnFiles {
        &self.own
    }

    /// The local state's file.
    pub fn state_path(&self) -> &Path {
        &self.state_path
    }

    /// The synced folder (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// What the last sync's heal found (see `heal`), if it ran.
    pub fn last_heal(&self) -> Option<&HealReport> {
        self.last_heal.as_ref()
    }

    /// Tells `echoes` every path this engine is about to change on disk
    /// itself (downloads, local deletes and renames) and what it left
    /// there once recorded: the daemon's watcher drops their echoes as
    /// they come, instead of scanning them again.
    pub fn set_echoes(&mut self, echoes: Arc<Echoes>) {
        self.echoes = Some(echoes);
    }

    /// The disk at `path` is about to be changed by the engine.
    fn expect_change(&self, path: &RelPath) {
        if let Some(echoes) = &self.echoes {
            echoes.expect(path);
        }
    }

    /// The engine changed the disk at `path` and recorded `left` there.
    fn changed(&mut self, path: &RelPath, left: Left) {
        self.wrote = true;
        if let Some(echoes) = &self.echoes {
            echoes.left(path, left, &path.to_fs(&self.root));
        }
    }

    /// When deletes the last sync held back as new (see
    /// [`SyncOptions::hold_new_deletes`]) are due to be sent; a sync then
    /// sends them.
    pub fn deletes_due(&self) -> Option<Instant> {
        self.deletes_due
    }

    /// The local state, for status and listings.
    pub fn db(&self) -> &LocalState {
        &self.db
    }

    /// This device's name, as its commits carry it.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// One full sync in both directions.
    pub async fn sync_once(&mut self) -> Result<SyncReport> {
        self.sync_with(SyncOptions::default()).await
    }

    /// One full sync in both directions, with `options`.
    pub async fn sync_with(&mut self, options: SyncOptions) -> Result<SyncReport> {
        self.wrote = false;
        self.local_blocks_indexed = None;
        self.deletes_due = None;
        self.check_store().await?;
        let mut report = SyncReport::default();
        let mut scope = options.scope.clone();
        for _ in 0..MAX_COMMIT_ATTEMPTS {
            self.pull(&mut report).await?;
            // Nothing may be written to a store the namespace left.
            if let Some((seq, to)) = self.moved()? {
                let to = Box::new(to);
                return Err(if self.follows_by_itself(&to) {
                    Error::Moved { seq, to }
                } else {
                    Error::MoveWaits { seq, to }
                });
            }
            // A migration announced or stopped that this device acts on by
            // itself: its stores change before it writes anything.
            if let Some((seq, _)) = self.migration_change()? {
                return Err(Error::MigrationChanged { seq });
            }
            let (rules, scanned_changes) = self.scan_recorded(&mut report, &scope)?;
            self.apply_planned(&rules, &mut report).await?;
            // A whole scan that found changes is made again (changes made
            // meanwhile, a `rm -rf` still running, go into this push, where
            // the mass-delete guard sees them together) unless the apply
            // wrote files: the apply recorded those, and re-reading every
            // file just written (racily clean) would cost more than the
            // download. One that found nothing is not: a second walk of a
            // large unchanged tree would double the cost of a no-change
            // sync. The daemon's watcher names what changed meanwhile for
            // its next sync; `pouch sync` finds it at the next run.
            if scope == Scope::Everything && (self.wrote || scanned_changes == 0) {
                scope = Scope::Paths(Vec::new());
            }

            let (rules, _) = self.scan_recorded(&mut report, &scope)?;
            match self.push_planned(&rules, &options, &mut report).await {
                Ok(()) => {
                    // Healing writes to the store, which a reader may not.
                    if !self.read_only {
                        self.report_unreadable().await?;
                        let heal = self.heal(options.check_blocks, &mut report).await?;
                        self.last_heal = Some(heal);
                    }
                    self.settle(&rules)?;
                    return Ok(report);
                }
                Err(Error::Backend(BackendError::SlotTaken(seq))) => {
                    tracing::info!(%seq, "another device committed first; pulling and re-planning");
                }
                Err(other) => return Err(other),
            }
        }
        Err(Error::Contended {
            attempts: MAX_COMMIT_ATTEMPTS,
        })
    }

    /// What a sync would do now, counted, without changing the disk or
    /// the store: pulls the journal, scans and records the scan as a sync
    /// does (a sync that stopped there), and plans a slice at a time, so a
    /// look at a million files takes the memory of a slice. Hold the sync
    /// lock. Returns the counts and any problems, the same a sync would
    /// report.
    pub async fn pending(&mut self) -> Result<(Pending, Vec<String>)> {
        self.check_store().await?;
        let mut report = SyncReport::default();
        self.pull(&mut report).await?;
        let (rules, _) = self.scan_recorded(&mut report, &Scope::Everything)?;
        let pending = self.count_planned(&rules)?;
        Ok((pending, report.problems))
    }

    /// Folds new journal entries into the Remote tree, nothing else.
    pub async fn pull_only(&mut self) -> Result<SyncReport> {
        self.check_store().await?;
        let mut report = SyncReport::default();
        self.pull(&mut report).await?;
        Ok(report)
    }
}

fn changed_since_plan() -> Error {
    Error::ChangedDuringSync
}
