//! `pouch-store`: Pouch's block server.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use pouch_backend_own::server::{Server, ServerConfig};
use pouch_backend_own::storage::{Store, StoreOptions};

/// Pouch's block store server.
#[derive(Debug, Parser)]
#[command(name = "pouch-store", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the stores over HTTP until SIGTERM or Ctrl-C.
    Serve {
        /// Config file; without one, namespace `default` is served with the
        /// token in POUCH_STORE_TOKEN.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Data folder (overrides the config's).
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        /// Address to listen on, e.g. 127.0.0.1:7878; port 0 picks one
        /// (overrides the config's).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Serve as a front end of the cell whose database this is (a
        /// PostgreSQL URL; several hosts with
        /// target_session_attrs=read-write follow a failover) instead of
        /// stores in a data folder. The cell's secret is read from
        /// POUCH_CELL_TOKEN.
        #[arg(long, value_name = "URL", conflicts_with = "data")]
        db: Option<String>,
        /// A cell's volumes are sealed (and then erasure-coded) at about
        /// this size.
        #[arg(long, value_name = "MIB", requires = "db", default_value_t = 1024)]
        volume_mib: u64,
    },
    /// Read back every stored block and check its hash.
    Verify {
        /// Data folder of a server, or one store's folder (an embedded
        /// store's too).
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
    },
    /// Rebuild each store's index (blocks, journal, snapshot) from its
    /// volume files alone, keeping the old index aside. For a damaged
    /// index; a missing one is rebuilt by itself when the store is opened.
    /// Stop the server (and any Pouch syncing an embedded store) first.
    Rebuild {
        /// Data folder of a server, or one store's folder (an embedded
        /// store's too).
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
    },
    /// Rewrite volumes whose dead share passes a threshold, giving the
    /// space back. Safe while a server runs on the same folder.
    Compact {
        /// Data folder of a server, or one store's folder.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// Compact volumes at least this share dead (0..=1).
        #[arg(long, default_value_t = 0.5)]
        threshold: f64,
    },
    /// Print each namespace's figures.
    Stats {
        /// Data folder of a server, or one store's folder.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
    },
    /// Run a storage node of a cell: hold volume files in DIR and serve
    /// them to the cell's front ends until SIGTERM or Ctrl-C. The cell's
    /// token is read from POUCH_CELL_TOKEN.
    Node {
        /// The cell's database, a PostgreSQL URL or connection string.
        #[arg(long, value_name = "URL")]
        db: String,
        /// The node's data folder.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// Address to listen on, e.g. 10.0.0.5:7900; port 0 picks one.
        #[arg(long, value_name = "ADDR")]
        listen: String,
        /// The URL front ends reach it at (default: http:// and the address
        /// it listens on).
        #[arg(long, value_name = "URL")]
        advertise: Option<String>,
        /// The scrubber reads the node's files at most this fast, checking
        /// every range against the hash taken when it was written (0 turns
        /// it off).
        #[arg(long, value_name = "MIB", default_value_t = 16)]
        scrub_mib_per_sec: u64,
        /// A scrub pass over every file starts this often.
        #[arg(long, value_name = "SECS", default_value_t = 3600)]
        scrub_every: u64,
    },
    /// Manage the accounts of a single-node server (each has a home
    /// namespace; its devices log in with `pouch login`). Safe while the
    /// server runs.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage a cell (pouch-store on many machines, metadata in
    /// PostgreSQL).
    Cell {
        #[command(subcommand)]
        command: CellCommand,
    },
    /// Write shell completions and man pages into a folder (for packaging).
    #[command(hide = true)]
    GenerateAssets {
        /// Where to write them.
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Make an account. Its password is read from standard input when
    /// that is not a terminal, else asked for (twice, not shown).
    Add {
        /// The server's data folder.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// The account's name (a-z, 0-9, '.', '_', '-').
        name: String,
        /// A storage quota, e.g. 50G or 500M (none by default).
        #[arg(long, value_name = "SIZE")]
        quota: Option<String>,
    },
    /// List the accounts.
    List {
        /// The server's data folder.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
    },
    /// Remove an account; its devices' credentials stop working at once.
    /// Its home namespace's data stays in the data folder.
    Remove {
        /// The server's data folder.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// The account.
        name: String,
    },
    /// List an account's devices.
    Devices {
        /// The server's data folder.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// The account.
        name: String,
    },
    /// Revoke one device's credential at once, and the share links it
    /// made.
    Revoke {
        /// The server's data folder.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// The account.
        name: String,
        /// The device, as `user devices` shows it.
        device: String,
    },
}

