//! The store's half of garbage collection: a fenced lease, marks, and a
//! conditional sweep. The collector itself (which blocks the retained
//! journal names) lives in the client; see `ARCHITECTURE.md`, "Garbage
//! collection", for the protocol and why no interleaving of collectors
//! and syncing devices lets the journal name a missing block.
//!
//! In short: a block no retained version names is first *marked* (the
//! store records when, by its own clock). A `put_blocks` or `has_blocks`
//! that touches a marked block *revives* it (the mark goes, atomically with
//! the answer). A later *sweep* deletes only blocks still marked since
//! before a cutoff the collector took before it last read the journal,
//! minus a grace period longer than any device's upload-to-commit window
//! ([`COMMIT_WINDOW`]). All store times are milliseconds since the Unix
//! epoch by the store's clock.

use std::time::Duration;

/// The longest a device trusts a `put_blocks` or `has_blocks` answer before
/// committing a journal entry that names the block: older answers are
/// asked again first (which revives a marked block). Measured on a clock
/// that counts suspend, so a laptop that slept between upload and commit
/// asks again.
pub const COMMIT_WINDOW: Duration = Duration::from_secs(10 * 60);

/// The oldest view of the marks a store that *hides* marked copies (S3,
/// which has no lock to revive them under) may answer `has_blocks` and
/// `put_blocks` from: older, it lists the bucket again first. Measured on
/// a clock that counts suspend, like [`COMMIT_WINDOW`]; the grace must be
/// longer than both together.
pub const VIEW_WINDOW: Duration = Duration::from_secs(5 * 60);

/// The default time a marked block waits before a sweep may delete it; it
/// must stay longer than [`COMMIT_WINDOW`] plus any request's time in
/// flight. Only an operator who knows no device is mid-sync shortens it.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 60 * 60);

/// What a collector asks of the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRequest {
    /// Who asks, for messages ("laptop, pid 4242").
    pub holder: String,
    /// `None` to take the lease (refused while another holder's is
    /// unexpired); the generation held, to renew or (with a zero `ttl`)
    /// release it.
    pub generation: Option<u64>,
    /// How long the lease lasts from now; zero releases it.
    pub ttl: Duration,
}

/// A collector's lease: while it is unexpired, no other collector may take
/// it, and every mark and sweep must present its generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcLease {
    /// The fencing token: every taking of the lease gets a higher one, so a
    /// collector that stalled and lost its lease is refused afterwards.
    pub generation: u64,
    /// When it expires, store time.
    pub expires_ms: i64,
    /// The store's clock when it answered.
    pub now_ms: i64,
}

/// One stored block as a collector lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredBlock {
    /// Its id.
    pub id: crate::BlockId,
    /// Bytes it takes in the store (its stored encoding).
    pub stored_len: u64,
    /// When it was marked as a candidate, if it is; store time.
    pub marked_ms: Option<i64>,
}

/// What [`crate::Backend::gc_reclaim`] gave back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReclaimReport {
    /// Pack objects (S3) or volume files (pouch-store) deleted: every
    /// block in them dead, or moved.
    pub packs_deleted: u64,
    /// Of those, the ones whose live records were first written anew.
    pub packs_rewritten: u64,
    /// Bytes of live blocks written again.
    pub bytes_rewritten: u64,
    /// Bytes the store holds less: deleted objects minus what was written
    /// again.
    pub bytes_freed: u64,
}

/// What a sweep deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Blocks deleted.
    pub blocks: u64,
    /// Their stored bytes.
    pub bytes: u64,
}

impl std::ops::AddAssign for SweepReport {
    fn add_assign(&mut self, other: Self) {
        self.blocks += other.blocks;
        self.bytes += other.bytes;
    }
}

/// Time since the machine booted, suspend included (`CLOCK_BOOTTIME`):
/// for windows that must hold across a laptop's sleep, such as
/// [`COMMIT_WINDOW`] and [`VIEW_WINDOW`] (an answer given before a night's
/// sleep is asked again).
pub fn since_boot() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Milliseconds since the Unix epoch now, the store clock of the stores
/// that run in this process.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
