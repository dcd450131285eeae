//! `pouch status`: what waits to sync, the daemon's state, a migration.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use pouch_backend::BackendExt;
use pouch_core::location::{ConfigLocation, StoreLocation};
use pouch_core::migrate::CopyProgress;
use pouch_protocol::{DaemonStatus, Request, Response, request};
use serde::Serialize;

use crate::session::Session;
use crate::store;

#[derive(Serialize)]
struct Status {
    root: PathBuf,
    device: String,
    device_id: String,
    backend: String,
    cursor: u64,
    remote_head: u64,
    to_upload: usize,
    to_delete_remotely: usize,
    to_download: usize,
    to_delete_locally: usize,
    conflicts: usize,
    problems: Vec<String>,
    /// The running daemon's own state, if one runs.
    daemon: Option<DaemonStatus>,
    /// A migration under way (`pouch migrate start`), if any.
    migration: Option<MigrationSummary>,
    /// A move another device announced that waits for this device's user
    /// (`pouch migrate follow` or `refuse`), if any.
    move_waiting: Option<MoveWaiting>,
    /// A migration another device announced that this one has not joined
    /// (its store is elsewhere: `pouch migrate join`).
    migration_announced: Option<MoveWaiting>,
    /// The shared folders mounted into this folder.
    mounts: Vec<MountStatus>,
}

/// A mounted shared folder, for `pouch status`.
#[derive(Serialize)]
struct MountStatus {
    name: String,
    path: String,
    role: String,
    /// No longer synced (the account left it or mounted it elsewhere).
    detached: bool,
    /// Changes waiting, in either direction (attached mounts).
    waiting: usize,
    problems: Vec<String>,
    /// The daemon's state for it, if one runs.
    daemon: Option<String>,
}

/// The state of each mount of the folder `config_path` configures.
async fn mounts(
    config_path: &Path,
    config: &pouch_config::Config,
) -> anyhow::Result<Vec<MountStatus>> {
    let mut out = Vec::new();
    for mount in &config.mounts {
        let mut status = MountStatus {
            name: mount.name.clone(),
            path: mount.path.clone(),
            role: mount.role.clone(),
            detached: mount.detached,
            waiting: 0,
            problems: Vec::new(),
            daemon: None,
        };
        if !mount.detached {
            let mut session = Session::open_mount(config_path, mount, None)?;
            status.daemon = match request(&session.config.socket_path(), &Request::Status).await {
                Ok(Some(Response::Status(daemon))) => Some(daemon.state.name().to_owned()),
                _ => None,
            };
            let lock = crate::session::sync_lock(&session.config).await?;
            match session.engine.pending().await {
                Ok((pending, problems)) => {
                    status.waiting = pending.upload
                        + pending.delete_remote
                        + pending.download
                        + pending.delete_local
                        + pending.conflicts;
                    status.problems = problems;
                    status.problems.extend(pending.kept_here.iter().map(|path| {
                        format!("{path}: kept on this device only: this account may only view this shared folder")
                    }));
                }
                Err(e) => status.problems.push(e.to_string()),
            }
            drop(lock);
        }
        out.push(status);
    }
    Ok(out)
}

/// A move waiting for the user, for `pouch status`.
#[derive(Serialize)]
struct MoveWaiting {
    /// The journal entry that announced it.
    seq: u64,
    /// Where to.
    to: String,
}

/// A migration, for `pouch status`.
#[derive(Serialize)]
struct MigrationSummary {
    /// The store the folder moves to.
    to: String,
    /// The share of reads checked against it.
    shadow_reads: f64,
    /// How far the copy came, as it last recorded.
    copy: Option<CopyProgress>,
}

