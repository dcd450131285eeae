//! The cutover of a migration, the most safety-critical step: the freeze
//! entry that ends the old store's journal, the check a device makes before
//! it follows a move, and what both do to a device's config.
//!
//! Appends are create-only and in order, so once the freeze entry is in,
//! no device can commit to the old store: one racing it loses the slot,
//! pulls, and sees the move.

use pouch_backend::{Backend, BackendExt, Seq};
use pouch_config::{BackendConfig, Config};

use crate::commit::{COMMIT_VERSION, Commit};
use crate::location::{ConfigLocation, StoreLocation};
use crate::{Error, Result};

/// Ends `from`'s journal with an entry naming `to` (no secrets: followers
/// bring their own), made by `device` at `time`. Idempotent: when the last
/// entry already names `to`, returns it. Fails with [`Error::Moved`] when
/// the journal already moved somewhere else.
pub async fn freeze(
    from: &dyn Backend,
    device: &str,
    to: &StoreLocation,
    time: i64,
) -> Result<Seq> {
    loop {
        let head = from.journal_head().await?;
        if let Some(last) = from
            .read_journal(Seq(head.0.saturating_sub(1)), 1)
            .await?
            .first()
            && let Ok(commit) = Commit::decode(last.seq.0, &last.data)
            && let Some(already) = commit.moved_to
        {
            if &already == to {
                return Ok(last.seq);
            }
            return Err(Error::Moved {
                seq: last.seq.0,
                to: Box::new(already),
            });
        }
        let entry = Commit {
            v: COMMIT_VERSION,
            retention: None,
            device: device.to_owned(),
            time: Some(time),
            changes: Vec::new(),
            moved_to: Some(to.clone()),
            migration: None,
            missing: Vec::new(),
        };
        match from.append(head.next(), entry.encode()).await {
            Ok(()) => return Ok(head.next()),
            // Another device committed first: its entry must be copied too,
            // and the freeze goes after it.
            Err(pouch_backend::Error::SlotTaken(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether a device may follow a move announced at entry `seq` to
/// `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Follow {
    /// The target holds the very journal of the old store up to the move:
    /// follow it.
    Ready,
    /// The copy to the target has not reached the move yet: wait.
    NotCopiedYet {
        /// Entries the target has.
        has: u64,
        /// Entries it must have.
        needs: u64,
    },
    /// The target holds another history: never follow (a hostile or
    /// mistaken move entry).
    OtherHistory {
        /// The first entry that differs.
        at: u64,
    },
}

/// Checks that `target` (opened with this device's own credentials)
/// answers and holds the same journal as `from`, entry for entry, up to
/// the move at entry `seq`. An error means the target cannot be used from
/// here; nothing may change then.
pub async fn can_follow(from: &dyn Backend, target: &dyn Backend, seq: u64) -> Result<Follow> {
    const PAGE: usize = 256;
    let head = target.journal_head().await?;
    if head.0 < seq {
        return Ok(Follow::NotCopiedYet {
            has: head.0,
            needs: seq,
        });
    }
    let mut cursor = from
        .journal_start()
        .await?
        .max(target.journal_start().await?);
    while cursor.0 < seq {
        let limit = PAGE.min((seq - cursor.0) as usize);
        let (ours, theirs) = (
            from.read_journal(cursor, limit).await?,
            target.read_journal(cursor, limit).await?,
        );
        if let Some(at) = ours
            .iter()
            .zip(&theirs)
            .find(|(a, b)| a != b)
            .map(|(a, _)| a.seq.0)
        {
            return Ok(Follow::OtherHistory { at });
        }
        if ours.len() != theirs.len() || ours.is_empty() {
            return Ok(Follow::OtherHistory { at: cursor.0 + 1 });
        }
        cursor = ours.last().expect("not empty").seq;
    }
    Ok(Follow::Ready)
}

/// Points `config` at `to`, the store the namespace moved to, keeping the
/// old store as the read fallback until `pouch migrate finish`. A migration
/// this device had begun elsewhere is moot now.
pub fn follow_in_config(config: &mut Config, to: BackendConfig) {
    config.previous_backend = Some(std::mem::replace(&mut config.backend, to));
    config.migration = None;
}

/// The config after this device's own switch to `target`: double writes
/// end, the new store is the store and the old one a read fallback. If
/// this device's daemon followed the move already (it saw the freeze and
/// the copy), only the full settings (token included) are put back.
pub fn switch_in_config(config: &mut Config, target: BackendConfig) {
    if StoreLocation::of(&config.backend) == StoreLocation::of(&target) {
        config.backend = target;
    } else {
        config.previous_backend = Some(std::mem::replace(&mut config.backend, target));
    }
    config.migration = None;
}
