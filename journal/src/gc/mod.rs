//! The garbage collector: deletes the blocks no retained version names,
//! on any backend that implements the store's half
//! ([`pouch_backend::gc`]). `ARCHITECTURE.md`, "Garbage collection",
//! gives the protocol and the argument why it is safe.
//!
//! One run: fold the journal and compute the live set; take the lease;
//! page through the stored blocks, marking the unmarked ones outside the
//! live set and unmarking marked ones inside it; renew the lease (its
//! answer is the store's clock, T1) and read the journal again to its
//! head, adding what the new entries name; then sweep the blocks outside
//! the live set whose marks are older than T1 − grace. The store deletes
//! only blocks still marked since then: a device that put or checked one
//! meanwhile revived it (or, on S3, was told it is not stored and put a
//! new copy). Last, the store reclaims the space (S3 deletes and rewrites
//! packs).

mod live;

use std::time::Duration;

use pouch_backend::gc::DEFAULT_GRACE;
use pouch_backend::{Backend, BlockId, GcLease, LeaseRequest, SweepReport};
use serde::Serialize;

use crate::{Error, Result};

pub use live::Fold;

/// How long the collector's lease lasts between renewals (it is renewed
/// after every request's worth of work, so a collector that dies holds
/// it up no longer than this).
const LEASE_TTL: Duration = Duration::from_secs(60);
/// Blocks listed per request.
const LIST_PAGE: usize = 10_000;
/// Blocks marked, unmarked or swept per request.
const BATCH: usize = 10_000;

/// Where a collection reports how far it is.
pub trait GcProgress: Send + Sync {
    /// Stored blocks are being listed (and marked); `blocks` more listed.
    fn listed(&self, blocks: u64);
    /// Sweeping starts: `total` candidate blocks.
    fn sweeping(&self, total: u64);
    /// `blocks` more candidates were swept (or left).
    fn swept(&self, blocks: u64);
}

/// Progress that goes nowhere.
#[derive(Debug, Default)]
pub struct Quiet;

impl GcProgress for Quiet {
    fn listed(&self, _: u64) {}
    fn sweeping(&self, _: u64) {}
    fn swept(&self, _: u64) {}
}

/// How to collect.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// How long a marked block waits before it may be swept. Shorter than
    /// the default only when no device is in the middle of a sync.
    pub grace: Duration,
    /// Count what would go, change nothing.
    pub dry_run: bool,
    /// Who collects, for the lease ("laptop, pid 4242").
    pub holder: String,
    /// The time retention is measured at (seconds since the epoch).
    pub now: i64,
    /// Where this machine notes the lease it holds (the process and the
    /// generation), so that the next collector here releases the lease of
    /// one that was killed instead of waiting for it to expire. `None`:
    /// not noted.
    pub lease_note: Option<std::path::PathBuf>,
}

impl GcOptions {
    /// Defaults: the default grace, for real, now.
    pub fn new(holder: String) -> Self {
        Self {
            grace: DEFAULT_GRACE,
            dry_run: false,
            holder,
            now: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
            lease_note: None,
        }
    }
}

