//! An opened folder: its config, its store and the engine over both, and
//! the way there when the folder's store moved (following the move is
//! decided by `pouch_core::migrate`; this only asks and saves the config).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use pouch_backend::{Backend, StoreId};
use pouch_config::Config;
use pouch_core::dual::DualStats;
use pouch_core::limit::{Limited, Limits};
use pouch_core::location::{ConfigLocation, StoreLocation};
use pouch_core::migrate::{Follow, can_follow, follow_in_config};
use pouch_core::own_files::OwnFiles;
use pouch_core::state::LocalState;
use pouch_core::{Engine, SyncLock, SyncOptions, SyncReport, SystemClock};

use crate::cli::LimitArgs;
use crate::store;

/// One folder, opened.
pub struct Session {
    /// Its config, as loaded.
    pub config: Config,
    /// The store it syncs with (two, during a migration or its fallback).
    pub backend: Arc<dyn Backend>,
    /// The engine.
    pub engine: Engine,
    /// A migration's counters when two stores are in play.
    pub migration: Option<Arc<DualStats>>,
    /// The bandwidth limits every block transfer keeps to (the config's,
    /// changeable while running).
    pub limits: Arc<Limits>,
}

impl Session {
    /// Opens the folder `config_path` configures, as it is.
    pub fn open(config_path: &Path) -> anyhow::Result<Session> {
        let mut session = Session::with_config(config_path, Config::load(config_path)?, None)?;
        // Every mount's folder (detached ones too) is left alone by the
        // home, whatever step of a share or a refresh was cut short.
        let excluded = session.engine.excluded()?;
        for mount in &session.config.mounts {
            let path = pouch_core::path::RelPath::parse(&mount.path).with_context(|| {
                format!("the config's mount point {:?} is not a path", mount.path)
            })?;
            if !excluded.contains(&path) {
                session.engine.leave_to_mount(&path)?;
            }
        }
        Ok(session)
    }

    /// Opens shared folder `mount` of the folder `config_path` configures
    /// (its folder made if need be), as a viewer's when it is one; its
    /// transfers keep to `pacers` when given (the home's, in a daemon: one
    /// limit for all the folders), else to the config's limits.
    pub fn open_mount(
        config_path: &Path,
        mount: &pouch_config::Mount,
        pacers: Option<Arc<Limits>>,
    ) -> anyhow::Result<Session> {
        let home = Config::load(config_path)?;
        let config = home.mount_config(mount).context(
            "shared folders are mounted only into an account's home on a pouch-store server",
        )?;
        std::fs::create_dir_all(&config.root)
            .with_context(|| format!("cannot make {}", config.root.display()))?;
        let mut session = Session::with_config(config_path, config, pacers)?;
        session.engine.set_read_only(mount.read_only());
        Ok(session)
    }

    /// Opens the folder `config` describes (`config_path`: the file it
    /// came from, never synced), pacing it with `pacers` or the config's
    /// limits.
    fn with_config(
        config_path: &Path,
        config: Config,
        pacers: Option<Arc<Limits>>,
    ) -> anyhow::Result<Session> {
        let store::SyncStore { backend, migration } = store::open_for_sync(&config)?;
        let limits = pacers.unwrap_or_else(|| Limits::new(config.limits.up, config.limits.down));
        let backend: Arc<dyn Backend> = Arc::new(Limited::new(backend, limits.clone()));
        let mut engine = Engine::open(
            &config.root,
            &config.device,
            &config.state,
            backend.clone(),
            Arc::new(SystemClock),
            Arc::from(crate::progress::for_stderr()),
        )
        .with_context(|| format!("cannot start syncing {}", config.root.display()))?;
        engine.set_location(StoreLocation::of(&config.backend));
        engine.set_migrating(
            config
                .migration
                .as_ref()
                .and_then(|m| StoreLocation::of(&m.target)),
        );
        engine.skip_own(OwnFiles::new(
            config_path,
            &config.state,
            &store::embedded_folders(&config),
        ));
        Ok(Session {
            config,
            backend,
            engine,
            migration,
            limits,
        })
    }

    /// Opens the folder, following moves of its store first, those that
    /// stay on the configured server (others wait for `pouch migrate
    /// follow`: the sync then fails with `MoveWaits`, saying so).
    pub async fn open_following(config_path: &Path) -> anyhow::Result<Session> {
        loop {
            let session = Session::open(config_path)?;
            match session.engine.moved()? {
                Some((_, to))
                    if !to.is(&session.config.backend)
                        && !session.engine.follows_by_itself(&to) =>
                {
                    return Ok(session);
                }
                Some((seq, to)) if !to.is(&session.config.backend) => {
                    let old = session.backend.as_ref();
                    follow_move(config_path, session.engine.db(), old, seq, &to).await?;
                }
                // Pulled from the new store itself (the mover's own entry).
                Some(_) => session.engine.forget_move()?,
                None => match session.engine.migration_change()? {
                    Some((seq, to)) => {
                        let mut session = session;
                        if !join_in_config(config_path, seq, to.as_ref())? {
                            // Cannot write there: asked no more this run.
                            session.engine.set_migrating(to);
                            return Ok(session);
                        }
                    }
                    None => return Ok(session),
                },
            }
        }
    }

