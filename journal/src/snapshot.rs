//! Journal snapshots: the journal up to one entry, compacted to what
//! retention keeps, so that a new device reads one object instead of
//! replaying years of entries.
//!
//! A snapshot at entry S holds, grouped under the entries that made them
//! and in order, every version retained when it was made: each path's
//! current version (deletes included, so a device learns a path is gone),
//! the replaced and deleted versions still in their retention period, and
//! the entries that set the policy or moved the namespace. Folding a
//! snapshot and then the journal after S gives the same tree, the same
//! retained history and the same policy as folding the whole journal:
//! retention only drops versions that were expired, and a version's
//! successor is retained whenever it is (it replaced it no earlier), so
//! every time retention needs is there. Entry times are the effective ones
//! ([`crate::retention::entry_times`]), which never run backwards, so
//! times computed over the snapshot and the later entries do not change.
//!
//! The collector writes one at the end of a collection
//! ([`crate::gc::collect`]), where it has the folded journal in hand.
//! Format: JSON, zstd-compressed, versioned.

use bytes::Bytes;
use pouch_backend::Seq;
use serde::{Deserialize, Serialize};

use crate::commit::{Change, Commit};
use crate::gc::Fold;
use crate::{Error, Result};

/// The snapshot format this build writes.
pub const SNAPSHOT_VERSION: u32 = 1;

/// A compacted journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalSnapshot {
    /// Format version.
    pub v: u32,
    /// The last journal entry folded in.
    pub seq: u64,
    /// When it was made (seconds since the epoch): retention was applied
    /// as of then.
    pub made_at: i64,
    /// The entries with something retained, in journal order, each with
    /// only its retained changes.
    pub entries: Vec<SnapshotEntry>,
}

/// One journal entry as a snapshot keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotEntry {
    /// Its sequence number in the journal.
    pub seq: u64,
    /// Its commit: device, effective time, policy and move as written;
    /// changes only those retained.
    pub commit: Commit,
}

impl JournalSnapshot {
    /// The snapshot of `fold` (read to its head) with retention applied at
    /// `now`.
    pub fn of(fold: &Fold, now: i64) -> Self {
        let times = fold.times(now);
        let mut changes: Vec<Vec<Change>> = vec![Vec::new(); fold.entries.len()];
        for (path, revs, keep) in fold.retained(now) {
            for (rev, keep) in revs.iter().zip(keep) {
                if keep {
                    changes[rev.entry].push(Change {
                        path: path.clone(),
                        node: rev.node.clone(),
                    });
                }
            }
        }
        let entries = fold
            .entries
            .iter()
            .zip(changes)
            .zip(times)
            .filter(|((meta, changes), _)| {
                !changes.is_empty() || meta.retention.is_some() || meta.moved_to.is_some()
            })
            .map(|((meta, mut changes), time)| {
                // Paths in a stable order, as a commit lists them.
                changes.sort_by(|a, b| a.path.cmp(&b.path));
                SnapshotEntry {
                    seq: meta.seq.0,
                    commit: Commit {
                        v: crate::commit::COMMIT_VERSION,
                        device: meta.device.to_string(),
                        time: Some(time),
                        changes,
                        moved_to: meta.moved_to.clone(),
                        migration: None,
                        missing: Vec::new(),
                        retention: meta.retention,
                    },
                }
            })
            .collect();
        Self {
            v: SNAPSHOT_VERSION,
            seq: fold.head.0,
            made_at: now,
            entries,
        }
    }

    /// The stored bytes.
    pub fn encode(&self) -> Bytes {
        let json = serde_json::to_vec(self).expect("a snapshot always serialises");
        Bytes::from(zstd::bulk::compress(&json, 3).expect("compressing in memory"))
    }

    /// Parses a stored snapshot (of journal entry `seq`, as the store
    /// says), checking it names that entry and is in order.
    pub fn decode(seq: Seq, data: &[u8]) -> Result<Self> {
        let bad = |reason: String| Error::BadSnapshot { seq: seq.0, reason };
        let json = zstd::stream::decode_all(data).map_err(|e| bad(e.to_string()))?;
        let snapshot: Self = serde_json::from_slice(&json).map_err(|e| bad(e.to_string()))?;
        if snapshot.v > SNAPSHOT_VERSION {
            return Err(bad(format!(
                "format {} is newer than this Pouch; upgrade Pouch",
                snapshot.v
            )));
        }
        if snapshot.seq != seq.0 {
            return Err(bad(format!(
                "it says it folds entry {}, the store says {seq}",
                snapshot.seq
            )));
        }
        let in_order = snapshot.entries.windows(2).all(|w| w[0].seq < w[1].seq);
        if !in_order
            || snapshot
                .entries
                .last()
                .is_some_and(|e| e.seq > snapshot.seq)
        {
            return Err(bad("its entries are out of order".into()));
        }
        Ok(snapshot)
    }
}

