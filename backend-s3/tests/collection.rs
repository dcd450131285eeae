//! Garbage collection on a real S3-compatible server (moto): what a mark
//! hides from other devices, and how reclaiming gives the bucket's space
//! back while every live block stays readable from a cold cache.

mod common;

use std::time::Duration;

use bytes::Bytes;
use pouch_backend::conformance::noise;
use pouch_backend::{Backend, Block, BlockId, LeaseRequest};
use pouch_backend_s3::S3Backend;
use pouch_testkit::s3;

fn lease(holder: &str, generation: Option<u64>) -> LeaseRequest {
    LeaseRequest {
        holder: holder.into(),
        generation,
        ttl: Duration::from_secs(60),
    }
}

fn blocks(seed: u64, n: u64, len: usize) -> (Vec<Block>, Vec<BlockId>) {
    let blocks: Vec<Block> = (0..n)
        .map(|i| Block::encode(noise(seed + i, len)))
        .collect();
    let ids = blocks.iter().map(Block::id).collect();
    (blocks, ids)
}

fn count(keys: &[String], part: &str) -> usize {
    keys.iter().filter(|k| k.contains(part)).count()
}

/// A copy marked by a collector is no longer "stored" for a device that
/// looks afterwards (it puts a new copy, which the sweep leaves), though it
/// still reads until it is swept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marked_copy_is_hidden_from_other_devices_and_a_new_copy_survives() {
    let server = s3::server();
    let bucket = server.fresh_bucket().await;
    let connect = || S3Backend::connect(common::config(&server.endpoint, &bucket), None).unwrap();
    let collector = connect();
    let (put, ids) = blocks(500, 2, 3000);
    collector.put_blocks(put.clone()).await.unwrap();
    let held = collector.gc_lease(lease("collector", None)).await.unwrap();
    collector.gc_mark(held.generation, &ids, &[]).await.unwrap();

    let device = connect();
    assert_eq!(device.has_blocks(&ids).await.unwrap(), [false, false]);
    assert_eq!(
        device.get_block(ids[0]).await.unwrap(),
        noise(500, 3000),
        "a marked copy still reads"
    );
    device.put_blocks(vec![put[0].clone()]).await.unwrap();
    assert_eq!(device.has_blocks(&ids).await.unwrap(), [true, false]);
    assert_eq!(count(&server.keys(&bucket).await, ".idx"), 2);

    let swept = collector
        .gc_sweep(held.generation, &ids, i64::MAX)
        .await
        .unwrap();
    assert_eq!(
        swept.blocks, 1,
        "{swept:?}: the block with a new copy stays"
    );
    let reclaimed = collector.gc_reclaim(held.generation).await.unwrap();
    assert_eq!(reclaimed.packs_deleted, 1, "{reclaimed:?}");
    let cold = connect();
    assert_eq!(cold.has_blocks(&ids).await.unwrap(), [true, false]);
    assert_eq!(cold.get_block(ids[0]).await.unwrap(), noise(500, 3000));
    assert!(matches!(
        cold.get_block(ids[1]).await,
        Err(pouch_backend::Error::BlockNotFound(_))
    ));
}

