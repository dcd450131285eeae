//! Corruption heals: a block damaged in the store is quarantined when it
//! is read, the device that could not read it says so in the journal, and
//! a device that still has the bytes sends them again at its next sync.
//! `pouch doctor` checks the local state and, with `--blocks`, every block.

mod common;

use std::os::unix::fs::FileExt;
use std::path::Path;

use common::{Device, noise, pair};

/// Flips a byte of the store's copy of `needle` (raw bytes of a file: noise
/// does not compress, so its blocks are stored as they are).
fn damage_in_store(store: &Path, needle: &[u8]) {
    for entry in std::fs::read_dir(store.join("volumes")).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
            let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            file.write_all_at(&[!bytes[at + 10]], (at + 10) as u64)
                .unwrap();
            return;
        }
    }
    panic!("the bytes are not in the store's volumes");
}

fn fails(device: &Device, args: &[&str]) -> String {
    let out = device.run(args);
    assert!(!out.status.success(), "{args:?} succeeded");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_damaged_block_is_sent_again_by_a_device_that_has_it_at_its_next_sync() {
    let (dir, a, b) = pair();
    let big = noise(7, 3 << 20);
    std::fs::write(a.path("big.bin"), &big).unwrap();
    std::fs::write(a.path("note.txt"), b"small").unwrap();
    a.sync();
    damage_in_store(&dir.path().join("store"), &big[2_000_000..2_000_064]);

    // B cannot get the file: the store refuses the damaged block.
    let said = fails(&b, &["sync"]);
    assert!(
        said.contains("big.bin") && said.contains("damaged"),
        "{said}"
    );
    assert!(!b.path("big.bin").exists());
    assert_eq!(std::fs::read(b.path("note.txt")).unwrap(), b"small");

    // A's next sync reads B's report and sends the block again.
    let report = a.sync();
    assert_eq!(report["blocks_resent"], 1, "{report}");
    b.sync();
    assert_eq!(std::fs::read(b.path("big.bin")).unwrap(), big);
    // Reported once: nothing more to send.
    assert_eq!(a.sync()["blocks_resent"], 0);
}

#[test]
fn doctor_blocks_finds_damage_and_repairs_it_from_local_files() {
    let (dir, a, _b) = pair();
    let big = noise(8, 8 << 20);
    std::fs::write(a.path("big.bin"), &big).unwrap();
    a.sync();
    let healthy = a.ok(&["doctor", "--blocks"]);
    assert!(
        healthy.contains("passes SQLite's integrity check")
            && healthy.contains("every block is stored and reads back intact"),
        "{healthy}"
    );

    damage_in_store(&dir.path().join("store"), &big[1_000_000..1_000_064]);
    let repaired = a.ok(&["doctor", "--blocks"]);
    assert!(
        repaired.contains("is damaged in the store")
            && repaired.contains("big.bin")
            && repaired.contains("sent 1 lost blocks again")
            && repaired.contains("repaired"),
        "{repaired}"
    );
    assert!(a.ok(&["doctor", "--blocks"]).contains("reads back intact"));

    // A device that has not synced the file yet can only report it.
    let c = Device::init(dir.path(), "C", &dir.path().join("store"));
    damage_in_store(&dir.path().join("store"), &big[7_000_000..7_000_064]);
    let reported = fails(&c, &["doctor", "--blocks"]);
    assert!(
        reported.contains("not on this device either") && reported.contains("next sync"),
        "{reported}"
    );
    assert_eq!(a.sync()["blocks_resent"], 1);
    assert!(c.ok(&["doctor", "--blocks"]).contains("reads back intact"));
}

#[test]
fn a_damaged_local_state_says_how_to_recover_and_loses_nothing() {
    let (_dir, a, b) = pair();
    std::fs::write(a.path("kept.txt"), b"in the store").unwrap();
    a.sync();
    b.sync();
    std::fs::write(b.path("unsynced.txt"), b"only here").unwrap();
    let state = b.config.with_extension("journal.sqlite");
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", state.display()));
    }
    std::fs::write(&state, vec![0x5a; 64 << 10]).unwrap();

    let said = fails(&b, &["sync"]);
    assert!(
        said.contains("damaged") && said.contains("move the file aside"),
        "{said}"
    );
    assert!(!said.contains(": : "), "{said}");
    let doctor = fails(&b, &["doctor"]);
    assert!(
        doctor.contains("FAIL") && doctor.contains("It can be rebuilt from the store"),
        "{doctor}"
    );

    std::fs::rename(&state, state.with_extension("damaged")).unwrap();
    b.sync();
    assert_eq!(std::fs::read(b.path("kept.txt")).unwrap(), b"in the store");
    assert_eq!(std::fs::read(b.path("unsynced.txt")).unwrap(), b"only here");
    a.sync();
    assert_eq!(std::fs::read(a.path("unsynced.txt")).unwrap(), b"only here");
    assert_eq!(std::fs::read_dir(&b.root).unwrap().count(), 2);
}
