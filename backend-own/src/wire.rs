//! The binary bodies of the `pouch-store` HTTP API, shared by the server
//! and its client. All integers are little-endian.
//!
//! ```text
//! blocks:   repeated { id [32] | codec u8 | length u32 | payload }
//! ids:      repeated { id [32] }
//! presence: one byte per id, 1 = stored
//! answers:  per id asked, in order: { status u8 } and, for status 0 (the
//!           block), { id [32] | codec u8 | length u32 | payload };
//!           1 = not stored, 2 = damaged (refused)
//! entries:  repeated { seq u64 | length u32 | data }
//! stored:   repeated { id [32] | stored length u64 | mark ms i64 (MIN: none) }
//! lease:    text "generation expires_ms now_ms"
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};
use pouch_backend::{
    Block, BlockId, Codec, GcLease, JournalEntry, MAX_BLOCK_SIZE, Seq, StoredBlock,
};

/// A body that does not follow its format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed body: {0}")]
pub struct Malformed(pub &'static str);

/// Encodes blocks for a batched put, in one buffer (the client streams
/// [`block_pieces`] instead; this is for tests and tools).
pub fn encode_blocks(blocks: &[Block]) -> Bytes {
    Bytes::from(block_pieces(blocks).concat())
}

/// The batched-put body as a sequence of pieces that share the blocks'
/// payloads (no copy): a header, then the payload, per block. Sent as a
/// streamed request body.
pub fn block_pieces(blocks: &[Block]) -> Vec<Bytes> {
    let mut pieces = Vec::with_capacity(blocks.len() * 2);
    for block in blocks {
        let mut header = BytesMut::with_capacity(BLOCK_HEADER_LEN);
        put_block_header(&mut header, block);
        pieces.push(header.freeze());
        pieces.push(block.payload().clone());
    }
    pieces
}

/// Length of a block's header in a body: id, codec, payload length.
const BLOCK_HEADER_LEN: usize = 37;

fn put_block_header(out: &mut BytesMut, block: &Block) {
    out.put_slice(block.id().as_bytes());
    out.put_u8(block.codec().tag());
    out.put_u32_le(block.payload().len() as u32);
}

/// Takes a block's header off the front of `buffer`, which holds at least
/// [`BLOCK_HEADER_LEN`] bytes: (id, codec, payload length).
fn take_block_header(buffer: &mut BytesMut) -> Result<(BlockId, Codec, usize), Malformed> {
    let id = BlockId::from_slice(&buffer.split_to(32)).expect("32 bytes");
    let codec = Codec::from_tag(buffer.get_u8()).ok_or(Malformed("unknown codec"))?;
    let len = buffer.get_u32_le() as usize;
    if len > MAX_BLOCK_SIZE + MAX_BLOCK_SIZE / 64 {
        return Err(Malformed("a block payload is too long"));
    }
    Ok((id, codec, len))
}

/// One whole block as [`block_pieces`] lays it out (its header, then its
/// payload), unverified: a record in a cell's volume is one.
pub fn decode_block(record: Bytes) -> Result<Block, Malformed> {
    if record.len() < BLOCK_HEADER_LEN {
        return Err(Malformed("a block header is cut short"));
    }
    let (id, codec, len) = take_block_header(&mut BytesMut::from(&record[..BLOCK_HEADER_LEN]))?;
    let payload = record.slice(BLOCK_HEADER_LEN..);
    if payload.len() != len {
        return Err(Malformed("a block payload has the wrong length"));
    }
    Ok(Block::from_parts(id, codec, payload))
}

/// Decodes a batched-put body as it arrives, chunk by chunk, so that a bad
/// header is refused at once and no more than one block is buffered beyond
/// the blocks already complete.
#[derive(Debug, Default)]
pub struct BlockStream {
    buffer: BytesMut,
    /// The header of the block being received: (id, codec, length).
    pending: Option<(BlockId, Codec, usize)>,
}

impl BlockStream {
    /// Takes the next chunk of the body; returns the blocks it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Block>, Malformed> {
        self.buffer.extend_from_slice(chunk);
        let mut done = Vec::new();
        loop {
            match self.pending {
                None if self.buffer.len() >= BLOCK_HEADER_LEN => {
                    let (id, codec, len) = take_block_header(&mut self.buffer)?;
                    self.pending = Some((id, codec, len));
                    self.buffer.reserve(len);
                }
                Some((id, codec, len)) if self.buffer.len() >= len => {
                    done.push(Block::from_parts(
                        id,
                        codec,
                        self.buffer.split_to(len).freeze(),
                    ));
                    self.pending = None;
                }
                _ => return Ok(done),
            }
        }
    }

    /// Ends the body: it must not stop inside a block.
    pub fn finish(self) -> Result<(), Malformed> {
        if self.pending.is_some() || !self.buffer.is_empty() {
            return Err(Malformed("a block header or payload is cut short"));
        }
        Ok(())
    }
}