/// After sweeps, dead packs go, a mostly dead pack is rewritten, a pack
/// with a copy still waiting out its grace is left alone, and the small
/// objects that named only gone packs go too. A device whose cached index
/// still points into a deleted pack finds its blocks where they moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reclaiming_deletes_dead_packs_and_rewrites_mostly_dead_ones() {
    let server = s3::server();
    let bucket = server.fresh_bucket().await;
    let mut small = common::config(&server.endpoint, &bucket);
    small.pack_size = 40 << 10;
    let collector = S3Backend::connect(small.clone(), None).unwrap();
    // Three packs of ten 4 KiB blocks: one all dead, one with two live
    // blocks, one with two blocks marked but not yet swept.
    let (all_dead, dead_ids) = blocks(1000, 10, 4000);
    let (mostly_dead, mostly_ids) = blocks(2000, 10, 4000);
    let (waiting, waiting_ids) = blocks(3000, 10, 4000);
    for put in [all_dead, mostly_dead, waiting] {
        collector.put_blocks(put).await.unwrap();
    }
    let reader = S3Backend::connect(small.clone(), None).unwrap();
    assert_eq!(
        reader.get_block(mostly_ids[0]).await.unwrap(),
        noise(2000, 4000)
    );
    let before = server.bytes(&bucket).await;
    assert_eq!(count(&server.keys(&bucket).await, ".pack"), 3);

    let held = collector.gc_lease(lease("collector", None)).await.unwrap();
    let doomed: Vec<BlockId> = dead_ids.iter().chain(&mostly_ids[2..]).copied().collect();
    collector
        .gc_mark(held.generation, &doomed, &[])
        .await
        .unwrap();
    collector
        .gc_sweep(held.generation, &doomed, i64::MAX)
        .await
        .unwrap();
    collector
        .gc_mark(held.generation, &waiting_ids[..2], &[])
        .await
        .unwrap();
    let reclaimed = collector.gc_reclaim(held.generation).await.unwrap();
    assert_eq!(reclaimed.packs_deleted, 2, "{reclaimed:?}");
    assert_eq!(reclaimed.packs_rewritten, 1, "{reclaimed:?}");
    assert!(reclaimed.bytes_rewritten >= 2 * 4000, "{reclaimed:?}");

    let keys = server.keys(&bucket).await;
    assert_eq!(
        count(&keys, ".pack"),
        2,
        "the waiting pack and the rewritten one: {keys:?}"
    );
    assert_eq!(
        count(&keys, "ns/tombs/"),
        0,
        "spent tombstones go: {keys:?}"
    );
    assert_eq!(
        count(&keys, "ns/condemned/"),
        1,
        "the waiting marks stay: {keys:?}"
    );
    let after = server.bytes(&bucket).await;
    assert!(after < before / 2, "{after} of {before} bytes left");

    // The old reader's cache points into the rewritten pack, now gone.
    assert_eq!(
        reader.get_block(mostly_ids[1]).await.unwrap(),
        noise(2001, 4000)
    );
    let cold = S3Backend::connect(small, None).unwrap();
    let live: Vec<BlockId> = mostly_ids[..2]
        .iter()
        .chain(&waiting_ids)
        .copied()
        .collect();
    assert!(
        cold.has_blocks(&live[..2])
            .await
            .unwrap()
            .iter()
            .all(|h| *h)
    );
    for (i, id) in live.iter().enumerate() {
        let seed = if i < 2 {
            2000 + i as u64
        } else {
            3000 + i as u64 - 2
        };
        assert_eq!(cold.get_block(*id).await.unwrap(), noise(seed, 4000));
    }
    assert!(matches!(
        cold.get_block(dead_ids[0]).await,
        Err(pouch_backend::Error::BlockNotFound(_))
    ));
    assert!(matches!(
        cold.get_block(mostly_ids[5]).await,
        Err(pouch_backend::Error::BlockNotFound(_))
    ));
    let _: Bytes = cold.get_block(waiting_ids[0]).await.unwrap();
}

/// A collector that lost its lease changes nothing, even reclaiming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_collector_cannot_reclaim() {
    let server = s3::server();
    let bucket = server.fresh_bucket().await;
    let backend = S3Backend::connect(common::config(&server.endpoint, &bucket), None).unwrap();
    let (put, ids) = blocks(4000, 3, 2000);
    backend.put_blocks(put).await.unwrap();
    let a = backend.gc_lease(lease("a", None)).await.unwrap();
    backend.gc_mark(a.generation, &ids, &[]).await.unwrap();
    backend
        .gc_sweep(a.generation, &ids, i64::MAX)
        .await
        .unwrap();
    let mut release = lease("a", Some(a.generation));
    release.ttl = Duration::ZERO;
    backend.gc_lease(release).await.unwrap();
    let b = backend.gc_lease(lease("b", None)).await.unwrap();
    assert!(b.generation > a.generation);
    assert!(matches!(
        backend.gc_reclaim(a.generation).await,
        Err(pouch_backend::Error::Fenced(_))
    ));
    assert_eq!(count(&server.keys(&bucket).await, ".pack"), 1);
    let keys = server.keys(&bucket).await;
    assert_eq!(
        count(&keys, "ns/gc/lease/"),
        1,
        "older lease objects go: {keys:?}"
    );
}