/// What a collection found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// The policy applied.
    pub retention: String,
    /// The journal entries read.
    pub journal_entries: u64,
    /// Versions past retention.
    pub versions_expired: u64,
    /// Blocks stored when the run listed them, and their bytes.
    pub blocks_stored: u64,
    /// Stored bytes of those blocks.
    pub bytes_stored: u64,
    /// Blocks some retained version names.
    pub blocks_live: u64,
    /// Blocks no retained version names: marked now or before.
    pub blocks_unreferenced: u64,
    /// Their stored bytes.
    pub bytes_unreferenced: u64,
    /// Marked by this run (they wait out the grace period).
    pub marked: u64,
    /// Marked earlier but named again: unmarked.
    pub unmarked: u64,
    /// Deleted by this run (a dry run: that would be, at most).
    pub blocks_deleted: u64,
    /// Their stored bytes.
    pub bytes_deleted: u64,
    /// Unreferenced blocks still in their grace period.
    pub blocks_waiting: u64,
    /// Files the store deleted to give the space back: S3 packs, embedded
    /// store volumes (a pouch-store server compacts on its own, later).
    pub packs_deleted: u64,
    /// Of those, the ones whose live blocks were first written anew.
    pub packs_rewritten: u64,
    /// Bytes the store holds less after reclaiming.
    pub bytes_reclaimed: u64,
    /// Requests made to the store (journal pages, lease, list pages, mark
    /// and sweep batches).
    pub store_calls: u64,
    /// The journal entry the snapshot written at the end folds (a new
    /// device starts there); `None` if none was written.
    pub snapshot_seq: Option<u64>,
    /// Its stored bytes.
    pub snapshot_bytes: u64,
    /// The journal entries dropped, folded in the snapshot: those older
    /// than the retention period (all, at 0 days). A device that had not
    /// read them starts again from the snapshot.
    pub journal_trimmed_through: Option<u64>,
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// Why the sweep was skipped, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// Runs one collection on `backend`.
pub async fn collect(
    backend: &dyn Backend,
    options: &GcOptions,
    progress: &dyn GcProgress,
) -> Result<GcReport> {
    // The first fold needs no lease: only the second read of the journal,
    // after the marks, decides what may go.
    let mut fold = Fold::default();
    fold.read(backend).await?;
    refuse_unsafe(backend, &fold)?;
    if options.dry_run {
        return run(backend, options, fold, None, progress).await;
    }
    if let Some(note) = &options.lease_note {
        release_if_dead(backend, options, note).await;
    }
    let lease = backend
        .gc_lease(LeaseRequest {
            holder: options.holder.clone(),
            generation: None,
            ttl: LEASE_TTL,
        })
        .await?;
    if let Some(note) = &options.lease_note {
        let text = format!("{} {}\n", std::process::id(), lease.generation);
        if let Err(e) = std::fs::write(note, text) {
            tracing::warn!(
                "cannot note the collector's lease in {}: {e}",
                note.display()
            );
        }
    }
    let mut outcome = run(backend, options, fold, Some(lease), progress).await;
    // Let the next collector in at once; an expired lease would too.
    let released = release(backend, options, lease.generation).await;
    if let Ok(report) = &mut outcome {
        report.store_calls += 2; // taking and releasing the lease
    }
    if let Err(e) = released {
        tracing::warn!("could not release the collector's lease (it expires by itself): {e}");
    } else if let Some(note) = &options.lease_note {
        let _ = std::fs::remove_file(note);
    }
    outcome
}

/// Refuses a journal the collector cannot account for: an entry it cannot
/// read names unknown blocks, so nothing may be collected; and a store the
/// namespace moved away from is kept whole as a fallback.
fn refuse_unsafe(backend: &dyn Backend, fold: &Fold) -> Result<()> {
    let refuse = |reason: String| {
        Err(Error::Refused {
            store: backend.describe(),
            reason,
        })
    };
    if let Some(seq) = fold.unreadable.first() {
        return refuse(format!(
            "journal entry {seq} cannot be read (a newer Pouch wrote it, or it is damaged); no garbage is collected while an entry cannot be read"
        ));
    }
    if let Some(seq) = fold.moved_at {
        return refuse(format!(
            "the namespace moved away at journal entry {seq}: this store is kept whole as a fallback, not collected"
        ));
    }
    Ok(())
}

async fn release(backend: &dyn Backend, options: &GcOptions, generation: u64) -> Result<()> {
    backend
        .gc_lease(LeaseRequest {
            holder: options.holder.clone(),
            generation: Some(generation),
            ttl: Duration::ZERO,
        })
        .await?;
    Ok(())
}

