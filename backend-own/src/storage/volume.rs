//! The on-disk format of volume files.
//!
//! A volume is an append-only file: a 32-byte volume header, then records.
//! Each record is a 48-byte record header followed by its payload.
//!
//! ```text
//! volume header:  "POUCHVOL" | format u32 LE | 0 u32 | volume id u64 LE | 0 u64
//! record header:  "PREC" | kind u8 | codec u8 | 0 u16 | payload length u32 LE
//!                 | block id [32] | check [4] = BLAKE3(first 44 bytes)[..4]
//! ```
//!
//! Volumes are self-describing: the index can be rebuilt from them, and a
//! torn record at the tail (a crash mid-append) is recognised by a short
//! header, a bad check, a payload running past the end of the file, or a
//! payload that does not hash to its id.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use bytes::Bytes;
use pouch_backend::{Block, BlockId, Codec, MAX_BLOCK_SIZE};

/// The volume format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Length of the volume header.
pub const VOLUME_HEADER_LEN: u64 = 32;
/// Length of a record header.
pub const RECORD_HEADER_LEN: u64 = 48;

const VOLUME_MAGIC: &[u8; 8] = b"POUCHVOL";
const RECORD_MAGIC: &[u8; 4] = b"PREC";

/// What a record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A block's payload.
    Block,
    /// The block was deleted; no payload.
    Tombstone,
}

/// A parsed, check-verified record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Block or tombstone.
    pub kind: RecordKind,
    /// The payload's codec.
    pub codec: Codec,
    /// The payload's length.
    pub payload_len: u32,
    /// The block the record is about.
    pub id: BlockId,
}

impl RecordHeader {
    /// Bytes from the header's start to the end of its payload.
    pub fn record_len(&self) -> u64 {
        RECORD_HEADER_LEN + u64::from(self.payload_len)
    }

    /// The header's bytes.
    pub fn encode(&self) -> [u8; RECORD_HEADER_LEN as usize] {
        let mut out = [0u8; RECORD_HEADER_LEN as usize];
        out[0..4].copy_from_slice(RECORD_MAGIC);
        out[4] = match self.kind {
            RecordKind::Block => 1,
            RecordKind::Tombstone => 2,
        };
        out[5] = self.codec.tag();
        out[8..12].copy_from_slice(&self.payload_len.to_le_bytes());
        out[12..44].copy_from_slice(self.id.as_bytes());
        let check = blake3::hash(&out[..44]);
        out[44..48].copy_from_slice(&check.as_bytes()[..4]);
        out
    }

    /// Parses a header, `None` if it is not a valid one.
    pub fn decode(bytes: &[u8; RECORD_HEADER_LEN as usize]) -> Option<Self> {
        if &bytes[0..4] != RECORD_MAGIC
            || blake3::hash(&bytes[..44]).as_bytes()[..4] != bytes[44..48]
        {
            return None;
        }
        let kind = match bytes[4] {
            1 => RecordKind::Block,
            2 => RecordKind::Tombstone,
            _ => return None,
        };
        let codec = Codec::from_tag(bytes[5])?;
        let payload_len = u32::from_le_bytes(bytes[8..12].try_into().ok()?);
        if payload_len as usize > MAX_BLOCK_SIZE + MAX_BLOCK_SIZE / 64 {
            return None;
        }
        let id = BlockId::from_slice(&bytes[12..44])?;
        Some(Self {
            kind,
            codec,
            payload_len,
            id,
        })
    }
}

/// Appends `block`'s record (header, then payload) to `buf` and returns
/// the record's length.
pub fn push_block_record(buf: &mut Vec<u8>, block: &Block) -> u64 {
    let header = RecordHeader {
        kind: RecordKind::Block,
        codec: block.codec(),
        payload_len: block.payload().len() as u32,
        id: block.id(),
    };
    buf.extend_from_slice(&header.encode());
    buf.extend_from_slice(block.payload());
    header.record_len()
}

/// The header written at the start of volume `id`.
pub fn volume_header(id: u64) -> [u8; VOLUME_HEADER_LEN as usize] {
    let mut out = [0u8; VOLUME_HEADER_LEN as usize];
    out[0..8].copy_from_slice(VOLUME_MAGIC);
    out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    out[16..24].copy_from_slice(&id.to_le_bytes());
    out
}

/// Checks a volume's header: magic, a format this build knows, and its id.
pub fn check_volume_header(file: &File, id: u64) -> Result<(), String> {
    let mut header = [0u8; VOLUME_HEADER_LEN as usize];
    file.read_exact_at(&mut header, 0)
        .map_err(|e| format!("volume {id}: cannot read its header: {e}"))?;
    if &header[0..8] != VOLUME_MAGIC {
        return Err(format!("volume {id} is not a Pouch volume file"));
    }
    let format = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if format != FORMAT_VERSION {
        return Err(format!(
            "volume {id} has format {format}; this Pouch reads format {FORMAT_VERSION}: upgrade Pouch"
        ));
    }
    let stored_id = u64::from_le_bytes(header[16..24].try_into().expect("8 bytes"));
    if stored_id != id {
        return Err(format!("volume file {id} says it is volume {stored_id}"));
    }
    Ok(())
}

/// Reads the record at `offset` of a file `file_len` long.
///
/// `Ok(None)` when there is no complete, valid record there: a torn tail,
/// or the end of the file. The payload is returned unverified.
pub fn read_record(
    file: &File,
    offset: u64,
    file_len: u64,
) -> io::Result<Option<(RecordHeader, Bytes)>> {
    if offset + RECORD_HEADER_LEN > file_len {
        return Ok(None);
    }
    let mut raw = [0u8; RECORD_HEADER_LEN as usize];
    file.read_exact_at(&mut raw, offset)?;
    let Some(header) = RecordHeader::decode(&raw) else {
        return Ok(None);
    };
    if offset + header.record_len() > file_len {
        return Ok(None);
    }
    let mut payload = vec![0u8; header.payload_len as usize];
    file.read_exact_at(&mut payload, offset + RECORD_HEADER_LEN)?;
    Ok(Some((header, Bytes::from(payload))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_headers_round_trip_and_catch_damage() {
        let header = RecordHeader {
            kind: RecordKind::Block,
            codec: Codec::Zstd,
            payload_len: 1234,
            id: BlockId::of(b"x"),
        };
        let bytes = header.encode();
        assert_eq!(RecordHeader::decode(&bytes), Some(header));
        for i in 0..bytes.len() {
            let mut damaged = bytes;
            damaged[i] ^= 0x40;
            assert_eq!(RecordHeader::decode(&damaged), None, "flip at byte {i}");
        }
        assert_eq!(RecordHeader::decode(&[0; 48]), None);
    }
}
