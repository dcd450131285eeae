//! Reading coded volumes: a record straight from the data shard(s) that
//! hold it, or, when one of them is down, missing or damaged, rebuilt from
//! the same aligned window of four other shards (a degraded read); and
//! whole windows of every shard rebuilt for repair and the verifier.

use bytes::Bytes;
use pouch_backend::{Block, BlockId, Error, Result};

use super::backend::{Cell, parse_record};
use super::coding::{self, DATA_SHARDS, SHARDS};
use super::node::{Piece, node_error};

/// Where a coded volume's shards are.
#[derive(Debug, Clone)]
pub(super) struct Coded {
    pub volume: i64,
    /// Each shard's length.
    pub shard_size: u64,
    /// The address of each shard's node (data shards first), `None` when
    /// that node is down or unknown.
    pub addrs: Vec<Option<String>>,
}

impl Cell {
    /// Block `id`, whose record is `len` bytes at `offset` of the coded
    /// volume, verified.
    pub(super) async fn read_coded(
        &self,
        coded: &Coded,
        id: BlockId,
        offset: i64,
        len: i32,
    ) -> Result<Block> {
        let pieces = coding::pieces(offset as u64, len as u64, coded.shard_size);
        // Straight from the data shards, the healthy case.
        let direct = async {
            let mut record = Vec::with_capacity(len as usize);
            for piece in &pieces {
                let addr = coded.addrs[piece.shard]
                    .as_deref()
                    .ok_or_else(|| node_error("a data shard's node is down"))?;
                let bytes = self
                    .read_from(
                        addr,
                        Piece::Shard(coded.volume, piece.shard),
                        piece.at as i64,
                        piece.len as i32,
                    )
                    .await?;
                record.extend_from_slice(&bytes);
            }
            parse_record(id, Bytes::from(record))
        };
        let first = match direct.await {
            Ok(block) => return Ok(block),
            Err(e) => e,
        };
        tracing::info!(%id, volume = coded.volume, "degraded read: {first}");
        // Each piece's aligned window from every shard that answers.
        let mut windows = Vec::with_capacity(pieces.len());
        for piece in &pieces {
            let (start, wlen) = coding::window(piece.at, piece.len);
            windows.push(self.shard_windows(coded, start, wlen, &[]).await);
        }
        let answered: Vec<usize> = (0..SHARDS)
            .filter(|i| windows.iter().all(|w| w[*i].is_some()))
            .collect();
        // Sets of four that leave out the pieces' own data shards first:
        // those are the likeliest to be what failed.
        let mut sets = subsets(&answered, DATA_SHARDS);
        sets.sort_by_key(|set| pieces.iter().filter(|p| set.contains(&p.shard)).count());
        let mut last = Err(first);
        for set in sets {
            let mut record = Vec::with_capacity(len as usize);
            for (piece, window) in pieces.iter().zip(&windows) {
                let have: Vec<(usize, &[u8])> = set
                    .iter()
                    .map(|i| (*i, window[*i].as_deref().expect("answered")))
                    .collect();
                let all = coding::every_shard(&have)?;
                let (start, _) = coding::window(piece.at, piece.len);
                let from = (piece.at - start) as usize;
                record.extend_from_slice(&all[piece.shard][from..from + piece.len as usize]);
            }
            last = parse_record(id, Bytes::from(record));
            if last.is_ok() {
                break;
            }
        }
        last
    }

    /// Bytes `[start, start + len)` of each shard not in `skip`, from its
    /// node (`None`: down, missing, unreadable, or a whole window that no
    /// longer matches the hash its node wrote with it), read concurrently.
    pub(super) async fn shard_windows(
        &self,
        coded: &Coded,
        start: u64,
        len: u64,
        skip: &[usize],
    ) -> Vec<Option<Bytes>> {
        let reads = (0..SHARDS).map(|i| async move {
            let addr = coded.addrs[i].as_deref()?;
            if skip.contains(&i) {
                return None;
            }
            self.read_range(
                addr,
                Piece::Shard(coded.volume, i),
                start as i64,
                len as i32,
                true,
            )
            .await
            .map_err(|e| tracing::debug!(volume = coded.volume, shard = i, "unreadable: {e}"))
            .ok()
        });
        futures_util::future::join_all(reads).await
    }

    /// Window `[start, start + len)` of every shard, rebuilt from the ones
    /// not in `skip` that answer (at least [`DATA_SHARDS`] of them). Each
    /// window a node wrote whole is checked by that node against its hash;
    /// beyond four, the windows must also agree with each other, so that a
    /// damaged one is never copied into the shards rebuilt from it.
    pub(super) async fn rebuild_window(
        &self,
        coded: &Coded,
        start: u64,
        len: u64,
        skip: &[usize],
    ) -> Result<Vec<Vec<u8>>> {
        let windows = self.shard_windows(coded, start, len, skip).await;
        let have: Vec<(usize, &[u8])> = windows
            .iter()
            .enumerate()
            .filter_map(|(i, w)| w.as_deref().map(|w| (i, w)))
            .collect();
        if have.len() < DATA_SHARDS {
            return Err(Error::Unavailable {
                source: format!(
                    "volume {}: only {} of its shards answer, {DATA_SHARDS} are needed",
                    coded.volume,
                    have.len()
                )
                .into(),
            });
        }
        // The callers log the error; the rebuild waits for the scrubber or
        // the verifier to find the damaged one.
        let Some(four) = coding::trusted(&have) else {
            return Err(Error::Unavailable {
                source: format!(
                    "volume {}: its {} readable shards disagree at {start}, and parity alone cannot tell which is damaged",
                    coded.volume,
                    have.len()
                )
                .into(),
            });
        };
        coding::every_shard(&four)
    }
}

/// Every `k`-element subset of `of`, in lexicographic order.
fn subsets(of: &[usize], k: usize) -> Vec<Vec<usize>> {
    if k == 0 {
        return vec![Vec::new()];
    }
    let mut all = Vec::new();
    for (i, first) in of.iter().enumerate() {
        for mut rest in subsets(&of[i + 1..], k - 1) {
            rest.insert(0, *first);
            all.push(rest);
        }
    }
    all
}

#[cfg(test)]
mod tests {
    #[test]
    fn subsets_of_six_shards() {
        assert_eq!(super::subsets(&[0, 1, 2, 3, 4, 5], 4).len(), 15);
        assert_eq!(
            super::subsets(&[1, 2, 4, 5, 6], 4)[0],
            vec![1, 2, 4, 5],
            "lexicographic"
        );
        assert!(super::subsets(&[1, 2, 3], 4).is_empty());
    }
}
