//! Two stores behind one [`Backend`], for switching stores without a pause
//! (`pouch migrate`), the way Dropbox moved into Magic Pocket.
//!
//! While a migration runs ([`Dual::migrating`]) the old store stays the
//! authority: every read and every journal decision comes from it. Blocks,
//! journal entries and snapshots written through the device are written to
//! the new store too (double writes), after the old store took them; a
//! failure on the new store does not fail the sync (the copy fills the gap
//! later, and the verification before cutover proves it did). An entry is
//! mirrored only after the blocks it names are in the new store, so the
//! new store's journal is always a prefix of the old one's that names only
//! blocks it holds. A share of
//! block reads is repeated against the new store and compared (shadow
//! reads); a mismatch is logged and counted, and the old store's bytes are
//! served. A block the new store lacks is counted apart: other devices
//! write only the old store, so their newest blocks reach the new one with
//! the next copy.
//!
//! After the cutover ([`Dual::falling_back`]) the new store is the only one
//! written and read, and a block it lacks is read from the old one (a
//! fallback that `pouch migrate finish` retires).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use pouch_backend::{
    Backend, Block, BlockId, Error as BackendError, JournalEntry, Result, Seq, Snapshot, StoreId,
};

/// The role a pair of stores plays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Role {
    /// Double writes and shadow reads, before the switch.
    #[default]
    Migrating,
    /// The new store alone, the old one read for what it lacks.
    FallingBack,
}

/// What the pair of stores has seen, for `pouch status` and the tray.
#[derive(Debug, Default)]
pub struct DualStats {
    /// Which role the pair plays.
    mode: Role,
    /// The other store: the target, or the old store read as a fallback.
    other: String,
    secondary_write_failures: AtomicU64,
    journal_entries_mirrored: AtomicU64,
    shadow_reads: AtomicU64,
    shadow_missing: AtomicU64,
    shadow_mismatches: AtomicU64,
    fallback_reads: AtomicU64,
}

/// A copy of [`DualStats`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DualCounts {
    /// Which role the pair plays.
    pub mode: Role,
    /// The other store: the target, or the old store read as a fallback.
    pub other: String,
    /// Writes the new store failed (the copy makes them up).
    pub secondary_write_failures: u64,
    /// Journal entries written to both stores.
    pub journal_entries_mirrored: u64,
    /// Block reads repeated against the new store.
    pub shadow_reads: u64,
    /// Shadow reads of blocks the new store does not have yet: written by
    /// another device since the copy passed (the next copy brings them;
    /// the check before cutover insists on every one).
    pub shadow_missing: u64,
    /// Shadow reads the new store answered wrongly: other bytes, a
    /// corrupt block, an error.
    pub shadow_mismatches: u64,
    /// Blocks the new store lacked and the old one served.
    pub fallback_reads: u64,
}

