//! What the tray shows for a daemon state: the icon, the tooltip and the
//! menu's labels. Pure, so every state is unit-tested without a desktop.

use pouch_protocol::display::printable;
use pouch_protocol::{Action, CopyPhase, DaemonStatus, Limits, MountStatus, State, TransferPhase};

/// How many recent files the menu lists.
pub const RECENT_SHOWN: usize = 5;

/// The icon's picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// Everything synced.
    UpToDate,
    /// Moving changes.
    Syncing,
    /// Paused by the user.
    Paused,
    /// No daemon, or the store is out of reach.
    Offline,
    /// The last sync failed.
    Error,
}

/// What the daemon link knows.
#[derive(Debug, Clone)]
pub enum Seen {
    /// No answer yet.
    Connecting,
    /// No daemon answers on the socket; `starting` when the tray has
    /// started one and waits for it.
    NoDaemon {
        /// The tray started a daemon that has not answered yet.
        starting: bool,
        /// Why the daemon the tray started last stopped (it failed to
        /// start, or died), until the tray starts another.
        failed: Option<String>,
    },
    /// The daemon's latest status.
    Daemon(Box<DaemonStatus>),
}

/// One recent file in the menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentItem {
    /// The label: the name, what happened, the folder it is in.
    pub label: String,
    /// The path inside the synced folder.
    pub path: String,
}

/// One mounted shared folder in the menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountItem {
    /// The label: its name, the account's role, its state.
    pub label: String,
    /// Where it is mounted inside the synced folder.
    pub path: String,
}

/// Everything the tray shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// The icon's picture.
    pub look: Look,
    /// The first menu line, also the tooltip.
    pub status_line: String,
    /// The pause item's label, `None` when there is no daemon to pause.
    pub pause_label: Option<&'static str>,
    /// Newest first, at most [`RECENT_SHOWN`] files still worth opening.
    pub recent: Vec<RecentItem>,
    /// The store line.
    pub backend_line: String,
    /// The bandwidth limits in force, `None` when there is no daemon.
    pub limits: Option<Limits>,
    /// The shared folders mounted into the folder, as the daemon syncs
    /// them.
    pub mounts: Vec<MountItem>,
}

/// The rates the bandwidth menu offers, bytes per second (`None`: off).
pub const LIMIT_CHOICES: [Option<u64>; 4] = [None, Some(256 << 10), Some(1 << 20), Some(5 << 20)];

/// A direction of the bandwidth menu.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Blocks sent to the store.
    Up,
    /// Blocks read from the store.
    Down,
}

/// The label of one bandwidth menu item: the current choice is ticked.
pub fn limit_label(direction: Direction, rate: Option<u64>, limits: Option<&Limits>) -> String {
    let current = limits.map(|limits| match direction {
        Direction::Up => limits.up,
        Direction::Down => limits.down,
    });
    let tick = if current == Some(rate) { "✓ " } else { "" };
    let what = match direction {
        Direction::Up => "Upload",
        Direction::Down => "Download",
    };
    match rate {
        None => format!("{tick}{what}: no limit"),
        Some(_) => format!("{tick}{what}: {}", pouch_config::show_rate(rate)),
    }
}

/// The pause item while syncing runs.
pub const PAUSE: &str = "Pause syncing";
/// The pause item while paused.
pub const RESUME: &str = "Resume syncing";

impl View {
    /// The view of what the link saw.
    pub fn of(seen: &Seen) -> View {
        match seen {
            Seen::Connecting => View::without_daemon(Look::Offline, "Connecting to Pouch…".into()),
            Seen::NoDaemon { starting: true, .. } => {
                View::without_daemon(Look::Offline, "Starting Pouch…".into())
            }
            Seen::NoDaemon {
                failed: Some(why), ..
            } => View::without_daemon(Look::Error, format!("Pouch stopped: {why}")),
            Seen::NoDaemon { .. } => {
                View::without_daemon(Look::Offline, "Pouch is not running".into())
            }
            Seen::Daemon(status) => View::of_status(status),
        }
    }

