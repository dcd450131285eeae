//! Is the store at the configured place the one this device's state
//! belongs to? Checked before every sync: a store with another identity,
//! or none (an unmounted disk, a recreated folder, a bucket emptied by
//! hand), stops the sync before anything is read from it or written to it.
//!
//! A device binds its state to a store's identity at its first sync with
//! it. Once per engine (each process start) it also checks that the store
//! still holds the journal this device read: its head is not behind the
//! cursor, and its first entry is the one this device saw first.

use pouch_backend::{BackendExt, Seq, StoreId};

use super::Engine;
use crate::{Error, Result};

/// The local state's key for the hash of the store's first journal entry.
const FIRST_ENTRY_META: &str = "store_first_entry";

impl Engine {
    /// Checks the store before a sync; see the module docs.
    pub(super) async fn check_store(&mut self) -> Result<()> {
        let (store, state) = (self.backend.describe(), self.state_path.clone());
        let wrong = |reason: String| Error::WrongStore {
            store: store.clone(),
            reason,
            state: state.clone(),
        };
        let found = self.backend.identity().await?;
        let bound = self.db.bound_store()?;
        // A move this device followed: the new store takes the old's place.
        if let (Some(found), Some(next)) = (found, self.db.next_store()?)
            && found.to_string() == next
        {
            self.db.bind_store(&next)?;
            return Ok(());
        }
        let cursor = self.db.cursor()?;
        match (&bound, found) {
            (Some(bound), Some(found)) if *bound == found.to_string() => {}
            (Some(bound), Some(found)) => {
                return Err(wrong(format!(
                    "it is another store (identity {found}; this device's is {bound})"
                )));
            }
            (Some(_), None) => {
                return Err(wrong(
                    "it has no store identity: it is empty, or not a Pouch store".into(),
                ));
            }
            // The first sync with this store (or the first since identities).
            (None, Some(found)) => self.db.bind_store(&found.to_string())?,
            (None, None) => {
                // A store from before identities, or no store at all.
                let head = self.backend.journal_head().await?;
                if head == Seq::ZERO && cursor == Seq::ZERO {
                    return Err(Error::NoStore { store });
                }
                if head < cursor {
                    return Err(wrong(format!(
                        "its journal ends at entry {head}, but this device has read up to entry {cursor}"
                    )));
                }
                // Its journal is the one this device read: a store made
                // before identities. It gets one now.
                let id = self.backend.init_identity(StoreId::random()).await?;
                tracing::info!(%store, %id, "gave a store from before identities its identity");
                self.db.bind_store(&id.to_string())?;
            }
        }
        if !self.store_checked {
            self.check_history(cursor).await.map_err(|e| match e {
                Error::WrongStore { reason, .. } => wrong(reason),
                other => other,
            })?;
            self.store_checked = true;
        }
        Ok(())
    }

    /// The store still holds the journal this device read.
    async fn check_history(&self, cursor: Seq) -> Result<()> {
        if cursor == Seq::ZERO {
            return Ok(());
        }
        let wrong = |reason: String| Error::WrongStore {
            store: String::new(),
            reason,
            state: self.state_path.clone(),
        };
        let head = self.backend.journal_head().await?;
        if head < cursor {
            return Err(wrong(format!(
                "its journal ends at entry {head}, but this device has read up to entry {cursor}: it lost its history"
            )));
        }
        let first = match self.backend.read_journal(Seq::ZERO, 1).await {
            Ok(entries) => entries.into_iter().next(),
            // The first entries were folded into the snapshot and dropped:
            // the store's identity is the check left.
            Err(pouch_backend::Error::Trimmed { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let Some(first) = first else {
            return Err(wrong("its journal is empty".into()));
        };
        let hash = blake3::hash(&first.data).to_hex().to_string();
        match self.db.meta(FIRST_ENTRY_META)? {
            Some(seen) if seen == hash => Ok(()),
            Some(_) => Err(wrong(
                "its first journal entry is not the one this device read: it holds another history"
                    .into(),
            )),
            None => self.db.set_meta(FIRST_ENTRY_META, &hash),
        }
    }
}