/// Releases the lease noted in `note` by a collector of this machine whose
/// process is gone (killed, crashed): its generation is what it takes.
async fn release_if_dead(backend: &dyn Backend, options: &GcOptions, note: &std::path::Path) {
    let Ok(text) = std::fs::read_to_string(note) else {
        return;
    };
    let mut fields = text.split_whitespace().map(str::parse::<u64>);
    let (Some(Ok(pid)), Some(Ok(generation))) = (fields.next(), fields.next()) else {
        return;
    };
    if std::path::Path::new(&format!("/proc/{pid}")).exists() {
        return; // still running: its lease stands
    }
    match release(backend, options, generation).await {
        Ok(()) => tracing::info!(pid, "released the lease of a collector that died"),
        Err(e) => tracing::debug!("the dead collector's lease is gone already: {e}"),
    }
    let _ = std::fs::remove_file(note);
}

async fn run(
    backend: &dyn Backend,
    options: &GcOptions,
    mut fold: Fold,
    mut lease: Option<GcLease>,
    progress: &dyn GcProgress,
) -> Result<GcReport> {
    let mut report = GcReport {
        dry_run: options.dry_run,
        ..GcReport::default()
    };
    let live = fold.live(options.now);
    report.retention = live.policy.describe();
    report.versions_expired = live.versions_expired;
    report.journal_entries = fold.head.0;
    report.blocks_live = live.blocks.len() as u64;
    let live_blocks = live.blocks;

    let mut candidates: Vec<BlockId> = Vec::new();
    let mut mark = Vec::new();
    let mut unmark = Vec::new();
    // A dry run counts as swept what is marked since before the grace.
    let dry_cutoff = pouch_backend::gc::now_ms() - grace_ms(options.grace);
    let mut after = None;
    loop {
        let page = backend.gc_list(after, LIST_PAGE).await?;
        report.store_calls += 1;
        let done = page.len() < LIST_PAGE;
        progress.listed(page.len() as u64);
        after = page.last().map(|b| b.id);
        for block in page {
            report.blocks_stored += 1;
            report.bytes_stored += block.stored_len;
            if live_blocks.contains_key(&block.id) {
                if block.marked_ms.is_some() {
                    unmark.push(block.id);
                }
                continue;
            }
            report.blocks_unreferenced += 1;
            report.bytes_unreferenced += block.stored_len;
            match block.marked_ms {
                None => mark.push(block.id),
                Some(at) if options.dry_run && at <= dry_cutoff => {
                    report.blocks_deleted += 1;
                    report.bytes_deleted += block.stored_len;
                }
                Some(_) => {}
            }
            candidates.push(block.id);
        }
        if let Some(held) = &mut lease {
            flush_marks(backend, held, &mut mark, &mut unmark, &mut report, done).await?;
            *held = renew(backend, options, held).await?;
            report.store_calls += 1;
        }
        if done {
            break;
        }
    }
    if options.dry_run {
        report.marked = mark.len() as u64;
        report.unmarked = unmark.len() as u64;
        report.blocks_waiting = report.blocks_unreferenced - report.blocks_deleted;
        report.store_calls += fold.reads;
        return Ok(report);
    }
    let Some(lease) = lease else {
        unreachable!("a real run holds the lease")
    };

    // T1: the store's clock before the journal is read again. A device
    // that commits after this read names only blocks it put or checked
    // within its commit window, that is after T1 − grace: revived.
    let lease = renew(backend, options, &lease).await?;
    report.store_calls += 1;
    let cutoff = lease.now_ms - grace_ms(options.grace);
    let news = fold.read(backend).await?;
    refuse_unsafe(backend, &fold)?;
    if news.policy {
        report.skipped = Some(
            "the retention policy changed during the run; nothing was deleted, run again".into(),
        );
        report.blocks_waiting = report.blocks_unreferenced;
        report.store_calls += fold.reads;
        return Ok(report);
    }
    report.journal_entries = fold.head.0;
    candidates.retain(|id| !live_blocks.contains_key(id) && !news.blocks.contains(id));
    drop(live_blocks);

    progress.sweeping(candidates.len() as u64);
    let mut swept = SweepReport::default();
    let mut lease = lease;
    for batch in candidates.chunks(BATCH) {
        swept += backend.gc_sweep(lease.generation, batch, cutoff).await?;
        progress.swept(batch.len() as u64);
        lease = renew(backend, options, &lease).await?;
        report.store_calls += 2;
    }
    // The snapshot and the trim before the reclaim, so that one pass
    // takes the space of both the swept blocks and the dropped entries.
    write_snapshot(backend, &fold, options.now, &mut report).await;
    let lease = renew(backend, options, &lease).await?;
    report.store_calls += 1;
    // Sweeps free nothing on a store that packs blocks together (S3)
    // until the packs go too; the embedded store compacts here.
    let reclaimed = backend.gc_reclaim(lease.generation).await?;
    report.store_calls += 1;
    report.packs_deleted = reclaimed.packs_deleted;
    report.packs_rewritten = reclaimed.packs_rewritten;
    report.bytes_reclaimed = reclaimed.bytes_freed;
    report.blocks_deleted = swept.blocks;
    report.bytes_deleted = swept.bytes;
    report.blocks_waiting = report.blocks_unreferenced.saturating_sub(swept.blocks);
    report.store_calls += fold.reads;
    tracing::info!(?report, "garbage collection done");
    Ok(report)
}