    fn without_daemon(look: Look, status_line: String) -> View {
        View {
            look,
            status_line,
            pause_label: None,
            recent: Vec::new(),
            backend_line: "Store: unknown (Pouch is not running)".into(),
            limits: None,
            mounts: Vec::new(),
        }
    }

    fn of_status(status: &DaemonStatus) -> View {
        // The icon and the first line say the most pressing of the home's
        // state and its mounts' (the home's on a tie).
        let (mut look, mut status_line) = state_line(status);
        let mut mounts = Vec::with_capacity(status.mounts.len());
        for mount in &status.mounts {
            let (mount_look, line) = state_line(&mount.status);
            if urgency(mount_look) > urgency(look) {
                look = mount_look;
                status_line = format!("{}: {line}", printable(&mount.name));
            }
            mounts.push(mount_item(mount, &line));
        }
        let recent = status
            .recent
            .iter()
            .filter(|changed| {
                matches!(
                    changed.action,
                    Action::Uploaded | Action::Downloaded | Action::Renamed | Action::Conflict
                )
            })
            .take(RECENT_SHOWN)
            .map(|changed| RecentItem {
                label: recent_label(&changed.path, changed.action),
                path: changed.path.clone(),
            })
            .collect();
        View {
            look,
            status_line,
            pause_label: Some(if status.paused { RESUME } else { PAUSE }),
            recent,
            backend_line: format!(
                "Store: {}{}",
                printable(&status.backend),
                migration_note(status)
            ),
            limits: Some(status.limits),
            mounts,
        }
    }
}

/// How much a look asks for the user's eye: the icon shows the most.
fn urgency(look: Look) -> u8 {
    match look {
        Look::UpToDate => 0,
        Look::Paused => 1,
        Look::Syncing => 2,
        Look::Offline => 3,
        Look::Error => 4,
    }
}

/// A mount's menu item, `line` its state: "Projects (viewer): Up to
/// date, 2 files kept on this device only".
fn mount_item(mount: &MountStatus, line: &str) -> MountItem {
    let kept = match mount.status.kept_here.len() {
        0 => String::new(),
        1 => ", 1 file kept on this device only".to_owned(),
        n => format!(", {n} files kept on this device only"),
    };
    MountItem {
        label: format!(
            "{} ({}): {line}{kept}",
            printable(&mount.name),
            printable(&mount.role)
        ),
        path: mount.path.clone(),
    }
}

/// The look and the line of one loop's status (the home's or a mount's).
fn state_line(status: &DaemonStatus) -> (Look, String) {
    match status.state {
        _ if status.paused => (Look::Paused, "Paused".to_owned()),
        State::Error if status.move_waiting.is_some() => (
            Look::Paused,
            format!(
                "Waiting for you: this folder moved to {}; run `pouch migrate follow` (or `refuse`)",
                printable(status.move_waiting.as_deref().unwrap_or_default())
            ),
        ),
        State::Syncing => (Look::Syncing, syncing_line(status)),
        State::Error if status.offline => (
            Look::Offline,
            "Offline: the store cannot be reached; retrying".to_owned(),
        ),
        State::Error => (
            Look::Error,
            format!(
                "Error: {}",
                printable(
                    status
                        .last_error
                        .as_deref()
                        .unwrap_or("the last sync failed")
                )
            ),
        ),
        State::Idle | State::Paused => (Look::UpToDate, "Up to date".to_owned()),
    }
}

