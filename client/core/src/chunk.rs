//! Content-defined chunking with FastCDC (v2020) in streaming mode, and
//! BLAKE3 block ids. Memory stays bounded by the maximum chunk size
//! whatever the file size. A large file's blocklist is made on two cores
//! at once ([`blocklist_of_file`]): the rolling hash finds the cut points
//! on one while BLAKE3 hashes the blocks already cut on the other.

use std::io::Read;
use std::sync::mpsc;

use fastcdc::v2020::{Normalization, cut, select_masks};

use bytes::Bytes;
use pouch_backend::BlockId;

use crate::node::BlockRef;

/// FastCDC's minimum chunk size.
pub const MIN_CHUNK: usize = 256 << 10;
/// FastCDC's target average chunk size.
pub const AVG_CHUNK: usize = 1 << 20;
/// FastCDC's maximum chunk size.
pub const MAX_CHUNK: usize = 4 << 20;

/// One chunk of a stream: its bytes and reference.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// The chunk's raw bytes.
    pub data: Bytes,
    /// Its id and length.
    pub block: BlockRef,
}

/// Splits `reader` into chunks, lazily.
pub fn chunks<R: Read>(reader: R) -> impl Iterator<Item = std::io::Result<Chunk>> {
    fastcdc::v2020::StreamCDC::new(reader, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK).map(|chunk| {
        let chunk = chunk.map_err(|e| match e {
            fastcdc::v2020::Error::IoError(io) => io,
            other => std::io::Error::other(other.to_string()),
        })?;
        let data = Bytes::from(chunk.data);
        let block = BlockRef {
            id: BlockId::of(&data),
            len: data.len() as u32,
        };
        Ok(Chunk { data, block })
    })
}

/// The blocklist and length of everything `reader` yields.
pub fn blocklist<R: Read>(reader: R) -> std::io::Result<(Vec<BlockRef>, u64)> {
    let mut blocks = Vec::new();
    let mut size = 0u64;
    for chunk in chunks(reader) {
        let chunk = chunk?;
        size += u64::from(chunk.block.len);
        blocks.push(chunk.block);
    }
    Ok((blocks, size))
}

/// The blocklist and length of `data`, as [`blocklist`] makes it.
pub fn blocklist_of_bytes(data: &[u8]) -> (Vec<BlockRef>, u64) {
    let blocks = fastcdc::v2020::FastCDC::new(data, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK)
        .map(|chunk| {
            let bytes = &data[chunk.offset..chunk.offset + chunk.length];
            BlockRef {
                id: BlockId::of(bytes),
                len: bytes.len() as u32,
            }
        })
        .collect();
    (blocks, data.len() as u64)
}

/// Bytes read from a file at once by [`blocklist_of_file`]: two maximum
/// chunks, so a segment always holds a whole chunk.
const SEGMENT: usize = 2 * MAX_CHUNK;
/// Files from this size on are cut and hashed on two threads.
pub const PIPELINED_FROM: u64 = 8 << 20;

/// The blocklist and length of everything `reader` yields, as
/// [`blocklist`] makes it, on two threads when it is `size_hint` bytes
/// or more ([`PIPELINED_FROM`]): this thread reads and finds the cut
/// points over segments of the input, passing each segment's chunks to a
/// second thread that hashes them (no chunk is copied out). At most three
/// segments (24 MiB) are held.
pub fn blocklist_of_file<R: Read>(
    mut reader: R,
    size_hint: u64,
) -> std::io::Result<(Vec<BlockRef>, u64)> {
    if size_hint < PIPELINED_FROM {
        // Read whole and cut in memory: the streaming chunker zeroes a
        // buffer of a maximum chunk (4 MiB) for every file, which cost a
        // first scan of many small files more than reading them did. A
        // file that grew past the bound goes on below.
        let mut data = Vec::with_capacity(size_hint as usize + 1);
        reader
            .by_ref()
            .take(PIPELINED_FROM)
            .read_to_end(&mut data)?;
        if (data.len() as u64) < PIPELINED_FROM {
            return Ok(blocklist_of_bytes(&data));
        }
        return pipelined(std::io::Cursor::new(data).chain(reader));
    }
    pipelined(reader)
}

