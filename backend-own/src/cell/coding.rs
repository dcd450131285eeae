//! The arithmetic of erasure-coded volumes, without any I/O.
//!
//! A sealed volume of `size` bytes is cut into [`DATA_SHARDS`] contiguous
//! data shards of [`shard_len`] bytes each (the last padded with zeros), so
//! that a block's record lies in one data shard (or two, at a boundary) and
//! a healthy read is one range of one node's shard file, as before coding.
//! [`PARITY_SHARDS`] parity shards of the same length are computed with
//! Reed–Solomon (`reed-solomon-simd`): any `DATA_SHARDS` of the six give
//! back the others.
//!
//! The code works position by position in 64-byte units: bytes
//! `[a, a + n)` of every shard, with `a` and `n` multiples of [`ALIGN`], are
//! themselves a codeword. So a volume is coded a window at a time (bounded
//! memory, whatever its size), and a degraded read rebuilds only the
//! aligned window around the record it wants, never a whole shard.

use pouch_backend::{Error, Result};

/// Data shards of a coded volume.
pub const DATA_SHARDS: usize = 4;
/// Parity shards of a coded volume: this many nodes can be lost.
pub const PARITY_SHARDS: usize = 2;
/// Every shard of a coded volume: data first, then parity.
pub const SHARDS: usize = DATA_SHARDS + PARITY_SHARDS;
/// The unit the code works in: windows start and end on multiples of it.
pub const ALIGN: u64 = 64;
/// Bytes of each shard coded, checked or rebuilt at once (the coder holds
/// six such windows). One size for all three: a node keeps one hash per
/// written range, and a window written again must be the same range for
/// its hash to replace the old one.
pub const WINDOW: u64 = 4 << 20;

/// Each shard's length for a volume of `size` bytes: a quarter of it,
/// rounded up to [`ALIGN`].
pub fn shard_len(size: u64) -> u64 {
    size.div_ceil(DATA_SHARDS as u64).div_ceil(ALIGN).max(1) * ALIGN
}

/// A part of a volume range that lies in one data shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// The data shard.
    pub shard: usize,
    /// Where the part starts in that shard.
    pub at: u64,
    /// Its length.
    pub len: u64,
}

/// The parts of the volume range `[offset, offset + len)` in the data
/// shards of a volume coded with shards of `shard_len` bytes.
pub fn pieces(offset: u64, len: u64, shard_len: u64) -> Vec<Piece> {
    let mut parts = Vec::new();
    let (mut at, end) = (offset, offset + len);
    while at < end {
        let shard = at / shard_len;
        let within = at % shard_len;
        let take = (shard_len - within).min(end - at);
        parts.push(Piece {
            shard: shard as usize,
            at: within,
            len: take,
        });
        at += take;
    }
    parts
}

/// The aligned window `(start, len)` around `[at, at + len)` of a shard.
pub fn window(at: u64, len: u64) -> (u64, u64) {
    let start = at / ALIGN * ALIGN;
    let end = (at + len).div_ceil(ALIGN) * ALIGN;
    (start, end - start)
}

fn coding_error(e: reed_solomon_simd::Error) -> Error {
    Error::internal("erasure coding")(e)
}

/// The parity windows of `data` (the same window of each data shard, in
/// order; equal lengths, multiples of [`ALIGN`]).
pub fn parity(data: &[&[u8]]) -> Result<Vec<Vec<u8>>> {
    debug_assert_eq!(data.len(), DATA_SHARDS);
    reed_solomon_simd::encode(DATA_SHARDS, PARITY_SHARDS, data).map_err(coding_error)
}

