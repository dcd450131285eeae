//! The format of a namespace journal entry: one commit, a batch of changes
//! made by one device. JSON, versioned, so other clients can read it.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::node::Node;
use crate::{Error, Result};

/// The entry format this build writes.
pub const COMMIT_VERSION: u32 = 1;

/// One commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Commit {
    /// Format version.
    pub v: u32,
    /// The committing device's name.
    pub device: String,
    /// When it was committed, by the committing device's clock (seconds
    /// since the Unix epoch), for history and `restore --at`. Absent in
    /// entries written before it was added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<i64>,
    /// What changed. Paths are unvalidated text until the reader checks them.
    pub changes: Vec<Change>,
    /// Set on the last entry of a store the namespace moved away from: the
    /// store it lives in from now on (no secrets: keys and tokens come from
    /// each device's own environment). Nothing may follow this entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_to: Option<crate::location::StoreLocation>,
    /// Set on an entry that announces a migration (`pouch migrate start`:
    /// the namespace is being copied to `to`, and devices write there too
    /// until the switch) or stops one (`pouch migrate cancel`: `to` is
    /// absent). A device writes to the announced store only when it is on
    /// the server it already uses, or when its user agreed (`pouch migrate
    /// join`): an entry must never send a device's data or credentials to
    /// a host its user did not choose. Older readers ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<MigrationNotice>,
    /// Blocks the committing device could not read from the store (missing,
    /// or refused as damaged): devices that have them send them again (see
    /// the engine's `heal`). Older readers ignore it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<pouch_backend::BlockId>,
    /// Set on an entry that changes the namespace's retention policy (the
    /// last such entry is in force; none means the default). Older readers
    /// ignore it and collect nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<crate::retention::Retention>,
}

/// What a journal entry says of a migration of the namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationNotice {
    /// The store the namespace is being copied to; absent when the
    /// migration stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<crate::location::StoreLocation>,
}

/// One path's new state: a node, or `None` for a delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The path, `/`-separated, relative to the root.
    pub path: String,
    /// What it holds now; `None` when it was deleted.
    pub node: Option<Node>,
}

impl Commit {
    /// The entry bytes.
    pub fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("a commit always serialises"))
    }

    /// Parses entry `seq`.
    pub fn decode(seq: u64, data: &[u8]) -> Result<Self> {
        let commit: Commit = serde_json::from_slice(data).map_err(|e| Error::BadEntry {
            seq,
            reason: e.to_string(),
        })?;
        if commit.v > COMMIT_VERSION {
            return Err(Error::BadEntry {
                seq,
                reason: format!(
                    "format {} is newer than this Pouch; upgrade Pouch",
                    commit.v
                ),
            });
        }
        Ok(commit)
    }
}
