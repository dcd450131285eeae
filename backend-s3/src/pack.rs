//! Packs: many blocks in one object, and the small files that say where.
//!
//! On an object store a request costs far more than its bytes, so one
//! upload batch becomes a few pack objects of a few MiB each (encoded blocks
//! back to back) plus one index per pack. Reads are ranged GETs.
//!
//! Index (`.idx`), little-endian:
//!
//! ```text
//! "POUCHIDX" | version u8 = 1 | count u32 | count × (id [32] | codec u8 | offset u64 | len u32)
//!            | BLAKE3 of everything before [32]
//! ```
//!
//! Merged index (`indexes/{name}`): the entries of many packs' indexes in
//! one object, written by the device that uploaded those packs every few
//! packs, so that a new device reads a few objects instead of one index
//! per pack. It repeats what the packs' own indexes say (those stay the
//! authority: an entry is used only for a pack the bucket lists).
//!
//! ```text
//! "POUCHMIX" | version u8 = 1 | count u32 | count × (pack [16] | index entry [45]) | BLAKE3 [32]
//! ```
//!
//! Tombstones (deletes) name (block, pack) pairs rather than blocks, so a
//! block put again after a delete lands in a new pack that no tombstone
//! names: no clocks are compared between devices.
//!
//! ```text
//! "POUCHTMB" | version u8 = 1 | count u32 | count × (id [32] | pack [16]) | BLAKE3 [32]
//! ```
//!
//! Condemned pairs (`condemned/{name}`): copies a collector marked as
//! garbage, each with the time its mark was first made (store time, ms; 0:
//! this object's own `LastModified`). A marked copy is still read, but no
//! longer counts as stored for `has_blocks` or a put's dedup; a sweep
//! tombstones the pairs marked long enough ago. Unmarking rewrites the
//! object without the pairs (the new one written before the old one goes,
//! so a pair that stays is marked all along).
//!
//! ```text
//! "POUCHCDN" | version u8 = 1 | count u32 | count × (id [32] | pack [16] | since_ms i64) | BLAKE3 [32]
//! ```
//!
//! Space comes back in `gc::reclaim`: a pack whose entries are all
//! tombstoned is deleted (index first); a pack mostly dead is rewritten
//! (its live blocks put into a new pack, whose index is written before the
//! old pack's entries are tombstoned) so that readers always find every
//! live block somewhere; tombstone, condemned and merged-index objects go
//! once every pack they name is gone.

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{BufMut, Bytes, BytesMut};
use pouch_backend::{Block, BlockId, Codec};

const INDEX_MAGIC: &[u8; 8] = b"POUCHIDX";
const TOMB_MAGIC: &[u8; 8] = b"POUCHTMB";
const MERGED_MAGIC: &[u8; 8] = b"POUCHMIX";
const CONDEMNED_MAGIC: &[u8; 8] = b"POUCHCDN";
const VERSION: u8 = 1;
const INDEX_ENTRY: usize = 32 + 1 + 8 + 4;
const TOMB_ENTRY: usize = 32 + 16;
const MERGED_ENTRY: usize = 16 + INDEX_ENTRY;
const CONDEMNED_ENTRY: usize = 32 + 16 + 8;

/// A random 128-bit object name, shown as 32 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct PackName(pub(crate) u128);

impl PackName {
    /// A fresh name. Uniqueness is what matters (two devices must never
    /// write the same pack name): std's per-process random hasher keys,
    /// the time, the process id and a counter all go in.
    pub(crate) fn random() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut hasher = blake3::Hasher::new();
        let state = RandomState::new();
        hasher.update(&state.hash_one(0u8).to_le_bytes());
        hasher.update(&RandomState::new().hash_one(1u8).to_le_bytes());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        hasher.update(&now.as_nanos().to_le_bytes());
        hasher.update(&std::process::id().to_le_bytes());
        hasher.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        let hash = hasher.finalize();
        let mut bytes = [0; 16];
        bytes.copy_from_slice(&hash.as_bytes()[..16]);
        Self(u128::from_le_bytes(bytes))
    }
}

