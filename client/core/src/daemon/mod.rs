//! `pouch daemon`: continuous two-way sync.
//!
//! One loop owns the [`Engine`]. Three things make it sync: file-system
//! events under the root (debounced, see [`debounce`]; a sync then scans
//! only the paths they name, see [`dirty`]), news in the remote journal (a
//! task blocked in `wait_journal`, a long-poll where the backend has one),
//! and a periodic whole rescan as a safety net. A control socket
//! ([`control`], speaking `pouch-protocol`) serves status, pause/resume and
//! an event stream; [`wire`] turns the engine's reports into its messages.
//! Shutdown is checked between syncs, so a sync in flight always finishes.

pub mod control;
pub mod debounce;
pub mod dirty;
pub mod group;
mod inbox;
mod wire;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use pouch_backend::{Backend, Seq};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use self::control::Shared;
use self::debounce::Debouncer;
use self::dirty::Dirty;
use self::inbox::{FsNews, Inbox};
use pouch_protocol::{Event, MigrationStatus, State, Transfer};

use crate::echoes::Echoes;
use crate::engine::{Engine, Scope, SyncLock, SyncOptions};
use crate::names::is_temp_name;
use crate::own_files::OwnFiles;
use crate::progress::{Phase, Progress};
use crate::{Result, unix_secs};

/// How the daemon paces itself.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// The control socket's path.
    pub socket: PathBuf,
    /// Quiet time after the last file event before a sync starts.
    pub quiet: Duration,
    /// Longest a sync waits behind a never-ending stream of events.
    pub max_delay: Duration,
    /// Whole-rescan interval while live watching works: the safety net
    /// under the watcher (Syncthing's default is the same hour).
    pub rescan_every: Duration,
    /// Rescan interval when live watching is impossible.
    pub fallback_rescan_every: Duration,
    /// How long one wait for remote news may block.
    pub remote_wait: Duration,
    /// Pause before retrying a failed sync.
    pub retry_after: Duration,
    /// How long a delete is seen before it is sent (see
    /// [`SyncOptions::hold_new_deletes`]).
    pub hold_deletes: Duration,
    /// Behave as if the OS refused to watch the folder for running out of
    /// watches: the seam that tests the fallback.
    pub simulate_watch_limit: bool,
    /// Paths the watcher's news holds for the loop before it counts as
    /// lost (a whole scan); [`dirty::MAX_PATHS`] unless a test makes it
    /// small.
    pub news_limit: usize,
    /// The counters of a migration in progress (or of the fallback after
    /// one), shown in the status with the copy's progress.
    pub migration: Option<Arc<crate::dual::DualStats>>,
    /// The bandwidth limits the store given to [`run`] keeps to (a
    /// [`crate::limit::Limited`] store): shown in the status and changed
    /// through the control socket.
    pub limits: Option<Arc<crate::limit::Limits>>,
    /// Collect garbage this often, with this grace (see [`crate::gc`]),
    /// on a store that can be collected; `None`: never.
    pub collect: Option<(Duration, Duration)>,
    /// The group of loops this one runs in, when one process syncs a home
    /// folder and the shared folders mounted into it (see [`group`]).
    pub group: Option<group::Membership>,
}

impl DaemonOptions {
    /// Defaults for a control socket at `socket`.
    pub fn new(socket: PathBuf) -> Self {
        Self {
            socket,
            quiet: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            rescan_every: Duration::from_secs(3600),
            fallback_rescan_every: Duration::from_secs(30),
            remote_wait: Duration::from_secs(25),
            retry_after: Duration::from_secs(5),
            hold_deletes: Duration::from_secs(2),
            simulate_watch_limit: false,
            news_limit: dirty::MAX_PATHS,
            migration: None,
            limits: None,
            collect: None,
            group: None,
        }
    }
}

