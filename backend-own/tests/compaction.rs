//! Compaction gives the space of deleted blocks back to the file system.

mod common;

use common::folder_size;
use pouch_backend::conformance::noise;
use pouch_backend::{Block, BlockId, Error};
use pouch_backend_own::storage::{Store, StoreOptions};

#[test]
fn deleting_most_blocks_then_compacting_shrinks_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        StoreOptions {
            volume_size: 4 << 20,
        },
    )
    .unwrap();
    let raws: Vec<_> = (0..300u64).map(|i| noise(i, 64 << 10)).collect();
    let ids: Vec<BlockId> = raws.iter().map(|r| BlockId::of(r)).collect();
    for chunk in raws.chunks(25) {
        store
            .put_blocks(chunk.iter().cloned().map(Block::encode).collect())
            .unwrap();
    }
    let before = folder_size(dir.path());
    assert!(before > 18 << 20, "{before}");

    // Keep every tenth block.
    let doomed: Vec<BlockId> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 10 != 0)
        .map(|(_, id)| *id)
        .collect();
    store.delete_blocks(&doomed).unwrap();
    assert!(
        folder_size(dir.path()) >= before,
        "a delete alone frees nothing"
    );

    let report = store.compact(0.5).unwrap();
    assert!(report.volumes >= 4, "{report:?}");
    assert!(report.skipped_corrupt.is_empty());
    let after = folder_size(dir.path().join("volumes").as_path());
    assert!(
        after < before / 5,
        "volumes hold {after} bytes of {before} before"
    );

    for (i, id) in ids.iter().enumerate() {
        match store.get_block(*id) {
            Ok(bytes) => {
                assert_eq!(i % 10, 0, "block {i} was deleted but reads back");
                assert_eq!(bytes, raws[i]);
            }
            Err(Error::BlockNotFound(_)) => assert_ne!(i % 10, 0, "kept block {i} is gone"),
            Err(e) => panic!("block {i}: {e}"),
        }
    }
    assert!(store.verify().unwrap().corrupt.is_empty());
    // The store takes writes after compaction, and a reopen sees it all.
    store
        .put_blocks(vec![Block::encode(noise(9999, 1000))])
        .unwrap();
    drop(store);
    let store = Store::open(
        dir.path(),
        StoreOptions {
            volume_size: 4 << 20,
        },
    )
    .unwrap();
    assert_eq!(store.stats().unwrap().blocks, 31);
    assert_eq!(store.get_block(ids[290]).unwrap(), raws[290]);
    // Nothing left to compact.
    assert_eq!(store.compact(0.5).unwrap().volumes, 0);
}

#[test]
fn a_store_open_in_another_handle_follows_moved_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let a = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let b = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let keep = Block::encode(noise(1, 100_000));
    let drop_ = Block::encode(noise(2, 900_000));
    a.put_blocks(vec![keep.clone(), drop_.clone()]).unwrap();
    // b reads once, caching the volume's file handle and location.
    assert_eq!(b.get_block(keep.id()).unwrap(), noise(1, 100_000));
    a.delete_blocks(&[drop_.id()]).unwrap();
    assert_eq!(a.compact(0.5).unwrap().volumes, 1);
    assert_eq!(b.get_block(keep.id()).unwrap(), noise(1, 100_000));
}

/// An index mostly emptied by deletes is rewritten at the next compaction:
/// SQLite keeps freed pages in the file otherwise.
#[test]
fn compaction_shrinks_an_index_mostly_emptied() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let raws: Vec<_> = (0..150_000u64).map(|i| noise(i, 64)).collect();
    let ids: Vec<BlockId> = raws.iter().map(|r| BlockId::of(r)).collect();
    for chunk in raws.chunks(10_000) {
        store
            .put_blocks(chunk.iter().cloned().map(Block::encode).collect())
            .unwrap();
    }
    let index = |dir: &std::path::Path| std::fs::metadata(dir.join("index.sqlite")).unwrap().len();
    let before = index(dir.path());
    assert!(before > 4 << 20, "{before}");
    store.delete_blocks(&ids[10..]).unwrap();
    let report = store.compact(0.3).unwrap();
    let after = index(dir.path());
    assert!(after < before / 4, "{after} of {before} bytes");
    assert!(report.bytes_reclaimed >= before - after, "{report:?}");
    assert_eq!(store.get_block(ids[3]).unwrap(), raws[3]);
    assert!(matches!(
        store.get_block(ids[20]),
        Err(Error::BlockNotFound(_))
    ));
}
