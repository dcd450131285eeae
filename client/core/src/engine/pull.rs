//! Pull: fold new journal entries into the Remote tree. Every path is
//! validated first, and a refused one never reaches the disk. A new
//! device starts from the journal's snapshot; one behind the store's trim
//! point re-bases on it.

use pouch_backend::Seq;

use super::{Engine, PULL_PAGE};
use crate::Result;
use crate::commit::{Change, Commit};
use crate::names::is_temp_name;
use crate::node::Node;
use crate::path::RelPath;
use crate::report::SyncReport;
use crate::snapshot::JournalSnapshot;
use crate::state::Origin;

impl Engine {
    /// Folds every journal entry after the cursor into the Remote tree. A
    /// device that has read nothing yet starts from the store's journal
    /// snapshot, when there is one.
    pub(super) async fn pull(&mut self, report: &mut SyncReport) -> Result<()> {
        let mut first = true;
        loop {
            let cursor = self.db.cursor()?;
            let entries = match self.backend.read_journal(cursor, PULL_PAGE).await {
                Ok(entries) => entries,
                Err(pouch_backend::Error::Trimmed { through }) => {
                    self.rebase(through, report).await?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if entries.is_empty() {
                return Ok(());
            }
            if std::mem::take(&mut first)
                && cursor == Seq::ZERO
                && self.start_from_snapshot(report).await?
            {
                continue;
            }
            for entry in entries {
                let commit = Commit::decode(entry.seq.0, &entry.data);
                self.fold_entry(entry.seq, commit, report)?;
                report.entries_pulled += 1;
            }
        }
    }

    /// Folds the store's snapshot in, if it has one; whether it did. A
    /// snapshot that cannot be read is only a lost shortcut: the journal
    /// is whole, and is read instead.
    async fn start_from_snapshot(&mut self, report: &mut SyncReport) -> Result<bool> {
        let Some(stored) = self.backend.get_snapshot().await? else {
            return Ok(false);
        };
        let snapshot = match JournalSnapshot::decode(stored.seq, &stored.data) {
            Ok(snapshot) => snapshot,
            Err(e) => {
                tracing::warn!("reading the whole journal instead of its snapshot: {e}");
                return Ok(false);
            }
        };
        let seq = Seq(snapshot.seq);
        tracing::info!(%seq, entries = snapshot.entries.len(), "starting from the journal snapshot");
        for entry in snapshot.entries {
            self.fold_entry(Seq(entry.seq), Ok(entry.commit), report)?;
        }
        self.db.fold(seq, &Origin::default(), &[], false)?;
        Ok(true)
    }

    /// The store dropped the entries up to `through`, and this device had
    /// not read them all: its Remote tree and history become the
    /// snapshot's, then it reads on from there.
    async fn rebase(&mut self, through: Seq, report: &mut SyncReport) -> Result<()> {
        let stored = self.backend.get_snapshot().await?;
        let Some(stored) = stored.filter(|s| s.seq >= through) else {
            return Err(pouch_backend::Error::Format {
                what: format!(
                    "the store dropped journal entries up to {through} but holds no snapshot of them"
                ),
            }
            .into());
        };
        let snapshot = JournalSnapshot::decode(stored.seq, &stored.data)?;
        tracing::warn!(
            %through,
            snapshot = snapshot.seq,
            "this device was behind entries the store dropped: starting again from the snapshot"
        );
        let mut folded = Vec::with_capacity(snapshot.entries.len());
        for entry in snapshot.entries {
            let seq = Seq(entry.seq);
            let commit = entry.commit;
            self.note_namespace_changes(seq, &commit)?;
            let origin = Origin {
                device: commit.device,
                time: commit.time,
            };
            folded.push((
                seq,
                origin,
                validated(seq.0, commit.changes, &mut report.problems),
            ));
        }
        self.db.rebase(Seq(snapshot.seq), &folded)?;
        Ok(())
    }

    /// Notes what entry `seq` says of the namespace itself: a move to
    /// another store, a retention policy.
    fn note_namespace_changes(&self, seq: Seq, commit: &Commit) -> Result<()> {
        if let Some(notice) = &commit.migration {
            self.note_migration(seq.0, notice.to.as_ref())?;
        }
        if let Some(to) = &commit.moved_to {
            // The switch ends the migration it announced.
            self.forget_migration()?;
            tracing::warn!(%seq, "the namespace moved to another store");
            self.db.set_meta(
                super::MOVED_META,
                &serde_json::to_string(&(seq.0, to)).expect("a store location always serialises"),
            )?;
        }
        if let Some(policy) = &commit.retention {
            self.db.set_meta(
                super::RETENTION_META,
                &serde_json::to_string(policy).expect("a policy always serialises"),
            )?;
        }
        Ok(())
    }

    /// Folds one entry (or refuses it, reporting why) and moves the cursor.
    fn fold_entry(
        &mut self,
        seq: Seq,
        commit: std::result::Result<Commit, pouch_journal::Error>,
        report: &mut SyncReport,
    ) -> Result<()> {
        let mut origin = Origin::default();
        let changes = match commit {
            Ok(commit) => {
                self.note_namespace_changes(seq, &commit)?;
                self.want(&commit.missing)?;
                origin = Origin {
                    device: commit.device,
                    time: commit.time,
                };
                validated(seq.0, commit.changes, &mut report.problems)
            }
            Err(e) => {
                tracing::error!(%seq, "refusing a journal entry: {e}");
                report.problems.push(e.to_string());
                Vec::new()
            }
        };
        self.db.fold(seq, &origin, &changes, false)
    }
}

/// Keeps the changes whose paths are safe, reporting each refused one.
fn validated(
    seq: u64,
    changes: Vec<Change>,
    problems: &mut Vec<String>,
) -> Vec<(RelPath, Option<Node>)> {
    changes
        .into_iter()
        .filter_map(|change| match RelPath::parse(&change.path) {
            Ok(path) if is_temp_name(path.name()) => {
                problems.push(format!(
                    "journal entry {seq}: refused a temp-file name {path}"
                ));
                None
            }
            Ok(path) => Some((path, change.node)),
            Err(e) => {
                tracing::error!(seq, "refusing a change from the journal: {e}");
                problems.push(format!("journal entry {seq}: refused: {e}"));
                None
            }
        })
        .collect()
}