/// [`blocklist_of_file`] on two threads.
fn pipelined<R: Read>(mut reader: R) -> std::io::Result<(Vec<BlockRef>, u64)> {
    let (mask_s, mask_l) = select_masks(AVG_CHUNK, Normalization::Level1);
    let cut_at = |data: &[u8]| {
        cut(
            data,
            MIN_CHUNK,
            AVG_CHUNK,
            MAX_CHUNK,
            mask_s,
            mask_l,
            mask_s << 1,
            mask_l << 1,
        )
        .1
    };
    // Segments go to the hasher with their chunks' ends, and come back
    // empty to be filled again.
    let (to_hasher, segments) = mpsc::sync_channel::<(Vec<u8>, Vec<usize>)>(1);
    let (give_back, free) = mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let hasher = scope.spawn(move || {
            let mut blocks = Vec::new();
            for (segment, ends) in segments {
                let mut start = 0;
                for end in ends {
                    let data = &segment[start..end];
                    blocks.push(BlockRef {
                        id: BlockId::of(data),
                        len: data.len() as u32,
                    });
                    start = end;
                }
                let _ = give_back.send(segment);
            }
            blocks
        });
        let mut size = 0u64;
        let mut segment = vec![0u8; SEGMENT];
        let mut filled = 0;
        let mut eof = false;
        let read = 'segments: loop {
            while !eof && filled < SEGMENT {
                match reader.read(&mut segment[filled..]) {
                    Ok(0) => eof = true,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => break 'segments Err(e),
                }
            }
            // Cut what this segment decides: a cut point short of its end,
            // a maximum chunk, or, at the end of the input, the rest.
            let mut ends = Vec::new();
            let mut start = 0;
            while start < filled {
                let len = cut_at(&segment[start..filled]);
                if start + len == filled && len < MAX_CHUNK && !eof {
                    break;
                }
                start += len;
                ends.push(start);
            }
            size += start as u64;
            let mut next = free.try_recv().unwrap_or_else(|_| vec![0u8; SEGMENT]);
            next[..filled - start].copy_from_slice(&segment[start..filled]);
            filled -= start;
            if !ends.is_empty() && to_hasher.send((segment, ends)).is_err() {
                break 'segments Ok(());
            }
            segment = next;
            if eof && filled == 0 {
                break 'segments Ok(());
            }
        };
        drop(to_hasher);
        let blocks = hasher.join().expect("hashing does not panic");
        read.map(|()| (blocks, size))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(len: usize) -> Vec<u8> {
        pouch_backend::conformance::noise(42, len).to_vec()
    }

    #[test]
    fn chunks_cover_the_input_within_bounds() {
        let data = noise(9 << 20);
        let got: Vec<Chunk> = chunks(&data[..]).map(Result::unwrap).collect();
        let total: usize = got.iter().map(|c| c.data.len()).sum();
        assert_eq!(total, data.len());
        assert_eq!(
            got.iter().flat_map(|c| c.data.to_vec()).collect::<Vec<_>>(),
            data
        );
        for c in &got[..got.len() - 1] {
            assert!((MIN_CHUNK..=MAX_CHUNK).contains(&c.data.len()));
            assert_eq!(c.block.id, BlockId::of(&c.data));
        }
    }

    #[test]
    fn an_insert_changes_few_chunks() {
        let data = noise(16 << 20);
        let mut edited = data.clone();
        edited.splice(8 << 20..8 << 20, b"a hundred bytes or so ".repeat(5));
        let (before, _) = blocklist(&data[..]).unwrap();
        let (after, _) = blocklist(&edited[..]).unwrap();
        let new = after.iter().filter(|b| !before.contains(b)).count();
        assert!(new <= 3, "{new} new chunks of {}", after.len());
    }

    #[test]
    fn two_threads_cut_and_hash_as_one_does() {
        // Sizes around the segment's and the chunk bounds, and a run of
        // zeros (maximum chunks).
        let mut data = noise(26 << 20);
        data[(9 << 20)..(19 << 20)].fill(0);
        for len in [
            0,
            1,
            MIN_CHUNK - 1,
            MIN_CHUNK + 1,
            MAX_CHUNK,
            SEGMENT - 1,
            SEGMENT,
            SEGMENT + 1,
            (3 * SEGMENT) / 2 + 12_345,
            data.len(),
        ] {
            let input = &data[..len];
            let one = blocklist(input).unwrap();
            // A reader that hands out odd, short reads.
            let uneven = std::io::Read::chain(&input[..len / 3], &input[len / 3..]);
            assert_eq!(
                blocklist_of_file(uneven, u64::MAX).unwrap(),
                one,
                "{len} bytes"
            );
            assert_eq!(blocklist_of_file(input, 0).unwrap(), one, "{len} bytes");
            assert_eq!(blocklist_of_bytes(input), one, "{len} bytes");
        }
    }

    #[test]
    fn a_read_error_is_an_error() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0 == 0 {
                    return Err(std::io::Error::other("disk gone"));
                }
                let n = buf.len().min(self.0);
                buf[..n].fill(7);
                self.0 -= n;
                Ok(n)
            }
        }
        let err = blocklist_of_file(Failing(20 << 20), u64::MAX).unwrap_err();
        assert_eq!(err.to_string(), "disk gone");
    }

    #[test]
    fn empty_input_has_no_blocks() {
        assert_eq!(blocklist(&[][..]).unwrap(), (vec![], 0));
    }
}
