//! Two real embedded stores behind `Dual`: the pair passes the conformance
//! suite in both roles; during a migration writes land in both and shadow
//! reads catch a target that lost a block (serving the old store's bytes);
//! after the cutover a block only the old store has is still read.

use std::sync::Arc;

use bytes::Bytes;
use pouch_backend::conformance::{Capabilities, noise, run_all};
use pouch_backend::{Backend, BackendExt, Block, Seq};
use pouch_backend_own::EmbeddedBackend;
use pouch_core::dual::Dual;

fn store(dir: &std::path::Path, name: &str) -> Arc<dyn Backend> {
    Arc::new(EmbeddedBackend::open(&dir.join(name)).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_migrating_pair_passes_the_conformance_suite() {
    let root = tempfile::tempdir().unwrap();
    let mut n = 0;
    run_all(
        Capabilities {
            push: true,
            gc: false,
        },
        || {
            n += 1;
            let (old, new) = (
                store(root.path(), &format!("old-{n}")),
                store(root.path(), &format!("new-{n}")),
            );
            async move { Arc::new(Dual::migrating(old, new, 0.5)) as Arc<dyn Backend> }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_falling_back_pair_passes_the_conformance_suite() {
    let root = tempfile::tempdir().unwrap();
    let mut n = 0;
    run_all(
        Capabilities {
            push: true,
            gc: false,
        },
        || {
            n += 1;
            let (new, old) = (
                store(root.path(), &format!("new-{n}")),
                store(root.path(), &format!("old-{n}")),
            );
            async move { Arc::new(Dual::falling_back(new, old)) as Arc<dyn Backend> }
        },
    )
    .await;
}

#[tokio::test]
async fn writes_reach_both_stores_and_shadow_reads_catch_a_bad_target() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (store(dir.path(), "old"), store(dir.path(), "new"));
    let dual = Dual::migrating(old.clone(), new.clone(), 0.5);
    let stats = dual.stats();

    let raws: Vec<Bytes> = (0..10).map(|i| noise(i, 3000 + i as usize)).collect();
    let blocks: Vec<Block> = raws.iter().cloned().map(Block::encode).collect();
    let ids: Vec<_> = blocks.iter().map(Block::id).collect();
    dual.put_blocks(blocks).await.unwrap();
    dual.append(Seq(1), Bytes::from_static(b"entry one"))
        .await
        .unwrap();
    for side in [&old, &new] {
        assert_eq!(side.has_blocks(&ids).await.unwrap(), vec![true; 10]);
        assert_eq!(side.journal_head().await.unwrap(), Seq(1));
    }
    assert_eq!(stats.counts().journal_entries_mirrored, 1);

    // The target lacks one block: the shadow reads of it say so, and the
    // caller still gets the right bytes, from the old store.
    // With a share of one half, every second read is shadowed: reads 2
    // and 12 are of this block.
    new.delete_blocks(&ids[1..2]).await.unwrap();
    for (id, raw) in ids.iter().zip(&raws) {
        assert_eq!(&dual.get_block(*id).await.unwrap(), raw);
    }
    for (id, raw) in ids.iter().zip(&raws) {
        assert_eq!(&dual.get_block(*id).await.unwrap(), raw);
    }
    let counts = stats.counts();
    assert_eq!(counts.shadow_reads, 10, "half of 20 reads");
    assert_eq!(
        (counts.shadow_missing, counts.shadow_mismatches),
        (2, 0),
        "{counts:?}"
    );

    // Another device committed to the old store alone: the next mirrored
    // append brings its entry over first.
    old.append(Seq(2), Bytes::from_static(b"from another device"))
        .await
        .unwrap();
    dual.append(Seq(3), Bytes::from_static(b"entry three"))
        .await
        .unwrap();
    assert_eq!(new.journal_head().await.unwrap(), Seq(3));
    assert_eq!(
        old.read_journal(Seq::ZERO, 10).await.unwrap(),
        new.read_journal(Seq::ZERO, 10).await.unwrap()
    );
    assert_eq!(stats.counts().journal_entries_mirrored, 3);

    // Far behind (the copy has not reached this point), it is left for
    // the copy: the device's append still succeeds.
    for seq in 4..=80 {
        old.append(Seq(seq), Bytes::from(format!("entry {seq}")))
            .await
            .unwrap();
    }
    dual.append(Seq(81), Bytes::from_static(b"entry 81"))
        .await
        .unwrap();
    assert_eq!(old.journal_head().await.unwrap(), Seq(81));
    assert_eq!(new.journal_head().await.unwrap(), Seq(3));
    let counts = stats.counts();
    assert_eq!(counts.secondary_write_failures, 0);
    assert_eq!(counts.journal_entries_mirrored, 3);
}

#[tokio::test]
async fn after_the_cutover_the_old_store_is_only_a_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (store(dir.path(), "old"), store(dir.path(), "new"));
    let only_old = noise(7, 5000);
    let both = noise(8, 5000);
    old.put_blocks(vec![
        Block::encode(only_old.clone()),
        Block::encode(both.clone()),
    ])
    .await
    .unwrap();
    new.put_blocks(vec![Block::encode(both.clone())])
        .await
        .unwrap();
    let dual = Dual::falling_back(new.clone(), old.clone());
    let stats = dual.stats();
    assert_eq!(
        dual.get_block(Block::encode(only_old.clone()).id())
            .await
            .unwrap(),
        only_old
    );
    assert_eq!(
        dual.get_block(Block::encode(both.clone()).id())
            .await
            .unwrap(),
        both
    );
    assert_eq!(stats.counts().fallback_reads, 1);
    // Looks missing, so the engine puts it into the new store.
    assert_eq!(
        dual.has_blocks(&[Block::encode(only_old).id()])
            .await
            .unwrap(),
        vec![false]
    );
    // Writes go to the new store alone.
    let fresh = noise(9, 4000);
    dual.put_blocks(vec![Block::encode(fresh.clone())])
        .await
        .unwrap();
    dual.append(Seq(1), Bytes::from_static(b"after"))
        .await
        .unwrap();
    let fresh_id = Block::encode(fresh).id();
    assert_eq!(new.has_blocks(&[fresh_id]).await.unwrap(), vec![true]);
    assert_eq!(old.has_blocks(&[fresh_id]).await.unwrap(), vec![false]);
    assert_eq!(old.journal_head().await.unwrap(), Seq::ZERO);
}
