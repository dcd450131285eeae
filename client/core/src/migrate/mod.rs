//! Copying a namespace from one store to another: the first half of
//! switching backends (`pouch migrate`).
//!
//! [`copy`] brings the target up to the source: journal entries at the same
//! sequence numbers (create-only, so an entry already there must be the
//! same bytes), every block any entry ever referenced (current files and
//! history alike), and the snapshot. It is incremental and idempotent: a
//! copy killed at any point and run again skips what is done (entries the
//! target has, blocks `has_blocks` reports) and counts what it skipped.
//! [`verify`] then reads every referenced block back from the target, which
//! checks its hash, and compares the journals entry by entry.
//!
//! Writing to both stores while sync runs and shadow reads are
//! [`crate::dual`]; the cutover (the freeze entry, and a follower's check
//! before it moves) is [`switch`]; the copy's recorded progress, which
//! `pouch status` and the daemon show, is [`RecordedProgress`].

mod recorded;
mod switch;
mod verify;

pub use recorded::{CopyPhase, CopyProgress, RecordedProgress, clear_progress, recorded_progress};
pub use switch::{Follow, can_follow, follow_in_config, freeze, switch_in_config};
pub use verify::{VerifyReport, verify, verify_at};

use std::time::{Duration, Instant};

use bytes::Bytes;
use pouch_backend::{Backend, BackendExt, Block, BlockId, Error as BackendError, Seq};

use crate::commit::Commit;
use crate::node::Node;
use crate::progress::{Phase, Progress};
use crate::{Error, Result};

/// Journal entries read per request.
const PAGE: usize = 256;
/// Ids asked about per `has_blocks` call.
const HAS_BATCH: usize = 1000;
/// Raw bytes gathered before one `put_blocks` on the target.
const PUT_BATCH_BYTES: usize = 16 << 20;

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CopyReport {
    /// Journal entries appended to the target.
    pub entries_copied: u64,
    /// Journal entries the target already had (identical).
    pub entries_present: u64,
    /// Blocks the journal references.
    pub blocks_referenced: u64,
    /// Blocks sent to the target.
    pub blocks_copied: u64,
    /// Blocks the target already had, not sent again.
    pub blocks_present: u64,
    /// Raw bytes of the blocks sent.
    pub bytes_copied: u64,
    /// Whether a snapshot was copied.
    pub snapshot_copied: bool,
    /// Blocks the source no longer holds, so none could be copied: those
    /// of versions a collection swept before the retention policy was
    /// widened (a policy that keeps more does not bring back what was
    /// collected), or blocks the source lost.
    #[serde(default)]
    pub blocks_missing_at_source: u64,
}

/// Every block a version that the namespace's retention keeps names (with
/// its length), and the journal's head: what a copy must bring. Blocks
/// only expired versions named may be collected already, and a new store
/// need not hold them. Retention is applied at `now` (Unix seconds).
pub(super) async fn referenced_blocks(
    from: &dyn Backend,
    now: i64,
) -> Result<(Vec<(BlockId, u32)>, Seq)> {
    let mut fold = crate::gc::Fold::default();
    fold.read(from).await?;
    let live = fold.live(now);
    let mut blocks: Vec<(BlockId, u32)> = live.blocks.into_iter().collect();
    // Block ids are random: sorted, two copies of one journal meet the
    // blocks in the same order.
    blocks.sort_unstable();
    Ok((blocks, fold.head))
}

/// The blocks (and their lengths) one journal entry names. A malformed
/// entry names nothing we can read; it is still copied byte for byte.
pub(crate) fn blocks_of(entry: &pouch_backend::JournalEntry) -> Vec<(BlockId, u32)> {
    let Ok(commit) = Commit::decode(entry.seq.0, &entry.data) else {
        return Vec::new();
    };
    commit
        .changes
        .into_iter()
        .filter_map(|change| match change.node {
            Some(Node::File { blocks, .. }) => Some(blocks),
            _ => None,
        })
        .flatten()
        .map(|block| (block.id, block.len))
        .collect()
}

