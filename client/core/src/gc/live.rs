//! The live set: every block a retained version names, from the journal
//! read whole. The collector never deletes a block in it.

use std::collections::{HashMap, HashSet};

use pouch_backend::{Backend, BlockId, Seq};

use crate::commit::Commit;
use crate::node::Node;
use crate::retention::{self, Retention, Version};
use crate::{Error, Result};

/// Entries read per request.
const PAGE: usize = 1000;

/// One version of a path, as the fold keeps it.
struct Rev {
    /// Index of its entry (seq − 1), for its time.
    entry: usize,
    /// Its blocks (empty for folders, links and deletes).
    blocks: Box<[BlockId]>,
    content: bool,
    deleted: bool,
}

/// The journal folded for collection.
#[derive(Default)]
pub struct Fold {
    paths: HashMap<String, Vec<Rev>>,
    times: Vec<Option<i64>>,
    /// The policy in force: the last entry that set one.
    pub policy: Option<Retention>,
    /// The last entry read.
    pub head: Seq,
}

/// What the live set holds, and what retention let go.
pub struct Live {
    /// Blocks that must stay.
    pub blocks: HashSet<BlockId>,
    /// Versions past retention (their blocks may be collected).
    pub versions_expired: u64,
    /// The policy applied.
    pub policy: Retention,
}

impl Fold {
    /// Reads the journal after `self.head` to its end and folds it in.
    /// Refuses an entry it cannot read (a newer format, damage): what such
    /// an entry names is unknown, so nothing may be collected; and a
    /// journal that moved to another store, which the old one serves only
    /// as a fallback.
    pub async fn read(&mut self, backend: &dyn Backend) -> Result<Changes> {
        let mut changes = Changes::default();
        loop {
            let entries = backend.read_journal(self.head, PAGE).await?;
            let done = entries.len() < PAGE;
            for entry in entries {
                let commit =
                    Commit::decode(entry.seq.0, &entry.data).map_err(|e| Error::Refused {
                        path: "the namespace journal".into(),
                        reason: format!(
                            "{e}; no garbage is collected while an entry cannot be read"
                        ),
                    })?;
                if commit.moved_to.is_some() {
                    return Err(Error::Refused {
                        path: backend.describe(),
                        reason: format!(
                            "the namespace moved away at entry {}: this store is kept as a fallback, not collected",
                            entry.seq
                        ),
                    });
                }
                if let Some(policy) = commit.retention {
                    self.policy = Some(policy);
                    changes.policy = true;
                }
                let at = self.times.len();
                self.times.push(commit.time);
                for change in commit.changes {
                    let (blocks, content, deleted) = match &change.node {
                        Some(Node::File { blocks, .. }) => {
                            changes.blocks.extend(blocks.iter().map(|b| b.id));
                            (blocks.iter().map(|b| b.id).collect(), true, false)
                        }
                        Some(Node::Symlink { .. }) => (Box::default(), true, false),
                        Some(Node::Dir) => (Box::default(), false, false),
                        None => (Box::default(), false, true),
                    };
                    self.paths.entry(change.path).or_default().push(Rev {
                        entry: at,
                        blocks,
                        content,
                        deleted,
                    });
                }
                self.head = entry.seq;
            }
            if done {
                return Ok(changes);
            }
        }
    }

    /// The blocks of every version retained at `now` under the policy.
    pub fn live(&self, now: i64) -> Live {
        let policy = self.policy.unwrap_or_default();
        let times = retention::entry_times(&self.times, now);
        let mut blocks = HashSet::new();
        let mut versions_expired = 0;
        let mut versions = Vec::new();
        for revs in self.paths.values() {
            versions.clear();
            versions.extend(revs.iter().enumerate().map(|(i, rev)| Version {
                replaced_at: revs.get(i + 1).map(|next| times[next.entry]),
                content: rev.content,
                deleted: rev.deleted,
            }));
            for (rev, keep) in revs
                .iter()
                .zip(retention::retained(&policy, &versions, now))
            {
                if keep {
                    blocks.extend(rev.blocks.iter().copied());
                } else if rev.content {
                    versions_expired += 1;
                }
            }
        }
        Live {
            blocks,
            versions_expired,
            policy,
        }
    }
}

/// What a read of more entries brought.
#[derive(Default)]
pub struct Changes {
    /// Every block the new entries name.
    pub blocks: HashSet<BlockId>,
    /// Whether one of them set a retention policy.
    pub policy: bool,
}