/// The most ids one batched read may ask for.
pub const MAX_READ_IDS: usize = 4096;

/// One answer of a batched read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The block, in its stored encoding, verified by the server.
    Block(Block),
    /// Not stored.
    NotFound,
    /// Stored but damaged: refused (and quarantined).
    Corrupt,
}

/// Appends `answer`'s encoding to `out`.
pub fn encode_answer(out: &mut BytesMut, answer: &Answer) {
    match answer {
        Answer::Block(block) => {
            out.put_u8(0);
            put_block_header(out, block);
            out.put_slice(block.payload());
        }
        Answer::NotFound => out.put_u8(1),
        Answer::Corrupt => out.put_u8(2),
    }
}

/// Decodes a batched read's answers as they arrive, chunk by chunk.
#[derive(Debug, Default)]
pub struct AnswerStream {
    buffer: BytesMut,
    /// A block answer whose header was read: (id, codec, length).
    pending: Option<(BlockId, Codec, usize)>,
}

impl AnswerStream {
    /// Takes the next chunk; returns the answers it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Answer>, Malformed> {
        self.buffer.extend_from_slice(chunk);
        let mut done = Vec::new();
        loop {
            match self.pending {
                None if !self.buffer.is_empty() => match self.buffer[0] {
                    0 if self.buffer.len() > BLOCK_HEADER_LEN => {
                        self.buffer.advance(1);
                        self.pending = Some(take_block_header(&mut self.buffer)?);
                    }
                    0 => return Ok(done),
                    1 => {
                        self.buffer.advance(1);
                        done.push(Answer::NotFound);
                    }
                    2 => {
                        self.buffer.advance(1);
                        done.push(Answer::Corrupt);
                    }
                    _ => return Err(Malformed("unknown answer status")),
                },
                Some((id, codec, len)) if self.buffer.len() >= len => {
                    let payload = self.buffer.split_to(len).freeze();
                    done.push(Answer::Block(Block::from_parts(id, codec, payload)));
                    self.pending = None;
                }
                _ => return Ok(done),
            }
        }
    }

    /// Checks that the answers ended on a boundary.
    pub fn finish(self) -> Result<(), Malformed> {
        if self.pending.is_some() || !self.buffer.is_empty() {
            return Err(Malformed("an answer is cut short"));
        }
        Ok(())
    }
}

/// Encodes a list of ids.
pub fn encode_ids(ids: &[BlockId]) -> Bytes {
    let mut out = BytesMut::with_capacity(ids.len() * 32);
    for id in ids {
        out.put_slice(id.as_bytes());
    }
    out.freeze()
}

/// Decodes a list of ids.
pub fn decode_ids(body: &[u8]) -> Result<Vec<BlockId>, Malformed> {
    if !body.len().is_multiple_of(32) {
        return Err(Malformed("an id list is not a multiple of 32 bytes"));
    }
    Ok(body
        .chunks_exact(32)
        .map(|c| BlockId::from_slice(c).expect("32 bytes"))
        .collect())
}

/// The most blocks one `gc/list` answer carries.
pub const MAX_LIST: usize = 100_000;

/// Encodes a `gc/list` answer: per block its id, stored length (u64 LE)
/// and mark time (i64 LE, `i64::MIN` for none).
pub fn encode_stored(blocks: &[StoredBlock]) -> Bytes {
    let mut out = BytesMut::with_capacity(blocks.len() * 48);
    for block in blocks {
        out.put_slice(block.id.as_bytes());
        out.put_u64_le(block.stored_len);
        out.put_i64_le(block.marked_ms.unwrap_or(i64::MIN));
    }
    out.freeze()
}

/// Decodes a `gc/list` answer.
pub fn decode_stored(body: &[u8]) -> Result<Vec<StoredBlock>, Malformed> {
    if !body.len().is_multiple_of(48) {
        return Err(Malformed("a block list is not a multiple of 48 bytes"));
    }
    Ok(body
        .chunks_exact(48)
        .map(|c| {
            let marked = i64::from_le_bytes(c[40..48].try_into().expect("8 bytes"));
            StoredBlock {
                id: BlockId::from_slice(&c[..32]).expect("32 bytes"),
                stored_len: u64::from_le_bytes(c[32..40].try_into().expect("8 bytes")),
                marked_ms: (marked != i64::MIN).then_some(marked),
            }
        })
        .collect())
}

/// Encodes a lease (`generation expires_ms now_ms`, text).
pub fn encode_lease(lease: &GcLease) -> String {
    format!(
        "{} {} {}\n",
        lease.generation, lease.expires_ms, lease.now_ms
    )
}