/// Copies journal entries after `start` up to `upto` from `from` to `to`;
/// the entries the target has must match the source's (compared a page at
/// a time).
/// Entries after `upto` may name blocks this copy did not bring, so they
/// wait for the next copy (an entry on the target never names a block the
/// target lacks).
async fn copy_journal(
    from: &dyn Backend,
    to: &dyn Backend,
    start: Seq,
    upto: Seq,
    report: &mut CopyReport,
) -> Result<()> {
    let target_head = to.journal_head().await?;
    let mut cursor = start;
    while cursor < upto {
        let mut entries = from.read_journal(cursor, PAGE).await?;
        entries.retain(|entry| entry.seq <= upto);
        let Some(last) = entries.last() else {
            return Ok(());
        };
        let mut theirs = if cursor < target_head {
            to.read_journal(cursor, PAGE).await?
        } else {
            Vec::new()
        };
        cursor = last.seq;
        for entry in entries {
            if entry.seq > target_head {
                match to.append(entry.seq, entry.data.clone()).await {
                    Ok(()) => {
                        report.entries_copied += 1;
                        continue;
                    }
                    // Another writer got there: fine if it wrote the same.
                    Err(BackendError::SlotTaken(_)) => {
                        theirs = to.read_journal(Seq(entry.seq.0 - 1), 1).await?;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if !theirs
                .iter()
                .any(|t| t.seq == entry.seq && t.data == entry.data)
            {
                return Err(Error::Refused {
                    path: to.describe(),
                    reason: format!(
                        "journal entry {} differs from the source's; the target holds another namespace",
                        entry.seq
                    ),
                });
            }
            report.entries_present += 1;
        }
    }
    Ok(())
}

/// How hard a copy may push.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Blocks fetched from the source at once.
    pub parallel: usize,
    /// Most bytes sent to the target per second, `None` for no limit.
    pub max_bytes_per_sec: Option<u64>,
    /// The moment (Unix seconds) the namespace's retention is applied at
    /// to tell which versions' blocks the copy brings: the clock the
    /// collector uses. `None`: this machine's clock.
    pub now: Option<i64>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        Self {
            parallel: 8,
            max_bytes_per_sec: None,
            now: None,
        }
    }
}

/// Keeps the average rate at or under a limit by sleeping after a send
/// that got ahead of it.
struct RateLimit {
    max_bytes_per_sec: Option<u64>,
    start: Instant,
    sent: u64,
}

impl RateLimit {
    async fn sent(&mut self, bytes: u64) {
        self.sent += bytes;
        let Some(rate) = self.max_bytes_per_sec.filter(|r| *r > 0) else {
            return;
        };
        let due = Duration::from_secs_f64(self.sent as f64 / rate as f64);
        if let Some(ahead) = due.checked_sub(self.start.elapsed()) {
            tokio::time::sleep(ahead).await;
        }
    }
}

/// Brings `to` up to `from`: journal, referenced blocks, snapshot.
pub async fn copy(
    from: &dyn Backend,
    to: &dyn Backend,
    progress: &dyn Progress,
) -> Result<CopyReport> {
    copy_with(from, to, progress, &CopyOptions::default()).await
}

/// [`copy`], as fast as `options` allow.
pub async fn copy_with(
    from: &dyn Backend,
    to: &dyn Backend,
    progress: &dyn Progress,
    options: &CopyOptions,
) -> Result<CopyReport> {
    use futures_util::StreamExt;
    let mut report = CopyReport::default();
    let mut limit = RateLimit {
        max_bytes_per_sec: options.max_bytes_per_sec,
        start: Instant::now(),
        sent: 0,
    };
    let now = options.now.unwrap_or_else(crate::unix_secs);
    let (blocks, upto) = referenced_blocks(from, now).await?;
    report.blocks_referenced = blocks.len() as u64;
    progress.phase(
        Phase::Copying,
        blocks.len() as u64,
        blocks.iter().map(|(_, len)| u64::from(*len)).sum(),
    );
    // Blocks before the journal: an entry on the target must never name a
    // block the target lacks.
    for chunk in blocks.chunks(HAS_BATCH) {
        let ids: Vec<BlockId> = chunk.iter().map(|(id, _)| *id).collect();
        let present = to.has_blocks(&ids).await?;
        let mut missing = Vec::new();
        for ((id, len), present) in chunk.iter().zip(present) {
            if present {
                report.blocks_present += 1;
                progress.advance(u64::from(*len));
            } else {
                missing.push(*id);
            }
        }
        // Fetches overlap each other (a store far away answers one block
        // per round trip), and the next batch is fetched while the last
        // one is encoded and sent.
        let mut fetched = futures_util::stream::iter(missing)
            .map(|id| async move {
                match from.get_block(id).await {
                    Ok(raw) => Ok(Some(raw)),
                    Err(BackendError::BlockNotFound(_)) => {
                        tracing::warn!(block = %id, "the source no longer holds a block its journal names: not copied");
                        Ok(None)
                    }
                    Err(e) => Err(e),
                }
            })
            .buffered(options.parallel.max(1));
        let (mut batch, mut lost) = next_batch(&mut fetched).await?;
        report.blocks_missing_at_source += lost;
        while !batch.is_empty() || lost > 0 {
            let bytes: u64 = batch.iter().map(|b| b.len() as u64).sum();
            let ((next, next_lost), ()) = tokio::try_join!(
                next_batch(&mut fetched),
                send(to, batch, &mut report, progress)
            )?;
            limit.sent(bytes).await;
            (batch, lost) = (next, next_lost);
            report.blocks_missing_at_source += lost;
        }
    }
    // A source that dropped entries: the target gets its snapshot (whose
    // blocks are among those just copied) and the same start, first.
    let start = from.journal_start().await?;
    if start > Seq::ZERO {
        let snapshot = from
            .get_snapshot()
            .await?
            .filter(|s| s.seq >= start)
            .ok_or_else(|| Error::Refused {
                path: from.describe(),
                reason: format!(
                    "it dropped journal entries up to {start} but holds no snapshot of them"
                ),
            })?;
        to.put_snapshot(snapshot).await?;
        report.snapshot_copied = true;
        if to.journal_head().await? < start {
            to.trim_journal(start).await?;
        }
    }
    copy_journal(
        from,
        to,
        start.max(to.journal_start().await?),
        upto,
        &mut report,
    )
    .await?;
    if !report.snapshot_copied
        && let Some(snapshot) = from.get_snapshot().await?
    {
        to.put_snapshot(snapshot).await?;
        report.snapshot_copied = true;
    }
    Ok(report)
}

/// Up to [`PUT_BATCH_BYTES`] of fetched blocks, and how many the source
/// did not hold (`None` in `fetched`); both empty at the end.
async fn next_batch(
    fetched: &mut (impl futures_util::TryStream<Ok = Option<Bytes>, Error = BackendError> + Unpin),
) -> Result<(Vec<Bytes>, u64)> {
    use futures_util::TryStreamExt;
    let mut batch = Vec::new();
    let mut lost = 0;
    let mut bytes = 0;
    while bytes < PUT_BATCH_BYTES {
        match fetched.try_next().await? {
            None => break,
            Some(None) => lost += 1,
            Some(Some(raw)) => {
                bytes += raw.len();
                batch.push(raw);
            }
        }
    }
    Ok((batch, lost))
}

async fn send(
    to: &dyn Backend,
    raw: Vec<Bytes>,
    report: &mut CopyReport,
    progress: &dyn Progress,
) -> Result<()> {
    if raw.is_empty() {
        return Ok(());
    }
    let bytes: u64 = raw.iter().map(|b| b.len() as u64).sum();
    let count = raw.len() as u64;
    let blocks = tokio::task::spawn_blocking(move || raw.into_iter().map(Block::encode).collect())
        .await
        .expect("encoding blocks does not panic");
    to.put_blocks(blocks).await?;
    report.blocks_copied += count;
    report.bytes_copied += bytes;
    progress.advance(bytes);
    Ok(())
}
