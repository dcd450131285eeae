//! The namespace's retention policy as this device knows it (from the
//! journal it pulled), setting it (one journal entry), and which recorded
//! versions it still keeps.

use pouch_backend::Error as BackendError;

use super::{Engine, MAX_COMMIT_ATTEMPTS, RETENTION_META};
use crate::commit::{COMMIT_VERSION, Commit};
use crate::node::Node;
use crate::path::RelPath;
use crate::report::SyncReport;
use crate::retention::{self, Retention, Version};
use crate::state::{Origin, Revision};
use crate::{Error, Result};

/// A recorded version and whether retention still keeps it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Kept {
    /// The version.
    #[serde(flatten)]
    pub revision: Revision,
    /// Whether it is restorable: within the retention period (or one of
    /// the last versions the policy keeps). Expired versions may already
    /// be collected.
    pub retained: bool,
    /// When it was replaced (seconds since the epoch), if it was.
    pub replaced_at: Option<i64>,
}

impl Engine {
    /// The policy in force, from the journal entries this device pulled
    /// (the default when none set one).
    pub fn retention(&self) -> Result<Retention> {
        Ok(self
            .db
            .meta(RETENTION_META)?
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default())
    }

    /// Records `policy` as the namespace's: one journal entry, which every
    /// device and collector reads. Pulls first; a lost race retries.
    pub async fn set_retention(&mut self, policy: Retention) -> Result<()> {
        let seq = self
            .append_namespace_entry(|commit| commit.retention = Some(policy))
            .await?;
        self.db.set_meta(
            RETENTION_META,
            &serde_json::to_string(&policy).expect("a policy always serialises"),
        )?;
        tracing::info!(%seq, ?policy, "set the retention policy");
        Ok(())
    }

    /// Appends an entry that changes no path, only what `fill` sets on it
    /// (a retention policy, a migration notice): pulls first (refusing a
    /// store the namespace left), and on a lost race pulls and tries again.
    /// The entry is folded into the local state; the caller records what
    /// it means.
    pub(super) async fn append_namespace_entry(
        &mut self,
        fill: impl Fn(&mut Commit),
    ) -> Result<pouch_backend::Seq> {
        self.check_store().await?;
        for _ in 0..MAX_COMMIT_ATTEMPTS {
            let mut report = SyncReport::default();
            self.pull(&mut report).await?;
            if let Some((seq, to)) = self.moved()? {
                return Err(Error::Moved {
                    seq,
                    to: Box::new(to),
                });
            }
            let time = self.clock.unix_secs();
            let mut commit = Commit {
                v: COMMIT_VERSION,
                retention: None,
                device: self.device.clone(),
                time: Some(time),
                changes: Vec::new(),
                moved_to: None,
                migration: None,
                missing: Vec::new(),
            };
            fill(&mut commit);
            let seq = self.db.cursor()?.next();
            match self.backend.append(seq, commit.encode()).await {
                Ok(()) => {
                    let origin = Origin {
                        device: self.device.clone(),
                        time: Some(time),
                    };
                    self.db.fold(seq, &origin, &[], true)?;
                    return Ok(seq);
                }
                Err(BackendError::SlotTaken(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Contended {
            attempts: MAX_COMMIT_ATTEMPTS,
        })
    }

    /// Every recorded version of `path`, oldest first, with whether the
    /// policy keeps it at `now`.
    pub fn kept_history(&self, path: &RelPath, now: i64) -> Result<Vec<Kept>> {
        let policy = self.retention()?;
        Ok(kept(&policy, self.db.history(path)?, now))
    }

    /// Files deleted at or under `folder` (everything when `None`) that
    /// retention still keeps: each path with its last version before the
    /// delete, newest deletes first.
    pub fn deleted_files(
        &self,
        folder: Option<&RelPath>,
        now: i64,
    ) -> Result<Vec<(RelPath, Kept)>> {
        let policy = self.retention()?;
        let mut out = Vec::new();
        for path in self.db.deleted_paths(folder)? {
            let versions = kept(&policy, self.db.history(&path)?, now);
            let Some(last) = versions.iter().rev().find(|k| {
                matches!(
                    k.revision.node,
                    Some(Node::File { .. } | Node::Symlink { .. })
                )
            }) else {
                continue;
            };
            if last.retained {
                out.push((path, last.clone()));
            }
        }
        out.sort_by(|a, b| b.1.replaced_at.cmp(&a.1.replaced_at).then(a.0.cmp(&b.0)));
        Ok(out)
    }
}

/// The retention rule over one path's recorded versions. A version's
/// replacement time is the next one's, never earlier than any version
/// before it (a device whose clock is behind cannot expire versions
/// early); a version of unknown time counts as replaced at the next known
/// time, or now.
fn kept(policy: &Retention, history: Vec<Revision>, now: i64) -> Vec<Kept> {
    let raw: Vec<Option<i64>> = history.iter().map(|r| r.time).collect();
    let times = retention::entry_times(&raw, now);
    let versions: Vec<Version> = history
        .iter()
        .enumerate()
        .map(|(i, r)| Version {
            replaced_at: (i + 1 < history.len()).then(|| times[i + 1]),
            content: matches!(r.node, Some(Node::File { .. } | Node::Symlink { .. })),
            deleted: r.node.is_none(),
        })
        .collect();
    let keep = retention::retained(policy, &versions, now);
    history
        .into_iter()
        .zip(versions)
        .zip(keep)
        .map(|((revision, version), retained)| Kept {
            revision,
            retained,
            replaced_at: version.replaced_at,
        })
        .collect()
}