#[derive(Debug, Subcommand)]
enum CellCommand {
    /// Make the cell's tables in the database, or bring them up to this
    /// build's schema (safe to run again).
    Init {
        /// The cell's database, a PostgreSQL URL or connection string.
        #[arg(long, value_name = "URL")]
        db: String,
    },
    /// Show the nodes, the volumes, and how many blocks have all their
    /// copies on live nodes, some, or none.
    Status {
        /// The cell's database, a PostgreSQL URL or connection string.
        #[arg(long, value_name = "URL")]
        db: String,
        /// A node silent this long is counted as down.
        #[arg(long, value_name = "SECS", default_value_t = 10)]
        node_timeout: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Drain a storage node before retiring it: it takes no new copies,
    /// and repair (in the front ends, or `cell repair`) moves its copies to
    /// other nodes while it still serves reads. Once `cell status` shows it
    /// holding no volume, stop it.
    Drain {
        /// The cell's database, a PostgreSQL URL or connection string.
        #[arg(long, value_name = "URL")]
        db: String,
        /// The node's id, as `cell status` shows it.
        node: i64,
    },
    /// Run one verification pass now (front ends run one every ten
    /// minutes): every block's every live copy is read and checked, a
    /// missing or damaged copy is written again from an intact one, and
    /// every block the namespaces' journals name is looked up in the index.
    /// Exits 1 if anything could not be mended. The cell's secret is read
    /// from POUCH_CELL_TOKEN.
    Verify {
        /// The cell's database, a PostgreSQL URL or connection string.
        #[arg(long, value_name = "URL")]
        db: String,
        /// A node silent this long is taken for dead (its copies are the
        /// repair's business).
        #[arg(long, value_name = "SECS", default_value_t = 10)]
        node_timeout: u64,
    },
    /// Run one repair pass now (front ends run one every few seconds):
    /// copies and shards on dead nodes are made again on live ones, then
    /// sealed volumes are erasure-coded (4 + 2 shards on six nodes, once
    /// six take writes). The cell's secret is read from POUCH_CELL_TOKEN.
    Repair {
        /// The cell's database, a PostgreSQL URL or connection string.
        #[arg(long, value_name = "URL")]
        db: String,
        /// A node silent this long is taken for dead.
        #[arg(long, value_name = "SECS", default_value_t = 10)]
        node_timeout: u64,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("POUCH_STORE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let result = match Cli::parse().command {
        Command::Serve {
            config,
            data,
            listen,
            db,
            volume_mib,
        } => serve(config, data, listen, db, volume_mib),
        Command::Verify { data } => verify(&data),
        Command::Rebuild { data } => rebuild(&data),
        Command::Compact { data, threshold } => compact(&data, threshold),
        Command::Stats { data } => stats(&data),
        Command::Node {
            db,
            data,
            listen,
            advertise,
            scrub_mib_per_sec,
            scrub_every,
        } => node(
            db,
            data,
            listen,
            advertise,
            pouch_backend_own::cell::scrub::ScrubOptions {
                bytes_per_sec: scrub_mib_per_sec << 20,
                every: std::time::Duration::from_secs(scrub_every.max(1)),
            },
        ),
        Command::User { command } => user(command),
        Command::Cell {
            command: CellCommand::Init { db },
        } => cell_init(&db),
        Command::Cell {
            command:
                CellCommand::Status {
                    db,
                    node_timeout,
                    json,
                },
        } => cell_status(&db, node_timeout, json),
        Command::Cell {
            command: CellCommand::Repair { db, node_timeout },
        } => cell_repair(&db, node_timeout),
        Command::Cell {
            command: CellCommand::Drain { db, node },
        } => cell_drain(&db, node),
        Command::Cell {
            command: CellCommand::Verify { db, node_timeout },
        } => cell_verify(&db, node_timeout),
        Command::GenerateAssets { dir } => generate_assets(&dir),
    };
    result.unwrap_or_else(|e| {
        eprintln!("pouch-store: {}", pouch_backend::error_chain(e.as_ref()));
        ExitCode::FAILURE
    })
}

fn serve(
    config: Option<PathBuf>,
    data: Option<PathBuf>,
    listen: Option<String>,
    db: Option<String>,
    volume_mib: u64,
) -> anyhow::Result<ExitCode> {
    let mut config = match config {
        Some(path) => ServerConfig::load(&path).map_err(anyhow::Error::msg)?,
        // A cell's front end keeps nothing on its disk.
        None if db.is_some() => {
            ServerConfig::from_env(PathBuf::new(), listen.clone()).map_err(anyhow::Error::msg)?
        }
        None => {
            let data = data.clone().context("pass --data DIR (or --config FILE)")?;
            ServerConfig::from_env(data, listen.clone()).map_err(anyhow::Error::msg)?
        }
    };
    if let Some(data) = data {
        config.data = data;
    }
    if let Some(listen) = listen {
        config.listen = listen;
    }
    let cell = match db {
        Some(db) => Some((db, cell_token()?)),
        None => None,
    };
    runtime()?.block_on(async move {
        let shutdown = shutdown_signal()?;
        let server = match cell {
            None => Server::open(&config).context("cannot open the stores")?,
            Some((db, token)) => {
                let cell = pouch_backend_own::cell::Cell::connect(
                    &db,
                    token,
                    pouch_backend_own::cell::CellOptions {
                        volume_size: volume_mib.max(1) << 20,
                        ..Default::default()
                    },
                )
                .await
                .context("cannot reach the cell")?;
                cell.start_repairs(std::time::Duration::from_secs(5));
                cell.start_verifier(std::time::Duration::from_secs(600));
                cell.start_compaction(std::time::Duration::from_secs(300));
                Server::open_cell(&cell, &config)
                    .await
                    .context("cannot open the cell's namespaces")?
            }
        };
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        // Tests and scripts read the bound address from this line.
        println!("pouch-store listening on {addr}");
        std::io::stdout().flush()?;
        tracing::info!(%addr, data = %config.data.display(), namespaces = config.namespaces.len(), "serving");
        server.start_maintenance(&config.maintenance);
        axum::serve(listener, server.router())
            .with_graceful_shutdown(shutdown)
            .await?;
        tracing::info!("stopped");
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// The cell's shared secret between front ends and nodes.
fn cell_token() -> anyhow::Result<String> {
    match std::env::var("POUCH_CELL_TOKEN") {
        Ok(token) if token.len() >= 16 => Ok(token),
        Ok(_) => bail!("POUCH_CELL_TOKEN is too short: use 16 characters or more"),
        Err(_) => bail!(
            "set POUCH_CELL_TOKEN to the cell's secret (the same on every node and front end)"
        ),
    }
}

fn cell_init(db: &str) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let pool = pouch_backend_own::cell::db::pool(db)?;
        let version = pouch_backend_own::cell::schema::migrate(&pool).await?;
        println!("the cell's schema is at version {version}");
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })
}

fn cell_options(node_timeout: u64) -> pouch_backend_own::cell::CellOptions {
    pouch_backend_own::cell::CellOptions {
        dead_after: std::time::Duration::from_secs(node_timeout.max(1)),
        ..Default::default()
    }
}

fn cell_drain(db: &str, node: i64) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        // Marking a node needs no node, so no secret.
        let cell =
            pouch_backend_own::cell::Cell::connect(db, String::new(), cell_options(10)).await?;
        match cell.drain(node).await? {
            None => bail!("no storage node {node} in this cell (see `pouch-store cell status`)"),
            Some(0) => println!("node {node} is draining and holds no volume: it can be stopped"),
            Some(held) => println!(
                "node {node} is draining: repair moves its copies of {held} volume(s) to other \
                 nodes; stop it once `pouch-store cell status` shows it holding none"
            ),
        }
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })
}