impl DualStats {
    /// The counts now.
    pub fn counts(&self) -> DualCounts {
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        DualCounts {
            mode: self.mode,
            other: self.other.clone(),
            secondary_write_failures: get(&self.secondary_write_failures),
            journal_entries_mirrored: get(&self.journal_entries_mirrored),
            shadow_reads: get(&self.shadow_reads),
            shadow_missing: get(&self.shadow_missing),
            shadow_mismatches: get(&self.shadow_mismatches),
            fallback_reads: get(&self.fallback_reads),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Which of the two roles the pair plays.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// Old store first, every write mirrored to the new one, a share of
    /// reads shadowed.
    Migrating {
        /// Share of block reads repeated on the new store, 0 to 1.
        shadow_share: f64,
    },
    /// New store only, old store read when the new one lacks a block.
    FallingBack,
}

/// The most entries a mirrored append brings over itself before its own;
/// a longer gap is the copy's work.
const CATCH_UP_MAX: u64 = 64;

/// Two stores as one; see the module docs.
pub struct Dual {
    primary: Arc<dyn Backend>,
    secondary: Arc<dyn Backend>,
    mode: Mode,
    reads: AtomicU64,
    stats: Arc<DualStats>,
}

impl Dual {
    /// During a migration from `old` to `new`: reads from `old`, writes to
    /// both, `shadow_share` of block reads repeated on `new`.
    pub fn migrating(old: Arc<dyn Backend>, new: Arc<dyn Backend>, shadow_share: f64) -> Self {
        Self::new(
            old,
            new,
            Mode::Migrating {
                shadow_share: shadow_share.clamp(0.0, 1.0),
            },
        )
    }

    /// After the cutover: `new` alone, with `old` read for blocks `new`
    /// lacks.
    pub fn falling_back(new: Arc<dyn Backend>, old: Arc<dyn Backend>) -> Self {
        Self::new(new, old, Mode::FallingBack)
    }

    fn new(primary: Arc<dyn Backend>, secondary: Arc<dyn Backend>, mode: Mode) -> Self {
        let stats = Arc::new(DualStats {
            mode: match mode {
                Mode::Migrating { .. } => Role::Migrating,
                Mode::FallingBack => Role::FallingBack,
            },
            other: secondary.describe(),
            ..DualStats::default()
        });
        Self {
            primary,
            secondary,
            mode,
            reads: AtomicU64::new(0),
            stats,
        }
    }

    /// The counters, shared with whoever reports them.
    pub fn stats(&self) -> Arc<DualStats> {
        self.stats.clone()
    }

    fn mirrors_writes(&self) -> bool {
        matches!(self.mode, Mode::Migrating { .. })
    }

    /// On a share of reads, reads block `id` from the new store too and
    /// counts (and logs) a difference from `bytes`.
    async fn maybe_shadow(&self, id: BlockId, bytes: &Bytes) {
        if !self.shadow_this_read() {
            return;
        }
        bump(&self.stats.shadow_reads);
        let mismatch = match self.secondary.get_block(id).await {
            Ok(shadow) if shadow == *bytes => None,
            Ok(_) => Some("other bytes".to_owned()),
            Err(BackendError::BlockNotFound(_)) => {
                bump(&self.stats.shadow_missing);
                None
            }
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = mismatch {
            bump(&self.stats.shadow_mismatches);
            tracing::error!(
                "migration: shadow read of block {id} from {} does not match: {why}",
                self.secondary.describe()
            );
        }
    }

    /// Whether this read is one of the shadowed share: exactly `share` of
    /// all reads, spread evenly (read n is shadowed when n·share crosses an
    /// integer), with no randomness to make runs differ.
    fn shadow_this_read(&self) -> bool {
        let Mode::Migrating { shadow_share } = self.mode else {
            return false;
        };
        let n = self.reads.fetch_add(1, Ordering::Relaxed) + 1;
        (n as f64 * shadow_share).floor() > ((n - 1) as f64 * shadow_share).floor()
    }

    /// Mirrors a write to the secondary store; its failure is counted and
    /// logged, not returned.
    fn mirrored(&self, what: &str, outcome: Result<()>) {
        if let Err(e) = outcome {
            bump(&self.stats.secondary_write_failures);
            tracing::warn!(
                "migration: {what} not written to {} ({e}); the copy will bring it",
                self.secondary.describe()
            );
        }
    }

    /// Appends `entry` to the new store after the blocks it names that the
    /// new store lacks (a double write of blocks may have failed): an entry
    /// there never names a block it does not have, but for blocks the old
    /// store no longer has either (collected: only expired versions named
    /// them).
    async fn mirror(&self, entry: &JournalEntry) -> Result<()> {
        let ids: Vec<BlockId> = crate::migrate::blocks_of(entry)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        if !ids.is_empty() {
            let present = self.secondary.has_blocks(&ids).await?;
            let mut missing = Vec::new();
            for (id, here) in ids.iter().zip(present) {
                if !here {
                    match self.primary.get_block(*id).await {
                        Ok(raw) => missing.push(Block::encode(raw)),
                        // Collected there (only expired versions named it)
                        // or lost: the old store cannot give it, and the
                        // entry still goes, so the journals stay one.
                        Err(BackendError::BlockNotFound(_)) => {
                            tracing::debug!(block = %id, "not in the old store; mirrored without it");
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            if !missing.is_empty() {
                self.secondary.put_blocks(missing).await?;
            }
        }
        self.secondary.append(entry.seq, entry.data.clone()).await
    }

    /// Mirrors the old store's entries after `head` up to `upto`.
    async fn catch_up(&self, head: Seq, upto: Seq) -> Result<()> {
        let entries = match self
            .primary
            .read_journal(head, (upto.0 - head.0) as usize)
            .await
        {
            Ok(entries) => entries,
            // The old store dropped what the new one lacks: only a copy
            // (which starts the new store from the snapshot) brings it up.
            Err(BackendError::Trimmed { through }) => {
                tracing::warn!(%through, "the old store dropped entries the new one lacks; run `pouch migrate copy`");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        for entry in entries.into_iter().filter(|e| e.seq <= upto) {
            match self.mirror(&entry).await {
                Ok(()) => bump(&self.stats.journal_entries_mirrored),
                // A copy running at the same time got there first.
                Err(BackendError::SlotTaken(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Backend for Dual {
    fn describe(&self) -> String {
        match self.mode {
            Mode::Migrating { .. } => format!(
                "{} (migrating to {})",
                self.primary.describe(),
                self.secondary.describe()
            ),
            // The fallback is a detail: the new store is the store.
            Mode::FallingBack => self.primary.describe(),
        }
    }

    async fn put_blocks(&self, blocks: Vec<Block>) -> Result<()> {
        if !self.mirrors_writes() {
            return self.primary.put_blocks(blocks).await;
        }
        // The old store first: it is the authority until the cutover.
        self.primary.put_blocks(blocks.clone()).await?;
        let outcome = self.secondary.put_blocks(blocks).await;
        self.mirrored("blocks", outcome);
        Ok(())
    }

    async fn get_block(&self, id: BlockId) -> Result<Bytes> {
        match self.mode {
            Mode::FallingBack => match self.primary.get_block(id).await {
                Err(BackendError::BlockNotFound(_)) => {
                    let bytes = self.secondary.get_block(id).await?;
                    bump(&self.stats.fallback_reads);
                    Ok(bytes)
                }
                other => other,
            },
            Mode::Migrating { .. } => {
                let bytes = self.primary.get_block(id).await?;
                self.maybe_shadow(id, &bytes).await;
                Ok(bytes)
            }
        }
    }

    /// The old store's batched read, with the same fallback and shadow
    /// reads as `get_block`, block by block.
    fn get_blocks(&self, ids: Vec<BlockId>) -> BoxStream<'_, Result<Bytes>> {
        let asked = futures_util::stream::iter(ids.clone());
        self.primary
            .get_blocks(ids)
            .zip(asked)
            .then(move |(item, id)| async move {
                match (&self.mode, item) {
                    (Mode::FallingBack, Err(BackendError::BlockNotFound(_))) => {
                        let bytes = self.secondary.get_block(id).await?;
                        bump(&self.stats.fallback_reads);
                        Ok(bytes)
                    }
                    (Mode::Migrating { .. }, Ok(bytes)) => {
                        self.maybe_shadow(id, &bytes).await;
                        Ok(bytes)
                    }
                    (_, item) => item,
                }
            })
            .boxed()
    }

    async fn has_blocks(&self, ids: &[BlockId]) -> Result<Vec<bool>> {
        // The primary alone: after the cutover a block the new store lacks
        // then looks missing and is uploaded there, rather than left to the
        // old store that `finish` retires.
        self.primary.has_blocks(ids).await
    }

    async fn delete_blocks(&self, ids: &[BlockId]) -> Result<()> {
        self.primary.delete_blocks(ids).await?;
        if self.mirrors_writes() {
            let outcome = self.secondary.delete_blocks(ids).await;
            self.mirrored("a delete", outcome);
        }
        Ok(())
    }

    async fn gc_lease(
        &self,
        _request: pouch_backend::LeaseRequest,
    ) -> Result<pouch_backend::GcLease> {
        // Two stores, each with its own marks: collecting from one while
        // blocks are copied to the other could sweep what the copy needs.
        Err(pouch_backend::Error::Unsupported(format!(
            "{} is moving between stores; collect garbage after the move is finished",
            self.describe()
        )))
    }

    async fn append(&self, seq: Seq, data: Bytes) -> Result<()> {
        self.primary.append(seq, data.clone()).await?;
        if !self.mirrors_writes() {
            return Ok(());
        }
        let entry = JournalEntry { seq, data };
        let outcome = match self.mirror(&entry).await {
            // Other devices committed to the old store alone since (or an
            // earlier mirror failed): bring those entries over first, when
            // they are few.
            Err(BackendError::Gap { head, .. }) if seq.0 - head.0 <= CATCH_UP_MAX => {
                match self.catch_up(head, Seq(seq.0 - 1)).await {
                    Ok(()) => self.secondary.append(seq, entry.data).await,
                    Err(e) => Err(e),
                }
            }
            other => other,
        };
        match outcome {
            Ok(()) => bump(&self.stats.journal_entries_mirrored),
            // The copy wrote it already, or the new store is far behind
            // (the copy has not reached this point): the copy's journal
            // pass checks and fills both cases.
            Err(BackendError::SlotTaken(_) | BackendError::Gap { .. }) => {}
            Err(e) => self.mirrored("a journal entry", Err(e)),
        }
        Ok(())
    }

    async fn read_journal(&self, after: Seq, limit: usize) -> Result<Vec<JournalEntry>> {
        self.primary.read_journal(after, limit).await
    }

    async fn wait_journal(&self, after: Seq, timeout: Duration) -> Result<Seq> {
        self.primary.wait_journal(after, timeout).await
    }

    async fn put_snapshot(&self, snapshot: Snapshot) -> Result<()> {
        if !self.mirrors_writes() {
            return self.primary.put_snapshot(snapshot).await;
        }
        self.primary.put_snapshot(snapshot.clone()).await?;
        let outcome = self.secondary.put_snapshot(snapshot).await;
        self.mirrored("the snapshot", outcome);
        Ok(())
    }

    async fn get_snapshot(&self) -> Result<Option<Snapshot>> {
        self.primary.get_snapshot().await
    }

    /// Trims the store in charge; a mirror that holds the entries is
    /// trimmed too (one behind is brought up by a copy, which starts it
    /// from the snapshot).
    async fn trim_journal(&self, through: Seq) -> Result<()> {
        self.primary.trim_journal(through).await?;
        if self.mirrors_writes() {
            let outcome =
                match pouch_backend::BackendExt::journal_head(self.secondary.as_ref()).await {
                    Ok(head) if head >= through => self.secondary.trim_journal(through).await,
                    Ok(_) => Ok(()),
                    Err(e) => Err(e),
                };
            self.mirrored("a journal trim", outcome);
        }
        Ok(())
    }

    /// The pair is the store in charge: the old one while migrating, the
    /// new one after the switch. The other keeps its own identity.
    async fn identity(&self) -> Result<Option<StoreId>> {
        self.primary.identity().await
    }

    async fn init_identity(&self, proposed: StoreId) -> Result<StoreId> {
        self.primary.init_identity(proposed).await
    }
}