/// Runs the daemon until `shutdown` completes.
pub async fn run(
    mut engine: Engine,
    backend: Arc<dyn Backend>,
    root: &Path,
    options: DaemonOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let shared = Arc::new(Shared::new(options.limits.clone(), options.group.clone()));
    shared.status.lock().expect("status lock").backend = backend.describe();
    let control = control::listen(&options.socket, shared.clone())?;
    // In the home's status and reach while this loop runs.
    let _joined = match &options.group {
        Some(group::Membership::Mount(group, mount)) => {
            Some(group.join(mount.clone(), shared.clone()))
        }
        _ => None,
    };
    engine.set_progress(Arc::new(StatusProgress(shared.clone())));

    let inbox = Arc::new(Inbox::with_limit(options.news_limit));
    // Events name paths under the root as watched: canonical.
    let watched_root = root.canonicalize().unwrap_or_else(|_| root.to_owned());
    let echoes = Arc::new(Echoes::default());
    let watched = if options.simulate_watch_limit {
        Err(describe_watch_error(notify::Error::new(
            notify::ErrorKind::MaxFilesWatch,
        )))
    } else {
        watch_root(
            root,
            engine.own_files().clone(),
            echoes.clone(),
            inbox.clone(),
        )
    };
    let (watcher, rescan_every) = match watched {
        Ok(watcher) => {
            // Only a watcher has echoes to drop.
            engine.set_echoes(echoes.clone());
            (Some(watcher), options.rescan_every)
        }
        Err(problem) => {
            tracing::error!("{problem}");
            shared.status.lock().expect("status lock").watch_problem = Some(problem);
            (None, options.fallback_rescan_every)
        }
    };

    let (cursor_tx, cursor_rx) = watch::channel(engine.db().cursor()?);
    let (remote_tx, mut remote_rx) = mpsc::unbounded_channel::<()>();
    let remote = tokio::spawn(watch_remote(
        backend.clone(),
        cursor_rx,
        remote_tx,
        options.remote_wait,
    ));

    let mut debouncer = Debouncer::new(options.quiet, options.max_delay);
    let mut pending = true; // a whole scan at start
    let mut dirty = Dirty::everything();
    let mut echoes_due = tokio::time::interval(crate::echoes::KEEP);
    let mut retry_at: Option<Instant> = None;
    let mut rescan = tokio::time::interval_at(Instant::now() + rescan_every, rescan_every);
    let mut paused = shared.paused.subscribe();
    // The copy runs in another process (`pouch migrate`) and records its
    // progress in the local journal; the status picks it up from there.
    let mut migration_tick = tokio::time::interval(Duration::from_secs(1));
    let mut collector = Collector::new(&engine, &backend, options.collect)?;
    tokio::pin!(shutdown);

    // Ends with the reason the daemon stops; the clean-up below runs for
    // every one of them.
    let outcome: Result<()> = loop {
        if pending && !*paused.borrow() {
            pending = false;
            retry_at = None;
            // The user's go-ahead (`resume --allow-mass-delete`) holds until
            // a sync succeeds with it.
            let allowed = SyncOptions {
                allow_mass_delete: shared
                    .allow_mass_delete
                    .load(std::sync::atomic::Ordering::SeqCst),
                scope: dirty.take(),
                hold_new_deletes: Some(options.hold_deletes),
                ..SyncOptions::default()
            };
            if allowed.scope == Scope::Everything {
                // Whatever the watcher named until now, the whole scan
                // sees: a big download's echoes do not ask for another.
                inbox.clear();
            }
            let outcome = sync(&mut engine, &shared, allowed.clone()).await;
            // The watcher's thread dropped the echoes of what the sync
            // wrote; where the engine's change was not recorded as made,
            // an event dropped meanwhile may have been the user's.
            match echoes.after_sync() {
                Some(paths) if paths.is_empty() => {}
                Some(paths) => {
                    dirty.restore(Scope::Paths(paths));
                    debouncer.event(Instant::now());
                }
                None => {
                    dirty.all();
                    pending = true;
                }
            }
            if outcome.is_err() {
                // What it was to scan is scanned at the next try.
                dirty.restore(allowed.scope.clone());
            }
            match outcome {
                Ok(()) => {
                    // Deletes held back as new are sent when due.
                    retry_at = engine.deletes_due().map(Instant::from_std);
                    if allowed.allow_mass_delete {
                        shared
                            .allow_mass_delete
                            .store(false, std::sync::atomic::Ordering::SeqCst);
                    }
                }
                // Ask, don't propagate: the deletes wait for `pouch resume
                // --allow-mass-delete` (the error in the status says so);
                // everything else was synced and keeps syncing, at the next
                // change rather than on a retry timer.
                Err(crate::Error::MassDelete { .. }) => {}
                // The engine is bound to the store the folder left: stop,
                // and let the restart (systemd's, or the user's) follow the
                // move with the new store.
                Err(e @ crate::Error::Moved { .. }) => break Err(e),
                // A migration to join or leave: the stores change (the
                // caller reopens them) before anything more is written.
                Err(e @ crate::Error::MigrationChanged { .. }) => break Err(e),
                // The user decides (`pouch migrate follow` changes the
                // config, which restarts the daemon's stores; `refuse` lets
                // the next try sync): the error in the status says so, and
                // nothing is synced meanwhile.
                Err(crate::Error::MoveWaits { .. }) => {
                    retry_at = Some(Instant::now() + options.retry_after);
                }
                Err(_) => retry_at = Some(Instant::now() + options.retry_after),
            }
            match engine.db().cursor() {
                Ok(cursor) => {
                    cursor_tx.send_replace(cursor);
                }
                Err(e) => break Err(e),
            }
        }
        let wake = [debouncer.deadline(), retry_at].into_iter().flatten().min();
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            news = inbox.next() => {
                match news {
                    FsNews::Paths(paths) => {
                        for path in &paths {
                            dirty.add(&watched_root, path);
                        }
                    }
                    FsNews::Lost => dirty.all(),
                }
                debouncer.event(Instant::now());
            }
            Some(()) = remote_rx.recv() => pending = true,
            _ = rescan.tick() => {
                dirty.all();
                pending = true;
            }
            // Lets the last download's entries go even when no event
            // comes to do it.
            _ = echoes_due.tick(), if !echoes.is_empty() => echoes.forget_old(),
            Ok(()) = paused.changed() => pending = true,
            _ = migration_tick.tick(), if options.migration.is_some() => {
                if let Some(stats) = &options.migration {
                    let copy = crate::migrate::recorded_progress(engine.db());
                    shared.status.lock().expect("status lock").migration = Some(MigrationStatus {
                        counts: wire::counts(&stats.counts()),
                        copy: copy.as_ref().map(wire::copy),
                    });
                }
            }
            () = sleep_until(wake) => {
                let now = Instant::now();
                if debouncer.take_if_due(now) || retry_at.is_some_and(|at| at <= now) {
                    pending = true;
                }
            }
            () = sleep_until(collector.due()), if !*paused.borrow() => collector.start(),
            Some(finished) = collector.finished() => {
                if let Err(e) = collector.record(&engine, finished) {
                    break Err(e);
                }
            }
        }
    };
    drop(watcher);
    remote.abort();
    control.abort();
    let _ = std::fs::remove_file(&options.socket);
    tracing::info!("daemon stopped");
    outcome
}