/// The migration's state after the store's name, which already says
/// "(migrating to …)" while one runs.
fn migration_note(status: &DaemonStatus) -> String {
    let Some(migration) = &status.migration else {
        return String::new();
    };
    let mismatches = match migration.counts.shadow_mismatches {
        0 => String::new(),
        n => format!(", {n} shadow reads differ"),
    };
    match &migration.copy {
        Some(copy) if copy.phase == CopyPhase::Done => format!(": copy done{mismatches}"),
        Some(copy) => format!(
            ": {} {}%{mismatches}",
            copy.phase,
            (copy.done_bytes * 100)
                .checked_div(copy.total_bytes)
                .unwrap_or(0)
                .min(100)
        ),
        None => mismatches.trim_start_matches(", ").to_owned(),
    }
}

fn syncing_line(status: &DaemonStatus) -> String {
    let Some(transfer) = status.transfer.as_ref().filter(|t| t.files > 0) else {
        return "Syncing…".to_owned();
    };
    let verb = match transfer.phase {
        TransferPhase::Uploading => "Uploading",
        TransferPhase::Downloading => "Downloading",
    };
    let files = match transfer.files {
        1 => "1 file".to_owned(),
        n => format!("{n} files"),
    };
    match (transfer.done_bytes * 100).checked_div(transfer.total_bytes) {
        Some(percent) => format!("{verb} {files} ({}%)", percent.min(100)),
        None => format!("{verb} {files}"),
    }
}

/// A recent file's menu label; the path may come from another device, so
/// its control characters are escaped.
fn recent_label(path: &str, action: Action) -> String {
    let path = &*printable(path);
    let (folder, name) = path.rsplit_once('/').unwrap_or(("", path));
    let what = match action {
        Action::Uploaded => "sent",
        Action::Downloaded => "received",
        Action::Renamed => "moved",
        Action::Conflict => "conflicted copy kept",
        Action::DeletedRemotely | Action::DeletedHere => "deleted",
    };
    if folder.is_empty() {
        format!("{name} ({what})")
    } else {
        format!("{name} ({what}, in {folder})")
    }
}

#[cfg(test)]
mod tests {
    use pouch_protocol::{Changed, Transfer};

    use super::*;

    fn status(state: State) -> DaemonStatus {
        DaemonStatus {
            state,
            paused: false,
            syncs: 3,
            last_sync: None,
            last_error: None,
            backend: "pouch-store at http://127.0.0.1:7000".into(),
            offline: false,
            last_report: None,
            watch_problem: None,
            transfer: None,
            recent: Vec::new(),
            migration: None,
            limits: Limits::default(),
            move_waiting: None,
            kept_here: Vec::new(),
            mounts: Vec::new(),
        }
    }

    fn mounted(name: &str, role: &str, status: DaemonStatus) -> MountStatus {
        MountStatus {
            name: name.into(),
            path: format!("Shared/{name}"),
            role: role.into(),
            status: Box::new(status),
        }
    }

    #[test]
    fn each_shared_folder_has_its_line_and_the_worst_one_shows() {
        let mut home = status(State::Idle);
        let mut kept = status(State::Idle);
        kept.kept_here = vec!["a (conflicted copy).txt".into(), "new.txt".into()];
        home.mounts = vec![
            mounted("Projects", "editor", status(State::Idle)),
            mounted("From Alice", "viewer", kept),
        ];
        let view = View::of(&Seen::Daemon(Box::new(home.clone())));
        assert_eq!(
            (view.look, view.status_line.as_str()),
            (Look::UpToDate, "Up to date")
        );
        let labels: Vec<_> = view.mounts.iter().map(|m| m.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "Projects (editor): Up to date",
                "From Alice (viewer): Up to date, 2 files kept on this device only"
            ]
        );
        assert_eq!(view.mounts[1].path, "Shared/From Alice");

