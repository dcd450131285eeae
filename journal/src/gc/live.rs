//! The live set: every block a retained version names, from the journal
//! read whole. The collector never deletes a block in it.

use std::collections::HashMap;

use pouch_backend::{Backend, BlockId, Seq};

use crate::Result;
use crate::commit::Commit;
use crate::node::{BlockRef, Node};
use crate::retention::{self, Retention, Version};

/// Entries read per request.
const PAGE: usize = 1000;

/// One version of a path, as the fold keeps it.
struct Rev {
    /// Index of its entry (seq − 1), for its time.
    entry: usize,
    /// Its blocks (empty for folders, links and deletes).
    blocks: Box<[BlockRef]>,
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
    /// Entries that could not be read (a newer format, damage): what they
    /// name is unknown.
    pub unreadable: Vec<Seq>,
    /// The entry that moved the namespace to another store, if one did.
    pub moved_at: Option<Seq>,
    /// Journal reads made.
    pub reads: u64,
}

/// What the live set holds, and what retention let go.
pub struct Live {
    /// Blocks that must stay, with their raw lengths.
    pub blocks: HashMap<BlockId, u32>,
    /// Versions past retention (their blocks may be collected).
    pub versions_expired: u64,
    /// The policy applied.
    pub policy: Retention,
}

impl Fold {
    /// Reads the journal after `self.head` to its end and folds it in. An
    /// entry it cannot read is noted in `unreadable` and a move in
    /// `moved_at`; the collector refuses to run over either.
    pub async fn read(&mut self, backend: &dyn Backend) -> Result<Changes> {
        let mut changes = Changes::default();
        loop {
            let entries = backend.read_journal(self.head, PAGE).await?;
            self.reads += 1;
            let done = entries.len() < PAGE;
            for entry in entries {
                let at = self.times.len();
                let commit = match Commit::decode(entry.seq.0, &entry.data) {
                    Ok(commit) => commit,
                    Err(e) => {
                        tracing::warn!(seq = %entry.seq, "an entry the collector cannot read: {e}");
                        self.unreadable.push(entry.seq);
                        self.times.push(None);
                        self.head = entry.seq;
                        continue;
                    }
                };
                if commit.moved_to.is_some() {
                    self.moved_at = Some(entry.seq);
                }
                if let Some(policy) = commit.retention {
                    self.policy = Some(policy);
                    changes.policy = true;
                }
                self.times.push(commit.time);
                for change in commit.changes {
                    let (blocks, content, deleted) = match &change.node {
                        Some(Node::File { blocks, .. }) => {
                            changes.blocks.extend(blocks.iter().map(|b| b.id));
                            (blocks.clone().into_boxed_slice(), true, false)
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
        let mut blocks = HashMap::new();
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
                    blocks.extend(rev.blocks.iter().map(|b| (b.id, b.len)));
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
    pub blocks: std::collections::HashSet<BlockId>,
    /// Whether one of them set a retention policy.
    pub policy: bool,
}