/// Writes the snapshot of the journal as this run read it, with retention
/// applied as this run applied it, then drops the entries older than the
/// retention period, which it folds. A new device starts from the
/// snapshot, and so does one that had not read the dropped entries; a
/// device back within the period reads on as before. A failure is logged,
/// not returned: the collection itself is done.
async fn write_snapshot(backend: &dyn Backend, fold: &Fold, now: i64, report: &mut GcReport) {
    if fold.head == pouch_backend::Seq::ZERO {
        return;
    }
    let data = crate::snapshot::JournalSnapshot::of(fold, now).encode();
    let bytes = data.len() as u64;
    match backend
        .put_snapshot(pouch_backend::Snapshot {
            seq: fold.head,
            data,
        })
        .await
    {
        Ok(()) => {
            report.snapshot_seq = Some(fold.head.0);
            report.snapshot_bytes = bytes;
        }
        Err(e) => {
            tracing::warn!("the journal snapshot was not written: {e}");
            report.store_calls += 1;
            return;
        }
    }
    report.store_calls += 1;
    let Some(through) = fold.expired_through(now) else {
        return;
    };
    report.store_calls += 1;
    match backend.trim_journal(through).await {
        Ok(()) => report.journal_trimmed_through = Some(through.0),
        Err(e) => tracing::warn!("the journal was not trimmed: {e}"),
    }
}

/// Sends the marks and unmarks gathered so far (all of them at the end).
async fn flush_marks(
    backend: &dyn Backend,
    lease: &GcLease,
    mark: &mut Vec<BlockId>,
    unmark: &mut Vec<BlockId>,
    report: &mut GcReport,
    all: bool,
) -> Result<()> {
    if all || mark.len() + unmark.len() >= BATCH {
        if !mark.is_empty() || !unmark.is_empty() {
            backend.gc_mark(lease.generation, mark, unmark).await?;
            report.store_calls += 1;
        }
        report.marked += mark.len() as u64;
        report.unmarked += unmark.len() as u64;
        mark.clear();
        unmark.clear();
    }
    Ok(())
}

async fn renew(backend: &dyn Backend, options: &GcOptions, lease: &GcLease) -> Result<GcLease> {
    Ok(backend
        .gc_lease(LeaseRequest {
            holder: options.holder.clone(),
            generation: Some(lease.generation),
            ttl: LEASE_TTL,
        })
        .await?)
}

fn grace_ms(grace: Duration) -> i64 {
    i64::try_from(grace.as_millis()).unwrap_or(i64::MAX / 2)
}