        // A mount syncing while the home is idle: the icon says syncing.
        home.mounts[0].status.state = State::Syncing;
        let view = View::of(&Seen::Daemon(Box::new(home.clone())));
        assert_eq!(
            (view.look, view.status_line.as_str()),
            (Look::Syncing, "Projects: Syncing…")
        );
        // A failing one outweighs it, and the home's own trouble of the same
        // weight comes first.
        home.mounts[1].status.state = State::Error;
        home.mounts[1].status.last_error = Some("over its quota".into());
        let view = View::of(&Seen::Daemon(Box::new(home.clone())));
        assert_eq!(
            (view.look, view.status_line.as_str()),
            (Look::Error, "From Alice: Error: over its quota")
        );
        assert_eq!(
            view.mounts[1].label,
            "From Alice (viewer): Error: over its quota, 2 files kept on this device only"
        );
        home.state = State::Error;
        home.last_error = Some("disk full".into());
        let view = View::of(&Seen::Daemon(Box::new(home)));
        assert_eq!(view.status_line, "Error: disk full");
        // Without a daemon there is nothing to list.
        assert!(View::of(&Seen::Connecting).mounts.is_empty());
    }

    #[test]
    fn the_bandwidth_menu_ticks_the_limits_in_force() {
        let limits = Limits {
            up: Some(1 << 20),
            down: None,
        };
        let labels: Vec<String> = LIMIT_CHOICES
            .iter()
            .map(|rate| limit_label(Direction::Up, *rate, Some(&limits)))
            .collect();
        assert_eq!(
            labels,
            [
                "Upload: no limit",
                "Upload: 256.0 KiB/s",
                "✓ Upload: 1.0 MiB/s",
                "Upload: 5.0 MiB/s"
            ]
        );
        assert_eq!(
            limit_label(Direction::Down, None, Some(&limits)),
            "✓ Download: no limit"
        );
        assert_eq!(
            limit_label(Direction::Down, None, None),
            "Download: no limit"
        );
        // A limit set elsewhere (not a menu choice) ticks nothing.
        let odd = Limits {
            up: Some(3 << 20),
            down: None,
        };
        assert!(
            LIMIT_CHOICES
                .iter()
                .all(|rate| !limit_label(Direction::Up, *rate, Some(&odd)).starts_with('✓'))
        );
        // Without a daemon the menu is greyed out.
        assert_eq!(View::of(&Seen::Connecting).limits, None);
    }

    #[test]
    fn text_from_other_devices_cannot_drive_the_panel() {
        let mut idle = status(State::Idle);
        idle.recent = vec![pouch_protocol::Changed {
            path: "dir/evil\u{1b}]0;pwned\u{7}.txt".into(),
            action: Action::Downloaded,
        }];
        let view = View::of(&Seen::Daemon(Box::new(idle.clone())));
        assert_eq!(
            view.recent[0].label,
            "evil\\x1b]0;pwned\\x07.txt (received, in dir)"
        );
        // The path itself stays exact: it opens the right file.
        assert_eq!(view.recent[0].path, "dir/evil\u{1b}]0;pwned\u{7}.txt");
        idle.state = State::Error;
        idle.last_error = Some("bad\u{202e}txt.exe".into());
        let view = View::of(&Seen::Daemon(Box::new(idle)));
        assert_eq!(view.status_line, "Error: bad\\u{202e}txt.exe");
    }

    #[test]
    fn each_state_has_its_look_and_line() {
        let idle = View::of(&Seen::Daemon(Box::new(status(State::Idle))));
        assert_eq!(
            (idle.look, idle.status_line.as_str(), idle.pause_label),
            (Look::UpToDate, "Up to date", Some(PAUSE))
        );
        assert_eq!(
            idle.backend_line,
            "Store: pouch-store at http://127.0.0.1:7000"
        );

        let mut paused = status(State::Paused);
        paused.paused = true;
        let paused = View::of(&Seen::Daemon(Box::new(paused)));
        assert_eq!(
            (paused.look, paused.status_line.as_str(), paused.pause_label),
            (Look::Paused, "Paused", Some(RESUME))
        );

        let mut failed = status(State::Error);
        failed.last_error = Some("disk full".into());
        let view = View::of(&Seen::Daemon(Box::new(failed.clone())));
        assert_eq!(
            (view.look, view.status_line.as_str()),
            (Look::Error, "Error: disk full")
        );
        let mut waiting = failed.clone();
        waiting.move_waiting = Some("pouch-store http://elsewhere:7878 (namespace default)".into());
        let view = View::of(&Seen::Daemon(Box::new(waiting)));
        assert_eq!(view.look, Look::Paused);
        assert!(
            view.status_line
                .starts_with("Waiting for you: this folder moved to pouch-store http://elsewhere")
                && view.status_line.contains("pouch migrate follow"),
            "{}",
            view.status_line
        );
        failed.offline = true;
        assert_eq!(
            View::of(&Seen::Daemon(Box::new(failed))).look,
            Look::Offline
        );

        let gone = View::of(&Seen::NoDaemon {
            starting: false,
            failed: None,
        });
        assert_eq!((gone.look, gone.pause_label), (Look::Offline, None));
        let broken = View::of(&Seen::NoDaemon {
            starting: false,
            failed: Some("exit status: 1".into()),
        });
        assert_eq!(broken.look, Look::Error);
    }

    #[test]
    fn a_migration_shows_beside_the_store() {
        use pouch_protocol::{CopyProgress, MigrationCounts, MigrationStatus, StoreMode};
        let mut migrating = status(State::Idle);
        migrating.backend = "s3://b (migrating to pouch-store at http://s)".into();
        migrating.migration = Some(MigrationStatus {
            counts: MigrationCounts {
                mode: StoreMode::Migrating,
                other: String::new(),
                secondary_write_failures: 0,
                journal_entries_mirrored: 0,
                shadow_reads: 0,
                shadow_missing: 0,
                shadow_mismatches: 2,
                fallback_reads: 0,
            },
            copy: Some(CopyProgress {
                phase: CopyPhase::Copying,
                blocks: 10,
                done_bytes: 250,
                total_bytes: 1000,
                started: 0,
                updated: 0,
            }),
        });
        assert_eq!(
            View::of(&Seen::Daemon(Box::new(migrating))).backend_line,
            "Store: s3://b (migrating to pouch-store at http://s): copying 25%, 2 shadow reads differ"
        );
    }

    #[test]
    fn syncing_shows_files_and_progress() {
        let mut syncing = status(State::Syncing);
        assert_eq!(
            View::of(&Seen::Daemon(Box::new(syncing.clone()))).status_line,
            "Syncing…"
        );
        syncing.transfer = Some(Transfer {
            phase: TransferPhase::Uploading,
            files: 3,
            done_bytes: 450,
            total_bytes: 1000,
        });
        let view = View::of(&Seen::Daemon(Box::new(syncing.clone())));
        assert_eq!(
            (view.look, view.status_line.as_str()),
            (Look::Syncing, "Uploading 3 files (45%)")
        );
        syncing.transfer = Some(Transfer {
            phase: TransferPhase::Downloading,
            files: 1,
            done_bytes: 0,
            total_bytes: 0,
        });
        assert_eq!(
            View::of(&Seen::Daemon(Box::new(syncing))).status_line,
            "Downloading 1 file"
        );
    }

    #[test]
    fn recent_lists_five_openable_files() {
        let mut with_recent = status(State::Idle);
        with_recent.recent = (0..8)
            .map(|i| Changed {
                path: if i == 0 {
                    "top.txt".into()
                } else {
                    format!("docs/f{i}.txt")
                },
                action: if i == 1 {
                    Action::DeletedHere
                } else {
                    Action::Downloaded
                },
            })
            .collect();
        let view = View::of(&Seen::Daemon(Box::new(with_recent)));
        let labels: Vec<_> = view.recent.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "top.txt (received)",
                "f2.txt (received, in docs)",
                "f3.txt (received, in docs)",
                "f4.txt (received, in docs)",
                "f5.txt (received, in docs)",
            ]
        );
        assert_eq!(view.recent[1].path, "docs/f2.txt");
    }
}