impl fmt::Display for PackName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl FromStr for PackName {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 32 {
            // Make u128 parsing refuse it the same way as any bad digit.
            return u128::from_str_radix("-", 16).map(PackName);
        }
        u128::from_str_radix(s, 16).map(PackName)
    }
}

/// Where one block sits inside its pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) id: BlockId,
    pub(crate) codec: Codec,
    pub(crate) offset: u64,
    pub(crate) len: u32,
}

/// A pack ready to upload: its bytes (the blocks' payloads, not copied) and
/// its index.
pub(crate) struct Pack {
    pub(crate) name: PackName,
    pub(crate) parts: Vec<Bytes>,
    pub(crate) entries: Vec<Entry>,
}

/// Splits blocks into packs of about `target` bytes; a block larger than
/// `target` gets a pack of its own. Order is kept.
pub(crate) fn build_packs(blocks: Vec<Block>, target: usize) -> Vec<Pack> {
    let mut packs = Vec::new();
    let mut current: Option<Pack> = None;
    let mut size = 0usize;
    for block in blocks {
        let len = block.payload().len();
        if size > 0 && size + len > target {
            packs.extend(current.take());
            size = 0;
        }
        let pack = current.get_or_insert_with(|| Pack {
            name: PackName::random(),
            parts: Vec::new(),
            entries: Vec::new(),
        });
        pack.entries.push(Entry {
            id: block.id(),
            codec: block.codec(),
            offset: size as u64,
            len: len as u32,
        });
        pack.parts.push(block.payload().clone());
        size += len;
    }
    packs.extend(current);
    packs
}

/// Why an index or tombstone file was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FormatError {
    #[error("not a Pouch {0} file")]
    Magic(&'static str),
    #[error("{0} format version {1} is newer than this build knows")]
    Version(&'static str, u8),
    #[error("{0} file is truncated or its checksum does not match")]
    Damaged(&'static str),
}

fn seal(mut out: BytesMut) -> Bytes {
    let sum = blake3::hash(&out);
    out.put_slice(sum.as_bytes());
    out.freeze()
}

/// Checks magic, version, length and checksum; returns the entries' bytes.
fn open<'a>(
    data: &'a [u8],
    magic: &[u8; 8],
    what: &'static str,
    entry: usize,
) -> Result<&'a [u8], FormatError> {
    if data.len() < 8 + 1 + 4 + 32 || &data[..8] != magic {
        return Err(FormatError::Magic(what));
    }
    if data[8] != VERSION {
        return Err(FormatError::Version(what, data[8]));
    }
    let (body, sum) = data.split_at(data.len() - 32);
    if blake3::hash(body).as_bytes() != sum {
        return Err(FormatError::Damaged(what));
    }
    let count = u32::from_le_bytes(body[9..13].try_into().expect("4 bytes")) as usize;
    let entries = &body[13..];
    if entries.len() != count * entry {
        return Err(FormatError::Damaged(what));
    }
    Ok(entries)
}

fn header(magic: &[u8; 8], count: usize, entry: usize) -> BytesMut {
    let mut out = BytesMut::with_capacity(8 + 1 + 4 + count * entry + 32);
    out.put_slice(magic);
    out.put_u8(VERSION);
    out.put_u32_le(count as u32);
    out
}

/// Encodes a pack index.
pub(crate) fn encode_index(entries: &[Entry]) -> Bytes {
    let mut out = header(INDEX_MAGIC, entries.len(), INDEX_ENTRY);
    for entry in entries {
        put_entry(&mut out, entry);
    }
    seal(out)
}

fn put_entry(out: &mut BytesMut, entry: &Entry) {
    out.put_slice(entry.id.as_bytes());
    out.put_u8(entry.codec.tag());
    out.put_u64_le(entry.offset);
    out.put_u32_le(entry.len);
}

