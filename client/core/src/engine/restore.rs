//! `restore`: bring back an earlier version of a path, deleted files
//! included, while the namespace's retention keeps it (see
//! [`crate::retention`]); an expired one is refused, saying so.

use super::{Engine, Kept};
use crate::node::{Node, same};
use crate::path::RelPath;
use crate::report::SyncReport;
use crate::state::{Revision, Tree};
use crate::{Error, Result};

/// Which version to bring back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// The newest version that was a file or link (for a deleted file: the
    /// one before the delete).
    Latest,
    /// The version made by journal entry `seq`.
    Seq(u64),
    /// The version current at this time (seconds since the epoch).
    At(i64),
}

impl Engine {
    /// Every recorded version of `path`, oldest first, and the first journal
    /// entry this device has history for.
    pub fn history(&self, path: &RelPath) -> Result<(Vec<Revision>, u64)> {
        Ok((self.db.history(path)?, self.db.history_from()?.0))
    }

    /// Writes the chosen version of `path` back to disk, where the next
    /// sync sends it as a new version (the current one stays in history).
    /// Refuses to overwrite changes not synced yet.
    pub async fn restore(&mut self, path: &RelPath, pick: Pick) -> Result<Revision> {
        let refuse = |reason: String| Error::Refused {
            path: path.to_string(),
            reason,
        };
        let now = self.clock.unix_secs();
        let history = self.kept_history(path, now)?;
        let restorable = |k: &&Kept| {
            matches!(
                k.revision.node,
                Some(Node::File { .. } | Node::Symlink { .. })
            )
        };
        let chosen = match pick {
            Pick::Latest => history.iter().rev().find(restorable),
            Pick::Seq(seq) => history.iter().find(|k| k.revision.seq == seq),
            Pick::At(time) => history
                .iter()
                .rev()
                .find(|k| k.revision.time.is_some_and(|t| t <= time)),
        }
        .ok_or_else(|| refuse("no such version; `pouch history` lists them".into()))?;
        if !chosen.retained {
            let policy = self.retention()?;
            let expired = chosen
                .replaced_at
                .map(|at| at.saturating_add(i64::try_from(policy.keep_secs).unwrap_or(i64::MAX)));
            return Err(refuse(format!(
                "version {} expired{} under the folder's retention ({}): it is no longer kept and may already be collected",
                chosen.revision.seq,
                expired
                    .map(|t| format!(" at {}", crate::names::format_time(t)))
                    .unwrap_or_default(),
                policy.describe()
            )));
        }
        let revision: Revision = chosen.revision.clone();
        let Some(node) = revision.node.clone().filter(|n| !n.is_dir()) else {
            return Err(refuse(format!(
                "version {} is {}, not a file; pick another with --rev",
                revision.seq,
                if revision.node.is_some() {
                    "a folder"
                } else {
                    "a delete"
                }
            )));
        };

        let mut report = SyncReport::default();
        let (local, _) = self.scan_local(&mut report)?;
        let synced = self.db.tree(Tree::Synced)?;
        let current = local.get(path);
        if let Some((_, node)) = current {
            if node.is_dir() {
                return Err(refuse("is a folder now; move it away first".into()));
            }
            if !same(Some(node), synced.get(path)) {
                return Err(refuse(
                    "has changes that are not synced yet; sync first, or move it away".into(),
                ));
            }
        }
        let previous = synced.get(path).cloned();
        self.download(path, &node, current.map(|(stat, _)| *stat), &mut report)
            .await?;
        // Not agreed with the remote side: the next sync sends it.
        self.db.set_synced(path, previous.as_ref())?;
        Ok(revision)
    }
}
