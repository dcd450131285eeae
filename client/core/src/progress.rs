//! Where long work reports how far it came (a progress bar, log lines,
//! the daemon's status).

/// What is moving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// A sync sends this device's changes.
    Uploading,
    /// A sync brings other devices' changes here.
    Downloading,
    /// A migration copies blocks to the new store.
    Copying,
    /// A migration reads every block back from the new store.
    Verifying,
    /// The garbage collector goes through the stored blocks (counted in
    /// blocks, total unknown).
    Listing,
    /// The garbage collector deletes blocks (counted in blocks).
    Sweeping,
}

impl Phase {
    /// Its name, as progress lines show it.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Uploading => "uploading",
            Phase::Downloading => "downloading",
            Phase::Copying => "copying",
            Phase::Verifying => "verifying",
            Phase::Listing => "listing",
            Phase::Sweeping => "sweeping",
        }
    }

    /// Whether its amounts are bytes (else blocks).
    pub fn counts_bytes(self) -> bool {
        !matches!(self, Phase::Listing | Phase::Sweeping)
    }
}

/// Where a sync or a copy reports its progress.
pub trait Progress: Send + Sync {
    /// A phase starts that will move about `total_bytes` in `items` files
    /// (or blocks, for a migration). For a phase that does not count bytes
    /// ([`Phase::counts_bytes`]) the amounts are blocks, `total_bytes`
    /// 0 when unknown.
    fn phase(&self, phase: Phase, items: u64, total_bytes: u64);
    /// `bytes` more were moved.
    fn advance(&self, bytes: u64);
}

/// Progress that goes nowhere.
#[derive(Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn phase(&self, _: Phase, _: u64, _: u64) {}
    fn advance(&self, _: u64) {}
}

/// A [`Progress`] as the garbage collector reports to it: listing and
/// sweeping, counted in blocks.
pub struct CollectorProgress<'a> {
    inner: &'a dyn Progress,
    listing: std::sync::atomic::AtomicBool,
}

impl<'a> CollectorProgress<'a> {
    /// Reports to `inner`.
    pub fn new(inner: &'a dyn Progress) -> Self {
        Self {
            inner,
            listing: false.into(),
        }
    }
}

impl pouch_journal::gc::GcProgress for CollectorProgress<'_> {
    fn listed(&self, blocks: u64) {
        if !self
            .listing
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            self.inner.phase(Phase::Listing, 0, 0);
        }
        self.inner.advance(blocks);
    }
    fn sweeping(&self, total: u64) {
        self.inner.phase(Phase::Sweeping, total, total);
    }
    fn swept(&self, blocks: u64) {
        self.inner.advance(blocks);
    }
}