pub(super) async fn status(config_path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let Session {
        config,
        backend,
        mut engine,
        ..
    } = Session::open(config_path)?;
    let daemon = match request(&config.socket_path(), &Request::Status).await {
        Ok(Some(Response::Status(status))) => Some(*status),
        _ => None,
    };
    // A look records its scan as a sync's would: one at a time.
    let lock = crate::session::sync_lock(&config).await?;
    let (pending, problems) = engine.pending().await?;
    drop(lock);
    let migration = config.migration.as_ref().map(|m| MigrationSummary {
        to: store::describe(&m.target),
        shadow_reads: m.shadow_reads,
        copy: pouch_core::migrate::recorded_progress(engine.db()),
    });
    let move_waiting = engine
        .moved()?
        .filter(|(_, to)| !to.is(&config.backend) && !engine.follows_by_itself(to))
        .map(|(seq, to)| MoveWaiting {
            seq,
            to: to.to_string(),
        });
    let joined = config
        .migration
        .as_ref()
        .and_then(|m| StoreLocation::of(&m.target));
    let migration_announced = engine
        .announced_migration()?
        .and_then(|(seq, to)| Some((seq, to?)))
        .filter(|(_, to)| Some(to) != joined.as_ref() && !to.is(&config.backend))
        .map(|(seq, to)| MoveWaiting {
            seq,
            to: to.to_string(),
        });
    let mounts = mounts(config_path, &config).await?;
    let status = Status {
        mounts,
        move_waiting,
        migration_announced,
        migration,
        root: config.root.clone(),
        device: config.device.clone(),
        device_id: engine.db().device_id()?,
        backend: backend.describe(),
        cursor: engine.db().cursor()?.0,
        remote_head: backend.journal_head().await?.0,
        to_upload: pending.upload,
        to_delete_remotely: pending.delete_remote,
        to_download: pending.download,
        to_delete_locally: pending.delete_local,
        conflicts: pending.conflicts,
        problems,
        daemon,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        let pending = status.to_upload
            + status.to_delete_remotely
            + status.to_download
            + status.to_delete_locally
            + status.conflicts;
        say!("folder:  {}", status.root.display());
        say!("device:  {} ({})", status.device, status.device_id);
        say!("store:   {}", status.backend);
        say!("journal: entry {} of {}", status.cursor, status.remote_head);
        if let Some(waiting) = &status.move_waiting {
            say!(
                "moved:   this folder's data moved to {} (journal entry {}); waiting for you: \
                 `pouch migrate follow` to follow it, `pouch migrate refuse` to stay here. Nothing syncs meanwhile",
                waiting.to,
                waiting.seq
            );
        }
        if let Some(announced) = &status.migration_announced {
            say!(
                "announced: another device is migrating this folder to {} (journal entry {});                  `pouch migrate join` to write there too (this device's own credentials)",
                announced.to,
                announced.seq
            );
        }
        if let Some(migration) = &status.migration {
            say!(
                "migrating to {}: every change goes to both stores, {:.0}% of reads checked against it",
                migration.to,
                migration.shadow_reads * 100.0
            );
            match &migration.copy {
                Some(copy) => say!(
                    "migration: {} {}% ({} of {}, {} blocks)",
                    copy.phase,
                    (copy.done_bytes * 100)
                        .checked_div(copy.total_bytes)
                        .unwrap_or(100),
                    indicatif::HumanBytes(copy.done_bytes),
                    indicatif::HumanBytes(copy.total_bytes),
                    copy.blocks
                ),
                None => say!("migration: the copy has not run yet (`pouch migrate start`)"),
            }
        }
        match &status.daemon {
            Some(daemon) => {
                say!("daemon:  {} ({} syncs)", daemon.state.name(), daemon.syncs);
                if let Some(error) = &daemon.last_error {
                    say!("daemon error: {error}");
                }
                if let Some(problem) = &daemon.watch_problem {
                    say!("daemon warning: {problem}");
                }
                if let Some(transfer) = &daemon.transfer {
                    say!(
                        "daemon:  {} {} files, {} of {}",
                        transfer.phase,
                        transfer.files,
                        indicatif::HumanBytes(transfer.done_bytes),
                        indicatif::HumanBytes(transfer.total_bytes)
                    );
                }
                if let Some(migration) = &daemon.migration {
                    let c = &migration.counts;
                    say!(
                        "daemon:  {} ({}): {} journal entries written to both, {} writes to it failed, \
                         {} shadow reads ({} not copied yet, {} mismatches), {} fallback reads",
                        c.mode,
                        c.other,
                        c.journal_entries_mirrored,
                        c.secondary_write_failures,
                        c.shadow_reads,
                        c.shadow_missing,
                        c.shadow_mismatches,
                        c.fallback_reads
                    );
                }
                for change in daemon.recent.iter().take(5) {
                    say!("recent:  {} ({})", change.path, change.action.words());
                }
            }
            None => say!("daemon:  not running"),
        }
        for mount in &status.mounts {
            if mount.detached {
                say!(
                    "shared:  {} at {}: no longer synced (its copy stays)",
                    mount.name,
                    mount.path
                );
                continue;
            }
            let waiting = match mount.waiting {
                0 => "up to date".to_owned(),
                n => format!("{n} changes waiting"),
            };
            let daemon = mount.daemon.as_deref().unwrap_or("no daemon");
            say!(
                "shared:  {} at {} ({}): {waiting}, {daemon}",
                mount.name,
                mount.path,
                mount.role
            );
            for problem in &mount.problems {
                say!("problem: {}/{problem}", mount.path);
            }
        }
        if pending == 0 {
            say!("up to date");
        } else {
            say!(
                "waiting: {} to upload, {} to delete remotely, {} to download, {} to delete here, {} conflicts",
                status.to_upload,
                status.to_delete_remotely,
                status.to_download,
                status.to_delete_locally,
                status.conflicts
            );
        }
        for problem in &status.problems {
            say!("problem: {problem}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