/// The daemon's garbage collections: one at a time, in a task of its own
/// (syncs go on meanwhile: the protocol is made for that), every interval
/// counted from the last one that finished, kept across restarts in the
/// local state.
struct Collector {
    backend: Arc<dyn Backend>,
    every: Duration,
    grace: Duration,
    device: String,
    next: Option<Instant>,
    running: Option<tokio::task::JoinHandle<Result<crate::gc::GcReport>>>,
}

/// The local state's key for when the daemon last collected (seconds).
const GC_LAST_META: &str = "gc_last";

impl Collector {
    fn new(
        engine: &Engine,
        backend: &Arc<dyn Backend>,
        collect: Option<(Duration, Duration)>,
    ) -> Result<Self> {
        let (every, grace) = collect.unwrap_or((Duration::MAX, Duration::ZERO));
        let next = match collect {
            None => None,
            Some(_) => {
                let last: Option<i64> =
                    engine.db().meta(GC_LAST_META)?.and_then(|v| v.parse().ok());
                // A first collection a whole interval after the first
                // start (a new device is busy enough); an overdue one soon,
                // but not in the way of the start's whole scan.
                let wait = match last {
                    None => every,
                    Some(at) => {
                        let since = Duration::from_secs(
                            crate::unix_secs().saturating_sub(at).max(0) as u64,
                        );
                        every
                            .saturating_sub(since)
                            .max(every.min(Duration::from_secs(600)))
                    }
                };
                Some(Instant::now() + wait)
            }
        };
        Ok(Self {
            backend: backend.clone(),
            every,
            grace,
            device: engine.device().to_owned(),
            next,
            running: None,
        })
    }

