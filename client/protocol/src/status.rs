//! The daemon's state, as `pouch status` and the tray show it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Changed, SyncReport};

/// What the daemon is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Up to date, watching.
    Idle,
    /// A sync is running.
    Syncing,
    /// Paused by the user.
    Paused,
    /// The last sync failed; it will be retried.
    Error,
}

impl State {
    /// Its name on the wire, which `pouch status` shows.
    pub fn name(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Syncing => "syncing",
            State::Paused => "paused",
            State::Error => "error",
        }
    }
}

/// The daemon's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonStatus {
    /// What it is doing.
    pub state: State,
    /// Whether the user paused it.
    pub paused: bool,
    /// Syncs completed since start.
    pub syncs: u64,
    /// Unix time of the last completed sync.
    pub last_sync: Option<i64>,
    /// The last error, if the last sync failed.
    pub last_error: Option<String>,
    /// The store it syncs with, as `pouch status` names it.
    #[serde(default)]
    pub backend: String,
    /// Whether the last sync failed because the store could not be
    /// reached (the tray shows "offline" rather than an error).
    #[serde(default)]
    pub offline: bool,
    /// What the last sync did.
    pub last_report: Option<SyncReport>,
    /// Why changes are not being watched live, when they are not (the
    /// daemon then rescans on a timer).
    pub watch_problem: Option<String>,
    /// The transfer in flight, while a sync moves bytes.
    #[serde(default)]
    pub transfer: Option<Transfer>,
    /// A migration to another store in progress, or the old store still
    /// read as a fallback after one.
    #[serde(default)]
    pub migration: Option<MigrationStatus>,
    /// The latest paths synced, newest first (at most 20), for `status`
    /// and the tray's "recent files".
    #[serde(default)]
    pub recent: Vec<Changed>,
    /// The store another device moved the folder to, when the move waits
    /// for this device's user (`pouch migrate follow` or `refuse`).
    #[serde(default)]
    pub move_waiting: Option<String>,
    /// The bandwidth limits in force.
    #[serde(default)]
    pub limits: Limits,
    /// Files changed here in a shared folder this account may only view:
    /// they stay on this device and are never sent (sorted; as of the
    /// latest syncs, gone once the file is).
    #[serde(default)]
    pub kept_here: Vec<String>,
    /// The shared folders mounted into this folder, each synced by a loop
    /// of the same daemon (only the home folder's status lists them).
    #[serde(default)]
    pub mounts: Vec<MountStatus>,
}

/// A mounted shared folder, as the home folder's daemon sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MountStatus {
    /// The shared folder's name.
    pub name: String,
    /// Where it is mounted, relative to the home folder's root.
    pub path: String,
    /// The account's role in it: `owner`, `editor` or `viewer`.
    pub role: String,
    /// The loop that syncs it (its own `mounts` is empty).
    pub status: Box<DaemonStatus>,
}

/// Bandwidth limits in bytes per second; `None`: unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Blocks sent to the store.
    pub up: Option<u64>,
    /// Blocks read from the store.
    pub down: Option<u64>,
}

impl DaemonStatus {
    /// A daemon that just started: idle, nothing synced yet.
    pub fn starting(backend: String) -> Self {
        Self {
            state: State::Idle,
            paused: false,
            syncs: 0,
            last_sync: None,
            last_error: None,
            backend,
            offline: false,
            last_report: None,
            watch_problem: None,
            transfer: None,
            migration: None,
            limits: Limits::default(),
            recent: Vec::new(),
            move_waiting: None,
            kept_here: Vec::new(),
            mounts: Vec::new(),
        }
    }
}

/// Bytes moving now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// Which way.
    pub phase: TransferPhase,
    /// Files this phase moves.
    #[serde(default)]
    pub files: u64,
    /// Bytes moved so far.
    pub done_bytes: u64,
    /// Bytes this phase will move.
    pub total_bytes: u64,
}

/// Which way a transfer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransferPhase {
    /// Sending this device's changes.
    Uploading,
    /// Bringing other devices' changes here.
    Downloading,
}

impl fmt::Display for TransferPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransferPhase::Uploading => "uploading",
            TransferPhase::Downloading => "downloading",
        })
    }
}

/// A migration, as the daemon sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationStatus {
    /// What the two stores saw through this daemon.
    #[serde(flatten)]
    pub counts: MigrationCounts,
    /// The copy's progress, as `pouch migrate` last recorded it.
    pub copy: Option<CopyProgress>,
}

/// How two stores in play behaved, counted since the daemon started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationCounts {
    /// Which role the pair plays.
    pub mode: StoreMode,
    /// The other store: the target, or the old store read as a fallback.
    pub other: String,
    /// Writes the new store failed (the copy makes them up).
    pub secondary_write_failures: u64,
    /// Journal entries written to both stores.
    pub journal_entries_mirrored: u64,
    /// Block reads repeated against the new store.
    pub shadow_reads: u64,
    /// Shadow reads of blocks the new store does not have yet.
    pub shadow_missing: u64,
    /// Shadow reads the new store answered wrongly: other bytes, a
    /// corrupt block, an error.
    pub shadow_mismatches: u64,
    /// Blocks the new store lacked and the old one served.
    pub fallback_reads: u64,
}

/// The role of two stores in play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoreMode {
    /// Double writes and shadow reads, before the switch.
    #[serde(rename = "migrating")]
    Migrating,
    /// The new store alone, the old one read for what it lacks.
    #[serde(rename = "falling back")]
    FallingBack,
}

impl fmt::Display for StoreMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreMode::Migrating => "migrating",
            StoreMode::FallingBack => "falling back",
        })
    }
}

/// How far a migration's copy has come.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyProgress {
    /// The step under way.
    pub phase: CopyPhase,
    /// Blocks in this phase.
    pub blocks: u64,
    /// Bytes handled so far.
    pub done_bytes: u64,
    /// Bytes this phase handles.
    pub total_bytes: u64,
    /// Unix time of the phase's start.
    pub started: i64,
    /// Unix time of this record.
    pub updated: i64,
}

/// The steps of a migration's copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CopyPhase {
    /// Sending blocks and journal entries.
    Copying,
    /// Reading everything back from the target.
    Verifying,
    /// The last copy or check finished.
    Done,
}

impl fmt::Display for CopyPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CopyPhase::Copying => "copying",
            CopyPhase::Verifying => "verifying",
            CopyPhase::Done => "done",
        })
    }
}
