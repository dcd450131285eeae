//! Content-defined chunking with FastCDC (v2020) in streaming mode, and
//! BLAKE3 block ids. Memory stays bounded by the maximum chunk size
//! whatever the file size.

use std::io::Read;

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
    fn empty_input_has_no_blocks() {
        assert_eq!(blocklist(&[][..]).unwrap(), (vec![], 0));
    }
}