fn cell_status(db: &str, node_timeout: u64, json: bool) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        // Reading the status needs no node, so no secret.
        let cell =
            pouch_backend_own::cell::Cell::connect(db, String::new(), cell_options(node_timeout))
                .await?;
        let status = cell.status().await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&status)?);
            return Ok::<_, anyhow::Error>(ExitCode::SUCCESS);
        }
        let up = status.nodes.iter().filter(|n| n.up).count();
        println!("nodes: {up} up, {} down", status.nodes.len() - up);
        for node in &status.nodes {
            println!(
                "  {} {} {}{} (last heard {:.0} s ago), {} volume(s)",
                node.id,
                node.addr,
                if node.up { "up" } else { "DOWN" },
                if node.draining { ", draining" } else { "" },
                node.silent_secs,
                node.volumes
            );
        }
        println!(
            "volumes: {} open, {} sealed, {} coded, {} to repair",
            status.volumes_open,
            status.volumes_sealed,
            status.volumes_coded,
            status.volumes_to_repair
        );
        println!(
            "bytes: {} written, {} on the nodes ({:.2}x)",
            status.logical_bytes,
            status.stored_bytes,
            status.stored_bytes as f64 / status.logical_bytes.max(1) as f64
        );
        println!(
            "blocks: {} ({} fully redundant, {} degraded, {} lost)",
            status.blocks, status.blocks_redundant, status.blocks_degraded, status.blocks_lost
        );
        Ok(ExitCode::SUCCESS)
    })
}

