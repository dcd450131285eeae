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

/// The payload bytes a quota reads are kept by the index as blocks come and
/// go: puts (a block sent twice counts once), deletes, compaction, a
/// quarantined block, an index rebuilt from the volumes, and an index of
/// schema 4 (before the count was kept) opened by this build.
#[test]
fn payload_bytes_follow_every_change_to_the_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let options = || StoreOptions {
        volume_size: 1 << 20,
    };
    let store = Store::open(dir.path(), options()).unwrap();
    let blocks: Vec<Block> = (0..60u64)
        .map(|i| Block::encode(noise(7000 + i, 20_000 + i as usize * 300)))
        .collect();
    let payload =
        |blocks: &[&Block]| -> u64 { blocks.iter().map(|b| b.payload().len() as u64).sum() };
    let all: Vec<&Block> = blocks.iter().collect();
    for batch in blocks.chunks(5) {
        store.put_blocks(batch.to_vec()).unwrap();
    }
    assert_eq!(store.payload_bytes().unwrap(), payload(&all));
    store.put_blocks(blocks[..10].to_vec()).unwrap();
    assert_eq!(
        store.payload_bytes().unwrap(),
        payload(&all),
        "sent twice, counted once"
    );

    let doomed: Vec<BlockId> = blocks.iter().skip(1).step_by(2).map(Block::id).collect();
    store.delete_blocks(&doomed).unwrap();
    let kept: Vec<&Block> = blocks.iter().step_by(2).collect();
    assert_eq!(store.payload_bytes().unwrap(), payload(&kept));
    assert!(store.compact(0.3).unwrap().volumes >= 1);
    assert_eq!(
        store.payload_bytes().unwrap(),
        payload(&kept),
        "compaction moves, keeps"
    );

    drop(store);
    Store::rebuild(dir.path()).unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    assert_eq!(
        store.payload_bytes().unwrap(),
        payload(&kept),
        "after a rebuild"
    );

    let bad = kept[0];
    let loc = store.locate(bad.id()).unwrap().unwrap();
    store.quarantine(bad.id(), loc, "test").unwrap();
    let left: Vec<&Block> = kept[1..].to_vec();
    assert_eq!(
        store.payload_bytes().unwrap(),
        payload(&left),
        "quarantined"
    );
    drop(store);

    // An index of schema 4 had no count: opened, it starts from the blocks.
    {
        let conn = rusqlite::Connection::open(dir.path().join("index.sqlite")).unwrap();
        conn.execute_batch(
            "DROP TRIGGER blocks_insert_counts; DROP TRIGGER blocks_delete_counts;
             DROP TRIGGER blocks_update_counts;
             DELETE FROM counters WHERE name = 'payload_bytes'; PRAGMA user_version = 4;",
        )
        .unwrap();
    }
    let store = Store::open(dir.path(), options()).unwrap();
    assert_eq!(
        store.payload_bytes().unwrap(),
        payload(&left),
        "a schema-4 index upgraded"
    );
    store.put_blocks(vec![bad.clone()]).unwrap();
    assert_eq!(store.payload_bytes().unwrap(), payload(&kept));
}
