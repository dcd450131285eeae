//! The subcommands' bodies.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use pouch_backend::{Backend, BackendExt};
use pouch_backend_own::EmbeddedBackend;
use pouch_backend_own::RemoteBackend;
use pouch_backend_s3::{S3Backend, S3Config};
use pouch_core::config::{self, BackendConfig, CONFIG_VERSION, Config, OwnStore};
use pouch_core::daemon::protocol::{Request, Response};
use pouch_core::daemon::{DaemonOptions, control::request};
use pouch_core::db::{LocalDb, Tree};
use pouch_core::dual::{Dual, DualStats};
use pouch_core::migrate::RecordedProgress;
use pouch_core::path::RelPath;
use pouch_core::plan::Op;
use pouch_core::sync::{Engine, Pick, SystemClock};
use serde::Serialize;

use crate::cli::{BackendKind, Cli, Command, ExcludeAction};

/// Runs one command; the exit code says whether everything synced.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config_path = match cli.config {
        Some(path) => path,
        None => config::default_config_path()
            .context("no home folder to keep the config in; pass --config FILE")?,
    };
    match cli.command {
        Command::Init(args) => {
            let crate::cli::InitArgs {
                root,
                device,
                store,
            } = *args;
            init(&config_path, root, device, target_from(store)?).await
        }
        Command::Migrate { action } => migrate(&config_path, action).await,
        Command::Doctor => doctor(&config_path).await,
        Command::History { path, json } => history(&config_path, &path, json),
        Command::Restore { path, rev, at } => {
            let pick = match (rev, at) {
                (Some(seq), _) => Pick::Seq(seq),
                (None, Some(at)) => Pick::At(crate::time::parse(&at)?),
                (None, None) => Pick::Latest,
            };
            restore(&config_path, &path, pick).await
        }
        Command::Exclude { action } => exclude(&config_path, action).await,
        Command::GenerateAssets { dir } => {
            crate::assets::generate(&dir)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sync {
            json,
            allow_mass_delete,
        } => sync(&config_path, json, allow_mass_delete).await,
        Command::Status { json } => status(&config_path, json).await,
        Command::Ls { remote } => ls(&config_path, remote).await,
        Command::Daemon => daemon(&config_path).await,
        Command::Pause => control(&config_path, Request::Pause).await,
        Command::Resume { allow_mass_delete } => {
            control(&config_path, Request::Resume { allow_mass_delete }).await
        }
    }
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot make {} absolute", path.display()))
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "this device".to_owned())
}

/// Reads the store arguments of `init` and `migrate`.
fn target_from(args: crate::cli::StoreArgs) -> anyhow::Result<Target> {
    let crate::cli::StoreArgs {
        backend,
        store,
        url,
        namespace,
        token,
        bucket,
        endpoint,
        region,
        prefix,
        path_style,
    } = args;
    Ok(match (backend, url, bucket) {
        (BackendKind::S3, _, Some(bucket)) => {
            let mut s3 = S3Config::new(bucket);
            s3.path_style = path_style || endpoint.is_some();
            s3.endpoint = endpoint;
            s3.region = region;
            s3.prefix = prefix.unwrap_or_default();
            Target::S3(s3)
        }
        (BackendKind::S3, _, None) => bail!("--backend s3 needs --bucket"),
        (BackendKind::Own, _, Some(_)) => bail!("--bucket is for --backend s3"),
        (BackendKind::Own, Some(url), None) => Target::Server {
            url,
            namespace,
            token,
        },
        (BackendKind::Own, None, None) => Target::Embedded(store),
    })
}

/// Which store `init` was told to use.
enum Target {
    Embedded(Option<PathBuf>),
    Server {
        url: String,
        namespace: String,
        token: Option<String>,
    },
    S3(S3Config),
}

