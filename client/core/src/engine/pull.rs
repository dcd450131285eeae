//! Pull: fold new journal entries into the Remote tree. Every path is
//! validated first, and a refused one never reaches the disk.

use super::{Engine, PULL_PAGE};
use crate::Result;
use crate::commit::{Change, Commit};
use crate::names::is_temp_name;
use crate::node::Node;
use crate::path::RelPath;
use crate::report::SyncReport;
use crate::state::Origin;

impl Engine {
    /// Folds every journal entry after the cursor into the Remote tree.
    pub(super) async fn pull(&mut self, report: &mut SyncReport) -> Result<()> {
        loop {
            let cursor = self.db.cursor()?;
            let entries = self.backend.read_journal(cursor, PULL_PAGE).await?;
            if entries.is_empty() {
                return Ok(());
            }
            for entry in entries {
                let mut origin = Origin {
                    device: String::new(),
                    time: None,
                };
                let changes = match Commit::decode(entry.seq.0, &entry.data) {
                    Ok(commit) => {
                        if let Some(to) = &commit.moved_to {
                            tracing::warn!(seq = %entry.seq, "the namespace moved to another store");
                            self.db.set_meta(
                                super::MOVED_META,
                                &serde_json::to_string(&(entry.seq.0, to))
                                    .expect("a store location always serialises"),
                            )?;
                        }
                        if let Some(policy) = &commit.retention {
                            self.db.set_meta(
                                super::RETENTION_META,
                                &serde_json::to_string(policy).expect("a policy always serialises"),
                            )?;
                        }
                        self.want(&commit.missing)?;
                        origin = Origin {
                            device: commit.device,
                            time: commit.time,
                        };
                        validated(entry.seq.0, commit.changes, &mut report.problems)
                    }
                    Err(e) => {
                        tracing::error!(seq = %entry.seq, "refusing a journal entry: {e}");
                        report.problems.push(e.to_string());
                        Vec::new()
                    }
                };
                self.db.fold(entry.seq, &origin, &changes, false)?;
                report.entries_pulled += 1;
            }
        }
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