fn cell_repair(db: &str, node_timeout: u64) -> anyhow::Result<ExitCode> {
    let token = cell_token()?;
    runtime()?.block_on(async {
        let cell =
            pouch_backend_own::cell::Cell::connect(db, token, cell_options(node_timeout)).await?;
        match cell.repair_once().await? {
            Some(report) => println!("{}", serde_json::to_string_pretty(&report)?),
            None => println!("another coordinator is repairing; nothing done"),
        }
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })
}

fn cell_verify(db: &str, node_timeout: u64) -> anyhow::Result<ExitCode> {
    let token = cell_token()?;
    runtime()?.block_on(async {
        let cell =
            pouch_backend_own::cell::Cell::connect(db, token, cell_options(node_timeout)).await?;
        match cell.verify_once().await? {
            Some(report) => {
                println!("{}", serde_json::to_string_pretty(&report)?);
                if report.copies_unrepairable > 0
                    || report.journal_blocks_missing > 0
                    || report.journals_unreadable > 0
                {
                    return Ok(ExitCode::from(1));
                }
            }
            None => println!("another verifier is running; nothing done"),
        }
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })
}

fn node(
    db: String,
    data: PathBuf,
    listen: String,
    advertise: Option<String>,
    scrub: pouch_backend_own::cell::scrub::ScrubOptions,
) -> anyhow::Result<ExitCode> {
    let token = cell_token()?;
    std::fs::create_dir_all(&data).with_context(|| format!("cannot make {}", data.display()))?;
    runtime()?.block_on(async move {
        let shutdown = shutdown_signal()?;
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        // Tests and scripts read the bound address from this line.
        println!("pouch-store node listening on {}", listener.local_addr()?);
        std::io::stdout().flush()?;
        let options = pouch_backend_own::cell::node::NodeOptions {
            db_url: db,
            data,
            advertise,
            token,
            heartbeat: std::time::Duration::from_secs(1),
            scrub,
        };
        pouch_backend_own::cell::node::run(options, listener, shutdown).await?;
        tracing::info!("stopped");
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })
}

/// Installs the SIGTERM and SIGINT handlers now — before the server says
/// it is listening, so a signal sent right after that line is never lost
/// to the default action — and returns a future that ends at the first.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
        tracing::info!("shutting down: finishing requests in flight");
    })
}

/// The store folders at `data`: `data` itself if it is one (an embedded
/// store, or one namespace's folder), else the namespace folders under it,
/// each named.
fn store_dirs(data: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let is_store = |dir: &Path| {
        dir.join("index.sqlite").is_file()
            || dir.join("identity").is_file()
            || dir.join("volumes").is_dir()
    };
    if is_store(data) {
        let name = data
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| data.display().to_string());
        return Ok(vec![(name, data.to_owned())]);
    }
    let mut out = Vec::new();
    let listing =
        std::fs::read_dir(data).with_context(|| format!("cannot list {}", data.display()))?;
    for entry in listing {
        let path = entry?.path();
        if is_store(&path) {
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            out.push((name, path));
        }
    }
    if out.is_empty() {
        bail!("no stores at {}", data.display());
    }
    out.sort();
    Ok(out)
}

/// The stores at `data` (see [`store_dirs`]), opened.
fn stores(data: &Path) -> anyhow::Result<Vec<(String, Store)>> {
    store_dirs(data)?
        .into_iter()
        .map(|(name, path)| {
            let store = Store::open(&path, StoreOptions::default())
                .with_context(|| format!("cannot open {}", path.display()))?;
            Ok((name, store))
        })
        .collect()
}