/// Every shard's window (data then parity) from the same window of at
/// least [`DATA_SHARDS`] of them, given as (shard index, bytes).
pub fn every_shard(have: &[(usize, &[u8])]) -> Result<Vec<Vec<u8>>> {
    let len = have.first().map_or(0, |(_, b)| b.len());
    let data: Vec<Vec<u8>> = {
        let originals = have.iter().filter(|(i, _)| *i < DATA_SHARDS).copied();
        let recovery = have
            .iter()
            .filter(|(i, _)| *i >= DATA_SHARDS)
            .map(|(i, b)| (i - DATA_SHARDS, *b));
        let mut restored =
            reed_solomon_simd::decode(DATA_SHARDS, PARITY_SHARDS, originals, recovery)
                .map_err(coding_error)?;
        (0..DATA_SHARDS)
            .map(|i| match have.iter().find(|(j, _)| *j == i) {
                Some((_, bytes)) => Ok(bytes.to_vec()),
                None => restored.remove(&i).ok_or_else(|| Error::Unavailable {
                    source: format!("data shard {i} could not be rebuilt").into(),
                }),
            })
            .collect::<Result<_>>()?
    };
    if data.iter().any(|d| d.len() != len) {
        return Err(Error::InvalidInput("shard windows of different lengths"));
    }
    let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
    let parity = parity(&refs)?;
    Ok(data.into_iter().chain(parity).collect())
}

/// Whether the same window of shards `have` agree: `Some(None)` if they
/// do (or are too few to tell), `Some(Some(i))` if they do once shard `i`
/// is left out (with six, one damaged shard is found; with five, only
/// that something is wrong), `None` if no one shard explains it.
pub fn consistent_without(have: &[(usize, &[u8])]) -> Option<Option<usize>> {
    let agree = |set: &[(usize, &[u8])]| -> bool {
        match every_shard(&set[..DATA_SHARDS.min(set.len())]) {
            Ok(all) => set.iter().all(|(i, w)| all[*i].as_slice() == *w),
            Err(_) => false,
        }
    };
    if have.len() <= DATA_SHARDS || agree(have) {
        return Some(None);
    }
    if have.len() < SHARDS {
        return None;
    }
    (0..have.len())
        .find(|skip| {
            let rest: Vec<(usize, &[u8])> = have
                .iter()
                .enumerate()
                .filter(|(k, _)| k != skip)
                .map(|(_, w)| *w)
                .collect();
            agree(&rest)
        })
        .map(|skip| Some(have[skip].0))
}

