//! Batched block reads: the blocks of one download, fetched with one
//! ranged GET per run of neighbouring blocks in a pack (a file's blocks
//! were packed in order, so they mostly sit together), several GETs in
//! flight, answered in the order asked.
//!
//! A run joins blocks of one pack whose gap is small (the bytes between
//! are read and dropped) and stops at a size bound, so over-read and
//! memory stay bounded. A block whose bytes fail verification, or whose
//! pack has gone (moved by a collection), is read again through
//! `get_block_in`, which tries its other copies and quarantines damage.

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures_util::stream::{self, BoxStream};
use futures_util::{FutureExt, StreamExt};
use pouch_backend::{Block, BlockId, Error, Result};

use crate::backend::S3Backend;
use crate::index::Location;
use crate::pack::PackName;

/// The most bytes read and dropped between two blocks to join them.
const MAX_GAP: u64 = 256 << 10;
/// The longest one ranged GET reads: a whole pack.
const MAX_RUN: u64 = 16 << 20;
/// Ids planned together: bounds the plan's memory (about 1 MiB); a run
/// never spans two windows, so they are large.
const WINDOW: usize = 16 * 1024;

/// What one GET (or none) answers.
enum Run {
    /// The index knows no copy of it.
    Missing(BlockId),
    /// Blocks of one pack, in the order asked, read as one range.
    Range {
        pack: PackName,
        start: u64,
        end: u64,
        members: Vec<(BlockId, Location)>,
    },
}

impl S3Backend {
    pub(crate) fn get_blocks_in(&self, ids: Vec<BlockId>) -> BoxStream<'_, Result<Bytes>> {
        let refreshed = std::sync::Arc::new(AtomicBool::new(false));
        let windows: Vec<Vec<BlockId>> = ids.chunks(WINDOW).map(<[BlockId]>::to_vec).collect();
        let runs = stream::iter(windows)
            .then(move |window| {
                let refreshed = refreshed.clone();
                async move { self.plan(window, &refreshed).await }
            })
            .flat_map(|planned| match planned {
                Ok(runs) => stream::iter(runs.into_iter().map(Ok)).left_stream(),
                Err(e) => stream::once(async { Err(e) }).right_stream(),
            });
        let fetched = runs
            .map(move |run| async move {
                match run {
                    Ok(run) => self.fetch(run).await,
                    Err(e) => vec![Err(e)],
                }
            })
            .buffered(self.config.parallel.max(1))
            .flat_map(stream::iter);
        pouch_backend::end_after_fatal(fetched).boxed()
    }

    /// Groups `ids` into runs, listing the bucket once per call if some
    /// are not in the index.
    async fn plan(&self, ids: Vec<BlockId>, refreshed: &AtomicBool) -> Result<Vec<Run>> {
        let unknown = {
            let index = self.index.lock().unwrap();
            ids.iter().any(|id| index.find(id).is_empty())
        };
        if unknown && !refreshed.swap(true, Ordering::SeqCst) {
            self.refresh().await?;
        }
        let index = self.index.lock().unwrap();
        let mut runs: Vec<Run> = Vec::new();
        for id in ids {
            let Some(place) = index.find(&id).first().copied() else {
                runs.push(Run::Missing(id));
                continue;
            };
            let (offset, end) = (place.offset, place.offset + u64::from(place.len));
            if let Some(Run::Range {
                pack,
                start,
                end: run_end,
                members,
            }) = runs.last_mut()
                && *pack == place.pack
                && offset >= *run_end
                && offset - *run_end <= MAX_GAP
                && end - *start <= MAX_RUN
            {
                *run_end = end;
                members.push((id, place));
                continue;
            }
            runs.push(Run::Range {
                pack: place.pack,
                start: offset,
                end,
                members: vec![(id, place)],
            });
        }
        Ok(runs)
    }

    /// One item per member of `run`.
    async fn fetch(&self, run: Run) -> Vec<Result<Bytes>> {
        let (pack, start, end, members) = match run {
            Run::Missing(id) => return vec![Err(Error::BlockNotFound(id))],
            Run::Range {
                pack,
                start,
                end,
                members,
            } => (pack, start, end, members),
        };
        let bytes = if start == end {
            // S3 has no empty range; empty payloads need no read.
            Some(Bytes::new())
        } else {
            match self
                .requests
                .get_range(&self.keys.pack(pack), start..end, "reading blocks")
                .await
            {
                Ok(bytes) => bytes,
                Err(e) => return vec![Err(e)],
            }
        };
        let decoded: Vec<Option<Bytes>> = match bytes {
            // The pack is gone: each block is looked for again.
            None => vec![None; members.len()],
            Some(bytes) => {
                let blocks: Vec<Block> = members
                    .iter()
                    .map(|(id, place)| {
                        let at = (place.offset - start) as usize;
                        let payload = bytes.slice(at..at + place.len as usize);
                        Block::from_parts(*id, place.codec, payload)
                    })
                    .collect();
                match tokio::task::spawn_blocking(move || {
                    blocks.iter().map(|b| b.decode().ok()).collect()
                })
                .await
                {
                    Ok(decoded) => decoded,
                    Err(e) => return vec![Err(Error::internal("decoding blocks")(e))],
                }
            }
        };
        let mut out = Vec::with_capacity(members.len());
        for ((id, _), raw) in members.iter().zip(decoded) {
            out.push(match raw {
                Some(raw) => Ok(raw),
                None => self.get_block_in(*id).boxed().await,
            });
        }
        out
    }
}