async fn init(
    config_path: &Path,
    root: PathBuf,
    device: Option<String>,
    target: Target,
) -> anyhow::Result<ExitCode> {
    let root = absolute(&root)?;
    if config_path.exists() {
        // Running the set-up command twice is fine; changing course is not.
        let existing = Config::load(config_path)?;
        if existing.root == root {
            println!("{} already syncs {}", config_path.display(), root.display());
            return Ok(ExitCode::SUCCESS);
        }
        bail!(
            "{} already exists for {}; edit it, or pass another --config FILE",
            config_path.display(),
            existing.root.display()
        );
    }
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let device = device.unwrap_or_else(host_name);
    if device.is_empty() || device.contains('/') {
        bail!("a device name must be non-empty and contain no '/'");
    }
    let journal = match cli_default_config(config_path) {
        true => config::project_dirs()
            .context("no data folder for the local journal")?
            .data_dir()
            .join("journal.sqlite"),
        false => config_path.with_extension("journal.sqlite"),
    };
    let backend = prepare_target(target).await?;
    let config = Config {
        version: CONFIG_VERSION,
        root,
        device,
        journal: absolute(&journal)?,
        backend,
        previous_backend: None,
        migration: None,
    };
    config.save(config_path)?;
    println!("wrote {}", config_path.display());
    println!("  folder: {}", config.root.display());
    println!("  device: {}", config.device);
    println!("run `pouch sync` to sync it");
    Ok(ExitCode::SUCCESS)
}

/// Checks that a store is usable (creating an embedded one, reaching a
/// server with its token, probing S3's conditional writes) and returns its
/// config.
async fn prepare_target(target: Target) -> anyhow::Result<BackendConfig> {
    Ok(match target {
        Target::Embedded(store) => {
            let store = match store {
                Some(store) => absolute(&store)?,
                None => config::default_store_path()
                    .context("no data folder for the store; pass --store DIR")?,
            };
            // Opening creates the store and proves the folder is usable.
            EmbeddedBackend::open(&store)
                .with_context(|| format!("cannot open the store at {}", store.display()))?;
            BackendConfig::Own(OwnStore::Embedded { store })
        }
        Target::Server {
            url,
            namespace,
            token,
        } => {
            let own = OwnStore::Server {
                url,
                namespace,
                token,
            };
            // Prove the server answers and takes the token before saving.
            let backend = server_backend(&own)?;
            backend
                .journal_head()
                .await
                .with_context(|| format!("cannot reach {}", backend.describe()))?;
            BackendConfig::Own(own)
        }
        Target::S3(s3) => {
            let table = s3_table(&s3);
            let backend = S3Backend::connect(s3, None)?;
            // Never run a journal on a store that could lose commits.
            backend
                .probe_conditional_writes()
                .await
                .with_context(|| format!("cannot use {}", backend.describe()))?;
            BackendConfig::S3(table)
        }
    })
}

fn cli_default_config(path: &Path) -> bool {
    config::default_config_path().is_some_and(|default| default == path)
}

/// The config table of an S3 backend: the settings the user chose, not
/// the defaults (so later defaults apply) and never credentials.
fn s3_table(s3: &S3Config) -> toml::Table {
    let mut table = toml::Table::new();
    table.insert("bucket".into(), s3.bucket.clone().into());
    if !s3.prefix.is_empty() {
        table.insert("prefix".into(), s3.prefix.clone().into());
    }
    if let Some(region) = &s3.region {
        table.insert("region".into(), region.clone().into());
    }
    if let Some(endpoint) = &s3.endpoint {
        table.insert("endpoint".into(), endpoint.clone().into());
    }
    table.insert("path_style".into(), s3.path_style.into());
    table
}

fn s3_config(table: &toml::Table) -> anyhow::Result<S3Config> {
    toml::Value::Table(table.clone())
        .try_into()
        .context("the [backend] table of kind \"s3\" is not valid")
}

/// Where an S3 backend keeps its cache of pack indexes: beside the journal.
fn s3_cache_dir(config: &Config) -> PathBuf {
    config.journal.with_extension("s3-cache")
}

/// The store this device syncs with: during a migration, the old and the
/// new store together (double writes, shadow reads); after a switch, the
/// new store with the old one as a read fallback until `migrate finish`.
fn open_backend(config: &Config) -> anyhow::Result<Arc<dyn Backend>> {
    Ok(open_backend_reporting(config)?.0)
}

/// A store, and a migration's counters when two stores are in play.
type Reporting = (Arc<dyn Backend>, Option<Arc<DualStats>>);

