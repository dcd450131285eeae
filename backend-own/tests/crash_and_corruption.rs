//! The embedded store under real crashes, torn writes and bit rot.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;

use bytes::Bytes;
use pouch_backend::conformance::noise;
use pouch_backend::{Block, Codec, Error};
use pouch_backend_own::storage::{Store, StoreOptions};

mod child;

fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, StoreOptions::default()).unwrap()
}

/// The bytes the put loop stores as its block `i`.
fn loop_block(i: u64) -> Bytes {
    noise(i, (256 << 10) + (i as usize * 4099) % (1 << 20))
}

/// Child role: put one block per call forever, printing each index once
/// the put has returned.
#[test]
fn child_put_loop() {
    child::run("put_loop", |dir| {
        let store = open(dir);
        for i in 0.. {
            store
                .put_blocks(vec![Block::encode(loop_block(i))])
                .unwrap();
            child::say(i);
        }
    });
}

#[test]
fn acknowledged_blocks_survive_sigkill_mid_put() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let mut child = child::spawn("put_loop", dir.path(), &[]);
        let mut acked = Vec::new();
        for line in child::Said::of(&mut child) {
            acked.push(line.parse::<u64>().unwrap());
            if acked.len() == 40 {
                break;
            }
        }
        // SIGKILL while the child is in the middle of more puts.
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(acked.len(), 40, "round {round}: the child died early");

        let store = open(dir.path());
        for &i in &acked {
            let id = pouch_backend::BlockId::of(&loop_block(i));
            assert_eq!(store.get_block(id).unwrap(), loop_block(i), "block {i}");
        }
        let report = store.verify().unwrap();
        assert!(report.corrupt.is_empty(), "{:?}", report.corrupt);
        // The store takes writes again where the dead writer stopped.
        store
            .put_blocks(vec![Block::encode(noise(u64::MAX - round, 1000))])
            .unwrap();
    }
}

/// Appends `bytes` to the active (last) volume file behind the store's back,
/// as a writer that died mid-append would have left them.
fn append_to_last_volume(dir: &std::path::Path, bytes: &[u8]) -> (std::path::PathBuf, u64) {
    let mut volumes: Vec<_> = std::fs::read_dir(dir.join("volumes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    volumes.sort();
    let path = volumes.pop().unwrap();
    let before = std::fs::metadata(&path).unwrap().len();
    let mut file = OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(bytes).unwrap();
    (path, before)
}

fn record(block: &Block) -> Vec<u8> {
    // Write a real record through a scratch store and copy its bytes, so
    // this test does not restate the format.
    let scratch = tempfile::tempdir().unwrap();
    let store = open(scratch.path());
    store.put_blocks(vec![block.clone()]).unwrap();
    let loc = store.locate(block.id()).unwrap().unwrap();
    let bytes = std::fs::read(store.volume_path(loc.volume)).unwrap();
    bytes[loc.offset as usize..(loc.payload_offset + loc.payload_len) as usize].to_vec()
}

#[test]
fn a_torn_tail_is_cut_at_open_and_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let kept = Block::encode(noise(1, 10_000));
    open(dir.path()).put_blocks(vec![kept.clone()]).unwrap();

    let torn = Block::encode(noise(2, 50_000));
    let full = record(&torn);
    let (volume, good_len) = append_to_last_volume(dir.path(), &full[..full.len() / 2]);

    let store = open(dir.path());
    assert_eq!(
        std::fs::metadata(&volume).unwrap().len(),
        good_len,
        "torn bytes left in place"
    );
    assert_eq!(store.stats().unwrap().torn_tails_cut, 1);
    assert_eq!(store.has_blocks(&[torn.id()]).unwrap(), [false]);
    assert!(matches!(
        store.get_block(torn.id()),
        Err(Error::BlockNotFound(_))
    ));
    assert_eq!(store.get_block(kept.id()).unwrap(), noise(1, 10_000));
    // Writes go on after the cut, and a put of the torn block now lands.
    store.put_blocks(vec![torn.clone()]).unwrap();
    assert_eq!(store.get_block(torn.id()).unwrap(), noise(2, 50_000));
}

#[test]
fn a_complete_record_with_bad_bytes_past_the_index_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path())
        .put_blocks(vec![Block::encode(noise(1, 1000))])
        .unwrap();
    let victim = Block::encode(noise(3, 5000));
    let mut bytes = record(&victim);
    let last = bytes.len() - 1;
    bytes[last] ^= 1; // header intact, payload does not hash to its id
    let (volume, good_len) = append_to_last_volume(dir.path(), &bytes);
    let store = open(dir.path());
    assert_eq!(std::fs::metadata(&volume).unwrap().len(), good_len);
    assert_eq!(store.has_blocks(&[victim.id()]).unwrap(), [false]);
}