    fn due(&self) -> Option<Instant> {
        self.next.filter(|_| self.running.is_none())
    }

    fn start(&mut self) {
        self.next = None;
        let backend = self.backend.clone();
        let mut options = crate::gc::GcOptions::new(format!(
            "{} (daemon, pid {})",
            self.device,
            std::process::id()
        ));
        options.grace = self.grace;
        self.running = Some(tokio::spawn(async move {
            crate::gc::collect(backend.as_ref(), &options, &crate::gc::Quiet)
                .await
                .map_err(crate::Error::from)
        }));
    }

    /// Completes when the running collection does.
    async fn finished(&mut self) -> Option<Result<crate::gc::GcReport>> {
        let running = self.running.as_mut()?;
        let outcome = running.await.unwrap_or_else(|e| {
            Err(crate::Error::Backend(pouch_backend::Error::Internal {
                context: "a garbage collection",
                source: Box::new(e),
            }))
        });
        self.running = None;
        Some(outcome)
    }

    /// Notes a finished collection and when the next is due. A store that
    /// cannot be collected (a migration's pair) is not asked again.
    fn record(&mut self, engine: &Engine, outcome: Result<crate::gc::GcReport>) -> Result<()> {
        match outcome {
            Ok(report) => {
                tracing::info!(
                    deleted = report.blocks_deleted,
                    bytes = report.bytes_deleted,
                    waiting = report.blocks_waiting,
                    "collected garbage"
                );
                engine
                    .db()
                    .set_meta(GC_LAST_META, &crate::unix_secs().to_string())?;
                self.next = Some(Instant::now() + self.every);
            }
            Err(crate::Error::Backend(pouch_backend::Error::Unsupported(why))) => {
                tracing::info!("no garbage collection here: {why}");
            }
            Err(e) => {
                tracing::warn!("garbage collection failed (tried again in an hour): {e}");
                self.next = Some(Instant::now() + self.every.min(Duration::from_secs(3600)));
            }
        }
        Ok(())
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Recent changes kept in the status.
const RECENT: usize = 20;

/// Publishes the engine's progress as the status's current transfer.
struct StatusProgress(Arc<Shared>);

impl Progress for StatusProgress {
    fn phase(&self, phase: Phase, items: u64, total_bytes: u64) {
        self.0.status.lock().expect("status lock").transfer = Some(Transfer {
            phase: wire::transfer_phase(phase),
            files: items,
            done_bytes: 0,
            total_bytes,
        });
    }

    fn advance(&self, bytes: u64) {
        if let Some(transfer) = &mut self.0.status.lock().expect("status lock").transfer {
            transfer.done_bytes += bytes;
        }
    }
}

/// Runs one sync, recording the outcome.
async fn sync(engine: &mut Engine, shared: &Shared, options: SyncOptions) -> Result<()> {
    // One sync of a folder at a time: a `pouch sync` running beside the
    // daemon finishes first.
    let _lock = SyncLock::acquire(engine.state_path()).await?;
    shared.status.lock().expect("status lock").state = State::Syncing;
    shared.emit(Event::Syncing);
    let whole = options.scope == crate::engine::Scope::Everything;
    let scanned = match &options.scope {
        crate::engine::Scope::Everything => "everything".to_owned(),
        crate::engine::Scope::Paths(paths) => format!("{} path(s)", paths.len()),
    };
    let started = Instant::now();
    let outcome = engine.sync_with(options).await;
    if let Ok(report) = &outcome {
        tracing::debug!(
            scanned,
            ms = started.elapsed().as_millis() as u64,
            downloaded = report.downloaded,
            uploaded = report.uploaded,
            "synced"
        );
    }
    let mut status = shared.status.lock().expect("status lock");
    let now = unix_secs();
    match outcome {
        Ok(report) => {
            status.state = if status.paused {
                State::Paused
            } else {
                State::Idle
            };
            status.syncs += 1;
            status.last_sync = Some(now);
            status.last_error = None;
            status.move_waiting = None;
            status.offline = false;
            status.transfer = None;
            let report = wire::report(&report);
            let mut recent: Vec<_> = report.changed.iter().rev().take(RECENT).cloned().collect();
            recent.append(&mut status.recent);
            recent.truncate(RECENT);
            status.recent = recent;
            status.kept_here = still_kept(
                std::mem::take(&mut status.kept_here),
                &report.kept_here,
                whole,
                engine.root(),
            );
            status.last_report = Some(report.clone());
            drop(status);
            shared.emit(Event::Synced(report));
            Ok(())
        }
        Err(e) => {
            tracing::warn!("sync failed: {e}");
            status.state = State::Error;
            status.transfer = None;
            status.last_error = Some(e.to_string());
            status.move_waiting = match &e {
                crate::Error::MoveWaits { to, .. } => Some(to.to_string()),
                _ => None,
            };
            status.offline = e.is_offline();
            drop(status);
            shared.emit(Event::Failed {
                message: e.to_string(),
            });
            Err(e)
        }
    }
}

/// The files a read-only mount keeps here after a sync that reported
/// `reported` of them: a whole scan reports them all; a scan of some paths
/// adds its own to those known, and a file gone from `root` is no longer
/// kept.
fn still_kept(known: Vec<String>, reported: &[String], whole: bool, root: &Path) -> Vec<String> {
    let mut kept: std::collections::BTreeSet<String> = reported.iter().cloned().collect();
    if !whole {
        kept.extend(known);
    }
    kept.retain(|path| std::fs::symlink_metadata(root.join(path)).is_ok());
    kept.into_iter().collect()
}

/// Watches `root` recursively; every change (not mere reads) but those
/// about Pouch's own temp files, its own files (`own`: its state database
/// changes at every sync) and the engine's own changes (`echoes`) is put
/// in `inbox` with its paths.
fn watch_root(
    root: &Path,
    own: OwnFiles,
    echoes: Arc<Echoes>,
    inbox: Arc<Inbox>,
) -> Result<notify::RecommendedWatcher, String> {
    // Events name paths under the root as watched: watch it canonical, as
    // `own` is.
    let root = &root.canonicalize().unwrap_or_else(|_| root.to_owned());
    let watched = root.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        match event {
            // The kernel's queue overflowed: which paths is unknown.
            Ok(event) if event.need_rescan() => inbox.lost(),
            // Opens and reads (our own scans list every folder) change
            // nothing; counting them made each scan trigger the next. A
            // close after writing still counts: the file is complete.
            Ok(event)
                if matches!(event.kind, notify::EventKind::Access(access)
                    if access != notify::event::AccessKind::Close(notify::event::AccessMode::Write)) => {}
            Ok(event) => {
                let paths: Vec<PathBuf> = event
                    .paths
                    .into_iter()
                    .filter(|path| {
                        !own.contains(path)
                            && !path
                                .file_name()
                                .and_then(|n| n.to_str())
                                .is_some_and(is_temp_name)
                            // Told apart here, as they come: a download of
                            // a million files echoes a million times.
                            && !dirty::relative(&watched, path)
                                .is_some_and(|rel| echoes.is_echo(&rel, path))
                    })
                    .collect();
                if !paths.is_empty() {
                    inbox.paths(paths);
                }
            }
            Err(_) => inbox.lost(), // better a spare whole scan
        }
    })
    .map_err(describe_watch_error)?;
    watcher
        .watch(root, RecursiveMode::Recursive)
        .map_err(describe_watch_error)?;
    Ok(watcher)
}

