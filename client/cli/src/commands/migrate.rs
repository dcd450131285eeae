//! `pouch migrate`: move the folder to another store while everything
//! keeps syncing (start, switch, finish, cancel), or copy and check without
//! double writes (copy, verify).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use pouch_backend::{Backend, BackendExt, StoreId};
use pouch_config::{Config, Migration};
use pouch_core::location::{ConfigLocation, StoreLocation};
use pouch_core::migrate::{CopyOptions, CopyReport, RecordedProgress, freeze, switch_in_config};
use pouch_core::state::LocalState;
use pouch_core::{SyncOptions, unix_secs};

use crate::cli::LimitArgs;
use crate::cli::{CopyLimits, MigrateAction, StoreArgs};
use crate::session::{Session, follow_move, sync_following, sync_lock};
use crate::store::{self, Target};

pub(super) async fn migrate(config_path: &Path, action: MigrateAction) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(config_path)?;
    let (to, json, limits) = match action {
        MigrateAction::Start {
            to,
            shadow_reads,
            limits,
            json,
        } => return start(config_path, config, *to, shadow_reads, &limits, json).await,
        MigrateAction::Cancel => {
            let Some(under_way) = config.migration.clone() else {
                bail!("no migration is under way");
            };
            // Every device that joined leaves it too.
            if let Err(e) = announce(config_path, &config, None).await {
                tell!(
                    "could not tell the other devices the migration stopped ({e:#}); each stops writing there once it syncs after a new `pouch migrate cancel`"
                );
            }
            let mut config = Config::load(config_path)?;
            let migration = config.migration.take().unwrap_or(under_way);
            config.save(config_path)?;
            pouch_core::migrate::clear_progress(&LocalState::open(&config.state)?)?;
            say!(
                "stopped migrating to {}; this device writes to {} alone again (what was copied stays there)",
                store::describe(&migration.target),
                store::describe(&config.backend),
            );
            return Ok(ExitCode::SUCCESS);
        }
        MigrateAction::Copy { to, limits, json } => (to, json, limits),
        MigrateAction::Verify { to, json } => return verify(&config, *to, json).await,
        MigrateAction::Switch { to } => return switch(config_path, *to).await,
        MigrateAction::Follow => return follow(config_path).await,
        MigrateAction::Join => return join(config_path).await,
        MigrateAction::Refuse => {
            let _lock = sync_lock(&config).await?;
            let mut session = Session::open(config_path)?;
            session.engine.pull_only().await?;
            let Some((seq, to)) = session.engine.refuse_move()? else {
                bail!("no move is waiting for you");
            };
            say!(
                "refused the move to {to} (journal entry {seq}); this device keeps syncing with {}",
                store::describe(&config.backend)
            );
            return Ok(ExitCode::SUCCESS);
        }
        MigrateAction::Finish => {
            let Some(previous) = config.previous_backend.take() else {
                bail!("this folder has no previous store to retire");
            };
            config.save(config_path)?;
            say!(
                "retired {}; it is no longer needed by this device",
                store::describe(&previous)
            );
            return Ok(ExitCode::SUCCESS);
        }
    };
    let target = Target::from_args(*to)?.prepare().await?;
    if target == config.backend {
        bail!("the target is the store this folder already uses");
    }
    // The old store alone: the copy's reads need no shadowing.
    let from = store::open(&config.backend, Some(config.s3_cache_dir()))?;
    let to = store::open(&target, None)?;
    let report = copy_recorded(&config, from.as_ref(), to.as_ref(), &limits.options()).await?;
    print_copy(to.as_ref(), &report, json)?;
    Ok(ExitCode::SUCCESS)
}