impl Fold {
    /// The last entry older than the retention period at `now` (by the
    /// entries' effective times): what a trim after a snapshot of this
    /// fold may drop. `None` if no entry is that old.
    pub fn expired_through(&self, now: i64) -> Option<Seq> {
        let keep = i64::try_from(self.policy.unwrap_or_default().keep_secs).unwrap_or(i64::MAX);
        let cutoff = now.saturating_sub(keep);
        let times = self.times(now);
        self.entries
            .iter()
            .zip(times)
            .rev()
            .find(|(_, time)| *time < cutoff)
            .map(|(meta, _)| meta.seq)
    }

    /// Folds a snapshot in, as if its entries were read from the journal;
    /// the fold continues after the snapshot's entry.
    pub fn read_snapshot(&mut self, snapshot: JournalSnapshot) {
        for entry in snapshot.entries {
            self.fold_commit(Seq(entry.seq), entry.commit);
        }
        self.head = Seq(snapshot.seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{BlockRef, Node};
    use crate::retention::Retention;

    fn file(n: u8) -> Option<Node> {
        Some(Node::File {
            size: 1,
            mtime_ns: 0,
            exec: false,
            mode: None,
            blocks: vec![BlockRef {
                id: pouch_backend::BlockId::of(&[n]),
                len: 1,
            }],
        })
    }

    fn commit(time: Option<i64>, changes: &[(&str, Option<Node>)]) -> Commit {
        Commit {
            v: 1,
            device: "laptop".into(),
            time,
            changes: changes
                .iter()
                .map(|(path, node)| Change {
                    path: (*path).into(),
                    node: node.clone(),
                })
                .collect(),
            moved_to: None,
            migration: None,
            missing: Vec::new(),
            retention: None,
        }
    }

    /// a: v1 (t 100), replaced by v2 (t 200); b: made (t 100), deleted
    /// (t 150); c: made (t 100); a 60 s policy set at t 120.
    fn fold() -> Fold {
        let mut fold = Fold::default();
        fold.fold_commit(Seq(1), commit(Some(100), &[("a", file(1)), ("b", file(2))]));
        fold.fold_commit(Seq(2), commit(None, &[("c", file(3))]));
        let mut policy = commit(Some(120), &[]);
        policy.retention = Some(Retention {
            keep_secs: 60,
            keep_last: 0,
        });
        fold.fold_commit(Seq(3), policy);
        fold.fold_commit(Seq(4), commit(Some(150), &[("b", None)]));
        fold.fold_commit(Seq(5), commit(Some(200), &[("a", file(4))]));
        fold
    }

    #[test]
    fn a_snapshot_keeps_what_retention_keeps_and_folds_to_the_same_live_set() {
        let fold = fold();
        let snapshot = JournalSnapshot::of(&fold, 230);
        let kept: Vec<(u64, Vec<&str>)> = snapshot
            .entries
            .iter()
            .map(|e| {
                (
                    e.seq,
                    e.commit.changes.iter().map(|c| c.path.as_str()).collect(),
                )
            })
            .collect();
        // b's file expired (deleted at 150, kept 60 s); its delete is the
        // current version and stays, so a device learns b is gone.
        assert_eq!(
            kept,
            [
                (1, vec!["a"]),
                (2, vec!["c"]),
                (3, vec![]),
                (4, vec!["b"]),
                (5, vec!["a"])
            ]
        );
        assert_eq!(
            snapshot.entries[1].commit.time,
            Some(120),
            "the effective time"
        );
        assert!(snapshot.entries[2].commit.retention.is_some());

        let data = snapshot.encode();
        let back = JournalSnapshot::decode(Seq(5), &data).unwrap();
        assert_eq!(back, snapshot);
        assert!(JournalSnapshot::decode(Seq(6), &data).is_err());
        assert!(JournalSnapshot::decode(Seq(5), b"junk").is_err());

        let mut from_snapshot = Fold::default();
        from_snapshot.read_snapshot(back);
        assert_eq!(from_snapshot.head, Seq(5));
        assert_eq!(from_snapshot.policy, fold.policy);
        for now in [230, 255, 300, 10_000] {
            let (whole, compact) = (fold.live(now), from_snapshot.live(now));
            assert_eq!(whole.blocks, compact.blocks, "at {now}");
        }
    }
}
