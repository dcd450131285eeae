//! The on-disk format of volume files.
//!
//! A volume is an append-only file: a 32-byte volume header, then records.
//! Each record is a 48-byte record header followed by its payload.
//!
//! ```text
//! volume header:  "POUCHVOL" | format u32 LE | 0 u32 | volume id u64 LE | 0 u64
//! record header:  "PREC" | kind u8 | codec u8 | 0 u16 | payload length u32 LE
//!                 | id [32] | check [4] = BLAKE3(first 44 bytes)[..4]
//! block:          kind 1, id = BLAKE3 of the raw bytes, payload = the block
//!                 in its codec
//! tombstone:      kind 2, id = the deleted block's, no payload
//! journal entry:  kind 3, payload = seq u64 LE | entry bytes,
//!                 id = BLAKE3(payload)
//! snapshot:       kind 4, payload = seq u64 LE | snapshot bytes,
//!                 id = BLAKE3(payload)
//! ```
//!
//! Volumes are self-describing: blocks, deletes, journal and snapshot are
//! all in them, so the index can be rebuilt from them alone (see
//! `rebuild`), and a torn record at the tail (a crash mid-append) is
//! recognised by a short header, a bad check, a payload running past the
//! end of the file, or a payload that does not hash to its id.

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
    /// A journal entry: its number and bytes.
    Journal,
    /// A snapshot: the entry it covers up to and its bytes.
    Snapshot,
}

impl RecordKind {
    fn tag(self) -> u8 {
        match self {
            RecordKind::Block => 1,
            RecordKind::Tombstone => 2,
            RecordKind::Journal => 3,
            RecordKind::Snapshot => 4,
        }
    }

    fn from_tag(tag: u8) -> Option<Self> {
        Some(match tag {
            1 => RecordKind::Block,
            2 => RecordKind::Tombstone,
            3 => RecordKind::Journal,
            4 => RecordKind::Snapshot,
            _ => return None,
        })
    }

    /// The longest payload a record of this kind may have: a bound that
    /// keeps a damaged length from sending a reader off to allocate
    /// gigabytes. Snapshots of large trees are far bigger than blocks.
    fn max_payload(self) -> usize {
        match self {
            RecordKind::Block | RecordKind::Tombstone => MAX_BLOCK_SIZE + MAX_BLOCK_SIZE / 64,
            RecordKind::Journal | RecordKind::Snapshot => MAX_META_PAYLOAD,
        }
    }
}

/// The longest journal entry or snapshot a volume holds.
pub const MAX_META_PAYLOAD: usize = 1 << 30;

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
        out[4] = self.kind.tag();
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
        let kind = RecordKind::from_tag(bytes[4])?;
        let codec = Codec::from_tag(bytes[5])?;
        let payload_len = u32::from_le_bytes(bytes[8..12].try_into().ok()?);
        if payload_len as usize > kind.max_payload() {
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

/// Appends a journal entry's or snapshot's record (`kind` is
/// [`RecordKind::Journal`] or [`RecordKind::Snapshot`]) to `buf` and
/// returns the record's length.
pub fn push_meta_record(buf: &mut Vec<u8>, kind: RecordKind, seq: u64, data: &[u8]) -> u64 {
    debug_assert!(matches!(kind, RecordKind::Journal | RecordKind::Snapshot));
    let mut hasher = blake3::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(data);
    let header = RecordHeader {
        kind,
        codec: Codec::Raw,
        payload_len: (8 + data.len()) as u32,
        id: BlockId::from_slice(hasher.finalize().as_bytes()).expect("32 bytes"),
    };
    buf.extend_from_slice(&header.encode());
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(data);
    header.record_len()
}

/// A journal entry's or snapshot's payload split into its number and
/// bytes, if it hashes to the header's id (a torn or damaged one does not).
pub fn parse_meta(header: &RecordHeader, payload: &Bytes) -> Option<(u64, Bytes)> {
    (payload.len() >= 8 && blake3::hash(payload).as_bytes() == header.id.as_bytes())
        .then(|| split_meta(payload))
}

/// [`parse_meta`] without the check, for a record [`payload_is_intact`]
/// already passed (the hash is not computed twice).
pub fn split_meta(payload: &Bytes) -> (u64, Bytes) {
    let seq = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
    (seq, payload.slice(8..))
}

/// Whether a record's payload is intact: a block's decodes and hashes to
/// its id, a journal entry's or snapshot's hashes to its id.
pub fn payload_is_intact(header: &RecordHeader, payload: &Bytes) -> bool {
    match header.kind {
        RecordKind::Block => Block::from_parts(header.id, header.codec, payload.clone())
            .verify()
            .is_ok(),
        RecordKind::Tombstone => payload.is_empty(),
        RecordKind::Journal | RecordKind::Snapshot => parse_meta(header, payload).is_some(),
    }
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

    #[test]
    fn journal_records_carry_their_number_and_catch_damage() {
        let mut buf = Vec::new();
        let len = push_meta_record(&mut buf, RecordKind::Journal, 7, b"entry");
        assert_eq!(len as usize, buf.len());
        let header = RecordHeader::decode(buf[..48].try_into().unwrap()).unwrap();
        assert_eq!(header.kind, RecordKind::Journal);
        let payload = Bytes::copy_from_slice(&buf[48..]);
        assert_eq!(
            parse_meta(&header, &payload),
            Some((7, Bytes::from_static(b"entry")))
        );
        let mut damaged = buf[48..].to_vec();
        damaged[9] ^= 1;
        assert!(!payload_is_intact(&header, &Bytes::from(damaged)));
    }
}