fn read_entry(e: &[u8], what: &'static str) -> Result<Entry, FormatError> {
    Ok(Entry {
        id: BlockId::from_slice(&e[..32]).expect("32 bytes"),
        codec: Codec::from_tag(e[32]).ok_or(FormatError::Damaged(what))?,
        offset: u64::from_le_bytes(e[33..41].try_into().expect("8 bytes")),
        len: u32::from_le_bytes(e[41..45].try_into().expect("4 bytes")),
    })
}

/// Decodes a pack index, checking it whole.
pub(crate) fn decode_index(data: &[u8]) -> Result<Vec<Entry>, FormatError> {
    let body = open(data, INDEX_MAGIC, "pack index", INDEX_ENTRY)?;
    body.chunks_exact(INDEX_ENTRY)
        .map(|e| read_entry(e, "pack index"))
        .collect()
}

/// Encodes a merged index of `packs`.
pub(crate) fn encode_merged(packs: &[(PackName, Vec<Entry>)]) -> Bytes {
    let count = packs.iter().map(|(_, entries)| entries.len()).sum();
    let mut out = header(MERGED_MAGIC, count, MERGED_ENTRY);
    for (pack, entries) in packs {
        for entry in entries {
            out.put_slice(&pack.0.to_le_bytes());
            put_entry(&mut out, entry);
        }
    }
    seal(out)
}

/// Decodes a merged index, checking it whole: each pack with its entries.
pub(crate) fn decode_merged(data: &[u8]) -> Result<Vec<(PackName, Vec<Entry>)>, FormatError> {
    let body = open(data, MERGED_MAGIC, "merged index", MERGED_ENTRY)?;
    let mut packs: Vec<(PackName, Vec<Entry>)> = Vec::new();
    for e in body.chunks_exact(MERGED_ENTRY) {
        let pack = PackName(u128::from_le_bytes(e[..16].try_into().expect("16 bytes")));
        let entry = read_entry(&e[16..], "merged index")?;
        match packs.last_mut() {
            Some((last, entries)) if *last == pack => entries.push(entry),
            _ => packs.push((pack, vec![entry])),
        }
    }
    Ok(packs)
}

/// Encodes a tombstone file.
pub(crate) fn encode_tombs(tombs: &[(BlockId, PackName)]) -> Bytes {
    let mut out = header(TOMB_MAGIC, tombs.len(), TOMB_ENTRY);
    for (id, pack) in tombs {
        out.put_slice(id.as_bytes());
        out.put_slice(&pack.0.to_le_bytes());
    }
    seal(out)
}

/// Decodes a tombstone file, checking it whole.
pub(crate) fn decode_tombs(data: &[u8]) -> Result<Vec<(BlockId, PackName)>, FormatError> {
    let body = open(data, TOMB_MAGIC, "tombstone", TOMB_ENTRY)?;
    Ok(body
        .chunks_exact(TOMB_ENTRY)
        .map(|e| {
            let id = BlockId::from_slice(&e[..32]).expect("32 bytes");
            let pack = u128::from_le_bytes(e[32..48].try_into().expect("16 bytes"));
            (id, PackName(pack))
        })
        .collect())
}

/// One condemned copy: the block, its pack, and since when (store time,
/// ms; 0 in a new object: the object's own time).
pub(crate) type Condemned = (BlockId, PackName, i64);

/// Encodes a condemned-pairs file.
pub(crate) fn encode_condemned(pairs: &[Condemned]) -> Bytes {
    let mut out = header(CONDEMNED_MAGIC, pairs.len(), CONDEMNED_ENTRY);
    for (id, pack, since) in pairs {
        out.put_slice(id.as_bytes());
        out.put_slice(&pack.0.to_le_bytes());
        out.put_i64_le(*since);
    }
    seal(out)
}

