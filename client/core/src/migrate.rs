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
//! Not here yet: writing to both stores while sync runs, shadow reads, the
//! cutover announced through the journal and followed by other devices.

use std::collections::HashSet;

use bytes::Bytes;
use pouch_backend::{Backend, BackendExt, Block, BlockId, Error as BackendError, Seq};

use crate::commit::Commit;
use crate::node::Node;
use crate::sync::Progress;
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
}

/// Every block any entry of `from`'s journal names, in first-seen order,
/// and the journal's head.
async fn referenced_blocks(from: &dyn Backend) -> Result<(Vec<(BlockId, u32)>, Seq)> {
    let mut seen = HashSet::new();
    let mut blocks = Vec::new();
    let mut cursor = Seq::ZERO;
    loop {
        let entries = from.read_journal(cursor, PAGE).await?;
        let Some(last) = entries.last() else {
            return Ok((blocks, cursor));
        };
        cursor = last.seq;
        for entry in &entries {
            // A malformed entry references nothing we can read; it is
            // still copied byte for byte.
            let Ok(commit) = Commit::decode(entry.seq.0, &entry.data) else {
                continue;
            };
            for change in commit.changes {
                if let Some(Node::File { blocks: list, .. }) = change.node {
                    for block in list {
                        if seen.insert(block.id) {
                            blocks.push((block.id, block.len));
                        }
                    }
                }
            }
        }
    }
}

/// Copies journal entries after `target`'s head from `from` to `to`; the
/// entries the target has must match the source's (compared a page at a
/// time).
async fn copy_journal(from: &dyn Backend, to: &dyn Backend, report: &mut CopyReport) -> Result<()> {
    let target_head = to.journal_head().await?;
    let mut cursor = Seq::ZERO;
    loop {
        let entries = from.read_journal(cursor, PAGE).await?;
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
}

/// Brings `to` up to `from`: journal, referenced blocks, snapshot.
pub async fn copy(
    from: &dyn Backend,
    to: &dyn Backend,
    progress: &dyn Progress,
) -> Result<CopyReport> {
    let mut report = CopyReport::default();
    let (blocks, _) = referenced_blocks(from).await?;
    report.blocks_referenced = blocks.len() as u64;
    progress.phase(
        "copying",
        blocks.len() as u64,
        blocks.iter().map(|(_, len)| u64::from(*len)).sum(),
    );
    // Blocks before the journal: an entry on the target must never name a
    // block the target lacks.
    for chunk in blocks.chunks(HAS_BATCH) {
        let ids: Vec<BlockId> = chunk.iter().map(|(id, _)| *id).collect();
        let present = to.has_blocks(&ids).await?;
        let mut batch: Vec<Bytes> = Vec::new();
        let mut batch_bytes = 0;
        for ((id, len), present) in chunk.iter().zip(present) {
            if present {
                report.blocks_present += 1;
                progress.advance(u64::from(*len));
                continue;
            }
            let raw = from.get_block(*id).await?;
            batch_bytes += raw.len();
            batch.push(raw);
            if batch_bytes >= PUT_BATCH_BYTES {
                send(to, std::mem::take(&mut batch), &mut report, progress).await?;
                batch_bytes = 0;
            }
        }
        send(to, batch, &mut report, progress).await?;
    }
    copy_journal(from, to, &mut report).await?;
    if let Some(snapshot) = from.get_snapshot().await? {
        to.put_snapshot(snapshot).await?;
        report.snapshot_copied = true;
    }
    Ok(report)
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

/// What a verification found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VerifyReport {
    /// Journal entries compared (all identical, or `verify` fails).
    pub entries: u64,
    /// Blocks read back from the target and found hash-correct.
    pub blocks: u64,
}

/// Checks that `to` holds everything `from` does: identical journals and
/// every referenced block present and hash-correct (read back whole; the
/// backend refuses bytes that do not hash to their id).
pub async fn verify(
    from: &dyn Backend,
    to: &dyn Backend,
    progress: &dyn Progress,
) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let (blocks, head) = referenced_blocks(from).await?;
    let mismatch = |reason: String| Error::Refused {
        path: to.describe(),
        reason,
    };
    if to.journal_head().await? != head {
        return Err(mismatch(format!(
            "the journal's head differs from the source's ({head}); copy again"
        )));
    }
    let mut cursor = Seq::ZERO;
    loop {
        let (ours, theirs) = (
            from.read_journal(cursor, PAGE).await?,
            to.read_journal(cursor, PAGE).await?,
        );
        if ours != theirs {
            return Err(mismatch(format!(
                "journal entries after {cursor} differ from the source's"
            )));
        }
        let Some(last) = ours.last() else { break };
        report.entries += ours.len() as u64;
        cursor = last.seq;
    }
    progress.phase(
        "verifying",
        blocks.len() as u64,
        blocks.iter().map(|(_, len)| u64::from(*len)).sum(),
    );
    for (id, len) in blocks {
        let bytes = to.get_block(id).await.map_err(|e| match e {
            BackendError::BlockNotFound(_) => {
                mismatch(format!("block {id} is missing; copy again"))
            }
            other => other.into(),
        })?;
        if bytes.len() != len as usize {
            return Err(mismatch(format!("block {id} has the wrong length")));
        }
        report.blocks += 1;
        progress.advance(u64::from(len));
    }
    Ok(report)
}
