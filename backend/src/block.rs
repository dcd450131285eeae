//! [`Block`]: a chunk of a file in the form it travels and rests in.

use bytes::Bytes;

use crate::{BlockId, Error, Result};

/// The largest raw block any backend accepts (the chunker's maximum is far
/// below). A bound is what keeps a hostile zstd payload from decompressing
/// into gigabytes.
pub const MAX_BLOCK_SIZE: usize = 16 << 20;

/// zstd level for block compression: level 1 keeps compression well above
/// disk and network speed on one core, and most of the gain of higher levels
/// on text-like data is already there.
const ZSTD_LEVEL: i32 = 1;

/// Blocks shorter than this are never worth a zstd frame.
const MIN_COMPRESS_LEN: usize = 64;

/// How a block's payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Codec {
    /// The payload is the raw bytes.
    Raw = 0,
    /// The payload is one zstd frame of the raw bytes.
    Zstd = 1,
}

impl Codec {
    /// The codec's one-byte tag in wire and disk formats.
    pub const fn tag(self) -> u8 {
        self as u8
    }

    /// The codec for a tag, `None` for an unknown tag.
    pub const fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            0 => Some(Self::Raw),
            1 => Some(Self::Zstd),
            _ => None,
        }
    }
}

/// A block as it travels and rests: its id, its codec and its encoded payload.
///
/// A `Block` built with [`Block::encode`] is correct by construction. One
/// built with [`Block::from_parts`] (read from a disk or a socket) is
/// unverified until [`Block::decode`] or [`Block::verify`] says otherwise;
/// both always decode before hashing, so a payload that decompresses into
/// the wrong bytes is caught as surely as a flipped raw byte.
#[derive(Clone, PartialEq, Eq)]
pub struct Block {
    id: BlockId,
    codec: Codec,
    payload: Bytes,
}

impl Block {
    /// Hashes `raw` and compresses it when that saves space.
    ///
    /// # Panics
    /// If `raw` is longer than [`MAX_BLOCK_SIZE`]: the chunker never makes
    /// such a block, so a caller that does has a bug.
    pub fn encode(raw: Bytes) -> Self {
        assert!(raw.len() <= MAX_BLOCK_SIZE, "block of {} bytes", raw.len());
        let id = BlockId::of(&raw);
        if raw.len() >= MIN_COMPRESS_LEN
            && let Ok(packed) = zstd::bulk::compress(&raw, ZSTD_LEVEL)
            // Keep the compressed form only when it saves at least 1/32:
            // decoding costs time on every read.
            && packed.len() < raw.len() - raw.len() / 32
        {
            return Self {
                id,
                codec: Codec::Zstd,
                payload: Bytes::from(packed),
            };
        }
        Self {
            id,
            codec: Codec::Raw,
            payload: raw,
        }
    }

    /// Reassembles a block read from storage or the network, unverified.
    pub fn from_parts(id: BlockId, codec: Codec, payload: Bytes) -> Self {
        Self { id, codec, payload }
    }

    /// The block's id: the hash of its raw bytes.
    pub fn id(&self) -> BlockId {
        self.id
    }

    /// How the payload is encoded.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The encoded payload, as stored and sent.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Decodes the payload and checks that it hashes to the id.
    ///
    /// Returns the raw bytes, or [`Error::Corrupt`] when the payload does not
    /// decode or decodes to bytes with another hash: never wrong bytes.
    pub fn decode(&self) -> Result<Bytes> {
        let raw = match self.codec {
            Codec::Raw => self.payload.clone(),
            Codec::Zstd => zstd::bulk::decompress(&self.payload, MAX_BLOCK_SIZE)
                .map(Bytes::from)
                .map_err(|_| Error::Corrupt {
                    id: self.id,
                    reason: "the zstd payload does not decode",
                })?,
        };
        if raw.len() > MAX_BLOCK_SIZE {
            return Err(Error::Corrupt {
                id: self.id,
                reason: "the block is larger than the maximum block size",
            });
        }
        if BlockId::of(&raw) != self.id {
            return Err(Error::Corrupt {
                id: self.id,
                reason: "the bytes do not hash to the block id",
            });
        }
        Ok(raw)
    }

    /// Checks the block like [`Block::decode`], dropping the bytes.
    pub fn verify(&self) -> Result<()> {
        self.decode().map(drop)
    }
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block")
            .field("id", &self.id)
            .field("codec", &self.codec)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressible_blocks_are_compressed_and_decode() {
        let raw = Bytes::from(vec![7u8; 100_000]);
        let block = Block::encode(raw.clone());
        assert_eq!(block.codec(), Codec::Zstd);
        assert!(block.payload().len() < 1000);
        assert_eq!(block.decode().unwrap(), raw);
    }

    #[test]
    fn incompressible_and_tiny_blocks_stay_raw() {
        let mut state = 1u64;
        let noise: Vec<u8> = (0..65_536)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                (state >> 56) as u8
            })
            .collect();
        assert_eq!(Block::encode(Bytes::from(noise)).codec(), Codec::Raw);
        assert_eq!(
            Block::encode(Bytes::from_static(b"aaaa")).codec(),
            Codec::Raw
        );
        assert_eq!(Block::encode(Bytes::new()).decode().unwrap(), Bytes::new());
    }

    #[test]
    fn a_payload_that_decodes_to_other_bytes_is_corrupt() {
        let good = Block::encode(Bytes::from(vec![1u8; 4096]));
        let other = Block::encode(Bytes::from(vec![2u8; 4096]));
        let forged = Block::from_parts(good.id(), other.codec(), other.payload().clone());
        assert!(matches!(forged.decode(), Err(Error::Corrupt { .. })));
        let garbage = Block::from_parts(good.id(), Codec::Zstd, Bytes::from_static(b"nope"));
        assert!(matches!(garbage.decode(), Err(Error::Corrupt { .. })));
    }
}
