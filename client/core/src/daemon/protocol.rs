//! The daemon's control protocol, spoken over its Unix socket (mode 0600).
//!
//! Newline-delimited JSON. The client sends one [`Request`] per line; the
//! daemon answers each with one [`Response`] line, except `subscribe`,
//! after which it streams one [`Event`] per line until the client hangs up.
//!
//! ```text
//! > {"cmd":"status"}
//! < {"status":{"state":"idle","paused":false,...}}
//! > {"cmd":"pause"}
//! < {"ok":"paused"}
//! > {"cmd":"resume","allow_mass_delete":false}
//! < {"ok":"resumed"}
//! > {"cmd":"subscribe"}
//! < {"event":"syncing"}
//! < {"event":"synced","uploaded":1,...}
//! ```

use serde::{Deserialize, Serialize};

use crate::sync::{Changed, SyncReport};

/// A request to the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    /// The daemon's state.
    Status,
    /// Stop syncing until resumed (changes keep being noticed).
    Pause,
    /// Sync again, starting with everything noticed meanwhile.
    Resume {
        /// Let the next sync propagate a mass delete the guard stopped.
        #[serde(default)]
        allow_mass_delete: bool,
    },
    /// Stream events until the connection closes.
    Subscribe,
}

/// An answer to one request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Response {
    /// The state, for `status`.
    Status(Box<DaemonStatus>),
    /// Done, with the new state's name, for `pause` and `resume`.
    Ok(String),
    /// The request could not be served.
    Error(String),
}

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

/// The daemon's state, as `pouch status` shows it.
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
}

/// Bytes moving now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// `uploading` or `downloading`.
    pub phase: String,
    /// Files this phase moves.
    #[serde(default)]
    pub files: u64,
    /// Bytes moved so far.
    pub done_bytes: u64,
    /// Bytes this phase will move.
    pub total_bytes: u64,
}

/// Something that happened, for subscribers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Event {
    /// A sync started.
    Syncing,
    /// A sync finished.
    Synced(SyncReport),
    /// A sync failed.
    Failed {
        /// Why.
        message: String,
    },
    /// The user paused syncing.
    Paused,
    /// The user resumed syncing.
    Resumed,
}

/// A migration, as the daemon sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationStatus {
    /// What the two stores saw through this daemon.
    #[serde(flatten)]
    pub counts: crate::dual::DualCounts,
    /// The copy's progress, as `pouch migrate` last recorded it.
    pub copy: Option<crate::migrate::CopyProgress>,
}
