//! The one conformance suite, against a real S3-compatible server process.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use pouch_backend::conformance::{self, Capabilities};
use pouch_backend::{Backend, Block, Error, Seq};
use pouch_backend_s3::S3Backend;
use pouch_testkit::proxy::{FaultProxy, Faults};
use pouch_testkit::s3;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_backend_passes_the_conformance_suite() {
    conformance::run_all(
        Capabilities {
            push: false,
            gc: true,
        },
        common::fresh,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_accepts_a_store_that_enforces_conditional_writes() {
    let server = s3::server();
    let bucket = server.fresh_bucket().await;
    let backend = S3Backend::connect(common::config(&server.endpoint, &bucket), None).unwrap();
    backend
        .probe_conditional_writes()
        .await
        .expect("moto enforces If-None-Match");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_refuses_a_store_that_ignores_conditional_writes() {
    let server = s3::server();
    let bucket = server.fresh_bucket().await;
    let proxy = FaultProxy::start(
        &server.endpoint,
        Faults {
            strip_if_none_match: true,
            ..Faults::default()
        },
    )
    .await;
    let backend = S3Backend::connect(common::config(&proxy.url, &bucket), None).unwrap();
    match backend.probe_conditional_writes().await {
        Err(Error::Unsupported(message)) => {
            assert!(message.contains("If-None-Match"), "{message}");
        }
        other => panic!("a store ignoring If-None-Match must be refused, got {other:?}"),
    }
}

/// 20,000 small blocks in one put are a handful of pack objects, and a
/// second device (cold cache) finds every one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_blocks_are_packed_and_found_by_another_client() {
    let server = s3::server();
    let bucket = server.fresh_bucket().await;
    let proxy = FaultProxy::start(&server.endpoint, Faults::default()).await;
    let cache = tempfile::tempdir().unwrap();
    let writer = S3Backend::connect(
        common::config(&proxy.url, &bucket),
        Some(cache.path().to_path_buf()),
    )
    .unwrap();
    let blocks: Vec<Block> = (0..20_000u64)
        .map(|i| Block::encode(conformance::noise(i, 700)))
        .collect();
    let ids: Vec<_> = blocks.iter().map(Block::id).collect();
    writer.put_blocks(blocks).await.unwrap();
    let requests = proxy
        .counters
        .requests
        .load(std::sync::atomic::Ordering::Relaxed);
    // 14 MB of blocks: a pack or two of up to 16 MiB, each with its index.
    assert!(requests <= 12, "{requests} requests for 20,000 blocks");

    let reader = S3Backend::connect(common::config(&server.endpoint, &bucket), None).unwrap();
    assert!(reader.has_blocks(&ids).await.unwrap().iter().all(|&h| h));
    assert_eq!(
        reader.get_block(ids[12_345]).await.unwrap(),
        conformance::noise(12_345, 700)
    );

    // The writer's cache folder lets a restarted client skip the fetches.
    let restarted = S3Backend::connect(
        common::config(&server.endpoint, &bucket),
        Some(cache.path().to_path_buf()),
    )
    .unwrap();
    assert_eq!(
        restarted.get_block(ids[7]).await.unwrap(),
        conformance::noise(7, 700)
    );
}

/// A new device reading 20,000 small blocks with `get_blocks` makes a
/// handful of requests: ranged GETs over runs of each pack, not one GET per
/// block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batched_read_of_20000_blocks_is_a_few_ranged_gets() {
    use futures_util::StreamExt;
    let server = s3::server();
    let bucket = server.fresh_bucket().await;
    let writer = S3Backend::connect(common::config(&server.endpoint, &bucket), None).unwrap();
    let raws: Vec<Bytes> = (0..20_000u64).map(|i| conformance::noise(i, 700)).collect();
    writer
        .put_blocks(raws.iter().cloned().map(Block::encode).collect())
        .await
        .unwrap();
    let proxy = FaultProxy::start(&server.endpoint, Faults::default()).await;
    let reader = S3Backend::connect(common::config(&proxy.url, &bucket), None).unwrap();
    let ids: Vec<_> = raws.iter().map(|r| pouch_backend::BlockId::of(r)).collect();
    let mut got = reader.get_blocks(ids);
    let mut n = 0;
    while let Some(item) = got.next().await {
        assert_eq!(item.unwrap(), raws[n]);
        n += 1;
    }
    assert_eq!(n, 20_000);
    let requests = proxy
        .counters
        .requests
        .load(std::sync::atomic::Ordering::Relaxed);
    // Two listings, a pack index or two, and 14 MB in ranges of a pack.
    assert!(requests <= 10, "{requests} requests for 20,000 blocks");
}

/// With 10% of requests failing (503, 500 after the fact, dropped
/// connections) every call still completes, and a journal append whose
/// answer was lost is not mistaken for a lost race.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_survive_a_store_that_fails_one_request_in_ten() {
    let server = s3::server();
    let bucket = server.fresh_bucket().await;
    let proxy = FaultProxy::start(
        &server.endpoint,
        Faults {
            fail_percent: 10,
            seed: 7,
            strip_if_none_match: false,
        },
    )
    .await;
    let backend: Arc<dyn Backend> =
        Arc::new(S3Backend::connect(common::config(&proxy.url, &bucket), None).unwrap());
    for round in 0..30u64 {
        let blocks: Vec<Block> = (0..5)
            .map(|i| Block::encode(conformance::noise(round * 10 + i, 50_000)))
            .collect();
        backend.put_blocks(blocks.clone()).await.unwrap();
        backend
            .append(Seq(round + 1), Bytes::from(format!("commit {round}")))
            .await
            .unwrap_or_else(|e| panic!("append {}: {e}", round + 1));
        for block in &blocks {
            assert_eq!(
                backend.get_block(block.id()).await.unwrap(),
                block.decode().unwrap()
            );
        }
    }
    let entries = backend.read_journal(Seq::ZERO, 100).await.unwrap();
    assert_eq!(entries.len(), 30);
    assert_eq!(entries[29].data, Bytes::from("commit 29"));
    let failed = proxy
        .counters
        .failed
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(failed >= 10, "the proxy failed only {failed} requests");
}

