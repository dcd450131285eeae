//! The tray's link to the daemon: a thread that follows the daemon's event
//! stream over its control socket, asks for its status after every event,
//! carries the user's pause/resume to it, and starts a daemon when none
//! answers.

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use pouch_protocol::display::printable;
use pouch_protocol::{
    Action, CopyPhase, DaemonStatus, Event, Request, Response, State, Subscription, request,
    subscribe,
};
use tokio::sync::mpsc;

use crate::view::Seen;

/// How long no daemon may answer before the tray starts one: a daemon that
/// systemd restarts (after `RestartSec=5`) or that is just starting gets a
/// moment first, so the tray does not race it.
const GRACE: Duration = Duration::from_secs(2);
/// The least time between two daemons the tray starts.
const RESTART_EVERY: Duration = Duration::from_secs(10);
/// How often the status is asked for while bytes move or a migration
/// copies (progress is not an event).
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// What the link tells the tray's main loop.
#[derive(Debug)]
pub enum Update {
    /// What the daemon looks like now.
    Seen(Seen),
    /// Something worth a desktop notification.
    Notify {
        /// The headline.
        summary: String,
        /// The details.
        body: String,
    },
}

/// What the tray asks of the daemon.
#[derive(Debug, Clone, Copy)]
pub enum Ask {
    /// Stop syncing until resumed.
    Pause,
    /// Sync again.
    Resume,
    /// Set the bandwidth limits given (bytes per second, 0: lift it).
    Limit {
        /// Upload, if it changes.
        up: Option<u64>,
        /// Download, if it changes.
        down: Option<u64>,
    },
}

/// How the tray starts a daemon.
#[derive(Debug, Clone)]
pub struct Starter {
    /// The `pouch` binary.
    pub pouch: PathBuf,
    /// The config the daemon syncs.
    pub config: PathBuf,
    /// Where its output goes.
    pub log: PathBuf,
}

/// Starts the link thread; `updates` receives what it sees until the tray
/// drops the returned sender.
pub fn spawn(
    socket: PathBuf,
    starter: Option<Starter>,
    updates: Sender<crate::Msg>,
) -> anyhow::Result<mpsc::UnboundedSender<Ask>> {
    let (commands, commands_rx) = mpsc::unbounded_channel();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("pouch-daemon-link".into())
        .spawn(move || {
            runtime.block_on(follow(socket, starter, updates, commands_rx));
        })?;
    Ok(commands)
}

