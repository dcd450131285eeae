//! Reading a copy back: the check that gates a migration's cutover.

use pouch_backend::{Backend, BackendExt, Error as BackendError};

use super::{PAGE, referenced_blocks};
use crate::progress::{Phase, Progress};
use crate::{Error, Result};

/// What a verification found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VerifyReport {
    /// Journal entries compared (all identical, or `verify` fails).
    pub entries: u64,
    /// Blocks read back from the target and found hash-correct.
    pub blocks: u64,
    /// Blocks the journal names that neither store holds (see
    /// [`super::CopyReport::blocks_missing_at_source`]).
    pub blocks_missing_at_source: u64,
}

/// Checks that `to` holds everything `from` does: identical journals and
/// every referenced block present and hash-correct (read back whole; the
/// backend refuses bytes that do not hash to their id).
pub async fn verify(
    from: &dyn Backend,
    to: &dyn Backend,
    progress: &dyn Progress,
) -> Result<VerifyReport> {
    verify_at(from, to, progress, crate::unix_secs()).await
}

/// [`verify`], with the namespace's retention applied at `now` (Unix
/// seconds: the collector's clock) to tell which blocks must be there.
pub async fn verify_at(
    from: &dyn Backend,
    to: &dyn Backend,
    progress: &dyn Progress,
    now: i64,
) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let (blocks, head) = referenced_blocks(from, now).await?;
    let mismatch = |reason: String| Error::Refused {
        path: to.describe(),
        reason,
    };
    if to.journal_head().await? != head {
        return Err(mismatch(format!(
            "the journal's head differs from the source's ({head}); copy again"
        )));
    }
    // Entries either store dropped are folded in its snapshot: compared
    // from where both have them.
    let mut cursor = from.journal_start().await?.max(to.journal_start().await?);
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
        Phase::Verifying,
        blocks.len() as u64,
        blocks.iter().map(|(_, len)| u64::from(*len)).sum(),
    );
    for (id, len) in blocks {
        let bytes = match to.get_block(id).await {
            Ok(bytes) => bytes,
            // Missing on both sides: nothing a copy could bring.
            Err(BackendError::BlockNotFound(_))
                if matches!(from.has_blocks(&[id]).await?[..], [false]) =>
            {
                report.blocks_missing_at_source += 1;
                progress.advance(u64::from(len));
                continue;
            }
            Err(BackendError::BlockNotFound(_)) => {
                return Err(mismatch(format!("block {id} is missing; copy again")));
            }
            Err(other) => return Err(other.into()),
        };
        if bytes.len() != len as usize {
            return Err(mismatch(format!("block {id} has the wrong length")));
        }
        report.blocks += 1;
        progress.advance(u64::from(len));
    }
    Ok(report)
}