fn rebuild(data: &Path) -> anyhow::Result<ExitCode> {
    for (name, path) in store_dirs(data)? {
        let report =
            Store::rebuild(&path).with_context(|| format!("cannot rebuild {}", path.display()))?;
        println!(
            "{name}: rebuilt from {} volumes: {} blocks, {} journal entries, snapshot {}",
            report.volumes,
            report.blocks,
            report.journal_entries,
            report
                .snapshot_seq
                .map_or("none".to_owned(), |seq| format!("at entry {seq}")),
        );
        if report.damaged_records > 0 || report.unreadable_bytes > 0 {
            println!(
                "  left out {} damaged records and {} unreadable bytes: devices that still have those blocks upload them again at their next sync",
                report.damaged_records, report.unreadable_bytes
            );
        }
        if let Some(old) = report.old_index {
            println!("  the old index was moved to {}", old.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(data: &Path) -> anyhow::Result<ExitCode> {
    let mut clean = true;
    for (name, store) in stores(data)? {
        let report = store.verify()?;
        println!(
            "{name}: checked {} blocks, {} corrupt",
            report.checked,
            report.corrupt.len()
        );
        for (id, reason) in &report.corrupt {
            println!("  corrupt {id}: {reason}");
        }
        if report.quarantined > 0 {
            println!(
                "  {} damaged blocks are quarantined: out of the index, so devices that still have them send them again at their next sync",
                report.quarantined
            );
        }
        clean &= report.corrupt.is_empty() && report.quarantined == 0;
    }
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn compact(data: &Path, threshold: f64) -> anyhow::Result<ExitCode> {
    if !(0.0..=1.0).contains(&threshold) {
        bail!("--threshold is a share between 0 and 1");
    }
    for (name, store) in stores(data)? {
        let report = store.compact(threshold)?;
        println!(
            "{name}: compacted {} volumes, moved {} blocks, gave back {} bytes",
            report.volumes, report.blocks_moved, report.bytes_reclaimed
        );
        for volume in report.skipped_corrupt {
            println!("  volume {volume} skipped: it holds a corrupt block (run verify)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn stats(data: &Path) -> anyhow::Result<ExitCode> {
    for (name, store) in stores(data)? {
        let s = store.stats()?;
        println!(
            "{name}: {} blocks, {} payload bytes, {} volumes, {} garbage bytes, journal head {}; ever written {} blocks / {} bytes, {} deleted, {} torn tails cut",
            s.blocks,
            s.payload_bytes,
            s.volumes,
            s.garbage_bytes,
            s.journal_head,
            s.blocks_written,
            s.bytes_written,
            s.blocks_deleted,
            s.torn_tails_cut
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `DIR/completions/` (bash, zsh, fish) and `DIR/man/` pages from
/// the clap definitions.
fn generate_assets(dir: &Path) -> anyhow::Result<ExitCode> {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    let (completions, man) = (dir.join("completions"), dir.join("man"));
    std::fs::create_dir_all(&completions)?;
    std::fs::create_dir_all(&man)?;
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut cmd, "pouch-store", &completions)?;
    }
    clap_mangen::generate_to(cmd, &man)?;
    Ok(ExitCode::SUCCESS)
}

/// `pouch-store user ...`.
fn user(command: UserCommand) -> anyhow::Result<ExitCode> {
    use pouch_backend_own::server::accounts::{Accounts, home_namespace};
    let open = |data: &Path| Accounts::open(data).context("cannot open the accounts");
    match command {
        UserCommand::Add { data, name, quota } => {
            let quota = quota.map(|q| parse_size(&q)).transpose()?;
            let password = read_password()?;
            open(&data)?.add_user(&name, &password, quota)?;
            println!(
                "account {name} made; its home namespace is {}; its devices log in with `pouch login`",
                home_namespace(&name)
            );
        }
        UserCommand::List { data } => {
            for user in open(&data)?.users()? {
                let quota = user
                    .quota
                    .map_or_else(|| "no quota".to_owned(), |q| format!("quota {q} bytes"));
                println!("{}  {} device(s), {quota}", user.name, user.devices);
            }
        }
        UserCommand::Remove { data, name } => {
            if !open(&data)?.remove_user(&name)? {
                bail!("no account {name}");
            }
            println!(
                "account {name} removed; its devices can no longer sync; its data stays in {}",
                data.join(home_namespace(&name)).display()
            );
        }
        UserCommand::Devices { data, name } => {
            for device in open(&data)?.devices(&name)? {
                match device.revoked {
                    Some(at) => println!("{}  revoked (at {at})", device.name),
                    None => println!("{}  since {}", device.name, device.created),
                }
            }
        }
        UserCommand::Revoke { data, name, device } => {
            if !open(&data)?.revoke(&name, &device)? {
                bail!("{name} has no device {device} with a credential in force");
            }
            println!("{name}'s device {device} can no longer sync");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A password from standard input (its first line) when that is not a
/// terminal, else asked for twice without echo.
fn read_password() -> anyhow::Result<String> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    let first = rpassword::prompt_password("password: ")?;
    let again = rpassword::prompt_password("again: ")?;
    if first != again {
        bail!("the two passwords differ");
    }
    Ok(first)
}

/// A size such as `500M`, `50G` or `1024` (bytes).
fn parse_size(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = digits
        .parse()
        .with_context(|| format!("{text} is not a size"))?;
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => bail!("{text}: the unit is one of K, M, G, T"),
    };
    n.checked_mul(1 << shift)
        .with_context(|| format!("{text} is too large"))
}
