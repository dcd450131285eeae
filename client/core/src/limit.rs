//! Bandwidth limits on the whole transfer pipeline.
//!
//! [`Limited`] wraps a store: every block sent (`put_blocks`, the payload
//! as it goes on the wire) and every block read (`get_block`,
//! `get_blocks`, as it arrives) passes one [`Pacer`] per direction. Sends
//! are cut into pieces of about a quarter second's worth, so the link
//! sees a steady flow rather than a 16 MiB burst and a pause; reads are
//! paced as the batched read's stream is consumed, which slows the
//! connection itself (TCP flow control) once its buffers fill. The limits
//! can change at any moment (`pouch limit`): the next piece uses them.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use pouch_backend::{
    Backend, Block, BlockId, GcLease, JournalEntry, LeaseRequest, ReclaimReport, Result, Seq,
    Snapshot, StoreId, StoredBlock, SweepReport,
};
use tokio::time::Instant;

/// How much unused time a pacer may bank after being idle: a transfer
/// that starts after a pause may run ahead of the rate by this much.
const BURST: Duration = Duration::from_millis(250);

/// Paces one direction: each transfer books its share of time at the
/// rate, one after another, and waits until its booking ends.
#[derive(Debug)]
pub struct Pacer {
    /// Bytes per second; 0: unlimited.
    rate: AtomicU64,
    /// When the bookings made so far end.
    booked_until: Mutex<Option<Instant>>,
}

impl Pacer {
    fn new(rate: Option<u64>) -> Self {
        Self {
            rate: AtomicU64::new(rate.unwrap_or(0)),
            booked_until: Mutex::new(None),
        }
    }

    /// The rate in bytes per second; `None`: unlimited.
    pub fn rate(&self) -> Option<u64> {
        Some(self.rate.load(Ordering::Relaxed)).filter(|r| *r > 0)
    }

    /// Sets the rate; `None`: unlimited.
    pub fn set(&self, rate: Option<u64>) {
        self.rate.store(rate.unwrap_or(0), Ordering::Relaxed);
    }

    /// Accounts for `bytes` moved and waits until the rate allows them.
    pub async fn pass(&self, bytes: u64) {
        let Some(rate) = self.rate() else {
            return;
        };
        let wait_until = {
            let mut booked = self.booked_until.lock().expect("pacer lock");
            let now = Instant::now();
            // Time left unused while idle is banked only up to BURST.
            let start = booked.map_or(now, |at| at.max(now - BURST));
            let until = start + Duration::from_secs_f64(bytes as f64 / rate as f64);
            *booked = Some(until);
            until
        };
        tokio::time::sleep_until(wait_until).await;
    }

    /// The size of one piece of a send: a quarter second at the rate
    /// (64 KiB at least); unlimited, everything at once.
    fn piece(&self) -> u64 {
        match self.rate() {
            Some(rate) => (rate / 4).max(64 << 10),
            None => u64::MAX,
        }
    }
}

/// The upload and download pacers of one device.
#[derive(Debug)]
pub struct Limits {
    /// Blocks sent to the store.
    pub up: Pacer,
    /// Blocks read from the store.
    pub down: Pacer,
}

impl Limits {
    /// Limits at these rates (bytes per second; `None`: unlimited).
    pub fn new(up: Option<u64>, down: Option<u64>) -> Arc<Self> {
        Arc::new(Self {
            up: Pacer::new(up),
            down: Pacer::new(down),
        })
    }
}

/// A store whose block traffic keeps to [`Limits`].
pub struct Limited {
    inner: Arc<dyn Backend>,
    limits: Arc<Limits>,
}

impl Limited {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Backend>, limits: Arc<Limits>) -> Self {
        Self { inner, limits }
    }
}

#[async_trait]
impl Backend for Limited {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn put_blocks(&self, blocks: Vec<Block>) -> Result<()> {
        let piece = self.limits.up.piece();
        let mut batch = Vec::new();
        let mut bytes = 0u64;
        for block in blocks {
            let len = block.payload().len() as u64;
            if !batch.is_empty() && bytes + len > piece {
                self.inner.put_blocks(std::mem::take(&mut batch)).await?;
                self.limits.up.pass(bytes).await;
                bytes = 0;
            }
            bytes += len;
            batch.push(block);
        }
        if !batch.is_empty() {
            self.inner.put_blocks(batch).await?;
            self.limits.up.pass(bytes).await;
        }
        Ok(())
    }