#[test]
fn complete_records_past_the_index_are_recovered() {
    // A writer that died after fsyncing its records but before committing
    // the index left good blocks: they are indexed, not thrown away.
    let dir = tempfile::tempdir().unwrap();
    open(dir.path())
        .put_blocks(vec![Block::encode(noise(1, 1000))])
        .unwrap();
    let orphan = Block::encode(Bytes::from(vec![9u8; 70_000]));
    assert_eq!(orphan.codec(), Codec::Zstd);
    append_to_last_volume(dir.path(), &record(&orphan));
    let store = open(dir.path());
    assert_eq!(store.get_block(orphan.id()).unwrap(), vec![9u8; 70_000]);
    assert_eq!(store.stats().unwrap().torn_tails_cut, 0);
}

/// A damaged block is never served, and is quarantined: out of the index
/// (so `has_blocks` says it is missing and devices send it again), its
/// record kept, its volume left out of compaction, until a put heals it.
#[test]
fn a_flipped_byte_makes_get_fail_with_corrupt_and_quarantines_the_block() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let raw = noise(4, 100_000);
    let block = Block::encode(raw.clone());
    let neighbour = Block::encode(noise(5, 100));
    store
        .put_blocks(vec![block.clone(), neighbour.clone()])
        .unwrap();
    let loc = store.locate(block.id()).unwrap().unwrap();

    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(store.volume_path(loc.volume))
        .unwrap();
    let at = loc.payload_offset + 4321;
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, at).unwrap();
    file.write_all_at(&[byte[0] ^ 0x20], at).unwrap();

    match store.get_block(block.id()) {
        Err(Error::Corrupt { id, .. }) => assert_eq!(id, block.id()),
        other => panic!("a damaged block was served: {other:?}"),
    }
    assert_eq!(
        store.has_blocks(&[block.id(), neighbour.id()]).unwrap(),
        [false, true]
    );
    assert!(matches!(
        store.get_block(block.id()),
        Err(Error::BlockNotFound(_))
    ));
    assert_eq!(store.get_block(neighbour.id()).unwrap(), noise(5, 100));
    let report = store.verify().unwrap();
    assert_eq!((report.checked, report.quarantined), (1, 1));
    assert!(report.corrupt.is_empty());
    // Compaction keeps the quarantined record where it is.
    store.delete_blocks(&[neighbour.id()]).unwrap();
    let compacted = store.compact(0.0).unwrap();
    assert_eq!(compacted.skipped_corrupt, [loc.volume]);
    assert!(store.volume_path(loc.volume).exists());

    // A device sends it again: healed.
    store.put_blocks(vec![block.clone()]).unwrap();
    assert_eq!(store.get_block(block.id()).unwrap(), raw);
    assert_eq!(store.stats().unwrap().quarantined, 0);

    // A damaged record header is caught, and quarantined, too; `verify`
    // finds damage no read has met yet.
    let other = Block::encode(noise(6, 50_000));
    store.put_blocks(vec![other.clone()]).unwrap();
    let loc = store.locate(other.id()).unwrap().unwrap();
    let file = OpenOptions::new()
        .write(true)
        .open(store.volume_path(loc.volume))
        .unwrap();
    file.write_all_at(&[0xFF], loc.offset + 20).unwrap();
    let report = store.verify().unwrap();
    assert_eq!(report.corrupt.len(), 1);
    assert_eq!(report.corrupt[0].0, other.id());
    assert_eq!(store.has_blocks(&[other.id()]).unwrap(), [false]);
}

#[test]
fn a_store_of_a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let conn = rusqlite::Connection::open(dir.path().join("index.sqlite")).unwrap();
    conn.pragma_update(None, "user_version", 999).unwrap();
    drop(conn);
    let err = Store::open(dir.path(), StoreOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Format { .. }), "{err}");
    assert!(err.to_string().contains("upgrade Pouch"), "{err}");
}

#[test]
fn concurrent_puts_share_fsyncs_through_group_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(open(dir.path()));
    let threads: Vec<_> = (0..16u64)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..20u64 {
                    let raw = noise((t << 16) | i, 4096);
                    store.put_blocks(vec![Block::encode(raw)]).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let stats = store.stats().unwrap();
    assert_eq!(stats.blocks, 320);
    assert!(stats.append_groups > 0, "appends are not counted");
    assert!(
        stats.append_groups < 320,
        "no put shared an fsync: {} groups for 320 puts",
        stats.append_groups
    );
    for t in 0..16u64 {
        let raw = noise(t << 16 | 19, 4096);
        assert_eq!(
            store.get_block(pouch_backend::BlockId::of(&raw)).unwrap(),
            raw
        );
    }
    assert!(store.verify().unwrap().corrupt.is_empty());
}