/// [`open_backend`], with the migration's counters.
fn open_backend_reporting(config: &Config) -> anyhow::Result<Reporting> {
    let store = open_store(&config.backend, Some(s3_cache_dir(config)))?;
    if let Some(migration) = &config.migration {
        let target = open_store(&migration.target, None).with_context(|| {
            "cannot open the store this folder is migrating to (`pouch migrate cancel` stops the migration)"
        })?;
        let dual = Dual::migrating(store, target, migration.shadow_reads);
        let stats = dual.stats();
        return Ok((Arc::new(dual), Some(stats)));
    }
    // Only a fallback: a store that is gone (a deleted bucket or folder)
    // must not stop syncing, nor be created again.
    if let Some(previous) = &config.previous_backend
        && !matches!(previous, BackendConfig::Own(OwnStore::Embedded { store }) if !store.exists())
    {
        match open_store(previous, None) {
            Ok(old) => {
                let dual = Dual::falling_back(store, old);
                let stats = dual.stats();
                return Ok((Arc::new(dual), Some(stats)));
            }
            Err(e) => tracing::info!("the previous store is not available as a fallback: {e:#}"),
        }
    }
    Ok((store, None))
}

/// Opens the store `backend` names; an S3 store keeps its index cache in
/// `cache` (none: memory only).
fn open_store(backend: &BackendConfig, cache: Option<PathBuf>) -> anyhow::Result<Arc<dyn Backend>> {
    match backend {
        BackendConfig::S3(table) => Ok(Arc::new(S3Backend::connect(s3_config(table)?, cache)?)),
        BackendConfig::Own(OwnStore::Embedded { store }) => Ok(Arc::new(
            EmbeddedBackend::open(store)
                .with_context(|| format!("cannot open the store at {}", store.display()))?,
        )),
        BackendConfig::Own(own @ OwnStore::Server { .. }) => Ok(server_backend(own)?),
    }
}

fn server_backend(own: &OwnStore) -> anyhow::Result<Arc<dyn Backend>> {
    let OwnStore::Server {
        url,
        namespace,
        token,
    } = own
    else {
        unreachable!("called for servers only")
    };
    let token = match token {
        Some(token) => token.clone(),
        None => std::env::var("POUCH_STORE_TOKEN")
            .context("set POUCH_STORE_TOKEN to the pouch-store namespace's token")?,
    };
    Ok(Arc::new(RemoteBackend::new(url, namespace, token)?))
}

fn open_engine(config_path: &Path) -> anyhow::Result<(Config, Arc<dyn Backend>, Engine)> {
    let (config, backend, engine, _) = open_engine_reporting(config_path)?;
    Ok((config, backend, engine))
}

/// The engine, and a migration's counters when two stores are in play.
type Opened = (Config, Arc<dyn Backend>, Engine, Option<Arc<DualStats>>);

fn open_engine_reporting(config_path: &Path) -> anyhow::Result<Opened> {
    let config = Config::load(config_path)?;
    let (backend, migration) = open_backend_reporting(&config)?;
    let engine = Engine::open(
        &config.root,
        &config.device,
        &config.journal,
        backend.clone(),
        Arc::new(SystemClock),
        Arc::from(crate::progress::for_stderr()),
    )
    .with_context(|| format!("cannot start syncing {}", config.root.display()))?;
    Ok((config, backend, engine, migration))
}

/// Follows a move another device announced: checks the new store is
/// reachable with this device's credentials and holds the journal up to
/// the announcing entry, then flips the config. On any failure nothing
/// changes: the files stay as they are, and the message says what is
/// missing.
async fn follow_move(
    config_path: &Path,
    seq: u64,
    to: pouch_core::config::BackendConfig,
) -> anyhow::Result<()> {
    let mut config = Config::load(config_path)?;
    if config.backend.public() == to.public() {
        return Ok(());
    }
    let target = open_store(&to, Some(s3_cache_dir(&config))).context(
        "this folder's data moved to a store this device cannot open; nothing was changed",
    )?;
    let head = target.journal_head().await.with_context(|| {
        format!(
            "this folder's data moved to {}, which this device cannot use (credentials? \
             S3 keys come from AWS_* or ~/.aws, a pouch-store token from POUCH_STORE_TOKEN); \
             nothing was changed and your files are safe",
            target.describe()
        )
    })?;
    if head.0 < seq {
        bail!(
            "this folder's data is moving to {}; the copy is not finished yet (it has {} of {} entries), try again shortly",
            target.describe(),
            head.0,
            seq
        );
    }
    config.previous_backend = Some(std::mem::replace(&mut config.backend, to));
    // A migration this device had begun elsewhere is moot now.
    config.migration = None;
    config.save(config_path)?;
    eprintln!("following the move to {}", target.describe());
    Ok(())
}

