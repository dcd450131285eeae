//! Migrations announced in the journal (`pouch migrate start` and
//! `cancel` write the entries): what this device pulled, what it double
//! writes to, and the entry that announces or stops one.
//!
//! Once a migration is announced, every device that may write to the new
//! store (on the server it already uses, or its user agreed with `pouch
//! migrate join`) writes there too, not only the one that started it, so
//! that the switch finds the new store holding what every device wrote
//! meanwhile. A sync that pulls an announcement it can act on by itself
//! stops with [`Error::MigrationChanged`]; the caller reopens its stores
//! (joining or leaving the migration in its config) and syncs again.

use super::{Engine, MIGRATION_META};
use crate::Result;
use crate::commit::MigrationNotice;
use crate::location::StoreLocation;

impl Engine {
    /// The last migration notice this device pulled: the entry, and the
    /// store announced (`None`: the migration was stopped). `None` when no
    /// entry ever announced one (or a switch ended it).
    pub fn announced_migration(&self) -> Result<Option<(u64, Option<StoreLocation>)>> {
        Ok(self
            .db
            .meta(MIGRATION_META)?
            .and_then(|text| serde_json::from_str(&text).ok()))
    }

    /// Tells the engine which store this device writes to beside its own
    /// (its config's migration), so that it notices an announcement that
    /// differs; or the announced store it cannot write to (no credentials),
    /// so that it stops asking.
    pub fn set_migrating(&mut self, to: Option<StoreLocation>) {
        self.migrating = to;
    }

    /// The notice pulled, if it asks for a change this device makes by
    /// itself: joining a migration to a store on its own server (`Some`),
    /// or leaving one that was stopped (`None`). Joining one elsewhere
    /// waits for its user (`pouch migrate join`).
    pub fn migration_change(&self) -> Result<Option<(u64, Option<StoreLocation>)>> {
        let Some((seq, announced)) = self.announced_migration()? else {
            return Ok(None);
        };
        let acts = match (&announced, &self.migrating) {
            (Some(to), now) => {
                now.as_ref() != Some(to)
                    && !self.here.as_ref().is_some_and(|here| here == to)
                    && self.follows_by_itself(to)
            }
            (None, Some(_)) => true,
            (None, None) => false,
        };
        Ok(acts.then_some((seq, announced)))
    }

    /// Appends an entry announcing a migration to `to`, or (`None`)
    /// stopping the one under way. Pulls first; a lost race retries.
    pub async fn announce_migration(&mut self, to: Option<StoreLocation>) -> Result<u64> {
        let notice = MigrationNotice { to: to.clone() };
        let seq = self
            .append_namespace_entry(|commit| commit.migration = Some(notice.clone()))
            .await?;
        self.note_migration(seq.0, to.as_ref())?;
        tracing::info!(%seq, to = ?to, "announced a migration");
        Ok(seq.0)
    }

    /// Records the notice of entry `seq`.
    pub(super) fn note_migration(&self, seq: u64, to: Option<&StoreLocation>) -> Result<()> {
        self.db.set_meta(
            MIGRATION_META,
            &serde_json::to_string(&(seq, to)).expect("a store location always serialises"),
        )
    }

    /// Forgets the notice: a switch ended the migration.
    pub(super) fn forget_migration(&self) -> Result<()> {
        self.db.delete_meta(MIGRATION_META)
    }
}