/// Decodes a lease.
pub fn decode_lease(body: &str) -> Result<GcLease, Malformed> {
    let mut fields = body.split_whitespace().map(str::parse::<i64>);
    let mut next = || {
        fields
            .next()
            .and_then(Result::ok)
            .ok_or(Malformed("a lease answer is malformed"))
    };
    Ok(GcLease {
        generation: next()? as u64,
        expires_ms: next()?,
        now_ms: next()?,
    })
}

/// Encodes journal entries.
pub fn encode_entries(entries: &[JournalEntry]) -> Bytes {
    let mut out = BytesMut::with_capacity(entries.iter().map(|e| 12 + e.data.len()).sum());
    for entry in entries {
        out.put_u64_le(entry.seq.0);
        out.put_u32_le(entry.data.len() as u32);
        out.put_slice(&entry.data);
    }
    out.freeze()
}

/// Decodes journal entries.
pub fn decode_entries(mut body: Bytes) -> Result<Vec<JournalEntry>, Malformed> {
    let mut entries = Vec::new();
    while body.has_remaining() {
        if body.remaining() < 12 {
            return Err(Malformed("an entry header is cut short"));
        }
        let seq = Seq(body.get_u64_le());
        let len = body.get_u32_le() as usize;
        if len > body.remaining() {
            return Err(Malformed("an entry is cut short"));
        }
        entries.push(JournalEntry {
            seq,
            data: body.split_to(len),
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_lists_and_leases_round_trip() {
        let blocks = vec![
            StoredBlock {
                id: BlockId::of(b"a"),
                stored_len: 77,
                marked_ms: None,
            },
            StoredBlock {
                id: BlockId::of(b"b"),
                stored_len: 1 << 40,
                marked_ms: Some(1_700_000_000_123),
            },
        ];
        assert_eq!(decode_stored(&encode_stored(&blocks)).unwrap(), blocks);
        assert!(decode_stored(&[0; 47]).is_err());
        let lease = GcLease {
            generation: 9,
            expires_ms: 0,
            now_ms: -5,
        };
        assert_eq!(decode_lease(&encode_lease(&lease)).unwrap(), lease);
        assert!(decode_lease("9 1").is_err());
    }

    #[test]
    fn answers_round_trip_whatever_the_chunking() {
        let blocks: Vec<Block> = (0..4u8)
            .map(|i| Block::encode(Bytes::from(vec![i; 100 * i as usize])))
            .collect();
        let answers = vec![
            Answer::Block(blocks[1].clone()),
            Answer::NotFound,
            Answer::Block(blocks[0].clone()),
            Answer::Corrupt,
            Answer::Block(blocks[3].clone()),
        ];
        let mut body = BytesMut::new();
        for answer in &answers {
            encode_answer(&mut body, answer);
        }
        for step in [1, 7, 38, 1000] {
            let mut decoder = AnswerStream::default();
            let mut got = Vec::new();
            for chunk in body.chunks(step) {
                got.extend(decoder.push(chunk).unwrap());
            }
            decoder.finish().unwrap();
            assert_eq!(got, answers, "chunks of {step}");
        }
        let mut cut = AnswerStream::default();
        cut.push(&body[..body.len() - 3]).unwrap();
        assert!(cut.finish().is_err());
        assert!(AnswerStream::default().push(&[9]).is_err());
    }

    #[test]
    fn streamed_blocks_decode_whatever_the_chunking() {
        let blocks: Vec<Block> = (0..5u8)
            .map(|i| Block::encode(Bytes::from(vec![i; 1000 * usize::from(i)])))
            .collect();
        let whole = encode_blocks(&blocks);
        for chunk in [1, 7, 37, 1000, whole.len()] {
            let mut stream = BlockStream::default();
            let mut got = Vec::new();
            for piece in whole.chunks(chunk) {
                got.extend(stream.push(piece).unwrap());
            }
            stream.finish().unwrap();
            assert_eq!(got, blocks, "chunks of {chunk}");
        }
        let mut cut = BlockStream::default();
        cut.push(&whole[..whole.len() - 1]).unwrap();
        assert!(cut.finish().is_err());
        let mut huge = BlockStream::default();
        let mut header = vec![0u8; 33];
        header.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(huge.push(&header).is_err());
    }

    #[test]
    fn id_and_entry_bodies_round_trip_and_refuse_truncation() {
        let ids = vec![BlockId::of(b""), BlockId::of(&[3u8; 5000])];
        assert_eq!(decode_ids(&encode_ids(&ids)).unwrap(), ids);
        assert!(decode_ids(&[0u8; 33]).is_err());

        let entries = vec![
            JournalEntry {
                seq: Seq(1),
                data: Bytes::from_static(b"a"),
            },
            JournalEntry {
                seq: Seq(2),
                data: Bytes::new(),
            },
        ];
        let body = encode_entries(&entries);
        assert_eq!(decode_entries(body.clone()).unwrap(), entries);
        assert!(decode_entries(body.slice(..5)).is_err());
    }
}