async fn follow(
    socket: PathBuf,
    starter: Option<Starter>,
    updates: Sender<crate::Msg>,
    mut commands: mpsc::UnboundedReceiver<Ask>,
) {
    let send = |update: Update| updates.send(crate::Msg::Link(update)).is_ok();
    let mut daemon = Daemon::new(starter);
    let mut absent_since: Option<Instant> = None;
    let mut told = Told::default();
    loop {
        match connect(&socket).await {
            Some((status, events)) => {
                absent_since = None;
                if !send(Update::Seen(Seen::Daemon(status))) {
                    return;
                }
                let gone = stream(&socket, events, &send, &mut commands, &mut told).await;
                if !gone {
                    return; // the tray is quitting
                }
                tracing::info!("the daemon stopped answering");
            }
            None => {
                let since = *absent_since.get_or_insert_with(Instant::now);
                let failed = daemon.failed();
                if since.elapsed() >= GRACE {
                    daemon.start_if_due();
                }
                let seen = Seen::NoDaemon {
                    starting: daemon.running(),
                    failed,
                };
                if !send(Update::Seen(seen)) {
                    return;
                }
                // Commands without a daemon have nothing to act on.
                while commands.try_recv().is_ok() {}
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// The daemon's status and a subscribed connection, or `None` when no
/// daemon answers.
async fn connect(socket: &Path) -> Option<(Box<DaemonStatus>, Subscription)> {
    let events = subscribe(socket).await.ok()??;
    // Status after subscribing: no event between the two is missed.
    match request(socket, &Request::Status).await {
        Ok(Some(Response::Status(status))) => Some((status, events)),
        _ => None,
    }
}

/// Follows the event stream until the daemon goes away (`true`) or the
/// tray quits (`false`).
async fn stream(
    socket: &Path,
    mut events: Subscription,
    send: &impl Fn(Update) -> bool,
    commands: &mut mpsc::UnboundedReceiver<Ask>,
    told: &mut Told,
) -> bool {
    let mut progress = tokio::time::interval(PROGRESS_EVERY);
    // Polled while bytes move or a migration copies: neither sends events.
    let mut moving = false;
    loop {
        tokio::select! {
            event = events.next() => {
                let event = match event {
                    Ok(Some(event)) => event,
                    Ok(None) | Err(pouch_protocol::Error::Io { .. }) => return true,
                    Err(e) => {
                        tracing::warn!("{e}");
                        continue;
                    }
                };
                if let Some(note) = notification(&event, told)
                    && !send(note)
                {
                    return false;
                }
            }
            command = commands.recv() => {
                let Some(command) = command else { return false };
                let asked = match command {
                    Ask::Pause => Request::Pause,
                    Ask::Resume => Request::Resume { allow_mass_delete: false },
                    Ask::Limit { up, down } => Request::Limit { up, down },
                };
                match request(socket, &asked).await {
                    Ok(Some(Response::Ok(_))) => {}
                    Ok(Some(other)) => tracing::warn!("the daemon refused {asked:?}: {other:?}"),
                    Ok(None) | Err(_) => return true,
                }
            }
            _ = progress.tick(), if moving => {}
        }
        // Every event (and every tick while syncing) refreshes the status.
        match request(socket, &Request::Status).await {
            Ok(Some(Response::Status(status))) => {
                let copying = status
                    .migration
                    .as_ref()
                    .and_then(|m| m.copy.as_ref())
                    .is_some_and(|copy| copy.phase != CopyPhase::Done);
                moving = status.state == State::Syncing
                    || copying
                    || status
                        .mounts
                        .iter()
                        .any(|m| m.status.state == State::Syncing);
                if !send(Update::Seen(Seen::Daemon(status))) {
                    return false;
                }
            }
            _ => return true,
        }
    }
}

/// What the user was already told, so a failing sync (retried every few
/// seconds with the same message) or a file a viewer keeps here (reported
/// by every sync that scans it) notifies once.
#[derive(Debug, Default)]
pub struct Told {
    /// The last error of each folder (`""`: the home, else the mount's
    /// path), until a sync there succeeds.
    errors: HashMap<String, String>,
    /// Files kept on this device in read-only mounts (`MOUNT/PATH`).
    kept: HashSet<String>,
}

/// The notification an event deserves: conflicts, errors (each once), and
/// the files a read-only shared folder keeps here (each once).
fn notification(event: &Event, told: &mut Told) -> Option<Update> {
    notification_in("", event, told)
}

/// The notification of `event` in the folder at `mount` (`""`: the home).
fn notification_in(mount: &str, event: &Event, told: &mut Told) -> Option<Update> {
    let place = if mount.is_empty() {
        String::new()
    } else {
        format!("In the shared folder {}: ", printable(mount))
    };
    match event {
        Event::Mount { path, happened } if mount.is_empty() => {
            notification_in(path, happened, told)
        }
        Event::Synced(report) => {
            told.errors.remove(mount);
            let new_kept: Vec<&str> = report
                .kept_here
                .iter()
                .filter(|path| told.kept.insert(format!("{mount}/{path}")))
                .map(String::as_str)
                .collect();
            if !new_kept.is_empty() {
                return Some(Update::Notify {
                    summary: "Kept on this device only".to_owned(),
                    body: format!(
                        "{place}this account may only view it, so your changes to {} stay here and are not sent.",
                        printable(&new_kept.join(", "))
                    ),
                });
            }
            let conflicted: Vec<_> = report
                .changed
                .iter()
                .filter(|c| c.action == Action::Conflict)
                .map(|c| c.path.as_str())
                .collect();
            (report.conflicts > 0).then(|| Update::Notify {
                summary: match report.conflicts {
                    1 => "Pouch kept a conflicted copy".to_owned(),
                    n => format!("Pouch kept {n} conflicted copies"),
                },
                body: format!(
                    "{place}Changed here and on another device: {}. Both versions are in the folder.",
                    printable(&conflicted.join(", "))
                ),
            })
        }
        Event::Failed { message } if told.errors.get(mount) != Some(message) => {
            told.errors.insert(mount.to_owned(), message.clone());
            Some(Update::Notify {
                summary: if mount.is_empty() {
                    "Pouch cannot sync".to_owned()
                } else {
                    format!("Pouch cannot sync the shared folder {}", printable(mount))
                },
                body: printable(message).into_owned(),
            })
        }
        _ => None,
    }
}

/// The daemon the tray started, if it did.
struct Daemon {
    starter: Option<Starter>,
    child: Option<Child>,
    started_at: Option<Instant>,
    exited: Option<String>,
}

impl Daemon {
    fn new(starter: Option<Starter>) -> Self {
        Self {
            starter,
            child: None,
            started_at: None,
            exited: None,
        }
    }

    /// Whether a daemon the tray started is still running.
    fn running(&mut self) -> bool {
        self.reap();
        self.child.is_some()
    }

    /// Why the daemon the tray started last stopped, if it stopped.
    fn failed(&mut self) -> Option<String> {
        self.reap();
        self.exited.clone()
    }

    fn reap(&mut self) {
        let Some(child) = &mut self.child else { return };
        if let Ok(Some(status)) = child.try_wait() {
            let log = self.starter.as_ref().map(|s| s.log.display().to_string());
            self.exited = Some(format!(
                "the daemon exited ({status}); see {}",
                log.unwrap_or_default()
            ));
            self.child = None;
        }
    }

    fn start_if_due(&mut self) {
        if self.running()
            || self
                .started_at
                .is_some_and(|at| at.elapsed() < RESTART_EVERY)
        {
            return;
        }
        let Some(starter) = &self.starter else { return };
        self.started_at = Some(Instant::now());
        match start(starter) {
            Ok(child) => {
                tracing::info!("started a daemon (pid {})", child.id());
                self.child = Some(child);
                self.exited = None;
            }
            Err(e) => self.exited = Some(format!("cannot run {}: {e}", starter.pouch.display())),
        }
    }
}

/// Runs `pouch daemon` in its own process group (a Ctrl-C meant for the
/// tray does not stop syncing), its output appended to the log.
fn start(starter: &Starter) -> std::io::Result<Child> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&starter.log)?;
    Command::new(&starter.pouch)
        .arg("--config")
        .arg(&starter.config)
        .arg("daemon")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
}

#[cfg(test)]
mod tests {
    use pouch_protocol::{Changed, SyncReport};

    use super::*;

    #[test]
    fn conflicts_and_new_errors_notify_once() {
        let mut last_error = Told::default();
        let failed = Event::Failed {
            message: "the store is unavailable".into(),
        };
        assert!(matches!(
            notification(&failed, &mut last_error),
            Some(Update::Notify { .. })
        ));
        assert!(notification(&failed, &mut last_error).is_none());

        let report = SyncReport {
            conflicts: 1,
            changed: vec![Changed {
                path: "notes (conflicted copy).txt".into(),
                action: Action::Conflict,
            }],
            ..SyncReport::default()
        };
        match notification(&Event::Synced(report), &mut last_error) {
            Some(Update::Notify { summary, body }) => {
                assert_eq!(summary, "Pouch kept a conflicted copy");
                assert!(body.contains("notes (conflicted copy).txt"), "{body}");
            }
            other => panic!("{other:?}"),
        }
        // A success clears the error: the same failure later notifies again.
        assert!(notification(&failed, &mut last_error).is_some());
        assert!(notification(&Event::Synced(SyncReport::default()), &mut last_error).is_none());
    }

    #[test]
    fn a_mounts_troubles_and_kept_files_notify_once_naming_it() {
        let mut told = Told::default();
        let in_mount = |happened: Event| Event::Mount {
            path: "From Alice".into(),
            happened: Box::new(happened),
        };
        let failed = in_mount(Event::Failed {
            message: "forbidden".into(),
        });
        match notification(&failed, &mut told) {
            Some(Update::Notify { summary, .. }) => {
                assert_eq!(summary, "Pouch cannot sync the shared folder From Alice");
            }
            other => panic!("{other:?}"),
        }
        assert!(notification(&failed, &mut told).is_none());
        // The home failing with the same words is news of its own.
        let home_failed = Event::Failed {
            message: "forbidden".into(),
        };
        assert!(notification(&home_failed, &mut told).is_some());

        let kept = |paths: &[&str]| {
            in_mount(Event::Synced(SyncReport {
                kept_here: paths.iter().map(|p| p.to_string()).collect(),
                ..SyncReport::default()
            }))
        };
        match notification(&kept(&["notes.txt"]), &mut told) {
            Some(Update::Notify { summary, body }) => {
                assert_eq!(summary, "Kept on this device only");
                assert!(
                    body.starts_with("In the shared folder From Alice: ")
                        && body.contains("notes.txt"),
                    "{body}"
                );
            }
            other => panic!("{other:?}"),
        }
        // Reported again by the next sync: already told.
        assert!(notification(&kept(&["notes.txt"]), &mut told).is_none());
        match notification(&kept(&["notes.txt", "new.txt"]), &mut told) {
            Some(Update::Notify { body, .. }) => {
                assert!(
                    body.contains("new.txt") && !body.contains("notes.txt"),
                    "{body}"
                )
            }
            other => panic!("{other:?}"),
        }
        // The mount's success cleared its error: the same failure is news.
        assert!(notification(&failed, &mut told).is_some());
    }
}