/// A block copy that fails verification is never served and is
/// quarantined: a tombstone takes it out of the index, for every client
/// (so devices send it again), its bytes stay in the pack, and a put
/// stores a fresh copy that reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_block_in_a_pack_is_quarantined_and_healed_by_a_put() {
    let server = s3::server();
    let bucket = server.fresh_bucket().await;
    let backend = S3Backend::connect(common::config(&server.endpoint, &bucket), None).unwrap();
    let raw = conformance::noise(77, 100_000);
    let block = Block::encode(raw.clone());
    let id = block.id();
    backend.put_blocks(vec![block.clone()]).await.unwrap();
    let pack = server
        .keys(&bucket)
        .await
        .into_iter()
        .find(|k| k.ends_with(".pack"))
        .expect("a pack");
    let mut bytes = server.get(&bucket, &pack).await.to_vec();
    let at = bytes
        .windows(64)
        .position(|w| w == &raw[50_000..50_064])
        .expect("the raw bytes");
    bytes[at + 7] ^= 0x55;
    server.put(&bucket, &pack, Bytes::from(bytes)).await;

    // A batched read refuses it too (and quarantines it).
    let batched: Vec<_> = futures_util::StreamExt::collect::<Vec<_>>(
        S3Backend::connect(common::config(&server.endpoint, &bucket), None)
            .unwrap()
            .get_blocks(vec![id]),
    )
    .await;
    assert!(
        matches!(batched[..], [Err(Error::Corrupt { .. })]),
        "{batched:?}"
    );
    assert!(matches!(
        backend.get_block(id).await,
        Err(Error::Corrupt { .. } | Error::BlockNotFound(_))
    ));
    assert_eq!(backend.has_blocks(&[id]).await.unwrap(), [false]);
    let other = S3Backend::connect(common::config(&server.endpoint, &bucket), None).unwrap();
    assert_eq!(other.has_blocks(&[id]).await.unwrap(), [false]);
    assert!(
        server.keys(&bucket).await.contains(&pack),
        "the pack was deleted"
    );

    other.put_blocks(vec![block]).await.unwrap();
    assert_eq!(other.get_block(id).await.unwrap(), raw);
    let third = S3Backend::connect(common::config(&server.endpoint, &bucket), None).unwrap();
    assert_eq!(third.get_block(id).await.unwrap(), raw);
}

/// A device that uploads many packs writes merged indexes every 16: a new
/// device reads those and the few packs' indexes they miss, not one index
/// per pack. A damaged merged index only loses the shortcut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_device_reads_merged_indexes_instead_of_one_per_pack() {
    let server = s3::server();
    let bucket = server.fresh_bucket().await;
    let mut small_packs = common::config(&server.endpoint, &bucket);
    small_packs.pack_size = 64 << 10;
    let writer = S3Backend::connect(small_packs, None).unwrap();
    let raws: Vec<Bytes> = (0..40u64)
        .map(|i| conformance::noise(i, 60 << 10))
        .collect();
    writer
        .put_blocks(raws.iter().cloned().map(Block::encode).collect())
        .await
        .unwrap();
    let keys = server.keys(&bucket).await;
    let count = |part: &str| keys.iter().filter(|k| k.contains(part)).count();
    assert_eq!(count(".idx"), 40, "{keys:?}");
    assert_eq!(count("ns/indexes/"), 2, "{keys:?}");

    let ids: Vec<_> = raws.iter().map(|r| pouch_backend::BlockId::of(r)).collect();
    let proxy = FaultProxy::start(&server.endpoint, Faults::default()).await;
    let reader = S3Backend::connect(common::config(&proxy.url, &bucket), None).unwrap();
    assert!(reader.has_blocks(&ids).await.unwrap().iter().all(|&h| h));
    let requests = proxy
        .counters
        .requests
        .load(std::sync::atomic::Ordering::Relaxed);
    // Four listings (packs, tombstones, condemned copies, merged indexes),
    // two merged indexes, the 8 indexes they leave out.
    assert_eq!(requests, 14, "{requests} requests to learn 40 packs");
    assert_eq!(reader.get_block(ids[3]).await.unwrap(), raws[3]);

    // A damaged merged index: the packs it covers are read one by one.
    let merged = keys.iter().find(|k| k.contains("ns/indexes/")).unwrap();
    server
        .put(&bucket, merged, Bytes::from_static(b"not an index"))
        .await;
    let proxy = FaultProxy::start(&server.endpoint, Faults::default()).await;
    let reader = S3Backend::connect(common::config(&proxy.url, &bucket), None).unwrap();
    assert!(reader.has_blocks(&ids).await.unwrap().iter().all(|&h| h));
    let requests = proxy
        .counters
        .requests
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        requests, 30,
        "{requests} requests with one merged index damaged"
    );
    for (id, raw) in ids.iter().zip(&raws) {
        assert_eq!(&reader.get_block(*id).await.unwrap(), raw);
    }
}
