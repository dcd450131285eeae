//! The volumes alone hold the whole store: blocks, deletes, the journal and
//! the snapshot. A lost index is rebuilt from them at open, a damaged one
//! by `Store::rebuild`, and what the rebuilt index says is what the lost
//! one said.

use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::Bytes;
use pouch_backend::conformance::noise;
use pouch_backend::{Block, BlockId, Error, Seq, Snapshot};
use pouch_backend_own::storage::{Store, StoreOptions};

mod child;
mod common;

use common::folder_size;

/// Small volumes, so a test's data spans several of them.
fn open(dir: &Path) -> Store {
    Store::open(
        dir,
        StoreOptions {
            volume_size: 256 << 10,
        },
    )
    .unwrap()
}

fn lose_index(dir: &Path) {
    for name in ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm"] {
        let _ = std::fs::remove_file(dir.join(name));
    }
}

fn entry(seq: u64) -> Vec<u8> {
    format!("entry {seq} ")
        .repeat(1 + seq as usize % 50)
        .into_bytes()
}

fn journal(store: &Store) -> Vec<(u64, Bytes)> {
    store
        .read_journal(Seq::ZERO, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|e| (e.seq.0, e.data))
        .collect()
}

#[test]
fn a_lost_index_is_rebuilt_from_the_volumes_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let blocks: Vec<Bytes> = (0..40)
        .map(|i| noise(i, 20_000 + i as usize * 97))
        .collect();
    let ids: Vec<BlockId> = blocks.iter().map(|b| BlockId::of(b)).collect();
    let (before_journal, before_snapshot) = {
        let store = open(dir.path());
        for (i, chunk) in blocks.chunks(5).enumerate() {
            store
                .put_blocks(chunk.iter().cloned().map(Block::encode).collect())
                .unwrap();
            for seq in (i as u64 * 4 + 1)..=(i as u64 * 4 + 4) {
                store.append(Seq(seq), &entry(seq)).unwrap();
            }
            store
                .put_snapshot(&Snapshot {
                    seq: Seq(i as u64 * 4 + 4),
                    data: Bytes::from(format!("snapshot after {i}")),
                })
                .unwrap();
        }
        // Deletes, then compaction moves the journal and snapshot records
        // along with the live blocks; then deletes compaction keeps.
        store.delete_blocks(&ids[0..10]).unwrap();
        let report = store.compact(0.2).unwrap();
        assert!(report.volumes > 0, "nothing was compacted: {report:?}");
        store.delete_blocks(&ids[30..32]).unwrap();
        assert!(store.stats().unwrap().volumes > 2);
        (journal(&store), store.get_snapshot().unwrap())
    };
    assert_eq!(before_journal.len(), 32);

    lose_index(dir.path());
    let store = open(dir.path());
    assert_eq!(journal(&store), before_journal);
    assert_eq!(store.get_snapshot().unwrap(), before_snapshot);
    let present = store.has_blocks(&ids).unwrap();
    for (i, (id, bytes)) in ids.iter().zip(&blocks).enumerate() {
        if (10..30).contains(&i) || i >= 32 {
            assert!(present[i], "block {i} is missing");
            assert_eq!(&store.get_block(*id).unwrap(), bytes);
        }
    }
    assert!(
        !present[30] && !present[31],
        "deleted blocks came back after the rebuild"
    );
    assert!(store.verify().unwrap().corrupt.is_empty());
    // The journal goes on where it stood, create-only as before.
    assert!(matches!(
        store.append(Seq(32), b"again"),
        Err(Error::SlotTaken(_))
    ));
    store.append(Seq(33), b"next").unwrap();
    // And a second loss loses nothing of that either.
    drop(store);
    lose_index(dir.path());
    let store = open(dir.path());
    assert_eq!(journal(&store).len(), 33);
    // Compacting the rebuilt store keeps everything too.
    store.compact(0.0).unwrap();
    drop(store);
    lose_index(dir.path());
    assert_eq!(journal(&open(dir.path())).len(), 33);
}

