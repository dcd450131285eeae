//! The scrubber's unit of work: re-read and re-hash the next stored blocks,
//! in id order, so a background worker can walk the whole store at a
//! bounded rate ("Pocket Watch" at Pouch's scale).

use pouch_backend::{BlockId, Error, Result};

use super::index::db_error;
use super::{Location, Store, located_block};

/// What one scrub step did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScrubStep {
    /// Where the next step starts; `None` when the walk reached the end.
    pub next: Option<BlockId>,
    /// Blocks checked.
    pub checked: u64,
    /// Payload bytes read.
    pub bytes: u64,
    /// Blocks found damaged, with why.
    pub corrupt: Vec<(BlockId, String)>,
}

impl Store {
    /// Checks blocks after `after` (from the start if `None`) until about
    /// `budget` payload bytes were read.
    pub fn scrub_step(&self, after: Option<BlockId>, budget: u64) -> Result<ScrubStep> {
        let start = after.map_or([0u8; 32].to_vec(), |id| id.as_bytes().to_vec());
        let rows: Vec<(BlockId, Location)> = {
            let conn = self.pool.get()?;
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, volume, offset, length FROM blocks WHERE id > ?1 ORDER BY id LIMIT 256",
                )
                .map_err(db_error("listing blocks to scrub"))?;
            stmt.query_map([start], located_block)
                .and_then(|rows| rows.collect())
                .map_err(db_error("listing blocks to scrub"))?
        };
        let full_page = rows.len() == 256;
        let mut step = ScrubStep::default();
        for (id, loc) in rows {
            step.checked += 1;
            step.bytes += loc.payload_len;
            step.next = Some(id);
            match self.read_block_at(id, loc).and_then(|block| block.verify()) {
                Ok(()) => {}
                // A block moved or deleted since the listing is not damage.
                Err(_) if self.locate(id)? != Some(loc) => {}
                Err(Error::Corrupt { reason, .. }) => {
                    tracing::error!(block = %id, volume = loc.volume, offset = loc.offset, "scrub: corrupt block: {reason}");
                    self.quarantine(id, loc, reason)?;
                    step.corrupt.push((id, reason.to_owned()));
                }
                Err(Error::Format { what }) => {
                    tracing::error!(block = %id, "scrub: {what}");
                    step.corrupt.push((id, what));
                }
                Err(other) => return Err(other),
            }
            if step.bytes >= budget {
                return Ok(step);
            }
        }
        if !full_page {
            step.next = None;
        }
        Ok(step)
    }
}
