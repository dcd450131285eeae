//! The [`Backend`] trait.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use crate::{
    Block, BlockId, GcLease, JournalEntry, LeaseRequest, ReclaimReport, Result, Seq, Snapshot,
    StoreId, StoredBlock, SweepReport,
};

/// One namespace on one store: its blocks and its journal.
///
/// Object-safe and shared as `Arc<dyn Backend>`; every method may be called
/// concurrently from many tasks and, for stores shared between processes or
/// machines, concurrently with other clients. A call that returns an error
/// may or may not have taken effect unless its contract says otherwise;
/// every write is idempotent or create-only, so the caller can find out.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// A short human-readable description of the store ("embedded store at
    /// /path", "s3://bucket/prefix"), for logs and `pouch status`. Never
    /// contains credentials.
    fn describe(&self) -> String;

    /// Stores every block of `blocks`.
    ///
    /// One call may carry many blocks so that a backend can pack them into
    /// one object or one request. Idempotent: putting a block that is already
    /// stored succeeds and changes nothing. Every block is verified (decoded,
    /// then hashed) before anything is stored; if any block's bytes do not
    /// hash to its id the call fails with [`Error::Corrupt`](crate::Error::Corrupt)
    /// naming it. On `Ok`, every block is durable: it survives a crash of the
    /// client, of the store process and of the machine.
    async fn put_blocks(&self, blocks: Vec<Block>) -> Result<()>;

    /// Returns the raw bytes of block `id`, verified against the id.
    ///
    /// [`Error::BlockNotFound`](crate::Error::BlockNotFound) if it is not
    /// stored; [`Error::Corrupt`](crate::Error::Corrupt) if the stored bytes
    /// are damaged. Never returns bytes that do not hash to `id`.
    async fn get_block(&self, id: BlockId) -> Result<Bytes>;

    /// Reads many blocks: one item per id of `ids`, in that order, each
    /// what [`Backend::get_block`] would return for it (verified bytes, or
    /// `BlockNotFound` / `Corrupt` for that block alone). Any other error
    /// is an item after which the stream ends. Lazy: blocks are fetched as
    /// the stream is read, a bounded amount ahead, so memory stays bounded
    /// however many ids are asked for.
    ///
    /// Made for downloads: a backend fetches neighbouring blocks together
    /// (S3: one ranged GET per run of a pack; pouch-store: one streamed
    /// response) with several requests in flight. The default asks for
    /// the blocks one at a time.
    fn get_blocks(&self, ids: Vec<BlockId>) -> BoxStream<'_, Result<Bytes>> {
        futures_util::stream::iter(ids)
            .then(move |id| self.get_block(id))
            .boxed()
    }

    /// For each id, in order, whether the block is stored. Made for batches
    /// of thousands of ids; a backend answers them in few round trips.
    async fn has_blocks(&self, ids: &[BlockId]) -> Result<Vec<bool>>;

    /// Deletes blocks, unconditionally: for repair tools and tests. The
    /// garbage collector never calls it; it sweeps ([`Backend::gc_sweep`]),
    /// which deletes only what stayed marked through the grace period.
    /// Idempotent: deleting a block that is not stored succeeds. After
    /// `Ok`, `get_block` of any of them returns `BlockNotFound` (unless it
    /// is put again).
    async fn delete_blocks(&self, ids: &[BlockId]) -> Result<()>;

    /// Takes, renews or releases the garbage collector's lease (see
    /// [`crate::gc`]). Taking it fails with
    /// [`Error::Fenced`](crate::Error::Fenced) while another holder's is
    /// unexpired; renewing or releasing fails so once it expired or another
    /// took it. Every taking gets a higher generation than any before.
    async fn gc_lease(&self, request: LeaseRequest) -> Result<GcLease> {
        let _ = request;
        Err(gc_unsupported(self.describe()))
    }

    /// Up to `limit` stored blocks with ids above `after` (all when
    /// `None`), in id order, with their marks. Fewer than `limit` means
    /// the end.
    async fn gc_list(&self, after: Option<BlockId>, limit: usize) -> Result<Vec<StoredBlock>> {
        let _ = (after, limit);
        Err(gc_unsupported(self.describe()))
    }

    /// Marks the blocks of `mark` that are stored and unmarked (a block
    /// already marked keeps its older mark), by the store's clock now, and
    /// takes the marks of `unmark` away. Refused with
    /// [`Error::Fenced`](crate::Error::Fenced) unless lease `generation` is
    /// the current, unexpired one.
    ///
    /// Every backend that implements it also keeps a device from trusting
    /// a marked block, in one of two ways. A store with a lock of its own
    /// (pouch-store) *revives*: a `put_blocks` or `has_blocks` call naming
    /// a marked block takes its mark away before it answers, atomically
    /// with respect to [`Backend::gc_sweep`]. A store without one (S3)
    /// *hides*: `has_blocks` answers "not stored" for a marked copy and
    /// `put_blocks` stores a new, unmarked one, each deciding from a view
    /// of the marks no older than [`crate::gc::VIEW_WINDOW`]; a sweep
    /// deletes only the marked copy.
    async fn gc_mark(&self, generation: u64, mark: &[BlockId], unmark: &[BlockId]) -> Result<()> {
        let _ = (generation, mark, unmark);
        Err(gc_unsupported(self.describe()))
    }

    /// Deletes each block of `ids` that is still marked, with a mark made
    /// at or before `marked_by_ms` (store time); leaves every other one.
    /// Fenced like [`Backend::gc_mark`]. Returns what it deleted.
    async fn gc_sweep(
        &self,
        generation: u64,
        ids: &[BlockId],
        marked_by_ms: i64,
    ) -> Result<SweepReport> {
        let _ = (generation, ids, marked_by_ms);
        Err(gc_unsupported(self.describe()))
    }

    /// Gives back the space of what sweeps deleted and a trim dropped,
    /// where the store does not do so by itself: S3 deletes packs with
    /// nothing live left and rewrites mostly dead ones; an embedded store
    /// compacts its volumes. Fenced like [`Backend::gc_mark`]. The default,
    /// for stores that reclaim on their own (a pouch-store server compacts
    /// after sweeps and trims), has nothing to do.
    async fn gc_reclaim(&self, generation: u64) -> Result<ReclaimReport> {
        let _ = generation;
        Ok(ReclaimReport::default())
    }

    /// Appends journal entry `seq`, create-only.
    ///
    /// Succeeds only if no entry `seq` exists yet; of any number of racing
    /// writers of one slot exactly one succeeds and every other gets
    /// [`Error::SlotTaken`](crate::Error::SlotTaken). Entries are numbered
    /// from 1 without gaps: appending anything but the entry right after the
    /// last one fails with `SlotTaken` (if it exists) or
    /// [`Error::Gap`](crate::Error::Gap); `Seq::ZERO` is never an entry and
    /// is refused with [`Error::InvalidInput`](crate::Error::InvalidInput).
    /// On `Ok` the entry is durable and
    /// visible to every reader.
    async fn append(&self, seq: Seq, data: Bytes) -> Result<()>;

    /// Reads up to `limit` entries with a sequence number above `after`, in
    /// order and without gaps. Fewer than `limit` (possibly none) means the
    /// reader has reached the head as of the call. From before the trim
    /// point ([`Backend::trim_journal`]) it fails with
    /// [`Error::Trimmed`](crate::Error::Trimmed).
    async fn read_journal(&self, after: Seq, limit: usize) -> Result<Vec<JournalEntry>>;

    /// Waits until the journal has an entry above `after` or `timeout`
    /// passes, and returns the last entry number seen (above `after` if there
    /// is news). A backend that cannot be told of appends may return the
    /// current head at once; callers then poll at their own pace.
    async fn wait_journal(&self, after: Seq, timeout: Duration) -> Result<Seq>;

    /// Drops the journal's entries up to and including `through`, which the
    /// store's snapshot must fold: refused with
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) unless a
    /// snapshot with `seq >= through` is stored. Numbering is kept: the
    /// next append is still the one after the head; a `through` above the
    /// head (a store that receives a copy starting from a snapshot) makes
    /// it the head. Trimming no further than before changes nothing. After
    /// `Ok`, [`Backend::read_journal`] from before `through` fails with
    /// [`Error::Trimmed`](crate::Error::Trimmed), durably.
    async fn trim_journal(&self, through: Seq) -> Result<()> {
        let _ = through;
        Err(crate::Error::Unsupported(format!(
            "{} cannot drop journal entries",
            self.describe()
        )))
    }

    /// Stores `snapshot` as the namespace's latest, replacing the previous
    /// one whole (readers see the old or the new one, never a mix).
    async fn put_snapshot(&self, snapshot: Snapshot) -> Result<()>;

    /// The latest snapshot, `None` if none was ever put.
    async fn get_snapshot(&self) -> Result<Option<Snapshot>>;

    /// The store's identity, `None` when it has none: nothing made a Pouch
    /// store here (a fresh namespace, an empty folder, a bucket emptied by
    /// hand), or a store from before identities. Never changes once set.
    async fn identity(&self) -> Result<Option<StoreId>>;

    /// Gives the store identity `proposed` unless it has one, and returns
    /// the identity in force (`proposed`, or the one already there).
    /// Create-only: of racing callers exactly one id wins, and all of them
    /// get it back. Durable on `Ok`.
    async fn init_identity(&self, proposed: StoreId) -> Result<StoreId>;
}