fn describe_watch_error(e: notify::Error) -> String {
    let limit = matches!(e.kind, notify::ErrorKind::MaxFilesWatch)
        || matches!(&e.kind, notify::ErrorKind::Io(io) if io.raw_os_error() == Some(28));
    if limit {
        "the system's limit on watched folders is reached, so changes are found by rescanning every 30 s instead; \
         raise the limit with `sudo sysctl fs.inotify.max_user_watches=524288` (and in /etc/sysctl.d to keep it)"
            .to_owned()
    } else {
        format!("cannot watch the folder for changes ({e}); rescanning every 30 s instead")
    }
}

/// Blocks in `wait_journal` and pokes `tx` when the journal has entries the
/// engine has not folded yet.
async fn watch_remote(
    backend: Arc<dyn Backend>,
    mut cursor: watch::Receiver<Seq>,
    tx: mpsc::UnboundedSender<()>,
    wait: Duration,
) {
    loop {
        let after = *cursor.borrow_and_update();
        let asked = Instant::now();
        match backend.wait_journal(after, wait).await {
            Ok(head) if head > after => {
                if tx.send(()).is_err() {
                    return;
                }
                // Let the sync fold it before asking again.
                let _ = tokio::time::timeout(Duration::from_secs(5), cursor.changed()).await;
            }
            Ok(_) if asked.elapsed() < wait / 2 => {
                // A backend without push returns at once: poll gently.
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!("waiting for remote changes: {e}");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pouch_protocol::TransferPhase;

    #[test]
    fn kept_files_are_known_until_a_whole_scan_or_their_deletion_says_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.txt", "b.txt", "c.txt"] {
            std::fs::write(dir.path().join(name), name).unwrap();
        }
        let kept = |known: &[&str], reported: &[&str], whole| {
            let known = known.iter().map(|s| s.to_string()).collect();
            let reported: Vec<String> = reported.iter().map(|s| s.to_string()).collect();
            still_kept(known, &reported, whole, dir.path())
        };
        // A scan of some paths adds to what is known.
        assert_eq!(kept(&["b.txt"], &["a.txt"], false), ["a.txt", "b.txt"]);
        // A whole scan says it all.
        assert_eq!(kept(&["b.txt"], &["a.txt"], true), ["a.txt"]);
        // A file deleted here is no longer kept.
        std::fs::remove_file(dir.path().join("c.txt")).unwrap();
        assert_eq!(kept(&["c.txt", "b.txt"], &[], false), ["b.txt"]);
    }

    #[test]
    fn engine_progress_becomes_the_status_transfer() {
        let shared = Arc::new(Shared::new(None, None));
        let progress = StatusProgress(shared.clone());
        progress.phase(Phase::Uploading, 3, 1000);
        progress.advance(300);
        progress.advance(200);
        let transfer = shared.status.lock().unwrap().transfer.clone().unwrap();
        assert_eq!(
            (
                transfer.phase,
                transfer.files,
                transfer.done_bytes,
                transfer.total_bytes
            ),
            (TransferPhase::Uploading, 3, 500, 1000)
        );
    }
}
