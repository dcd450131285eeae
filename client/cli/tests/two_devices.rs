//! Two devices on one machine, sharing one embedded store, synced with the
//! real `pouch` binary on real folders.

mod common;

use common::{noise, pair, scenarios, snapshot};

#[test]
fn everything_propagates_both_ways() {
    let (_dir, a, b) = pair();
    scenarios::everything_propagates_both_ways(&a, &b);
}

#[test]
fn an_edit_on_both_sides_keeps_both_versions() {
    let (_dir, a, b) = pair();
    scenarios::an_edit_on_both_sides_keeps_both_versions(&a, &b);
}

#[test]
fn a_delete_against_an_edit_keeps_the_edit() {
    let (_dir, a, b) = pair();
    scenarios::a_delete_against_an_edit_keeps_the_edit(&a, &b);
}

#[test]
fn inserting_100_bytes_into_a_64_mib_file_sends_at_most_3_blocks() {
    let (dir, a, b) = pair();
    let mut data = noise(2, 64 << 20);
    std::fs::write(a.path("video.raw"), &data).unwrap();
    a.sync();
    b.sync();
    let stats = || {
        pouch_backend_own::storage::Store::open(&dir.path().join("store"), Default::default())
            .unwrap()
            .stats()
            .unwrap()
    };
    let before = stats();
    data.splice(32 << 20..32 << 20, noise(3, 100));
    std::fs::write(a.path("video.raw"), &data).unwrap();
    let report = a.sync();
    let after = stats();
    let new_blocks = after.blocks_written - before.blocks_written;
    assert!(new_blocks <= 3, "{new_blocks} new blocks stored");
    assert_eq!(report["blocks_uploaded"], new_blocks, "{report}");
    b.sync();
    assert_eq!(std::fs::read(b.path("video.raw")).unwrap(), data);
}

#[test]
fn status_and_ls_tell_what_waits_and_what_is_there() {
    let (_dir, a, b) = pair();
    std::fs::write(a.path("one.txt"), b"1").unwrap();
    std::fs::create_dir(a.path("folder")).unwrap();
    let json = |out: std::process::Output| -> serde_json::Value {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let status = json(a.run(&["status", "--json"]));
    assert_eq!(status["to_upload"], 2, "{status}");
    assert_eq!(status["remote_head"], 0);
    assert_eq!(status["device"], "A");
    assert_eq!(status["device_id"].as_str().unwrap().len(), 16);
    assert!(!a.path(".pouch").exists());
    a.sync();
    let status = json(a.run(&["status", "--json"]));
    assert_eq!(
        (status["to_upload"].as_u64(), status["remote_head"].as_u64()),
        (Some(0), Some(1))
    );
    let status = json(b.run(&["status", "--json"]));
    assert_eq!(status["to_download"], 2, "{status}");
    // Status changes nothing on disk.
    assert!(!b.path("one.txt").exists());

    let out = b.run(&["ls", "--remote"]);
    let listing = String::from_utf8(out.stdout).unwrap();
    assert!(
        listing.contains("folder/") && listing.contains("one.txt"),
        "{listing}"
    );
    let out = b.run(&["ls"]);
    assert!(!String::from_utf8(out.stdout).unwrap().contains("one.txt"));
    let human = String::from_utf8(a.run(&["status"]).stdout).unwrap();
    assert!(human.contains("up to date"), "{human}");
}

#[test]
fn init_twice_for_the_same_folder_is_fine_and_another_folder_is_refused() {
    let (dir, a, _b) = pair();
    let again = a.run(&[
        "init",
        "--root",
        a.root.to_str().unwrap(),
        "--store",
        dir.path().join("store").to_str().unwrap(),
    ]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let other = a.run(&[
        "init",
        "--root",
        dir.path().join("elsewhere").to_str().unwrap(),
    ]);
    assert!(!other.status.success());
    assert!(String::from_utf8_lossy(&other.stderr).contains("already exists"));
}

/// A folder copied on one device arrives on the other from that device's
/// own files: no block of it is downloaded, each read back from the
/// original and checked against its id; an edited copy fetches only the
/// block that changed.
#[test]
fn a_copied_folder_arrives_without_downloading_its_blocks() {
    let (_dir, a, b) = pair();
    std::fs::create_dir(a.path("photos")).unwrap();
    for i in 0..8u64 {
        std::fs::write(a.path(&format!("photos/p{i}.raw")), noise(300 + i, 3 << 20)).unwrap();
    }
    a.sync();
    b.sync();
    std::fs::create_dir(a.path("photos-copy")).unwrap();
    for i in 0..8u64 {
        std::fs::copy(
            a.path(&format!("photos/p{i}.raw")),
            a.path(&format!("photos-copy/p{i}.raw")),
        )
        .unwrap();
    }
    a.sync();
    let report = b.sync();
    assert_eq!(report["downloaded"], 9, "{report}");
    assert_eq!(report["blocks_downloaded"], 0, "{report}");
    assert!(report["blocks_reused"].as_u64().unwrap() >= 8, "{report}");
    assert_eq!(snapshot(&a.root), snapshot(&b.root));

    // A local file that changed since B's scan is not trusted: B checks
    // every block it reuses, and the rest come from the store.
    let mut edited = noise(300, 3 << 20);
    edited[100] ^= 1;
    std::fs::write(a.path("photos/p0.raw"), &edited).unwrap();
    a.sync();
    let report = b.sync();
    assert!(
        report["blocks_downloaded"].as_u64().unwrap() >= 1,
        "{report}"
    );
    assert_eq!(std::fs::read(b.path("photos/p0.raw")).unwrap(), edited);
}