/// `pouch migrate verify`: reads only. Opens the target as it is (creating
/// nothing, probing nothing) and checks it holds everything.
async fn verify(config: &Config, to: StoreArgs, json: bool) -> anyhow::Result<ExitCode> {
    let target = Target::from_args(to)?.config()?;
    if target == config.backend {
        bail!("the target is the store this folder already uses");
    }
    let from = store::open(&config.backend, Some(config.s3_cache_dir()))?;
    let to = store::open_existing(&target, None)?;
    let progress = crate::progress::for_stderr();
    let report = pouch_core::migrate::verify(from.as_ref(), to.as_ref(), progress.as_ref())
        .await
        .with_context(|| format!("{} does not hold everything yet", to.describe()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        say!(
            "{} holds all {} journal entries and all {} blocks, each read back and checked",
            to.describe(),
            report.entries,
            report.blocks
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `pouch migrate start`: see its help.
async fn start(
    config_path: &Path,
    mut config: Config,
    to: StoreArgs,
    shadow_reads: f64,
    limits: &CopyLimits,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if !(0.0..=1.0).contains(&shadow_reads) {
        bail!("--shadow-reads is a share of reads, from 0 to 1");
    }
    let target = Target::from_args(to)?.prepare().await?;
    if target == config.backend {
        bail!("the target is the store this folder already uses");
    }
    if let Some(under_way) = &config.migration
        && under_way.target != target
    {
        bail!(
            "a migration to {} is under way; `pouch migrate cancel` it first",
            store::describe(&under_way.target)
        );
    }
    let to = store::open(&target, None)?;
    // Announced before the copy, and before this device writes to both
    // stores (the entry goes to the old store alone; the copy brings it
    // over): devices on the same server write to both stores from their
    // next sync, so the copy chases them too.
    if let Some(location) = StoreLocation::of(&target) {
        match announce(config_path, &config, Some(location)).await {
            Ok(true) => tell!(
                "announced in the folder's journal: other devices on this server write to both stores from their next sync; others after `pouch migrate join`"
            ),
            Ok(false) => {}
            Err(e) => tell!(
                "could not announce the migration to the other devices ({e:#}); they write to the old store alone, and the switch's copy brings their writes over"
            ),
        }
    }
    // Recorded before the copy: every write from now on (this command's
    // and a running daemon's, which reopens its stores when the config
    // changes) goes to both stores, so the copy chases a fixed target.
    let migration = Migration {
        target,
        shadow_reads,
    };
    if config.migration.as_ref() != Some(&migration) {
        config.migration = Some(migration);
        config.save(config_path)?;
        tell!(
            "migrating to {}: this device now writes to both stores and checks {:.0}% of its reads against the new one",
            to.describe(),
            shadow_reads * 100.0
        );
    }
    let from = store::open(&config.backend, Some(config.s3_cache_dir()))?;
    let report = copy_recorded(&config, from.as_ref(), to.as_ref(), &limits.options()).await?;
    print_copy(to.as_ref(), &report, json)?;
    if !json {
        say!("when you are ready: `pouch migrate switch` with the same store arguments");
    }
    Ok(ExitCode::SUCCESS)
}

/// Appends a journal entry announcing the migration to `to` (or, `None`,
/// stopping the one under way) unless the last one pulled says so already
/// (`false` then). Under the folder's sync lock.
async fn announce(
    config_path: &Path,
    config: &Config,
    to: Option<StoreLocation>,
) -> anyhow::Result<bool> {
    let _lock = sync_lock(config).await?;
    let mut session = Session::open(config_path)?;
    session.engine.pull_only().await?;
    let announced = session.engine.announced_migration()?.map(|(_, to)| to);
    if announced.as_ref() == Some(&to) || (to.is_none() && announced.is_none()) {
        return Ok(false);
    }
    session.engine.announce_migration(to).await?;
    Ok(true)
}

/// `pouch migrate join`: the user's go-ahead to write to the store another
/// device announced a migration to.
async fn join(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    let (seq, to) = {
        let _lock = sync_lock(&config).await?;
        let mut session = Session::open(config_path)?;
        session.engine.pull_only().await?;
        match session.engine.announced_migration()? {
            Some((seq, Some(to))) => (seq, to),
            _ => bail!("no migration of this folder is announced"),
        }
    };
    if to.is(&config.backend) {
        bail!("the announced store is the one this folder already uses");
    }
    if config
        .migration
        .as_ref()
        .is_some_and(|m| StoreLocation::of(&m.target).as_ref() == Some(&to))
    {
        say!("this device already writes to {to}");
        return Ok(ExitCode::SUCCESS);
    }
    // Reachable with this device's own credentials, before it writes there.
    let target = store::open(&to.to_config(), None)
        .with_context(|| format!("cannot open {to} with this device's credentials"))?;
    target
        .journal_head()
        .await
        .with_context(|| format!("cannot reach {to} with this device's credentials"))?;
    if !crate::session::join_in_config(config_path, seq, Some(&to))? {
        bail!("cannot write to {to}");
    }
    say!("this device now writes to {to} too, until the switch");
    Ok(ExitCode::SUCCESS)
}

/// A copy whose progress is recorded in the local state for `pouch
/// status` and the daemon to show.
async fn copy_recorded(
    config: &Config,
    from: &dyn Backend,
    to: &dyn Backend,
    options: &CopyOptions,
) -> anyhow::Result<CopyReport> {
    let db = LocalState::open(&config.state)?;
    let bar = crate::progress::for_stderr();
    let progress = RecordedProgress::new(bar.as_ref(), &db);
    let report = pouch_core::migrate::copy_with(from, to, &progress, options)
        .await
        .with_context(|| format!("copy to {} stopped; run it again to resume", to.describe()))?;
    progress.done();
    Ok(report)
}

fn print_copy(to: &dyn Backend, report: &CopyReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        say!(
            "copied to {}: {} journal entries ({} already there), {} blocks of {} ({} already there, {} sent)",
            to.describe(),
            report.entries_copied,
            report.entries_present,
            report.blocks_copied,
            report.blocks_referenced,
            report.blocks_present,
            indicatif::HumanBytes(report.bytes_copied),
        );
        if report.blocks_missing_at_source > 0 {
            tell!(
                "{} block(s) the journal names are no longer in the current store (versions collected before the retention policy was widened, or lost), so they could not be copied",
                report.blocks_missing_at_source
            );
        }
    }
    Ok(())
}

/// `pouch migrate switch`: see its help. The cutover itself (the freeze
/// entry, what the config becomes) is `pouch_core::migrate`'s.
async fn switch(config_path: &Path, to: StoreArgs) -> anyhow::Result<ExitCode> {
    let (config, report) =
        sync_following(config_path, SyncOptions::default(), &LimitArgs::default()).await?;
    for problem in &report.problems {
        tell!("not synced: {problem}");
    }
    // The old store alone, for the copy and the freeze.
    let from = store::open(&config.backend, Some(config.s3_cache_dir()))?;
    let target = Target::from_args(to)?.prepare().await?;
    if target == config.backend {
        bail!("the target is the store this folder already uses");
    }
    let location = StoreLocation::of(&target).context("the target names no store")?;
    let to = store::open(&target, None)?;
    let options = CopyOptions::default();
    // Most of the copy happens while everyone keeps syncing.
    copy_recorded(&config, from.as_ref(), to.as_ref(), &options)
        .await
        .context("the switch stopped; run it again to resume")?;
    let moved_at = match freeze(from.as_ref(), &config.device, &location, unix_secs()).await {
        Ok(seq) => seq,
        Err(pouch_core::Error::Moved { .. }) => {
            bail!("this folder's store already moved elsewhere; run `pouch sync` to follow it")
        }
        Err(e) => return Err(e).context("could not freeze the old store"),
    };
    let last = copy_recorded(&config, from.as_ref(), to.as_ref(), &options)
        .await
        .context("the final copy stopped; run the switch again to finish it")?;
    let progress = crate::progress::for_stderr();
    let checked = pouch_core::migrate::verify(from.as_ref(), to.as_ref(), progress.as_ref())
        .await
        .context("the new store does not check out; nothing was switched on this device")?;
    let mut config = Config::load(config_path)?;
    // The new store is accepted in place of the old before the config
    // names it, so a crash between the two strands nothing.
    let state = LocalState::open(&config.state)?;
    let id = to.init_identity(StoreId::random()).await?;
    state.expect_store(&id.to_string())?;
    switch_in_config(&mut config, target);
    config.save(config_path)?;
    pouch_core::migrate::clear_progress(&state)?;
    say!(
        "switched to {}: the old store ends at journal entry {moved_at}; {} journal entries and {} blocks verified \
         ({} blocks in the final copy); other devices follow at their next sync; \
         `pouch migrate finish` retires the old store",
        to.describe(),
        checked.entries,
        checked.blocks,
        last.blocks_copied
    );
    Ok(ExitCode::SUCCESS)
}

/// `pouch migrate follow`: the user's go-ahead for a move that waits for
/// it. Checks the new store as any follow does (same journal up to the
/// move), flips the config, and syncs there.
async fn follow(config_path: &Path) -> anyhow::Result<ExitCode> {
    {
        let config = Config::load(config_path)?;
        let _lock = sync_lock(&config).await?;
        let mut session = Session::open(config_path)?;
        session.engine.pull_only().await?;
        let Some((seq, to)) = session.engine.moved()? else {
            bail!("no move is waiting for you");
        };
        if to.is(&config.backend) {
            session.engine.forget_move()?;
        } else {
            follow_move(
                config_path,
                session.engine.db(),
                session.backend.as_ref(),
                seq,
                &to,
            )
            .await?;
        }
    }
    let (config, _) =
        sync_following(config_path, SyncOptions::default(), &LimitArgs::default()).await?;
    say!(
        "synced {} with {}",
        config.root.display(),
        store::describe(&config.backend)
    );
    Ok(ExitCode::SUCCESS)
}