    async fn get_block(&self, id: BlockId) -> Result<Bytes> {
        let bytes = self.inner.get_block(id).await?;
        self.limits.down.pass(bytes.len() as u64).await;
        Ok(bytes)
    }

    fn get_blocks(&self, ids: Vec<BlockId>) -> BoxStream<'_, Result<Bytes>> {
        let down = &self.limits.down;
        self.inner
            .get_blocks(ids)
            .then(move |block| async move {
                if let Ok(bytes) = &block {
                    down.pass(bytes.len() as u64).await;
                }
                block
            })
            .boxed()
    }

    async fn has_blocks(&self, ids: &[BlockId]) -> Result<Vec<bool>> {
        self.inner.has_blocks(ids).await
    }

    async fn delete_blocks(&self, ids: &[BlockId]) -> Result<()> {
        self.inner.delete_blocks(ids).await
    }

    async fn gc_lease(&self, request: LeaseRequest) -> Result<GcLease> {
        self.inner.gc_lease(request).await
    }

    async fn gc_list(&self, after: Option<BlockId>, limit: usize) -> Result<Vec<StoredBlock>> {
        self.inner.gc_list(after, limit).await
    }

    async fn gc_mark(&self, generation: u64, mark: &[BlockId], unmark: &[BlockId]) -> Result<()> {
        self.inner.gc_mark(generation, mark, unmark).await
    }

    async fn gc_sweep(
        &self,
        generation: u64,
        ids: &[BlockId],
        marked_by_ms: i64,
    ) -> Result<SweepReport> {
        self.inner.gc_sweep(generation, ids, marked_by_ms).await
    }

    async fn gc_reclaim(&self, generation: u64) -> Result<ReclaimReport> {
        self.inner.gc_reclaim(generation).await
    }

    async fn trim_journal(&self, through: Seq) -> Result<()> {
        self.inner.trim_journal(through).await
    }

    async fn append(&self, seq: Seq, data: Bytes) -> Result<()> {
        self.inner.append(seq, data).await
    }

    async fn read_journal(&self, after: Seq, limit: usize) -> Result<Vec<JournalEntry>> {
        self.inner.read_journal(after, limit).await
    }

    async fn wait_journal(&self, after: Seq, timeout: Duration) -> Result<Seq> {
        self.inner.wait_journal(after, timeout).await
    }

    async fn put_snapshot(&self, snapshot: Snapshot) -> Result<()> {
        self.inner.put_snapshot(snapshot).await
    }

    async fn get_snapshot(&self) -> Result<Option<Snapshot>> {
        self.inner.get_snapshot().await
    }

    async fn identity(&self) -> Result<Option<StoreId>> {
        self.inner.identity().await
    }

    async fn init_identity(&self, proposed: StoreId) -> Result<StoreId> {
        self.inner.init_identity(proposed).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bookings follow one another at the rate; idle time banks at most
    /// [`BURST`]. Virtual time: the test measures what the pacer asks for.
    #[tokio::test(start_paused = true)]
    async fn transfers_are_paced_at_the_rate() {
        let pacer = Pacer::new(Some(1 << 20));
        let start = Instant::now();
        for _ in 0..8 {
            pacer.pass(256 << 10).await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        // A long pause banks a quarter second, no more.
        tokio::time::sleep(Duration::from_secs(60)).await;
        let resumed = Instant::now();
        for _ in 0..4 {
            pacer.pass(256 << 10).await;
        }
        assert_eq!(resumed.elapsed(), Duration::from_millis(750));
        pacer.set(None);
        let free = Instant::now();
        pacer.pass(1 << 30).await;
        assert_eq!(free.elapsed(), Duration::ZERO);
        assert_eq!(pacer.piece(), u64::MAX);
        pacer.set(Some(64 << 10));
        assert_eq!(pacer.piece(), 64 << 10);
    }
}
