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
pub(crate) struct Rev {
    /// Index of its entry in [`Fold::entries`].
    pub(crate) entry: usize,
    /// What the path held: `None` for a delete.
    pub(crate) node: Option<Node>,
}

impl Rev {
    fn blocks(&self) -> &[BlockRef] {
        match &self.node {
            Some(Node::File { blocks, .. }) => blocks,
            _ => &[],
        }
    }

    fn content(&self) -> bool {
        matches!(self.node, Some(Node::File { .. } | Node::Symlink { .. }))
    }
}

/// What the fold keeps of one journal entry besides its changes.
pub(crate) struct EntryMeta {
    pub(crate) seq: Seq,
    pub(crate) device: std::sync::Arc<str>,
    /// The committing device's time, if it gave one.
    pub(crate) time: Option<i64>,
    pub(crate) retention: Option<Retention>,
    pub(crate) moved_to: Option<crate::location::StoreLocation>,
}

/// The journal folded for collection.
#[derive(Default)]
pub struct Fold {
    pub(crate) paths: HashMap<String, Vec<Rev>>,
    pub(crate) entries: Vec<EntryMeta>,
    /// Device names, shared by the entries.
    devices: std::collections::HashSet<std::sync::Arc<str>>,
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
            let entries = match backend.read_journal(self.head, PAGE).await {
                Err(pouch_backend::Error::Trimmed { through }) if self.head == Seq::ZERO => {
                    // The entries up to `through` are folded in the
                    // snapshot: start there.
                    self.reads += 1;
                    let stored = backend
                        .get_snapshot()
                        .await?
                        .filter(|s| s.seq >= through)
                        .ok_or_else(|| pouch_backend::Error::Format {
                            what: format!(
                                "the store dropped journal entries up to {through} but holds no snapshot of them"
                            ),
                        })?;
                    let snapshot =
                        crate::snapshot::JournalSnapshot::decode(stored.seq, &stored.data)?;
                    for entry in &snapshot.entries {
                        for change in &entry.commit.changes {
                            if let Some(Node::File { blocks, .. }) = &change.node {
                                changes.blocks.extend(blocks.iter().map(|b| b.id));
                            }
                        }
                        changes.policy |= entry.commit.retention.is_some();
                    }
                    self.read_snapshot(snapshot);
                    continue;
                }
                other => other?,
            };
            self.reads += 1;
            let done = entries.len() < PAGE;
            for entry in entries {
                let commit = match Commit::decode(entry.seq.0, &entry.data) {
                    Ok(commit) => commit,
                    Err(e) => {
                        tracing::warn!(seq = %entry.seq, "an entry the collector cannot read: {e}");
                        self.unreadable.push(entry.seq);
                        self.push_meta(entry.seq, "", None, None, None);
                        self.head = entry.seq;
                        continue;
                    }
                };
                if commit.retention.is_some() {
                    changes.policy = true;
                }
                for change in &commit.changes {
                    if let Some(Node::File { blocks, .. }) = &change.node {
                        changes.blocks.extend(blocks.iter().map(|b| b.id));
                    }
                }
                self.fold_commit(entry.seq, commit);
            }
            if done {
                return Ok(changes);
            }
        }
    }

    /// Folds one entry's commit in (from the journal, or from a snapshot).
    pub(crate) fn fold_commit(&mut self, seq: Seq, commit: Commit) {
        if commit.moved_to.is_some() {
            self.moved_at = Some(seq);
        }
        if let Some(policy) = commit.retention {
            self.policy = Some(policy);
        }
        let at = self.entries.len();
        self.push_meta(
            seq,
            &commit.device,
            commit.time,
            commit.retention,
            commit.moved_to,
        );
        for change in commit.changes {
            self.paths.entry(change.path).or_default().push(Rev {
                entry: at,
                node: change.node,
            });
        }
        self.head = seq;
    }

    fn push_meta(
        &mut self,
        seq: Seq,
        device: &str,
        time: Option<i64>,
        retention: Option<Retention>,
        moved_to: Option<crate::location::StoreLocation>,
    ) {
        let device = match self.devices.get(device) {
            Some(known) => known.clone(),
            None => {
                let name: std::sync::Arc<str> = device.into();
                self.devices.insert(name.clone());
                name
            }
        };
        self.entries.push(EntryMeta {
            seq,
            device,
            time,
            retention,
            moved_to,
        });
    }

    /// Each entry's time for retention (see [`retention::entry_times`]).
    pub(crate) fn times(&self, now: i64) -> Vec<i64> {
        let raw: Vec<Option<i64>> = self.entries.iter().map(|e| e.time).collect();
        retention::entry_times(&raw, now)
    }

    /// For each path, which of its versions are retained at `now`.
    pub(crate) fn retained(&self, now: i64) -> impl Iterator<Item = (&String, &[Rev], Vec<bool>)> {
        let policy = self.policy.unwrap_or_default();
        let times = self.times(now);
        let mut versions = Vec::new();
        self.paths.iter().map(move |(path, revs)| {
            versions.clear();
            versions.extend(revs.iter().enumerate().map(|(i, rev)| Version {
                replaced_at: revs.get(i + 1).map(|next| times[next.entry]),
                content: rev.content(),
                deleted: rev.node.is_none(),
            }));
            let keep = retention::retained(&policy, &versions, now);
            (path, revs.as_slice(), keep)
        })
    }

    /// What the paths `keep` selects hold now (their last version; the
    /// deleted left out), in path order.
    pub fn current(&self, keep: impl Fn(&str) -> bool) -> Vec<(String, Node)> {
        let mut current: Vec<(String, Node)> = self
            .paths
            .iter()
            .filter(|(path, _)| keep(path))
            .filter_map(|(path, revs)| Some((path.clone(), revs.last()?.node.clone()?)))
            .collect();
        current.sort_by(|a, b| a.0.cmp(&b.0));
        current
    }

    /// The blocks of every version retained at `now` under the policy.
    pub fn live(&self, now: i64) -> Live {
        let policy = self.policy.unwrap_or_default();
        let mut blocks = HashMap::new();
        let mut versions_expired = 0;
        for (_, revs, keep) in self.retained(now) {
            for (rev, keep) in revs.iter().zip(keep) {
                if keep {
                    blocks.extend(rev.blocks().iter().map(|b| (b.id, b.len)));
                } else if rev.content() {
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