/// The [`DATA_SHARDS`] windows of `have` to rebuild the others from, once
/// the rest agree with them: any four when all agree (or there are only
/// four), the four without the damaged one when six show which it is, and
/// `None` when five disagree, for parity alone cannot then tell which of
/// them is damaged and a rebuild could copy the damage into a new shard.
pub fn trusted<'a>(have: &[(usize, &'a [u8])]) -> Option<Vec<(usize, &'a [u8])>> {
    if have.len() < DATA_SHARDS {
        return None;
    }
    let odd = consistent_without(have)?;
    Some(
        have.iter()
            .filter(|(i, _)| Some(*i) != odd)
            .take(DATA_SHARDS)
            .copied()
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(size: usize) -> Vec<u8> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        (0..size)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    /// Data shards of `bytes`, each padded to `shard_len(bytes.len())`.
    fn data_shards(bytes: &[u8]) -> Vec<Vec<u8>> {
        let len = shard_len(bytes.len() as u64) as usize;
        (0..DATA_SHARDS)
            .map(|i| {
                let mut shard = vec![0; len];
                let from = (i * len).min(bytes.len());
                let to = ((i + 1) * len).min(bytes.len());
                shard[..to - from].copy_from_slice(&bytes[from..to]);
                shard
            })
            .collect()
    }

    #[test]
    fn shards_cover_the_volume_in_aligned_quarters() {
        assert_eq!(shard_len(0), 64);
        assert_eq!(shard_len(1), 64);
        assert_eq!(shard_len(256), 64);
        assert_eq!(shard_len(257), 128);
        assert_eq!(shard_len(1 << 30), 1 << 28);
        assert_eq!(
            pieces(100, 100, 128),
            vec![
                Piece {
                    shard: 0,
                    at: 100,
                    len: 28
                },
                Piece {
                    shard: 1,
                    at: 0,
                    len: 72
                }
            ]
        );
        assert_eq!(pieces(130, 10, 128).len(), 1);
        assert_eq!(window(70, 10), (64, 64));
        assert_eq!(window(63, 2), (0, 128));
        assert_eq!(window(128, 64), (128, 64));
    }

    /// Coding a window at a time gives the whole shards' parity: what lets
    /// the coder stream a volume and a degraded read rebuild a window.
    #[test]
    fn parity_of_aligned_windows_is_the_window_of_the_whole_parity() {
        let bytes = volume(1_000_003);
        let data = data_shards(&bytes);
        let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let whole = parity(&refs).unwrap();
        let len = data[0].len();
        for (start, wlen) in [(0, 64), (64, 4096), (len - 640, 640), (12_800, 64_000)] {
            let windows: Vec<&[u8]> = data.iter().map(|d| &d[start..start + wlen]).collect();
            let part = parity(&windows).unwrap();
            for (p, w) in whole.iter().zip(&part) {
                assert_eq!(&p[start..start + wlen], w.as_slice(), "window at {start}");
            }
        }
    }

    /// Any two shards lost, any record's window is rebuilt from the other
    /// four, byte for byte.
    #[test]
    fn any_four_shards_give_back_any_record() {
        let bytes = volume(300_000);
        let data = data_shards(&bytes);
        let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let shards: Vec<Vec<u8>> = data.iter().cloned().chain(parity(&refs).unwrap()).collect();
        let slen = shards[0].len() as u64;
        for (offset, len) in [
            (0u64, 10u64),
            (74_990, 30),
            (12_345, 6_789),
            (299_000, 1_000),
        ] {
            for lost in [(0, 1), (0, 4), (2, 5), (4, 5), (1, 3)] {
                let mut got = Vec::new();
                for piece in pieces(offset, len, slen) {
                    let (start, wlen) = window(piece.at, piece.len);
                    let have: Vec<(usize, &[u8])> = (0..SHARDS)
                        .filter(|i| *i != lost.0 && *i != lost.1)
                        .map(|i| (i, &shards[i][start as usize..(start + wlen) as usize]))
                        .collect();
                    let all = every_shard(&have).unwrap();
                    let from = (piece.at - start) as usize;
                    got.extend_from_slice(&all[piece.shard][from..from + piece.len as usize]);
                    // Parity rebuilt too, as repair needs.
                    for (i, w) in all.iter().enumerate() {
                        assert_eq!(
                            w.as_slice(),
                            &shards[i][start as usize..(start + wlen) as usize]
                        );
                    }
                }
                assert_eq!(
                    got,
                    &bytes[offset as usize..(offset + len) as usize],
                    "record at {offset}, shards {lost:?} lost"
                );
            }
        }
        let three: Vec<(usize, &[u8])> = (0..3).map(|i| (i, &shards[i][..64])).collect();
        assert!(
            every_shard(&three).is_err(),
            "three shards cannot be enough"
        );
    }

    #[test]
    fn one_damaged_shard_of_six_is_found_and_of_five_only_noticed() {
        let data: Vec<Vec<u8>> = (0..DATA_SHARDS as u8)
            .map(|i| (0..256u32).map(|b| (b as u8).wrapping_mul(i + 3)).collect())
            .collect();
        let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let mut shards: Vec<Vec<u8>> = data.clone();
        shards.extend(parity(&refs).unwrap());
        let have: Vec<(usize, &[u8])> = shards.iter().map(Vec::as_slice).enumerate().collect();
        assert_eq!(consistent_without(&have), Some(None));
        assert_eq!(trusted(&have[1..]).unwrap(), have[1..5]);
        assert_eq!(trusted(&have[..3]), None, "three are too few");
        for bad in 0..SHARDS {
            let mut damaged = shards.clone();
            damaged[bad][100] ^= 1;
            let have: Vec<(usize, &[u8])> = damaged.iter().map(Vec::as_slice).enumerate().collect();
            assert_eq!(consistent_without(&have), Some(Some(bad)), "shard {bad}");
            let five: Vec<(usize, &[u8])> = have
                .iter()
                .copied()
                .filter(|(i, _)| *i != (bad + 1) % SHARDS)
                .collect();
            assert_eq!(
                consistent_without(&five),
                None,
                "five with shard {bad} damaged"
            );
            // A rebuild takes the four without the damaged one from six,
            // and nothing from five that disagree.
            let four = trusted(&have).unwrap();
            assert_eq!(four.len(), DATA_SHARDS);
            assert!(four.iter().all(|(i, _)| *i != bad), "shard {bad}");
            assert_eq!(trusted(&five), None, "five with shard {bad} damaged");
            assert_eq!(
                trusted(&five[..DATA_SHARDS]).map(|f| f.len()),
                Some(DATA_SHARDS)
            );
        }
    }
}