/// A store written before journal entries went into the volumes (schema 1:
/// the journal only in the index) gets them written there at its first
/// open, so from then on it can be rebuilt too.
#[test]
fn an_older_store_has_its_journal_written_into_the_volumes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("volumes")).unwrap();
    {
        let conn = rusqlite::Connection::open(dir.path().join("index.sqlite")).unwrap();
        conn.execute_batch(
            "CREATE TABLE volumes (id INTEGER PRIMARY KEY, length INTEGER NOT NULL,
                sealed INTEGER NOT NULL DEFAULT 0, garbage INTEGER NOT NULL DEFAULT 0);
             CREATE TABLE blocks (id BLOB PRIMARY KEY, volume INTEGER NOT NULL,
                offset INTEGER NOT NULL, length INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE journal (seq INTEGER PRIMARY KEY, data BLOB NOT NULL);
             CREATE TABLE snapshot (id INTEGER PRIMARY KEY CHECK (id = 1),
                seq INTEGER NOT NULL, data BLOB NOT NULL);
             CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
             INSERT INTO journal VALUES (1, CAST('one' AS BLOB)), (2, CAST('two' AS BLOB)),
                (3, CAST('three' AS BLOB));
             INSERT INTO snapshot VALUES (1, 2, CAST('snap' AS BLOB));
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let store = open(dir.path());
    assert_eq!(journal(&store).len(), 3);
    drop(store);
    lose_index(dir.path());
    let store = open(dir.path());
    assert_eq!(
        journal(&store),
        vec![
            (1, Bytes::from_static(b"one")),
            (2, Bytes::from_static(b"two")),
            (3, Bytes::from_static(b"three"))
        ]
    );
    assert_eq!(store.get_snapshot().unwrap().unwrap().seq, Seq(2));
}

/// Child role: append journal entries forever, printing each number once
/// its append has returned.
#[test]
fn child_append_loop() {
    child::run("append_loop", |dir| {
        let store = open(dir);
        let start = store.journal_head().unwrap().0 + 1;
        for seq in start.. {
            if seq % 7 == 0 {
                store
                    .put_blocks(vec![Block::encode(noise(seq, 30_000))])
                    .unwrap();
            }
            store.append(Seq(seq), &entry(seq)).unwrap();
            child::say(seq);
        }
    });
}

#[test]
fn acknowledged_entries_survive_sigkill_and_a_lost_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked = 0;
    for round in 0..3 {
        let mut child = child::spawn("append_loop", dir.path(), &[]);
        for line in child::Said::of(&mut child).take(60) {
            acked = line.parse::<u64>().unwrap();
        }
        child.kill().unwrap();
        child.wait().unwrap();
        if round == 1 {
            lose_index(dir.path());
        }
        let store = open(dir.path());
        let entries = journal(&store);
        // Every acknowledged entry is there; at most the one being written
        // when the child died is there beyond them; none is damaged.
        assert!(entries.len() as u64 >= acked, "round {round}");
        assert!(entries.len() as u64 <= acked + 1, "round {round}");
        for (seq, data) in &entries {
            assert_eq!(&data[..], entry(*seq), "entry {seq}");
        }
        acked = entries.len() as u64;
    }
    lose_index(dir.path());
    assert_eq!(journal(&open(dir.path())).len() as u64, acked);
}

/// A damaged index is replaced by `Store::rebuild`; damaged records are
/// left out (so devices upload those blocks again) and a damaged header
/// mid-volume does not hide the records after it.
#[test]
fn a_rebuild_leaves_damaged_records_out_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let blocks: Vec<Bytes> = (0..6).map(|i| noise(100 + i, 10_000)).collect();
    let ids: Vec<BlockId> = blocks.iter().map(|b| BlockId::of(b)).collect();
    let locations = {
        let store = open(dir.path());
        for (i, block) in blocks.iter().enumerate() {
            store
                .put_blocks(vec![Block::encode(block.clone())])
                .unwrap();
            store
                .append(Seq(i as u64 + 1), &entry(i as u64 + 1))
                .unwrap();
        }
        ids.iter()
            .map(|id| store.locate(*id).unwrap().unwrap())
            .collect::<Vec<_>>()
    };
    let volume = |v| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("volumes").join(format!("{v:08}.vol")))
            .unwrap()
    };
    // Block 1's payload rots; block 3's record header is smashed.
    volume(locations[1].volume)
        .write_all_at(b"rot", locations[1].payload_offset + 100)
        .unwrap();
    volume(locations[3].volume)
        .write_all_at(&[0xff; 8], locations[3].offset)
        .unwrap();
    // The index is damaged too.
    std::fs::write(dir.path().join("index.sqlite"), b"not a database").unwrap();
    let _ = std::fs::remove_file(dir.path().join("index.sqlite-wal"));
    let _ = std::fs::remove_file(dir.path().join("index.sqlite-shm"));

    let report = Store::rebuild(dir.path()).unwrap();
    assert_eq!(report.damaged_records, 1, "{report:?}");
    assert!(report.unreadable_bytes > 0, "{report:?}");
    assert_eq!(report.journal_entries, 6);
    let aside = report.old_index.expect("the damaged index is kept aside");
    assert_eq!(std::fs::read(aside).unwrap(), b"not a database");

    let store = open(dir.path());
    assert_eq!(journal(&store).len(), 6);
    assert_eq!(
        store.has_blocks(&ids).unwrap(),
        vec![true, false, true, false, true, true]
    );
    assert!(store.verify().unwrap().corrupt.is_empty());
    // The lost blocks come back when a device uploads them again.
    store
        .put_blocks(vec![
            Block::encode(blocks[1].clone()),
            Block::encode(blocks[3].clone()),
        ])
        .unwrap();
    assert_eq!(store.get_block(ids[3]).unwrap(), blocks[3]);
}

