//! `pouch daemon`, `pouch pause` and `pouch resume`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use pouch_config::Config;
use pouch_core::daemon::DaemonOptions;
use pouch_core::daemon::group::{Group, Membership};
use pouch_core::limit::Limits;
use pouch_protocol::{Request, Response, request};

use crate::cli::LimitArgs;
use crate::session::Session;

pub(super) async fn daemon(config_path: &Path, limits: &LimitArgs) -> anyhow::Result<ExitCode> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let signal = shutdown_signal().context("cannot install signal handlers")?;
    tokio::pin!(signal);
    // Runs until a signal; a changed config (`pouch migrate start`,
    // `cancel`, `switch`) or a move of the folder's store makes it stop and
    // open the stores again.
    let mut moved = false;
    // The home's socket speaks for the mounts' loops too. The group outlives
    // each opening of the stores, so a paused folder stays paused across
    // them (a new mount or a migration reopens everything).
    let group = Group::new();
    loop {
        if Config::load(config_path)?.is_account_home()
            && let Err(e) = super::shares::refresh_mounts(config_path).await
        {
            tell!("pouch daemon: shared folders not checked: {e:#}");
        }
        let Session {
            config,
            backend,
            engine,
            migration,
            limits: pacers,
        } = if moved {
            Session::reopen_after_move(config_path).await?
        } else {
            Session::open_following(config_path).await?
        };
        limits.apply(&pacers);
        let stamp = config_stamp(config_path);
        let socket = config.socket_path();
        tell!(
            "pouch daemon: syncing {} with {} (control socket {})",
            config.root.display(),
            backend.describe(),
            socket.display()
        );
        let mut options = DaemonOptions::new(socket);
        options.migration = migration;
        options.limits = Some(pacers.clone());
        options.group = Some(Membership::Home(group.clone()));
        if config.gc.every_hours > 0 {
            options.collect = Some((
                std::time::Duration::from_secs(config.gc.every_hours * 3600),
                pouch_backend::gc::DEFAULT_GRACE,
            ));
        }
        let reopen = AtomicBool::new(false);
        // The mounts' loops stop with the home's.
        let (stopped, stopping) = tokio::sync::watch::channel(false);
        let account = config.is_account_home();
        let stop = async {
            tokio::select! {
                () = &mut signal => {}
                () = config_changed(config_path, stamp, &config, &pacers) => reopen.store(true, Ordering::Relaxed),
                // A new or lost mount saves the config, which reopens all.
                () = refresh_mounts_every(config_path, account) => {}
            }
        };
        let home = async {
            let outcome =
                pouch_core::daemon::run(engine, backend, &config.root, options, stop).await;
            let _ = stopped.send(true);
            outcome
        };
        let mounts = futures_util::future::join_all(
            config.mounts.iter().filter(|m| !m.detached).map(|mount| {
                let member = Membership::Mount(group.clone(), mount.clone());
                run_mount(config_path, mount, &pacers, member, stopping.clone())
            }),
        );
        let (outcome, _) = tokio::join!(home, mounts);
        match outcome {
            Ok(()) if reopen.load(Ordering::Relaxed) => {
                moved = false;
                tell!("pouch daemon: the config changed; opening the stores again");
            }
            Ok(()) => return Ok(ExitCode::SUCCESS),
            Err(pouch_core::Error::Moved { .. }) => {
                moved = true;
                tell!("pouch daemon: the folder's store moved; following it");
            }
            Err(pouch_core::Error::MigrationChanged { .. }) => {
                moved = false;
                tell!(
                    "pouch daemon: a migration was announced or stopped; opening the stores again"
                );
            }
            Err(e) => return Err(anyhow::Error::new(e).context("the daemon stopped")),
        }
    }
}

/// How often a running daemon asks the server for the account's shared
/// folders (a mount accepted or lost on another device).
const MOUNTS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Brings the config's mounts up to date every [`MOUNTS_EVERY`]; never
/// ends (a change is saved to the config, which the daemon notices).
async fn refresh_mounts_every(config_path: &Path, account: bool) {
    loop {
        tokio::time::sleep(MOUNTS_EVERY).await;
        if account && let Err(e) = super::shares::refresh_mounts(config_path).await {
            tracing::warn!("shared folders not checked: {e:#}");
        }
    }
}

/// The daemon's loop for mounted shared folder `mount`, until `stopping`
/// says the home's ended: its own control socket beside its local state,
/// a `member` of the home's group, its transfers paced with the home's.
async fn run_mount(
    config_path: &Path,
    mount: &pouch_config::Mount,
    pacers: &Arc<Limits>,
    member: Membership,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let session = match Session::open_mount(config_path, mount, Some(pacers.clone())) {
        Ok(session) => session,
        Err(e) => {
            tell!(
                "pouch daemon: the shared folder at {} cannot be synced: {e:#}",
                mount.path
            );
            return;
        }
    };
    let mut options = DaemonOptions::new(session.config.socket_path());
    options.limits = Some(session.limits.clone());
    options.group = Some(member);
    tell!(
        "pouch daemon: syncing the shared folder {} at {} ({})",
        mount.name,
        session.config.root.display(),
        mount.role
    );
    let stop = async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    if let Err(e) = pouch_core::daemon::run(
        session.engine,
        session.backend,
        &session.config.root,
        options,
        stop,
    )
    .await
    {
        tell!(
            "pouch daemon: the shared folder at {} stopped syncing: {e}",
            mount.path
        );
    }
}

/// The config file's modification time, to notice it change.
fn config_stamp(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Ends once the config file differs from `stamp` (checked every second)
/// in more than its `[limits]` (`running`: as the daemon opened it): new
/// limits are applied to `pacers` at once, with no need to reopen.
async fn config_changed(
    path: &Path,
    mut stamp: Option<std::time::SystemTime>,
    running: &Config,
    pacers: &Limits,
) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let now = config_stamp(path);
        if now == stamp {
            continue;
        }
        let Ok(changed) = Config::load(path) else {
            // Half-written or broken: the reopen says what is wrong.
            return;
        };
        let without_limits = |config: &Config| Config {
            limits: pouch_config::Limits::default(),
            ..config.clone()
        };
        if without_limits(&changed) != without_limits(running) {
            return;
        }
        pacers.up.set(changed.limits.up);
        pacers.down.set(changed.limits.down);
        tracing::info!(
            up = ?changed.limits.up,
            down = ?changed.limits.down,
            "the config's bandwidth limits changed"
        );
        stamp = now;
    }
}

/// Installs the SIGTERM and SIGINT handlers now, before the daemon opens
/// its socket, so an early signal is never lost to the default action; the
/// returned future ends at the first.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

pub(super) async fn control(config_path: &Path, what: Request) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    match request(&config.socket_path(), &what).await? {
        Some(Response::Ok(state)) => {
            say!("{state}");
            Ok(ExitCode::SUCCESS)
        }
        Some(Response::Error(e)) => bail!("the daemon refused: {e}"),
        Some(Response::Status(_)) => bail!("the daemon answered something else"),
        None => bail!(
            "no daemon runs for {}; start one with `pouch daemon`",
            config_path.display()
        ),
    }
}