/// Opens the engine, following moves of the namespace first.
async fn open_following(config_path: &Path) -> anyhow::Result<Opened> {
    loop {
        let (config, backend, engine, migration) = open_engine_reporting(config_path)?;
        match engine.moved()? {
            Some((seq, to)) if to != config.backend.public() => {
                follow_move(config_path, seq, to).await?;
            }
            // Pulled from the new store itself (the mover's own entry).
            Some(_) => engine.forget_move()?,
            None => return Ok((config, backend, engine, migration)),
        }
    }
}

/// One sync, following a move it finds (at most a few, for safety).
async fn sync_following(
    config_path: &Path,
    allow_mass_delete: bool,
) -> anyhow::Result<(Config, pouch_core::sync::SyncReport)> {
    for _ in 0..3 {
        let (config, _, mut engine, _) = open_following(config_path).await?;
        engine.guard_mut().allow_once = allow_mass_delete;
        match engine.sync_once().await {
            Ok(report) => return Ok((config, report)),
            Err(pouch_core::Error::Moved { .. }) => continue,
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("sync of {} stopped", config.root.display())));
            }
        }
    }
    bail!("the folder's store keeps moving; try again")
}

async fn sync(config_path: &Path, json: bool, allow_mass_delete: bool) -> anyhow::Result<ExitCode> {
    let (config, report) = sync_following(config_path, allow_mass_delete).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "synced {}: {} up, {} down, {} deleted here, {} deleted remotely, {} renamed, {} conflicts; {} blocks sent ({})",
            config.root.display(),
            report.uploaded,
            report.downloaded,
            report.deleted_local,
            report.deleted_remote,
            report.renamed_local,
            report.conflicts,
            report.blocks_uploaded,
            indicatif::HumanBytes(report.bytes_uploaded),
        );
    }
    for problem in &report.problems {
        eprintln!("not synced: {problem}");
    }
    Ok(if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

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
    daemon: Option<pouch_core::daemon::protocol::DaemonStatus>,
    /// A migration under way (`pouch migrate start`), if any.
    migration: Option<MigrationSummary>,
}

/// A migration, for `pouch status`.
#[derive(Serialize)]
struct MigrationSummary {
    /// The store the folder moves to.
    to: String,
    /// The share of reads checked against it.
    shadow_reads: f64,
    /// How far the copy came, as it last recorded.
    copy: Option<pouch_core::migrate::CopyProgress>,
}

