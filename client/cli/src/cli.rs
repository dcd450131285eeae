//! The command-line grammar: the single source of the help text.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Keeps a folder identical on all your devices.
#[derive(Debug, Parser)]
#[command(name = "pouch", version, about)]
pub struct Cli {
    /// The config file [default: config.toml in the system's config folder].
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `pouch devices` actions.
#[derive(Debug, Subcommand)]
pub enum DevicesAction {
    /// Revoke a device's credential at once (it stops syncing; its files
    /// stay on it) and the share links it made.
    Revoke {
        /// The device, as `pouch devices` lists it.
        name: String,
    },
}

/// Share links: read access to one file or folder for anyone with the URL.
#[derive(Debug, Subcommand)]
pub enum LinkAction {
    /// Make a link to a file or folder (a folder's page lists its files and
    /// offers them as one .zip); prints its URL, shown this once.
    Link {
        /// The file or folder: relative to the synced folder, or an absolute path inside it.
        path: String,
        /// How long it works, e.g. `7d`, `12h` [default: until revoked].
        #[arg(long)]
        expires: Option<String>,
        /// Ask for a password (read from POUCH_LINK_PASSWORD, standard
        /// input when it is not a terminal, or asked for).
        #[arg(long)]
        password: bool,
    },
    /// Revoke a link at once.
    Unlink {
        /// The link's id, as `pouch share links` lists it.
        id: String,
    },
    /// List the links this account made.
    Links,
}

/// What `pouch shares` does.
#[derive(Debug, Subcommand)]
pub enum SharesAction {
    /// Accept an invitation: mount the shared folder into this home (on
    /// every device of the account) and sync it.
    Accept {
        /// The shared folder's name or namespace, as `pouch shares` lists it.
        name: String,
        /// Where in the home folder [default: its name].
        #[arg(long)]
        at: Option<String>,
    },
    /// Unmount a shared folder from this account's home (every device):
    /// its copies stay, no longer synced; `accept` mounts it again.
    Unmount {
        /// The shared folder's name or namespace.
        name: String,
    },
    /// Leave a shared folder: its copy stays here, no longer synced.
    Leave {
        /// The shared folder's name or namespace.
        name: String,
    },
    /// Remove a member (the owner's call): their devices keep a copy and
    /// stop syncing it at once.
    Remove {
        /// The shared folder's name or namespace.
        name: String,
        /// The account to remove.
        member: String,
    },
    /// Make another member the owner (the owner's call); you stay an editor.
    Transfer {
        /// The shared folder's name or namespace.
        name: String,
        /// The member who becomes the owner.
        to: String,
    },
    /// Remove every other member (the owner's call); they keep their copies.
    Unshare {
        /// The shared folder's name or namespace.
        name: String,
    },
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log this folder's device in to its account on the `pouch-store`
    /// server again (after its credential was revoked, say): the password
    /// is asked for once and never kept.
    Login {
        /// The device name to log in as [default: the config's].
        #[arg(long)]
        device: Option<String>,
    },
    /// List the devices of this folder's account, or revoke one.
    Devices {
        /// What to do [default: list them].
        #[command(subcommand)]
        action: Option<DevicesAction>,
    },
    /// Share a folder of this account's home with another account (it
    /// becomes a shared folder, synced in place), or invite another member
    /// to a shared folder.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Share {
        /// Share links instead: `link`, `unlink`, `links`.
        #[command(subcommand)]
        link: Option<LinkAction>,
        /// The folder: relative to the synced folder, or an absolute path inside it.
        #[arg(required = true)]
        folder: Option<String>,
        /// The account to invite.
        #[arg(long, required = true)]
        with: Option<String>,
        /// What they may do: `editor` (read and write) or `viewer` (read only).
        #[arg(long, default_value = "editor")]
        role: String,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// List this account's shared folders and invitations, or accept,
    /// leave, remove a member, transfer or unshare one.
    Shares {
        /// What to do [default: list them].
        #[command(subcommand)]
        action: Option<SharesAction>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Write a config: which folder to sync, as which device, to which store.
    Init(Box<InitArgs>),
    /// Move this folder to another store while everything keeps syncing:
    /// `start` (write to both, copy the journal, every kept version's blocks and
    /// the snapshot), `switch` (the cutover the other devices follow),
    /// `finish` or `cancel`; or `copy` and `verify` alone. Safe to
    /// interrupt and repeat.
    Migrate {
        /// What to do.
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Check that the configured store is reachable and safe to sync
    /// through (for S3: that it enforces conditional writes), and that the
    /// local state database is sound.
    Doctor {
        /// Also read back every block the current tree names, verified,
        /// and send again the ones the store lost that this device has.
        #[arg(long)]
        blocks: bool,
    },
    /// List the versions of a file, deletes included, oldest first, each
    /// marked when the folder's retention no longer keeps it; or, with
    /// `--deleted`, the files deleted within the retention period.
    History {
        /// The path, relative to the synced folder (with `--deleted`: the
        /// folder to list deleted files under [default: all]).
        #[arg(required_unless_present = "deleted")]
        path: Option<String>,
        /// List deleted files that can still be restored.
        #[arg(long)]
        deleted: bool,
        /// Print as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Show or set how long old versions and deleted files are kept, for
    /// every device of the folder: `pouch retention set 90d --keep-last 10`.
    Retention {
        /// What to do [default: show].
        #[command(subcommand)]
        action: Option<RetentionAction>,
    },
    /// Collect garbage: delete from the store the blocks that no version
    /// within the folder's retention names. Blocks are first marked and
    /// deleted by a later run once the grace period passed (sooner with
    /// `--grace`), so no device in the middle of a sync loses a block.
    Gc {
        /// Count what would be deleted; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the outcome as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// How long a marked block waits before it is deleted (`24h`,
        /// `0s`). Shorten it only when no device is in the middle of a
        /// sync [default: 24h].
        #[arg(long, value_name = "DURATION", value_parser = duration)]
        grace: Option<std::time::Duration>,
    },
    /// Bring back a version of a file (a deleted one too); the next sync
    /// sends it as the newest version, and the current one stays in history.
    Restore {
        /// The path, relative to the synced folder.
        path: String,
        /// The version made by this journal entry (see `pouch history`).
        #[arg(long, conflicts_with = "at")]
        rev: Option<u64>,
        /// The version current at this time: `2026-11-24T18:30:00Z` (UTC)
        /// or Unix seconds [default: the newest version that was a file].
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
    },
    /// Write shell completions and man pages into a folder (for packaging).
    #[command(hide = true)]
    GenerateAssets {
        /// Where to write them.
        dir: std::path::PathBuf,
    },
    /// Choose folders this device does not keep (selective sync).
    Exclude {
        /// What to do.
        #[command(subcommand)]
        action: ExcludeAction,
    },
    /// Sync once in both directions, then exit.
    Sync {
        /// Print the outcome as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// Propagate deletes even when they are more than half the folder.
        #[arg(long)]
        allow_mass_delete: bool,
        /// Bandwidth limits for this run.
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Show what is waiting to sync, without changing anything on disk.
    Status {
        /// Print as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Sync continuously: watch the folder and the store, sync every
    /// change both ways, and serve `status`, `pause` and `resume` on a
    /// control socket. Runs in the foreground; SIGTERM or Ctrl-C stops it
    /// after the sync in flight.
    Daemon {
        /// Bandwidth limits to start with (`pouch limit` changes them
        /// while it runs).
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Show or change the running daemon's bandwidth limits at once, the
    /// transfer in flight included: `pouch limit up 2MiB down off`.
    Limit {
        /// `up RATE` and/or `down RATE`; a rate is a size per second
        /// (2MiB, 500KB) or `off`. Nothing: show the limits in force.
        #[arg(value_name = "up|down RATE")]
        settings: Vec<String>,
        /// Also write them to the config's `[limits]`, for later runs.
        #[arg(long)]
        save: bool,
    },
    /// Hold back syncing in the running daemon (changes are still noticed).
    Pause,
    /// Let the running daemon sync again.
    Resume {
        /// Also send the mass delete the daemon is holding back.
        #[arg(long)]
        allow_mass_delete: bool,
    },
    /// List the synced folder as Pouch last saw it.
    Ls {
        /// List the remote side (the store's journal) instead.
        #[arg(long)]
        remote: bool,
    },
}

/// `pouch retention` actions.
#[derive(Debug, Subcommand)]
pub enum RetentionAction {
    /// Show the policy in force.
    Show,
    /// Set the policy, for every device of the folder.
    Set {
        /// How long a replaced or deleted version stays restorable: `30d`,
        /// `90d`, `12h`; `0d` keeps only the current tree.
        #[arg(value_parser = duration)]
        period: std::time::Duration,
        /// Also keep at least this many of the latest versions of every
        /// file that still exists, however old.
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_last: u32,
    },
}

/// A duration: `90d`, `36h`, `10m`, `0s`.
fn duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration ({e}): use 30d, 12h, 0s"))
}

/// Bandwidth limits for one run, over the config's `[limits]`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LimitArgs {
    /// Most bytes per second sent to the store: a size per second (2MiB,
    /// 500KB) or `off` [default: the config's `[limits] up`, else off].
    #[arg(long, value_name = "RATE", value_parser = rate)]
    pub limit_up: Option<Rate>,
    /// Most bytes per second read from the store [default: the config's
    /// `[limits] down`, else off].
    #[arg(long, value_name = "RATE", value_parser = rate)]
    pub limit_down: Option<Rate>,
}

/// A bandwidth limit in bytes per second; `None`: unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate(pub Option<u64>);

impl LimitArgs {
    /// Sets the limits given on the command line.
    pub fn apply(&self, limits: &pouch_core::limit::Limits) {
        if let Some(Rate(up)) = self.limit_up {
            limits.up.set(up);
        }
        if let Some(Rate(down)) = self.limit_down {
            limits.down.set(down);
        }
    }
}

fn rate(text: &str) -> Result<Rate, String> {
    pouch_config::parse_rate(text).map(Rate)
}

/// The arguments of `init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The folder to keep in sync (created if missing).
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// This device's name, used in conflicted copies [default: the host name].
    #[arg(long)]
    pub device: Option<String>,
    /// Which store holds the data.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Which store, and where: shared by `init` and `migrate`.
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// Which kind of store holds the data.
    #[arg(long, visible_alias = "to", value_enum, default_value_t = BackendKind::Own)]
    pub backend: BackendKind,
    /// The embedded store's folder; devices sharing it sync with each
    /// other [default: `store` in the system's data folder].
    #[arg(long, value_name = "DIR", conflicts_with = "url")]
    pub store: Option<PathBuf>,
    /// A `pouch-store` server to use instead of the embedded store,
    /// e.g. http://store.lan:7878. Its token is read from
    /// POUCH_STORE_TOKEN when Pouch runs; it is not written to the config.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// The namespace on the `pouch-store` server.
    #[arg(long, default_value = "default", requires = "url")]
    pub namespace: String,
    /// The `pouch-store` namespace's token, written into the config (kept
    /// 0600). Leave it out to have Pouch read POUCH_STORE_TOKEN at every
    /// run instead.
    #[arg(long, requires = "url")]
    pub token: Option<String>,
    /// Log in to this account on the `pouch-store` server and sync its
    /// home: the password is asked for once (from the terminal, standard
    /// input when that is not one, or POUCH_PASSWORD) and never kept; the
    /// device gets a credential of its own, written into the config (0600).
    #[arg(long, requires = "url", conflicts_with = "token")]
    pub user: Option<String>,
    /// With `--backend s3`: the bucket (it must exist).
    #[arg(long, required_if_eq("backend", "s3"))]
    pub bucket: Option<String>,
    /// With `--backend s3`: an S3-compatible store's endpoint, e.g.
    /// http://minio.lan:9000 (implies path-style addressing) [default: AWS].
    #[arg(long, value_name = "URL", requires = "bucket")]
    pub endpoint: Option<String>,
    /// With `--backend s3`: the region [default: AWS_REGION, the
    /// profile's, or us-east-1].
    #[arg(long, requires = "bucket")]
    pub region: Option<String>,
    /// With `--backend s3`: a key prefix, so one bucket holds many folders.
    #[arg(long, requires = "bucket")]
    pub prefix: Option<String>,
    /// With `--backend s3`: path-style addressing (bucket in the path).
    #[arg(long, requires = "bucket")]
    pub path_style: bool,
}

/// `pouch migrate` actions.
#[derive(Debug, Subcommand)]
pub enum MigrateAction {
    /// Start moving this folder to another store while it keeps syncing:
    /// from now on this device writes every change to both stores and
    /// checks a share of its reads against the new one; then copy
    /// everything there (resumable: run it again). `switch` ends it. The
    /// migration is announced in the folder's journal: other devices on
    /// the same server write to both stores too; those elsewhere wait for
    /// `pouch migrate join`.
    Start {
        /// The target store (`--to own --store DIR`, `--to own --url URL`,
        /// `--to s3 --bucket B …`).
        #[command(flatten)]
        to: Box<StoreArgs>,
        /// Share of block reads repeated against the target and compared.
        #[arg(long, default_value_t = 0.05, value_name = "SHARE")]
        shadow_reads: f64,
        #[command(flatten)]
        limits: CopyLimits,
        /// Print the copy's outcome as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Stop a migration `start` began: back to one store (what was copied
    /// stays there), on every device.
    Cancel,
    /// Write to the store another device announced a migration to, as
    /// well as to this folder's (Pouch never sends this device's data or
    /// credentials to another server without you).
    Join,
    /// Bring the target up to this folder's store; repeat to catch up.
    Copy {
        /// The target store (`--to own --store DIR`, `--to own --url URL`,
        /// `--to s3 --bucket B …`).
        #[command(flatten)]
        to: Box<StoreArgs>,
        #[command(flatten)]
        limits: CopyLimits,
        /// Print the outcome as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Switch this folder, and every device syncing it, to the target:
    /// copy, freeze the old store with a last journal entry that names the
    /// new one, copy the rest, verify, and flip this device's config. Other
    /// devices follow at their next sync when the new store is on the same
    /// server; otherwise each waits for `pouch migrate follow`.
    Switch {
        /// The target store.
        #[command(flatten)]
        to: Box<StoreArgs>,
    },
    /// Forget the store this folder moved away from.
    Finish,
    /// Follow the move another device announced to a store on another
    /// server or bucket (Pouch never sends this device's credentials there
    /// without you), then sync there.
    Follow,
    /// Refuse the move another device announced: keep syncing with the
    /// configured store (devices that followed it sync with the new one).
    Refuse,
    /// Check that the target holds everything: identical journals, every
    /// referenced block read back and hash-checked.
    Verify {
        /// The target store.
        #[command(flatten)]
        to: Box<StoreArgs>,
        /// Print the outcome as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
}

/// How hard a copy may push.
#[derive(Debug, Clone, clap::Args)]
pub struct CopyLimits {
    /// Blocks fetched from the old store at once.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub parallel: usize,
    /// Most megabytes (MiB) sent to the new store per second.
    #[arg(long, value_name = "MIB")]
    pub max_rate: Option<f64>,
}

impl CopyLimits {
    /// As the engine takes them.
    pub fn options(&self) -> pouch_core::migrate::CopyOptions {
        pouch_core::migrate::CopyOptions {
            parallel: self.parallel.max(1),
            max_bytes_per_sec: self.max_rate.map(|mib| (mib * 1024.0 * 1024.0) as u64),
            now: None,
        }
    }
}

/// `pouch exclude` actions.
#[derive(Debug, Subcommand)]
pub enum ExcludeAction {
    /// Stop syncing a folder here and remove its local copy (refused while
    /// anything in it is not synced). Other devices keep it.
    Add {
        /// The folder: relative to the synced folder, or an absolute path inside it.
        path: String,
    },
    /// Sync an excluded folder here again (downloaded on the next sync).
    Remove {
        /// The folder, relative to the synced folder.
        path: String,
    },
    /// List the excluded folders.
    List,
}

/// Store kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// Pouch's own block store: embedded on a local folder, or a
    /// `pouch-store` server with --url.
    Own,
    /// Amazon S3 or an S3-compatible store; credentials come from the
    /// standard AWS chain (environment, AWS_PROFILE and ~/.aws/credentials,
    /// instance roles) and are not written to the config.
    S3,
}
