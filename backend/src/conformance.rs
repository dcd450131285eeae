//! The conformance suite: the behaviour every [`Backend`] must show.
//!
//! Each backend crate calls [`run_all`] from its integration tests against a
//! real instance of its store (a real folder, a real server process). A
//! check failing panics with a message saying which contract broke. Checks
//! are public one by one too, so a backend's tests can call a single one
//! while hunting a bug.
//!
//! Run the suite on a multi-threaded tokio runtime: the race checks rely on
//! tasks running in parallel.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::{Backend, BackendExt, Block, BlockId, Codec, Error, Result, Seq, Snapshot, StoreId};

/// What a backend can do beyond the required contract.
#[derive(Debug, Clone, Copy, Default)]
pub struct Capabilities {
    /// `wait_journal` wakes up when another writer appends (a long-poll or
    /// an in-process notification) instead of returning at once.
    pub push: bool,
    /// Garbage collection: the lease, marks, revival and sweeps of
    /// [`crate::gc`].
    pub gc: bool,
}

/// Runs every check, each on a fresh, empty namespace from `fresh`.
pub async fn run_all<F, Fut>(caps: Capabilities, mut fresh: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Arc<dyn Backend>>,
{
    block_round_trips(fresh().await).await;
    put_is_idempotent(fresh().await).await;
    missing_block_is_not_found(fresh().await).await;
    mismatched_blocks_are_refused(fresh().await).await;
    many_blocks_in_one_put(fresh().await).await;
    has_many_answers_ten_thousand_ids(fresh().await).await;
    get_blocks_answers_each_id_in_order(fresh().await).await;
    get_blocks_streams_many_blocks(fresh().await).await;
    delete_removes_blocks(fresh().await).await;
    racing_appends_have_one_winner(fresh().await).await;
    appends_must_not_leave_gaps(fresh().await).await;
    reads_from_every_cursor(fresh().await).await;
    wait_reports_news_and_head(fresh().await).await;
    if caps.push {
        wait_wakes_on_append(fresh().await).await;
    }
    snapshot_overwrite_and_read_back(fresh().await).await;
    trimming_drops_what_the_snapshot_folds(fresh().await).await;
    a_copy_starts_from_a_snapshot(fresh().await).await;
    identity_is_made_once(fresh().await).await;
    if caps.gc {
        gc_lease_is_exclusive_and_fenced(fresh().await).await;
        gc_sweeps_only_blocks_marked_before_the_cutoff(fresh().await).await;
        gc_puts_and_checks_revive_marked_blocks(fresh().await).await;
        gc_lists_every_block_in_pages(fresh().await).await;
    }
}

fn lease_request(holder: &str, generation: Option<u64>, ttl: Duration) -> crate::LeaseRequest {
    crate::LeaseRequest {
        holder: holder.to_owned(),
        generation,
        ttl,
    }
}

/// One collector at a time: a second cannot take an unexpired lease;
/// renewing keeps the generation; after a release the next taker gets a
/// higher one, and the old holder's marks and sweeps are refused.
pub async fn gc_lease_is_exclusive_and_fenced(backend: Arc<dyn Backend>) {
    let minute = Duration::from_secs(60);
    let a = backend
        .gc_lease(lease_request("collector a", None, minute))
        .await
        .expect("take the lease");
    assert!(a.expires_ms > a.now_ms, "a lease that lasts: {a:?}");
    match backend
        .gc_lease(lease_request("collector b", None, minute))
        .await
    {
        Err(Error::Fenced(message)) => assert!(
            message.contains("collector a"),
            "the refusal names the holder: {message}"
        ),
        other => panic!("a second collector took a held lease: {other:?}"),
    }
    let renewed = backend
        .gc_lease(lease_request("collector a", Some(a.generation), minute))
        .await
        .expect("renew");
    assert_eq!(renewed.generation, a.generation);
    backend
        .gc_lease(lease_request(
            "collector a",
            Some(a.generation),
            Duration::ZERO,
        ))
        .await
        .expect("release");
    let b = backend
        .gc_lease(lease_request("collector b", None, minute))
        .await
        .expect("take a released lease");
    assert!(b.generation > a.generation, "{b:?} after {a:?}");

    let block = Block::encode(noise(9100, 2000));
    backend.put_blocks(vec![block.clone()]).await.unwrap();
    assert!(matches!(
        backend.gc_mark(a.generation, &[block.id()], &[]).await,
        Err(Error::Fenced(_))
    ));
    assert!(matches!(
        backend
            .gc_sweep(a.generation, &[block.id()], i64::MAX)
            .await,
        Err(Error::Fenced(_))
    ));
    assert!(matches!(
        backend
            .gc_lease(lease_request("collector a", Some(a.generation), minute))
            .await,
        Err(Error::Fenced(_))
    ));
    backend
        .gc_mark(b.generation, &[block.id()], &[])
        .await
        .unwrap();
    backend
        .gc_lease(lease_request(
            "collector b",
            Some(b.generation),
            Duration::ZERO,
        ))
        .await
        .unwrap();
    assert!(
        matches!(
            backend
                .gc_sweep(b.generation, &[block.id()], i64::MAX)
                .await,
            Err(Error::Fenced(_))
        ),
        "a released lease sweeps nothing"
    );
    assert_eq!(
        backend.get_block(block.id()).await.unwrap(),
        noise(9100, 2000),
        "nothing a fenced collector asked for was deleted"
    );
}

/// A sweep deletes what is marked since before its cutoff, and nothing
/// else: not unmarked blocks, not blocks marked later, not ids never put.
pub async fn gc_sweeps_only_blocks_marked_before_the_cutoff(backend: Arc<dyn Backend>) {
    let blocks: Vec<Block> = (0..3)
        .map(|i| Block::encode(noise(9200 + i, 5000)))
        .collect();
    let ids: Vec<BlockId> = blocks.iter().map(Block::id).collect();
    backend.put_blocks(blocks).await.unwrap();
    let lease = backend
        .gc_lease(lease_request("sweeper", None, Duration::from_secs(60)))
        .await
        .unwrap();
    let never = BlockId::of(b"never put, marked");
    backend
        .gc_mark(lease.generation, &[ids[0], ids[1], never], &[])
        .await
        .unwrap();
    let listed = backend.gc_list(None, 100).await.unwrap();
    assert_eq!(listed.len(), 3, "an unstored id is not marked into being");
    for block in &listed {
        let marked = block.id != ids[2];
        assert_eq!(block.marked_ms.is_some(), marked, "{block:?}");
        if let Some(at) = block.marked_ms {
            assert!(at >= lease.now_ms, "marked by the store's clock");
        }
        assert!(block.stored_len >= 5000 / 2, "{block:?}");
    }
    let none = backend
        .gc_sweep(lease.generation, &ids, lease.now_ms - 1)
        .await
        .unwrap();
    assert_eq!(none.blocks, 0, "marks made after the cutoff stay");
    backend
        .gc_mark(lease.generation, &[], &[ids[1]])
        .await
        .unwrap();
    let swept = backend
        .gc_sweep(lease.generation, &[ids[0], ids[1], ids[2], never], i64::MAX)
        .await
        .unwrap();
    assert_eq!(swept.blocks, 1, "only the block still marked goes");
    assert!(swept.bytes > 0);
    assert_eq!(backend.has_blocks(&ids).await.unwrap(), [false, true, true]);
    assert!(matches!(
        backend.get_block(ids[0]).await,
        Err(Error::BlockNotFound(_))
    ));
    // Put again, it is a new, unmarked copy: the old mark is gone with it.
    backend
        .put_blocks(vec![Block::encode(noise(9200, 5000))])
        .await
        .unwrap();
    let again = backend
        .gc_sweep(lease.generation, &[ids[0]], i64::MAX)
        .await
        .unwrap();
    assert_eq!(again.blocks, 0);
    assert_eq!(backend.get_block(ids[0]).await.unwrap(), noise(9200, 5000));
}

/// A device told "stored" after a mark never loses the block to a sweep:
/// a put of a marked block, and a `has_blocks` that answers "stored" for
/// one, leave it stored whatever sweep follows. Stores with a lock revive
/// (the mark goes, `has_blocks` says stored); stores without one hide
/// (`has_blocks` says not stored, a put stores a new copy the sweep leaves).
pub async fn gc_puts_and_checks_revive_marked_blocks(backend: Arc<dyn Backend>) {
    let blocks: Vec<Block> = (0..3)
        .map(|i| Block::encode(noise(9300 + i, 4000)))
        .collect();
    let ids: Vec<BlockId> = blocks.iter().map(Block::id).collect();
    backend.put_blocks(blocks.clone()).await.unwrap();
    let lease = backend
        .gc_lease(lease_request("reviver", None, Duration::from_secs(60)))
        .await
        .unwrap();
    backend.gc_mark(lease.generation, &ids, &[]).await.unwrap();
    backend.put_blocks(vec![blocks[0].clone()]).await.unwrap();
    let told = backend.has_blocks(&ids[1..2]).await.unwrap()[0];
    let marked: Vec<bool> = backend
        .gc_list(None, 100)
        .await
        .unwrap()
        .iter()
        .map(|b| b.marked_ms.is_some())
        .collect();
    assert_eq!(marked.len(), 3, "{marked:?}");
    assert!(
        marked.iter().any(|m| *m),
        "the untouched block stays marked"
    );
    let swept = backend
        .gc_sweep(lease.generation, &ids, i64::MAX)
        .await
        .unwrap();
    let after = backend.has_blocks(&ids).await.unwrap();
    assert!(after[0], "a block put after its mark survives the sweep");
    assert_eq!(
        backend.get_block(ids[0]).await.unwrap(),
        noise(9300, 4000),
        "and reads back"
    );
    if told {
        assert!(after[1], "a block reported stored after its mark survives");
        assert_eq!(swept.blocks, 1, "only the untouched block goes");
    } else {
        assert!(!after[1], "a hidden copy is swept like any marked one");
    }
    assert!(!after[2], "the untouched block goes");
    assert!(matches!(
        backend.get_block(ids[2]).await,
        Err(Error::BlockNotFound(_))
    ));
}

/// Listing pages through every stored block in id order.
pub async fn gc_lists_every_block_in_pages(backend: Arc<dyn Backend>) {
    let blocks: Vec<Block> = (0..25)
        .map(|i| Block::encode(noise(9400 + i, 300)))
        .collect();
    let mut want: Vec<BlockId> = blocks.iter().map(Block::id).collect();
    want.sort();
    backend.put_blocks(blocks).await.unwrap();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = backend.gc_list(after, 10).await.unwrap();
        assert!(page.len() <= 10);
        seen.extend(page.iter().map(|b| b.id));
        if page.len() < 10 {
            break;
        }
        after = page.last().map(|b| b.id);
    }
    assert_eq!(seen, want);
}

