//! The embedded backend: the storage layer used in-process on a local folder.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pouch_backend::{
    Backend, Block, BlockId, Error, GcLease, JournalEntry, LeaseRequest, ReclaimReport, Result,
    Seq, Snapshot, StoreId, StoredBlock, SweepReport,
};
use tokio::time::Instant;

use crate::storage::{Store, StoreOptions};

/// How often a waiter looks for appends made by other processes, which
/// cannot notify it directly.
const CROSS_PROCESS_POLL: Duration = Duration::from_millis(50);

/// [`Backend`] over a [`Store`] opened in this process.
///
/// The store does blocking file and SQLite I/O, so every call runs on
/// tokio's blocking pool.
#[derive(Debug, Clone)]
pub struct EmbeddedBackend {
    store: Arc<Store>,
    /// Whether a collection's reclaim compacts the store (in-process use,
    /// where nothing else would; a server has a compaction worker, woken
    /// by sweeps and trims, instead).
    compact_on_reclaim: bool,
}

/// A volume is rewritten after a collection once this share of it is dead.
const RECLAIM_COMPACT_THRESHOLD: f64 = 0.3;

impl EmbeddedBackend {
    /// Opens (creating if needed) the store in `dir` with default options,
    /// for use in this process: a collection compacts the store at its end.
    pub fn open(dir: &Path) -> Result<Self> {
        let mut backend = Self::new(Arc::new(Store::open(dir, StoreOptions::default())?));
        backend.compact_on_reclaim = true;
        Ok(backend)
    }

    /// Wraps an opened store (compaction is the caller's).
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            compact_on_reclaim: false,
        }
    }

    /// The store underneath, for figures and maintenance.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Block `id` in its stored encoding, verified; see
    /// [`Store::get_block_encoded`].
    pub async fn get_block_encoded(&self, id: BlockId) -> Result<Block> {
        self.blocking(move |store| store.get_block_encoded(id))
            .await
    }

    /// `put_blocks` for blocks already verified one by one (by the server
    /// as they streamed in): stored without hashing them again.
    #[cfg(feature = "server")]
    pub(crate) async fn put_verified_blocks(&self, blocks: Vec<Block>) -> Result<()> {
        self.blocking(move |store| store.put_verified_blocks(blocks))
            .await
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(Error::internal("running a store operation"))?
    }

    /// Whether folder `dir` holds a store (its identity, or the index of a
    /// store from before identities), without opening or creating
    /// anything.
    pub fn exists(dir: &Path) -> bool {
        crate::storage::identity_path(dir).is_file() || dir.join("index.sqlite").is_file()
    }

    /// How [`Backend::describe`] names the store in folder `dir`, for
    /// callers that must not open it (opening creates a missing store).
    pub fn description(dir: &Path) -> String {
        format!("embedded store at {}", dir.display())
    }
}

#[async_trait]
impl Backend for EmbeddedBackend {
    fn describe(&self) -> String {
        Self::description(self.store.dir())
    }

    async fn put_blocks(&self, blocks: Vec<Block>) -> Result<()> {
        self.blocking(move |store| store.put_blocks(blocks)).await
    }

    async fn get_block(&self, id: BlockId) -> Result<Bytes> {
        self.blocking(move |store| store.get_block(id)).await
    }

    async fn has_blocks(&self, ids: &[BlockId]) -> Result<Vec<bool>> {
        let ids = ids.to_vec();
        self.blocking(move |store| store.has_blocks(&ids)).await
    }

    async fn delete_blocks(&self, ids: &[BlockId]) -> Result<()> {
        let ids = ids.to_vec();
        self.blocking(move |store| store.delete_blocks(&ids)).await
    }

    async fn gc_lease(&self, request: LeaseRequest) -> Result<GcLease> {
        self.blocking(move |store| store.gc_lease(&request)).await
    }

    async fn gc_list(&self, after: Option<BlockId>, limit: usize) -> Result<Vec<StoredBlock>> {
        self.blocking(move |store| store.gc_list(after, limit))
            .await
    }

    async fn gc_mark(&self, generation: u64, mark: &[BlockId], unmark: &[BlockId]) -> Result<()> {
        let (mark, unmark) = (mark.to_vec(), unmark.to_vec());
        self.blocking(move |store| store.gc_mark(generation, &mark, &unmark))
            .await
    }

    async fn gc_sweep(
        &self,
        generation: u64,
        ids: &[BlockId],
        marked_by_ms: i64,
    ) -> Result<SweepReport> {
        let ids = ids.to_vec();
        self.blocking(move |store| store.gc_sweep(generation, &ids, marked_by_ms))
            .await
    }

    /// Compacts the volumes the collection's sweeps and journal trim left
    /// mostly dead, when this process is the only one that would.
    async fn gc_reclaim(&self, generation: u64) -> Result<ReclaimReport> {
        if !self.compact_on_reclaim {
            return Ok(ReclaimReport::default());
        }
        self.blocking(move |store| {
            store.gc_check_lease(generation)?;
            let compacted = store.compact(RECLAIM_COMPACT_THRESHOLD)?;
            tracing::info!(
                volumes = compacted.volumes,
                bytes = compacted.bytes_reclaimed,
                "compacted after a collection"
            );
            Ok(ReclaimReport {
                packs_deleted: compacted.volumes,
                packs_rewritten: compacted.volumes,
                bytes_rewritten: 0,
                bytes_freed: compacted.bytes_reclaimed,
            })
        })
        .await
    }

    async fn append(&self, seq: Seq, data: Bytes) -> Result<()> {
        self.blocking(move |store| store.append(seq, &data)).await
    }

    async fn trim_journal(&self, through: Seq) -> Result<()> {
        self.blocking(move |store| store.trim_journal(through))
            .await
    }

    async fn read_journal(&self, after: Seq, limit: usize) -> Result<Vec<JournalEntry>> {
        self.blocking(move |store| store.read_journal(after, limit))
            .await
    }

    async fn wait_journal(&self, after: Seq, timeout: Duration) -> Result<Seq> {
        let deadline = Instant::now() + timeout;
        let mut appended_here = self.store.subscribe_head();
        loop {
            appended_here.mark_unchanged();
            let head = self.blocking(Store::journal_head).await?;
            let now = Instant::now();
            if head > after || now >= deadline {
                return Ok(head);
            }
            let nap = CROSS_PROCESS_POLL.min(deadline - now);
            tokio::select! {
                _ = appended_here.changed() => {}
                _ = tokio::time::sleep(nap) => {}
            }
        }
    }

    async fn put_snapshot(&self, snapshot: Snapshot) -> Result<()> {
        self.blocking(move |store| store.put_snapshot(&snapshot))
            .await
    }

    async fn identity(&self) -> Result<Option<StoreId>> {
        self.blocking(|store| store.identity()).await
    }

    async fn init_identity(&self, proposed: StoreId) -> Result<StoreId> {
        self.blocking(move |store| store.init_identity(proposed))
            .await
    }

    async fn get_snapshot(&self) -> Result<Option<Snapshot>> {
        self.blocking(Store::get_snapshot).await
    }
}