    /// Follows a move the daemon met, waiting while the copy to the new
    /// store finishes (a minute at most; then it stops, and a restart tries
    /// again).
    pub async fn reopen_after_move(config_path: &Path) -> anyhow::Result<Session> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match Session::open_following(config_path).await {
                Ok(session) => return Ok(session),
                Err(e) if std::time::Instant::now() < deadline => {
                    tracing::info!("waiting to follow the move: {e:#}");
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                }
                Err(e) => {
                    return Err(e.context("the folder's store moved and cannot be followed yet"));
                }
            }
        }
    }
}

/// Follows a move another device announced at entry `seq`: checks the new
/// store is reachable with this device's credentials and holds the very
/// journal of the old store (`old`) up to the announcing entry, then flips
/// the config. On any failure
/// nothing changes: the files stay as they are, and the message says what
/// is missing.
pub async fn follow_move(
    config_path: &Path,
    state: &LocalState,
    old: &dyn Backend,
    seq: u64,
    to: &StoreLocation,
) -> anyhow::Result<()> {
    let mut config = Config::load(config_path)?;
    if to.is(&config.backend) {
        return Ok(());
    }
    let to = to.to_config();
    let target = store::open(&to, Some(config.s3_cache_dir())).context(
        "this folder's data moved to a store this device cannot open; nothing was changed",
    )?;
    let follow = can_follow(old, target.as_ref(), seq)
        .await
        .with_context(|| {
            format!(
                "this folder's data moved to {}, which this device cannot use (credentials? \
             S3 keys come from AWS_* or ~/.aws, a pouch-store token from POUCH_STORE_TOKEN); \
             nothing was changed and your files are safe",
                target.describe()
            )
        })?;
    match follow {
        Follow::Ready => {}
        Follow::NotCopiedYet { has, needs } => bail!(
            "this folder's data is moving to {}; the copy is not finished yet (it has {has} of {needs} entries), try again shortly",
            target.describe(),
        ),
        Follow::OtherHistory { at } => bail!(
            "a journal entry says this folder moved to {}, but that store holds another history \
             (its entry {at} differs from this folder's); not following it. Nothing was changed \
             and your files are safe; this folder keeps its store",
            target.describe(),
        ),
    }
    // The new store is accepted in place of the old before the config names
    // it (a store from before identities gets one now: it holds the same
    // journal, as checked above).
    let id = target.init_identity(StoreId::random()).await?;
    state.expect_store(&id.to_string())?;
    follow_in_config(&mut config, to);
    config.save(config_path)?;
    tell!("following the move to {}", target.describe());
    Ok(())
}

/// Joins the migration to `to` another device announced at entry `seq`
/// (or, `None`, leaves the one that was stopped) in the config: this
/// device writes to both stores from its next session. `false` when it
/// cannot open `to` with its own credentials (it then writes to its store
/// alone, and the switch's copy brings its writes over).
pub fn join_in_config(
    config_path: &Path,
    seq: u64,
    to: Option<&StoreLocation>,
) -> anyhow::Result<bool> {
    let mut config = Config::load(config_path)?;
    match to {
        None => {
            if let Some(left) = config.migration.take() {
                config.save(config_path)?;
                tell!(
                    "the migration to {} was stopped (journal entry {seq}); writing to {} alone again",
                    store::describe(&left.target),
                    store::describe(&config.backend)
                );
            }
            Ok(true)
        }
        Some(to) => {
            let target = to.to_config();
            if let Err(e) = store::open(&target, None) {
                tell!(
                    "a migration to {to} was announced (journal entry {seq}), but this device cannot write there ({e:#}); it keeps writing to {} alone",
                    store::describe(&config.backend)
                );
                return Ok(false);
            }
            config.migration = Some(pouch_config::Migration {
                target,
                shadow_reads: config
                    .migration
                    .as_ref()
                    .map_or(pouch_config::Migration::DEFAULT_SHADOW_READS, |m| {
                        m.shadow_reads
                    }),
            });
            config.save(config_path)?;
            tell!(
                "joined the migration to {to} (journal entry {seq}): this device writes to both stores"
            );
            Ok(true)
        }
    }
}

/// The folder's sync lock: one sync per folder at a time. Waits, saying
/// so, while another `pouch sync` or the daemon syncs it.
pub async fn sync_lock(config: &Config) -> anyhow::Result<SyncLock> {
    if let Some(lock) = SyncLock::try_acquire(&config.state)? {
        return Ok(lock);
    }
    tell!(
        "another sync of {} is running (a `pouch sync` or the daemon); waiting for it to finish",
        config.root.display()
    );
    Ok(SyncLock::acquire(&config.state).await?)
}

/// One sync, following a move it finds (at most a few, for safety), under
/// the folder's sync lock.
pub async fn sync_following(
    config_path: &Path,
    options: SyncOptions,
    limits: &LimitArgs,
) -> anyhow::Result<(Config, SyncReport)> {
    let _lock = sync_lock(&Config::load(config_path)?).await?;
    for _ in 0..3 {
        let mut session = Session::open_following(config_path).await?;
        limits.apply(&session.limits);
        match session.engine.sync_with(options.clone()).await {
            Ok(report) => return Ok((session.config, report)),
            Err(pouch_core::Error::Moved { .. } | pouch_core::Error::MigrationChanged { .. }) => {
                continue;
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("sync of {} stopped", session.config.root.display())));
            }
        }
    }
    bail!("the folder's store keeps moving; try again")
}