async fn status(config_path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let (config, backend, mut engine) = open_engine(config_path)?;
    let daemon = match request(&config.socket_path(), &Request::Status).await {
        Ok(Some(Response::Status(status))) => Some(*status),
        _ => None,
    };
    let (ops, problems) = engine.pending().await?;
    let count = |f: fn(&Op) -> bool| ops.iter().filter(|op| f(op)).count();
    let migration = config.migration.as_ref().map(|m| MigrationSummary {
        to: describe_store(&m.target),
        shadow_reads: m.shadow_reads,
        copy: pouch_core::migrate::recorded_progress(engine.db()),
    });
    let status = Status {
        migration,
        root: config.root.clone(),
        device: config.device.clone(),
        device_id: engine.db().device_id()?,
        backend: backend.describe(),
        cursor: engine.db().cursor()?.0,
        remote_head: backend.journal_head().await?.0,
        to_upload: count(|op| matches!(op, Op::Upload { .. })),
        to_delete_remotely: count(|op| matches!(op, Op::DeleteRemote { .. })),
        to_download: count(|op| matches!(op, Op::Download { .. } | Op::RenameLocal { .. })),
        to_delete_locally: count(|op| matches!(op, Op::DeleteLocal { .. })),
        conflicts: count(|op| matches!(op, Op::Conflict { .. })),
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
        println!("folder:  {}", status.root.display());
        println!("device:  {} ({})", status.device, status.device_id);
        println!("store:   {}", status.backend);
        println!("journal: entry {} of {}", status.cursor, status.remote_head);
        if let Some(migration) = &status.migration {
            println!(
                "migrating to {}: every change goes to both stores, {:.0}% of reads checked against it",
                migration.to,
                migration.shadow_reads * 100.0
            );
            match &migration.copy {
                Some(copy) => println!(
                    "migration: {} {}% ({} of {}, {} blocks)",
                    copy.phase,
                    (copy.done_bytes * 100)
                        .checked_div(copy.total_bytes)
                        .unwrap_or(100),
                    indicatif::HumanBytes(copy.done_bytes),
                    indicatif::HumanBytes(copy.total_bytes),
                    copy.blocks
                ),
                None => println!("migration: the copy has not run yet (`pouch migrate start`)"),
            }
        }
        match &status.daemon {
            Some(daemon) => {
                let state = serde_json::to_value(daemon.state)?;
                println!(
                    "daemon:  {} ({} syncs)",
                    state.as_str().unwrap_or("?"),
                    daemon.syncs
                );
                if let Some(error) = &daemon.last_error {
                    println!("daemon error: {error}");
                }
                if let Some(problem) = &daemon.watch_problem {
                    println!("daemon warning: {problem}");
                }
                if let Some(transfer) = &daemon.transfer {
                    println!(
                        "daemon:  {} {} files, {} of {}",
                        transfer.phase,
                        transfer.files,
                        indicatif::HumanBytes(transfer.done_bytes),
                        indicatif::HumanBytes(transfer.total_bytes)
                    );
                }
                if let Some(migration) = &daemon.migration {
                    let c = &migration.counts;
                    println!(
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
                    let action = serde_json::to_value(change.action)?;
                    println!(
                        "recent:  {} ({})",
                        change.path,
                        action.as_str().unwrap_or("?").replace('_', " ")
                    );
                }
            }
            None => println!("daemon:  not running"),
        }
        if pending == 0 {
            println!("up to date");
        } else {
            println!(
                "waiting: {} to upload, {} to delete remotely, {} to download, {} to delete here, {} conflicts",
                status.to_upload,
                status.to_delete_remotely,
                status.to_download,
                status.to_delete_locally,
                status.conflicts
            );
        }
        for problem in &status.problems {
            println!("problem: {problem}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn ls(config_path: &Path, remote: bool) -> anyhow::Result<ExitCode> {
    let (_, _, mut engine) = open_engine(config_path)?;
    let nodes: Vec<(String, pouch_core::node::Node)> = if remote {
        engine.pull_only().await?;
        engine
            .db()
            .tree(Tree::Remote)?
            .into_iter()
            .map(|(p, n)| (p.to_string(), n))
            .collect()
    } else {
        engine
            .db()
            .local()?
            .into_iter()
            .map(|(p, (_, n))| (p.to_string(), n))
            .collect()
    };
    for (path, node) in nodes {
        match &node {
            pouch_core::node::Node::Symlink { target } => {
                println!("{:<7} {:>12} {path} -> {target}", node.kind_name(), "")
            }
            pouch_core::node::Node::Dir => println!("{:<7} {:>12} {path}/", node.kind_name(), ""),
            pouch_core::node::Node::File { size, .. } => {
                println!("{:<7} {size:>12} {path}", node.kind_name())
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn daemon(config_path: &Path) -> anyhow::Result<ExitCode> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let signal = shutdown_signal().context("cannot install signal handlers")?;
    tokio::pin!(signal);
    // Runs until a signal; a changed config (`pouch migrate start`,
    // `cancel`, `switch`) or a move of the folder's store makes it stop and
    // open the stores again.
    let mut moved = false;
    loop {
        let opened = if moved {
            reopen_after_move(config_path).await?
        } else {
            open_following(config_path).await?
        };
        let (config, backend, engine, migration) = opened;
        let stamp = config_stamp(config_path);
        let socket = config.socket_path();
        eprintln!(
            "pouch daemon: syncing {} with {} (control socket {})",
            config.root.display(),
            backend.describe(),
            socket.display()
        );
        let mut options = DaemonOptions::new(socket);
        options.migration = migration;
        let reopen = AtomicBool::new(false);
        let stop = async {
            tokio::select! {
                () = &mut signal => {}
                () = config_changed(config_path, stamp) => reopen.store(true, Ordering::Relaxed),
            }
        };
        match pouch_core::daemon::run(engine, backend, &config.root, options, stop).await {
            Ok(()) if reopen.load(Ordering::Relaxed) => {
                moved = false;
                eprintln!("pouch daemon: the config changed; opening the stores again");
            }
            Ok(()) => return Ok(ExitCode::SUCCESS),
            Err(pouch_core::Error::Moved { .. }) => {
                moved = true;
                eprintln!("pouch daemon: the folder's store moved; following it");
            }
            Err(e) => return Err(anyhow::Error::new(e).context("the daemon stopped")),
        }
    }
}

/// Follows a move the daemon met, waiting while the copy to the new store
/// finishes (a minute at most; then it stops, and a restart tries again).
async fn reopen_after_move(config_path: &Path) -> anyhow::Result<Opened> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match open_following(config_path).await {
            Ok(opened) => return Ok(opened),
            Err(e) if std::time::Instant::now() < deadline => {
                tracing::info!("waiting to follow the move: {e:#}");
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
            Err(e) => return Err(e.context("the folder's store moved and cannot be followed yet")),
        }
    }
}

/// The config file's modification time, to notice it change.
fn config_stamp(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Ends once the config file differs from `stamp` (checked every second).
async fn config_changed(path: &Path, stamp: Option<std::time::SystemTime>) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        if config_stamp(path) != stamp {
            return;
        }
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

async fn control(config_path: &Path, what: Request) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    match request(&config.socket_path(), &what).await? {
        Some(Response::Ok(state)) => {
            println!("{state}");
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

/// Checks the configured store: reachable, credentials accepted, and (for
/// S3) conditional writes enforced. Exit code 1 when a check fails.
async fn doctor(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    let backend = open_backend(&config)?;
    println!("store: {}", backend.describe());
    let mut healthy = true;
    match backend.journal_head().await {
        Ok(head) => println!("  ok    reachable; the journal has {head} entries"),
        Err(e) => {
            healthy = false;
            println!("  FAIL  cannot read the journal: {e}");
        }
    }
    if let BackendConfig::S3(table) = &config.backend {
        let s3 = S3Backend::connect(s3_config(table)?, None)?;
        match s3.probe_conditional_writes().await {
            Ok(()) => println!("  ok    conditional writes (If-None-Match) are enforced"),
            Err(e) => {
                healthy = false;
                println!("  FAIL  {e}");
            }
        }
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A path argument, as the journal spells paths.
fn rel_path(path: &str) -> anyhow::Result<RelPath> {
    RelPath::parse(path.trim_end_matches('/'))
        .with_context(|| format!("{path:?} is not a path inside the synced folder"))
}

fn history(config_path: &Path, path: &str, json: bool) -> anyhow::Result<ExitCode> {
    let (_, _, engine) = open_engine(config_path)?;
    let path = rel_path(path)?;
    let (revisions, from) = engine.history(&path)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&revisions)?);
        return Ok(ExitCode::SUCCESS);
    }
    if revisions.is_empty() {
        println!("{path}: no versions recorded");
    }
    for revision in &revisions {
        let when = revision
            .time
            .map_or_else(|| "(time unknown)".to_owned(), crate::time::format);
        let what = match &revision.node {
            None => "deleted".to_owned(),
            Some(node) if node.is_dir() => "folder".to_owned(),
            Some(node) => format!(
                "{} {}",
                node.kind_name(),
                indicatif::HumanBytes(node.size())
            ),
        };
        println!(
            "rev {:<6} {when}  {:<16} {what}",
            revision.seq, revision.device
        );
    }
    if from > 1 {
        println!("(this device keeps history from journal entry {from} on)");
    }
    Ok(ExitCode::SUCCESS)
}

async fn restore(config_path: &Path, path: &str, pick: Pick) -> anyhow::Result<ExitCode> {
    let (config, _, mut engine) = open_engine(config_path)?;
    let path = rel_path(path)?;
    let revision = engine.restore(&path, pick).await?;
    println!("restored {path} from rev {}", revision.seq);
    // A running daemon sees the file appear and syncs it; otherwise sync now.
    match request(&config.socket_path(), &Request::Status).await {
        Ok(Some(_)) => {}
        _ => {
            let report = engine
                .sync_once()
                .await
                .with_context(|| format!("sync of {} stopped", config.root.display()))?;
            for problem in &report.problems {
                eprintln!("not synced: {problem}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn exclude(config_path: &Path, action: ExcludeAction) -> anyhow::Result<ExitCode> {
    let (_, _, mut engine) = open_engine(config_path)?;
    match action {
        ExcludeAction::Add { path } => {
            let path = rel_path(&path)?;
            engine.exclude(&path)?;
            println!("{path} is no longer synced on this device; its local copy is removed");
        }
        ExcludeAction::Remove { path } => {
            let path = rel_path(&path)?;
            if engine.include(&path)? {
                println!("{path} syncs again on this device; the next sync downloads it");
            } else {
                bail!("{path} was not excluded");
            }
        }
        ExcludeAction::List => {
            for path in engine.excluded()? {
                println!("{path}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn migrate(
    config_path: &Path,
    action: crate::cli::MigrateAction,
) -> anyhow::Result<ExitCode> {
    use crate::cli::MigrateAction;
    let mut config = Config::load(config_path)?;
    let (to, json, limits) = match action {
        MigrateAction::Start {
            to,
            shadow_reads,
            limits,
            json,
        } => return start(config_path, config, *to, shadow_reads, &limits, json).await,
        MigrateAction::Cancel => {
            let Some(migration) = config.migration.take() else {
                bail!("no migration is under way");
            };
            config.save(config_path)?;
            pouch_core::migrate::clear_progress(&LocalDb::open(&config.journal)?)?;
            println!(
                "stopped migrating to {}; this device writes to {} alone again (what was copied stays there)",
                describe_store(&migration.target),
                describe_store(&config.backend),
            );
            return Ok(ExitCode::SUCCESS);
        }
        MigrateAction::Copy { to, limits, json } => (to, json, Some(limits)),
        MigrateAction::Verify { to, json } => (to, json, None),
        MigrateAction::Switch { to } => return switch(config_path, *to).await,
        MigrateAction::Finish => {
            let Some(previous) = config.previous_backend.take() else {
                bail!("this folder has no previous store to retire");
            };
            config.save(config_path)?;
            println!(
                "retired {}; it is no longer needed by this device",
                describe_store(&previous)
            );
            return Ok(ExitCode::SUCCESS);
        }
    };
    let target = prepare_target(target_from(*to)?).await?;
    if target == config.backend {
        bail!("the target is the store this folder already uses");
    }
    // The old store alone: the copy's reads need no shadowing.
    let from = open_store(&config.backend, Some(s3_cache_dir(&config)))?;
    let to = open_store(&target, None)?;
    match limits {
        Some(limits) => {
            let report =
                copy_recorded(&config, from.as_ref(), to.as_ref(), &limits.options()).await?;
            print_copy(to.as_ref(), &report, json)?;
        }
        None => {
            let progress = crate::progress::for_stderr();
            let report = pouch_core::migrate::verify(from.as_ref(), to.as_ref(), progress.as_ref())
                .await
                .with_context(|| format!("{} does not hold everything yet", to.describe()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "{} holds all {} journal entries and all {} blocks, each read back and checked",
                    to.describe(),
                    report.entries,
                    report.blocks
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A store's description. An embedded store is named, not opened: opening
/// one that was deleted (a retired store) would create it again, and
/// `pouch status` should not open a second store to name it.
fn describe_store(backend: &BackendConfig) -> String {
    match backend {
        BackendConfig::Own(OwnStore::Embedded { store }) => EmbeddedBackend::description(store),
        // Building these clients touches no network.
        other => open_store(other, None).map_or_else(|_| "the store".into(), |b| b.describe()),
    }
}

/// `pouch migrate start`: see its help.
async fn start(
    config_path: &Path,
    mut config: Config,
    to: crate::cli::StoreArgs,
    shadow_reads: f64,
    limits: &crate::cli::CopyLimits,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if !(0.0..=1.0).contains(&shadow_reads) {
        bail!("--shadow-reads is a share of reads, from 0 to 1");
    }
    let target = prepare_target(target_from(to)?).await?;
    if target == config.backend {
        bail!("the target is the store this folder already uses");
    }
    if let Some(under_way) = &config.migration
        && under_way.target != target
    {
        bail!(
            "a migration to {} is under way; `pouch migrate cancel` it first",
            describe_store(&under_way.target)
        );
    }
    let to = open_store(&target, None)?;
    // Recorded before the copy: every write from now on (this command's
    // and a running daemon's, which reopens its stores when the config
    // changes) goes to both stores, so the copy chases a fixed target.
    let migration = pouch_core::config::Migration {
        target,
        shadow_reads,
    };
    if config.migration.as_ref() != Some(&migration) {
        config.migration = Some(migration);
        config.save(config_path)?;
        eprintln!(
            "migrating to {}: this device now writes to both stores and checks {:.0}% of its reads against the new one",
            to.describe(),
            shadow_reads * 100.0
        );
    }
    let from = open_store(&config.backend, Some(s3_cache_dir(&config)))?;
    let report = copy_recorded(&config, from.as_ref(), to.as_ref(), &limits.options()).await?;
    print_copy(to.as_ref(), &report, json)?;
    if !json {
        println!("when you are ready: `pouch migrate switch` with the same store arguments");
    }
    Ok(ExitCode::SUCCESS)
}

/// A copy whose progress is recorded in the local journal for `pouch
/// status` and the daemon to show.
async fn copy_recorded(
    config: &Config,
    from: &dyn Backend,
    to: &dyn Backend,
    options: &pouch_core::migrate::CopyOptions,
) -> anyhow::Result<pouch_core::migrate::CopyReport> {
    let db = LocalDb::open(&config.journal)?;
    let bar = crate::progress::for_stderr();
    let progress = RecordedProgress::new(bar.as_ref(), &db);
    let report = pouch_core::migrate::copy_with(from, to, &progress, options)
        .await
        .with_context(|| format!("copy to {} stopped; run it again to resume", to.describe()))?;
    progress.done();
    Ok(report)
}

fn print_copy(
    to: &dyn Backend,
    report: &pouch_core::migrate::CopyReport,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        println!(
            "copied to {}: {} journal entries ({} already there), {} blocks of {} ({} already there, {} sent)",
            to.describe(),
            report.entries_copied,
            report.entries_present,
            report.blocks_copied,
            report.blocks_referenced,
            report.blocks_present,
            indicatif::HumanBytes(report.bytes_copied),
        );
    }
    Ok(())
}

/// `pouch migrate switch`: see its help. The old store's journal ends with
/// an entry naming the new store, so no device can commit to it afterwards
/// (appends are create-only and in order: a device racing the freeze loses
/// the slot, pulls, and sees the move).
async fn switch(config_path: &Path, to: crate::cli::StoreArgs) -> anyhow::Result<ExitCode> {
    let (config, report) = sync_following(config_path, false).await?;
    for problem in &report.problems {
        eprintln!("not synced: {problem}");
    }
    // The old store alone, for the copy and the freeze.
    let from = open_store(&config.backend, Some(s3_cache_dir(&config)))?;
    let target = prepare_target(target_from(to)?).await?;
    if target == config.backend {
        bail!("the target is the store this folder already uses");
    }
    let to = open_store(&target, None)?;
    let options = pouch_core::migrate::CopyOptions::default();
    // Most of the copy happens while everyone keeps syncing.
    copy_recorded(&config, from.as_ref(), to.as_ref(), &options)
        .await
        .context("the switch stopped; run it again to resume")?;
    // Freeze: the last entry of the old journal names the new store.
    let moved_at = loop {
        let head = from.journal_head().await?;
        if let Some(last) = from
            .read_journal(pouch_backend::Seq(head.0.saturating_sub(1)), 1)
            .await?
            .first()
            && let Ok(commit) = pouch_core::commit::Commit::decode(last.seq.0, &last.data)
            && let Some(already) = commit.moved_to
        {
            if already == target.public() {
                break last.seq;
            }
            bail!("this folder's store already moved elsewhere; run `pouch sync` to follow it");
        }
        let entry = pouch_core::commit::Commit {
            v: pouch_core::commit::COMMIT_VERSION,
            device: config.device.clone(),
            time: Some(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64),
            ),
            changes: Vec::new(),
            // Never a secret in the journal: followers bring their own.
            moved_to: Some(target.public()),
        };
        match from.append(head.next(), entry.encode()).await {
            Ok(()) => break head.next(),
            // Another device committed first: its entry must be copied too.
            Err(pouch_backend::Error::SlotTaken(_)) => continue,
            Err(e) => return Err(e).context("could not freeze the old store"),
        }
    };
    let last = copy_recorded(&config, from.as_ref(), to.as_ref(), &options)
        .await
        .context("the final copy stopped; run the switch again to finish it")?;
    let progress = crate::progress::for_stderr();
    let checked = pouch_core::migrate::verify(from.as_ref(), to.as_ref(), progress.as_ref())
        .await
        .context("the new store does not check out; nothing was switched on this device")?;
    let mut config = Config::load(config_path)?;
    if config.backend.public() == target.public() {
        // This device's daemon followed the move already (it saw the
        // entry and the copy); keep the full settings, token included.
        config.backend = target;
    } else {
        config.previous_backend = Some(std::mem::replace(&mut config.backend, target));
    }
    // Double writes end here: the new store is the store, the old one a
    // read fallback until `finish`.
    config.migration = None;
    config.save(config_path)?;
    pouch_core::migrate::clear_progress(&LocalDb::open(&config.journal)?)?;
    println!(
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
