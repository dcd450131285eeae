//! What one sync did, as the daemon reports it.

use serde::{Deserialize, Serialize};

/// What one sync did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncReport {
    /// Journal entries pulled.
    pub entries_pulled: u64,
    /// Paths brought to disk (files, folders, links).
    pub downloaded: u64,
    /// Paths removed from disk.
    pub deleted_local: u64,
    /// Remote renames applied on disk without downloading.
    pub renamed_local: u64,
    /// Conflicted copies made.
    pub conflicts: u64,
    /// Paths sent to the remote side.
    pub uploaded: u64,
    /// Paths deleted on the remote side.
    pub deleted_remote: u64,
    /// Blocks sent to the store (already stored ones are not sent).
    pub blocks_uploaded: u64,
    /// Raw bytes of those blocks.
    pub bytes_uploaded: u64,
    /// Blocks fetched from the store.
    pub blocks_downloaded: u64,
    /// Blocks the store had lost that this device sent again.
    pub blocks_resent: u64,
    /// Commits appended to the journal.
    pub commits: u64,
    /// Things that could not be synced this time, each with why.
    pub problems: Vec<String>,
    /// Local changes in a shared folder this account may only view: they
    /// stay on this device, never sent (each also among `problems`).
    pub kept_here: Vec<String>,
    /// The paths this sync changed, in order (the first thousand; the
    /// counts above are complete).
    pub changed: Vec<Changed>,
}

/// One path a sync changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changed {
    /// The path.
    pub path: String,
    /// What happened to it.
    pub action: Action,
}

/// What a sync did to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Sent to the other devices.
    Uploaded,
    /// Deleted on the other devices.
    DeletedRemotely,
    /// Brought here.
    Downloaded,
    /// Deleted here, as another device did.
    DeletedHere,
    /// Moved here, as another device did.
    Renamed,
    /// Both sides changed it; the local version became a conflicted copy.
    Conflict,
}

impl Action {
    /// The words `pouch status` shows for it.
    pub fn words(self) -> &'static str {
        match self {
            Action::Uploaded => "uploaded",
            Action::DeletedRemotely => "deleted remotely",
            Action::Downloaded => "downloaded",
            Action::DeletedHere => "deleted here",
            Action::Renamed => "renamed",
            Action::Conflict => "conflict",
        }
    }
}