/// Decodes a condemned-pairs file, checking it whole.
pub(crate) fn decode_condemned(data: &[u8]) -> Result<Vec<Condemned>, FormatError> {
    let body = open(data, CONDEMNED_MAGIC, "condemned pairs", CONDEMNED_ENTRY)?;
    Ok(body
        .chunks_exact(CONDEMNED_ENTRY)
        .map(|e| {
            let id = BlockId::from_slice(&e[..32]).expect("32 bytes");
            let pack = u128::from_le_bytes(e[32..48].try_into().expect("16 bytes"));
            let since = i64::from_le_bytes(e[48..56].try_into().expect("8 bytes"));
            (id, PackName(pack), since)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(i: u8, len: usize) -> Block {
        Block::encode(pouch_backend::conformance::noise(u64::from(i), len))
    }

    #[test]
    fn blocks_fill_packs_up_to_the_target_and_big_ones_go_alone() {
        let blocks = vec![block(1, 400), block(2, 400), block(3, 400), block(4, 5000)];
        let sizes: Vec<usize> = blocks.iter().map(|b| b.payload().len()).collect();
        let packs = build_packs(blocks.clone(), 1000);
        let counts: Vec<usize> = packs.iter().map(|p| p.entries.len()).collect();
        assert_eq!(counts, [2, 1, 1]);
        assert_eq!(packs[0].entries[1].offset, sizes[0] as u64);
        assert_eq!(packs[2].entries[0].len as usize, sizes[3]);
        let names: std::collections::HashSet<_> = packs.iter().map(|p| p.name).collect();
        assert_eq!(names.len(), 3);
        assert!(build_packs(Vec::new(), 1000).is_empty());
    }

    #[test]
    fn index_and_tombstones_round_trip_and_refuse_damage() {
        let pack = &build_packs(vec![block(1, 100), block(2, 3000)], 1 << 20)[0];
        let encoded = encode_index(&pack.entries);
        assert_eq!(decode_index(&encoded).unwrap(), pack.entries);
        let mut flipped = encoded.to_vec();
        flipped[20] ^= 1;
        assert!(matches!(
            decode_index(&flipped),
            Err(FormatError::Damaged(_))
        ));
        assert!(matches!(
            decode_index(&encoded[..40]),
            Err(FormatError::Magic(_))
        ));
        let mut future = encoded.to_vec();
        future[8] = 9;
        assert!(matches!(
            decode_index(&future),
            Err(FormatError::Version(_, 9))
        ));

        let tombs = vec![(pack.entries[0].id, pack.name)];
        assert_eq!(decode_tombs(&encode_tombs(&tombs)).unwrap(), tombs);
        assert!(matches!(decode_tombs(&encoded), Err(FormatError::Magic(_))));
        let condemned = vec![
            (pack.entries[0].id, pack.name, 0),
            (pack.entries[1].id, pack.name, 17),
        ];
        assert_eq!(
            decode_condemned(&encode_condemned(&condemned)).unwrap(),
            condemned
        );
        assert!(matches!(
            decode_condemned(&encoded),
            Err(FormatError::Magic(_))
        ));

        let other = &build_packs(vec![block(3, 50)], 1 << 20)[0];
        let merged = vec![
            (pack.name, pack.entries.clone()),
            (other.name, other.entries.clone()),
        ];
        let encoded = encode_merged(&merged);
        assert_eq!(decode_merged(&encoded).unwrap(), merged);
        let mut flipped = encoded.to_vec();
        flipped[30] ^= 1;
        assert!(matches!(
            decode_merged(&flipped),
            Err(FormatError::Damaged(_))
        ));
        assert!(matches!(
            decode_merged(&encode_index(&pack.entries)),
            Err(FormatError::Magic(_))
        ));
    }

    #[test]
    fn pack_names_are_fixed_width_hex_and_parse_back() {
        let name = PackName::random();
        let shown = name.to_string();
        assert_eq!(shown.len(), 32);
        assert_eq!(shown.parse::<PackName>().unwrap(), name);
        assert!("abc".parse::<PackName>().is_err());
        assert_ne!(PackName::random(), name);
    }
}