/// Deterministic incompressible bytes (xorshift), so checks need no RNG crate.
pub fn noise(seed: u64, len: usize) -> Bytes {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

/// Empty, 1-byte, 4 MiB incompressible and 4 MiB compressible blocks come
/// back byte-identical.
pub async fn block_round_trips(backend: Arc<dyn Backend>) {
    let cases = [
        Bytes::new(),
        Bytes::from_static(b"x"),
        noise(1, 4 << 20),
        Bytes::from(b"pouch ".repeat((4 << 20) / 6)),
    ];
    let blocks: Vec<Block> = cases.iter().cloned().map(Block::encode).collect();
    assert_eq!(blocks[3].codec(), Codec::Zstd, "test data should compress");
    backend
        .put_blocks(blocks.clone())
        .await
        .expect("put blocks");
    for (raw, block) in cases.iter().zip(&blocks) {
        let got = backend
            .get_block(block.id())
            .await
            .expect("get a stored block");
        assert!(
            got == *raw,
            "block of {} bytes did not round-trip",
            raw.len()
        );
    }
}

/// Putting a stored block again, or twice in one call, succeeds.
pub async fn put_is_idempotent(backend: Arc<dyn Backend>) {
    let a = Block::encode(Bytes::from_static(b"idempotent a"));
    let b = Block::encode(noise(2, 10_000));
    backend
        .put_blocks(vec![a.clone()])
        .await
        .expect("first put");
    backend
        .put_blocks(vec![a.clone()])
        .await
        .expect("second put of the same block");
    backend
        .put_blocks(vec![a.clone(), b.clone(), a.clone(), b.clone()])
        .await
        .expect("a batch with duplicates");
    assert_eq!(
        backend.has_blocks(&[a.id(), b.id()]).await.unwrap(),
        [true, true]
    );
    assert_eq!(
        backend.get_block(a.id()).await.unwrap(),
        Bytes::from_static(b"idempotent a")
    );
    assert_eq!(backend.get_block(b.id()).await.unwrap(), noise(2, 10_000));
}

/// A block never put is `BlockNotFound`, not an empty or wrong answer.
pub async fn missing_block_is_not_found(backend: Arc<dyn Backend>) {
    let id = BlockId::of(b"never stored");
    match backend.get_block(id).await {
        Err(Error::BlockNotFound(missing)) => assert_eq!(missing, id),
        other => panic!("get of a missing block returned {other:?}"),
    }
    assert_eq!(backend.has_blocks(&[id]).await.unwrap(), [false]);
}

/// Bytes that do not hash to their id are refused, raw or compressed, and
/// nothing of the refused batch is stored.
pub async fn mismatched_blocks_are_refused(backend: Arc<dyn Backend>) {
    let good = Block::encode(Bytes::from_static(b"good bytes"));
    let claimed = BlockId::of(b"the bytes this block claims to be");
    let raw_forgery = Block::from_parts(claimed, Codec::Raw, Bytes::from_static(b"other bytes"));
    match backend.put_blocks(vec![good.clone(), raw_forgery]).await {
        Err(Error::Corrupt { id, .. }) => assert_eq!(id, claimed),
        other => panic!("a raw block with the wrong id was not refused: {other:?}"),
    }
    let compressed = Block::encode(Bytes::from(vec![5u8; 50_000]));
    let zstd_forgery = Block::from_parts(claimed, Codec::Zstd, compressed.payload().clone());
    match backend.put_blocks(vec![zstd_forgery]).await {
        Err(Error::Corrupt { id, .. }) => assert_eq!(id, claimed),
        other => panic!("a zstd block with the wrong id was not refused: {other:?}"),
    }
    assert_eq!(
        backend.has_blocks(&[claimed, good.id()]).await.unwrap(),
        [false, false],
        "a refused batch must store nothing"
    );
}

/// Five hundred small blocks in one call all land.
pub async fn many_blocks_in_one_put(backend: Arc<dyn Backend>) {
    let raws: Vec<Bytes> = (0..500).map(|i| noise(1000 + i, 4096)).collect();
    let blocks: Vec<Block> = raws.iter().cloned().map(Block::encode).collect();
    let ids: Vec<BlockId> = blocks.iter().map(Block::id).collect();
    backend
        .put_blocks(blocks)
        .await
        .expect("put 500 blocks at once");
    assert!(
        backend
            .has_blocks(&ids)
            .await
            .unwrap()
            .iter()
            .all(|&has| has)
    );
    for i in [0, 1, 250, 499] {
        assert_eq!(backend.get_block(ids[i]).await.unwrap(), raws[i]);
    }
}

/// One `has_blocks` call over 10,000 ids answers each, in order.
pub async fn has_many_answers_ten_thousand_ids(backend: Arc<dyn Backend>) {
    let stored: Vec<Block> = (0..100)
        .map(|i| Block::encode(noise(5000 + i, 64)))
        .collect();
    backend.put_blocks(stored.clone()).await.expect("put");
    let mut ids = Vec::with_capacity(10_000);
    let mut expected = Vec::with_capacity(10_000);
    for i in 0..10_000u64 {
        if i % 100 == 7 {
            ids.push(stored[(i / 100) as usize].id());
            expected.push(true);
        } else {
            ids.push(BlockId::of(&i.to_le_bytes()));
            expected.push(false);
        }
    }
    let got = backend.has_blocks(&ids).await.expect("has 10,000 ids");
    assert_eq!(got.len(), 10_000);
    assert!(got == expected, "has_blocks answered some ids wrongly");
}

/// `get_blocks` answers every id in the order asked, repeats included, with
/// a missing block's `BlockNotFound` as its own item and the stream going
/// on after it; blocks put in separate calls (separate packs) mix.
pub async fn get_blocks_answers_each_id_in_order(backend: Arc<dyn Backend>) {
    use futures_util::StreamExt;
    let raws: Vec<Bytes> = (0..6u64)
        .map(|i| match i {
            0 => Bytes::new(),
            3 => Bytes::from(vec![b'z'; 300_000]),
            _ => noise(7000 + i, 1000 * i as usize + 1),
        })
        .collect();
    let blocks: Vec<Block> = raws.iter().cloned().map(Block::encode).collect();
    backend.put_blocks(blocks[..3].to_vec()).await.expect("put");
    backend.put_blocks(blocks[3..].to_vec()).await.expect("put");
    let missing = BlockId::of(b"never stored");
    let order = [5usize, 0, 99, 2, 5, 3, 1, 4];
    let ids: Vec<BlockId> = order
        .iter()
        .map(|&i| if i == 99 { missing } else { blocks[i].id() })
        .collect();
    let got: Vec<Result<Bytes>> = backend.get_blocks(ids).collect().await;
    assert_eq!(got.len(), order.len(), "one item per id");
    for (item, &i) in got.into_iter().zip(&order) {
        match (item, i) {
            (Err(Error::BlockNotFound(id)), 99) => assert_eq!(id, missing),
            (Ok(bytes), i) if i != 99 => assert_eq!(bytes, raws[i], "block {i}"),
            (other, i) => panic!("block {i}: {other:?}"),
        }
    }
    let none: Vec<Result<Bytes>> = backend.get_blocks(Vec::new()).collect().await;
    assert!(none.is_empty());
}

/// 3,000 blocks in one `get_blocks` call come back whole and in order.
pub async fn get_blocks_streams_many_blocks(backend: Arc<dyn Backend>) {
    use futures_util::StreamExt;
    let raws: Vec<Bytes> = (0..3000u64)
        .map(|i| noise(9000 + i, 700 + (i as usize % 5) * 900))
        .collect();
    backend
        .put_blocks(raws.iter().cloned().map(Block::encode).collect())
        .await
        .expect("put");
    let ids: Vec<BlockId> = raws.iter().map(|r| BlockId::of(r)).collect();
    let mut stream = backend.get_blocks(ids);
    let mut n = 0;
    while let Some(item) = stream.next().await {
        assert_eq!(item.expect("a stored block"), raws[n], "block {n}");
        n += 1;
    }
    assert_eq!(n, raws.len());
}

/// Deleted blocks are gone; deleting a missing block is fine; a deleted
/// block can be put again.
pub async fn delete_removes_blocks(backend: Arc<dyn Backend>) {
    let blocks: Vec<Block> = (0..3)
        .map(|i| Block::encode(noise(9000 + i, 3000)))
        .collect();
    backend.put_blocks(blocks.clone()).await.unwrap();
    let never = BlockId::of(b"never put");
    backend
        .delete_blocks(&[blocks[0].id(), blocks[1].id(), never])
        .await
        .expect("delete");
    backend
        .delete_blocks(&[blocks[0].id()])
        .await
        .expect("delete again");
    let ids: Vec<BlockId> = blocks.iter().map(Block::id).collect();
    assert_eq!(
        backend.has_blocks(&ids).await.unwrap(),
        [false, false, true]
    );
    assert!(matches!(
        backend.get_block(ids[0]).await,
        Err(Error::BlockNotFound(_))
    ));
    backend.put_blocks(vec![blocks[0].clone()]).await.unwrap();
    assert_eq!(backend.get_block(ids[0]).await.unwrap(), noise(9000, 3000));
}

/// Sixteen writers race for each of three slots: exactly one wins each, the
/// others get `SlotTaken`, and the stored entry is the winner's.
pub async fn racing_appends_have_one_winner(backend: Arc<dyn Backend>) {
    for slot in 1..=3u64 {
        let barrier = Arc::new(tokio::sync::Barrier::new(16));
        let racers: Vec<_> = (0..16u64)
            .map(|writer| {
                let backend = backend.clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    let data = Bytes::from(format!("slot {slot} writer {writer}"));
                    barrier.wait().await;
                    (data.clone(), backend.append(Seq(slot), data).await)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for racer in racers {
            let (data, result) = racer.await.expect("racer panicked");
            match result {
                Ok(()) => winners.push(data),
                Err(Error::SlotTaken(seq)) => assert_eq!(seq, Seq(slot)),
                Err(other) => panic!("a losing append must be SlotTaken, got {other:?}"),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "slot {slot} had {} winners",
            winners.len()
        );
        let stored = backend.read_journal(Seq(slot - 1), 1).await.unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].seq, Seq(slot));
        assert_eq!(
            stored[0].data, winners[0],
            "the stored entry is not the winner's"
        );
    }
}

/// Appending past the head, or entry 0, is refused; the journal is unchanged.
pub async fn appends_must_not_leave_gaps(backend: Arc<dyn Backend>) {
    match backend.append(Seq(2), Bytes::from_static(b"gap")).await {
        Err(Error::Gap { seq, head }) => assert_eq!((seq, head), (Seq(2), Seq::ZERO)),
        other => panic!("appending entry 2 to an empty journal returned {other:?}"),
    }
    assert!(backend.append(Seq::ZERO, Bytes::new()).await.is_err());
    backend
        .append(Seq(1), Bytes::from_static(b"one"))
        .await
        .unwrap();
    match backend.append(Seq(1), Bytes::from_static(b"again")).await {
        Err(Error::SlotTaken(seq)) => assert_eq!(seq, Seq(1)),
        other => panic!("appending an existing entry returned {other:?}"),
    }
    assert!(matches!(
        backend.append(Seq(5), Bytes::new()).await,
        Err(Error::Gap { .. })
    ));
    assert_eq!(backend.journal_head().await.unwrap(), Seq(1));
}

/// From every cursor, reads return the entries after it, in order, within
/// the limit.
pub async fn reads_from_every_cursor(backend: Arc<dyn Backend>) {
    let n = 25u64;
    assert!(
        backend
            .read_journal(Seq::ZERO, 10)
            .await
            .unwrap()
            .is_empty()
    );
    for seq in 1..=n {
        let data = if seq == 7 {
            Bytes::new()
        } else {
            noise(seq, seq as usize * 100)
        };
        backend.append(Seq(seq), data).await.unwrap();
    }
    for after in 0..=n + 2 {
        let all = backend.read_journal(Seq(after), 1000).await.unwrap();
        let want: Vec<u64> = (after + 1..=n).collect();
        let got: Vec<u64> = all.iter().map(|e| e.seq.0).collect();
        assert_eq!(got, want, "entries after {after}");
        for entry in &all {
            let seq = entry.seq.0;
            let data = if seq == 7 {
                Bytes::new()
            } else {
                noise(seq, seq as usize * 100)
            };
            assert_eq!(entry.data, data, "contents of entry {seq}");
        }
        let limited = backend.read_journal(Seq(after), 3).await.unwrap();
        let got: Vec<u64> = limited.iter().map(|e| e.seq.0).collect();
        assert_eq!(got, want.iter().copied().take(3).collect::<Vec<_>>());
    }
}

/// `wait_journal` returns at once when there is news, and never reports a
/// head beyond the real one.
pub async fn wait_reports_news_and_head(backend: Arc<dyn Backend>) {
    assert_eq!(
        backend
            .wait_journal(Seq::ZERO, Duration::ZERO)
            .await
            .unwrap(),
        Seq::ZERO
    );
    assert_eq!(
        backend
            .wait_journal(Seq::ZERO, Duration::from_millis(100))
            .await
            .unwrap(),
        Seq::ZERO
    );
    backend
        .append(Seq(1), Bytes::from_static(b"a"))
        .await
        .unwrap();
    backend
        .append(Seq(2), Bytes::from_static(b"b"))
        .await
        .unwrap();
    // News exists: no waiting allowed, so a long timeout must not be served.
    let head = tokio::time::timeout(
        Duration::from_secs(30),
        backend.wait_journal(Seq(1), Duration::from_secs(3600)),
    )
    .await
    .expect("wait_journal must return at once when there is news")
    .unwrap();
    assert_eq!(head, Seq(2));
    assert_eq!(
        backend
            .wait_journal(Seq(2), Duration::from_millis(50))
            .await
            .unwrap(),
        Seq(2)
    );
}

/// For backends with push: a waiter hears of an append made while it waits.
pub async fn wait_wakes_on_append(backend: Arc<dyn Backend>) {
    let waiter = {
        let backend = backend.clone();
        tokio::spawn(async move {
            backend
                .wait_journal(Seq::ZERO, Duration::from_secs(3600))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    backend
        .append(Seq(1), Bytes::from_static(b"news"))
        .await
        .unwrap();
    let head = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("a waiting wait_journal was not woken by an append")
        .expect("waiter panicked")
        .unwrap();
    assert_eq!(head, Seq(1));
}

/// No snapshot at first; a put one reads back; a second replaces it.
pub async fn snapshot_overwrite_and_read_back(backend: Arc<dyn Backend>) {
    assert_eq!(backend.get_snapshot().await.unwrap(), None);
    let first = Snapshot {
        seq: Seq(3),
        data: noise(3, 1000),
    };
    backend.put_snapshot(first.clone()).await.unwrap();
    assert_eq!(backend.get_snapshot().await.unwrap(), Some(first));
    let second = Snapshot {
        seq: Seq(9),
        data: noise(9, 200_000),
    };
    backend.put_snapshot(second.clone()).await.unwrap();
    assert_eq!(backend.get_snapshot().await.unwrap(), Some(second));
}

/// Trimming drops the entries a snapshot folds and nothing else: refused
/// without a snapshot that folds them, reads from before the trim point
/// say so, numbering and appends go on, and a snapshot older than the trim
/// point is refused.
pub async fn trimming_drops_what_the_snapshot_folds(backend: Arc<dyn Backend>) {
    for i in 1..=5u64 {
        backend
            .append(Seq(i), Bytes::from(format!("entry {i}")))
            .await
            .unwrap();
    }
    assert!(
        matches!(
            backend.trim_journal(Seq(3)).await,
            Err(Error::InvalidInput(_))
        ),
        "no snapshot folds the entries"
    );
    let snapshot = Snapshot {
        seq: Seq(3),
        data: Bytes::from_static(b"entries 1 to 3, folded"),
    };
    backend.put_snapshot(snapshot.clone()).await.unwrap();
    assert!(
        matches!(
            backend.trim_journal(Seq(4)).await,
            Err(Error::InvalidInput(_))
        ),
        "entry 4 is not in the snapshot"
    );
    backend.trim_journal(Seq(3)).await.unwrap();
    backend.trim_journal(Seq(2)).await.unwrap();
    let read = |after: u64| {
        let backend = backend.clone();
        async move { backend.read_journal(Seq(after), 10).await }
    };
    let tail: Vec<u64> = read(3).await.unwrap().iter().map(|e| e.seq.0).collect();
    assert_eq!(tail, [4, 5]);
    for after in [0, 2] {
        match read(after).await {
            Err(Error::Trimmed { through }) => assert_eq!(through, Seq(3)),
            other => panic!("a read after {after}, before the trim point: {other:?}"),
        }
    }
    assert_eq!(backend.journal_head().await.unwrap(), Seq(5));
    assert!(matches!(
        backend.append(Seq(3), Bytes::from_static(b"again")).await,
        Err(Error::SlotTaken(_))
    ));
    backend
        .append(Seq(6), Bytes::from_static(b"entry 6"))
        .await
        .unwrap();
    assert!(matches!(
        backend
            .put_snapshot(Snapshot {
                seq: Seq(2),
                data: Bytes::from_static(b"older than the trim"),
            })
            .await,
        Err(Error::InvalidInput(_))
    ));
    assert_eq!(backend.get_snapshot().await.unwrap(), Some(snapshot));
    // Trimming at the head leaves an empty journal that still counts.
    backend
        .put_snapshot(Snapshot {
            seq: Seq(6),
            data: Bytes::from_static(b"all six"),
        })
        .await
        .unwrap();
    backend.trim_journal(Seq(6)).await.unwrap();
    assert_eq!(read(6).await.unwrap(), []);
    assert!(matches!(read(5).await, Err(Error::Trimmed { .. })));
    assert_eq!(backend.journal_head().await.unwrap(), Seq(6));
    backend
        .append(Seq(7), Bytes::from_static(b"entry 7"))
        .await
        .unwrap();
    assert_eq!(
        read(6).await.unwrap()[0].data,
        Bytes::from_static(b"entry 7")
    );
}

/// An empty store given a snapshot and trimmed to it (a migration's
/// target) goes on from there: its head is the snapshot's entry.
pub async fn a_copy_starts_from_a_snapshot(backend: Arc<dyn Backend>) {
    backend
        .put_snapshot(Snapshot {
            seq: Seq(10),
            data: Bytes::from_static(b"ten entries, folded"),
        })
        .await
        .unwrap();
    backend.trim_journal(Seq(10)).await.unwrap();
    assert_eq!(backend.journal_head().await.unwrap(), Seq(10));
    assert!(matches!(
        backend.append(Seq(12), Bytes::from_static(b"twelve")).await,
        Err(Error::Gap { .. })
    ));
    backend
        .append(Seq(11), Bytes::from_static(b"eleven"))
        .await
        .unwrap();
    assert!(matches!(
        backend.read_journal(Seq::ZERO, 10).await,
        Err(Error::Trimmed { through }) if through == Seq(10)
    ));
    let tail = backend.read_journal(Seq(10), 10).await.unwrap();
    assert_eq!(tail.len(), 1);
    assert_eq!(tail[0].seq, Seq(11));
}

/// A fresh store has no identity; the first `init_identity` sets it, every
/// later one (racing or not) gets that one back, and it never changes.
pub async fn identity_is_made_once(backend: Arc<dyn Backend>) {
    assert_eq!(
        backend.identity().await.unwrap(),
        None,
        "a fresh store has no identity"
    );
    let proposals: Vec<StoreId> = (0..8).map(|_| StoreId::random()).collect();
    let answers: Vec<StoreId> = join_tasks(
        proposals
            .iter()
            .map(|p| {
                let (backend, p) = (backend.clone(), *p);
                tokio::spawn(async move { backend.init_identity(p).await.unwrap() })
            })
            .collect(),
    )
    .await;
    let winner = answers[0];
    assert!(
        proposals.contains(&winner),
        "the identity is one of the proposed"
    );
    assert!(
        answers.iter().all(|a| *a == winner),
        "every caller gets the winner: {answers:?}"
    );
    assert_eq!(backend.identity().await.unwrap(), Some(winner));
    assert_eq!(
        backend.init_identity(StoreId::random()).await.unwrap(),
        winner
    );
    assert_eq!(backend.identity().await.unwrap(), Some(winner));
}

async fn join_tasks<T: Send + 'static>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("the task does not panic"));
    }
    out
}