/// A journal with a hole cannot be rebuilt: numbering new entries over lost
/// ones would split the history, so the store refuses to open and says why.
#[test]
fn a_journal_with_a_hole_is_not_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        for seq in 1..=40 {
            store
                .put_blocks(vec![Block::encode(noise(seq, 40_000))])
                .unwrap();
            store.append(Seq(seq), &entry(seq)).unwrap();
        }
        assert!(store.stats().unwrap().volumes >= 3);
    }
    std::fs::remove_file(dir.path().join("volumes").join(format!("{:08}.vol", 2))).unwrap();
    lose_index(dir.path());
    let err = Store::open(dir.path(), StoreOptions::default()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("missing from its volumes") && text.contains("backup"),
        "{text}"
    );
    assert!(!dir.path().join("index.sqlite").exists());
}

/// A trimmed journal stays trimmed through compaction and a rebuild from
/// the volumes alone: the entries dropped do not come back (even from a
/// volume not yet compacted), the trim point still counts as taken, and
/// compaction gives the dropped entries' space back.
#[test]
fn a_trim_survives_compaction_and_a_rebuild_from_the_volumes() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let store = open(dir.path());
        for seq in 1..=400u64 {
            store.append(Seq(seq), &entry(seq)).unwrap();
        }
        store
            .put_snapshot(&Snapshot {
                seq: Seq(300),
                data: Bytes::from_static(b"the first 300, folded"),
            })
            .unwrap();
        store.trim_journal(Seq(300)).unwrap();
        assert!(matches!(
            store.read_journal(Seq(299), 10),
            Err(Error::Trimmed { through }) if through == Seq(300)
        ));
        let size = folder_size(dir.path());
        let compacted = store.compact(0.3).unwrap();
        assert!(compacted.volumes > 0, "{compacted:?}");
        assert!(
            folder_size(dir.path()) < size,
            "compaction gave the trimmed entries' space back"
        );
        store.read_journal(Seq(300), usize::MAX).unwrap()
    };
    assert_eq!(before.len(), 100);
    for rebuilt in [false, true] {
        if rebuilt {
            lose_index(dir.path());
        }
        let store = open(dir.path());
        assert_eq!(store.journal_head().unwrap(), Seq(400));
        assert!(matches!(
            store.read_journal(Seq::ZERO, 10),
            Err(Error::Trimmed { through }) if through == Seq(300)
        ));
        assert_eq!(store.read_journal(Seq(300), usize::MAX).unwrap(), before);
        assert!(matches!(
            store.append(Seq(200), b"late"),
            Err(Error::SlotTaken(_))
        ));
    }
    // Trimmed to the head, the journal is empty and still numbered.
    let store = open(dir.path());
    store
        .put_snapshot(&Snapshot {
            seq: Seq(400),
            data: Bytes::from_static(b"all of it"),
        })
        .unwrap();
    store.trim_journal(Seq(400)).unwrap();
    drop(store);
    lose_index(dir.path());
    let store = open(dir.path());
    assert_eq!(store.journal_head().unwrap(), Seq(400));
    assert!(store.read_journal(Seq(400), 10).unwrap().is_empty());
    store.append(Seq(401), b"next").unwrap();
}