/// The answer of a backend that has no garbage collection yet.
fn gc_unsupported(store: String) -> crate::Error {
    crate::Error::Unsupported(format!(
        "{store} has no garbage collection yet; nothing was deleted"
    ))
}

/// Conveniences built on the required methods.
#[async_trait]
pub trait BackendExt: Backend {
    /// The last entry of the journal (`Seq::ZERO` if it is empty).
    async fn journal_head(&self) -> Result<Seq> {
        self.wait_journal(Seq::ZERO, Duration::ZERO).await
    }

    /// Where the journal's entries begin: after `Seq::ZERO`, or after the
    /// trim point when entries were dropped ([`Backend::trim_journal`]).
    async fn journal_start(&self) -> Result<Seq> {
        match self.read_journal(Seq::ZERO, 1).await {
            Ok(_) => Ok(Seq::ZERO),
            Err(crate::Error::Trimmed { through }) => Ok(through),
            Err(e) => Err(e),
        }
    }
}

impl<B: Backend + ?Sized> BackendExt for B {}

/// Ends a stream of [`Backend::get_blocks`] items after its first error
/// that is not one block's own (`BlockNotFound`, `Corrupt`), as the
/// contract says; for implementations that fetch several runs at once.
pub fn end_after_fatal<'a, S>(
    items: S,
) -> impl futures_util::Stream<Item = Result<Bytes>> + Send + 'a
where
    S: futures_util::Stream<Item = Result<Bytes>> + Send + 'a,
{
    items.scan(false, |ended, item| {
        if *ended {
            return std::future::ready(None);
        }
        if let Err(e) = &item
            && !matches!(
                e,
                crate::Error::BlockNotFound(_) | crate::Error::Corrupt { .. }
            )
        {
            *ended = true;
        }
        std::future::ready(Some(item))
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn the_trait_is_object_safe() {
        fn takes(_: Option<Arc<dyn Backend>>) {}
        takes(None);
    }
}
