//! Two devices on one machine, sharing one embedded store, synced with the
//! real `pouch` binary on real folders.

mod common;

use common::{Device, Item, noise, pair, set_exec, snapshot, today};

fn assert_same(a: &Device, b: &Device) {
    let (sa, sb) = (snapshot(&a.root), snapshot(&b.root));
    assert_eq!(sa, sb, "the two folders differ");
}

#[test]
fn everything_propagates_both_ways() {
    let (_dir, a, b) = pair();
    let w = |d: &Device, rel: &str, bytes: &[u8]| {
        let p = d.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    };

    // A creates a bit of everything.
    w(&a, "docs/notes/todo.txt", b"buy milk\n");
    std::fs::create_dir_all(a.path("empty/also empty")).unwrap();
    w(&a, "zero", b"");
    w(&a, "big.bin", &noise(1, 50 << 20));
    w(&a, "ünïcødé/日本語 ファイル.txt", "こんにちは".as_bytes());
    w(&a, "bin/run.sh", b"#!/bin/sh\necho hi\n");
    set_exec(&a.path("bin/run.sh"));
    std::os::unix::fs::symlink("docs/notes/todo.txt", a.path("link-to-todo")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/elsewhere", a.path("dangling")).unwrap();
    let report = a.sync();
    assert_eq!(report["commits"], 1);
    b.sync();
    assert_same(&a, &b);
    let snap = snapshot(&b.root);
    assert_eq!(
        snap["link-to-todo"],
        Item::Link("docs/notes/todo.txt".into())
    );
    assert!(matches!(snap["bin/run.sh"], Item::File { exec: true, .. }));
    assert!(matches!(snap["zero"], Item::File { len: 0, .. }));
    assert_eq!(snap["empty/also empty"], Item::Dir);

    // B renames, deletes, edits and adds; A follows.
    std::fs::rename(b.path("big.bin"), b.path("docs/big-renamed.bin")).unwrap();
    std::fs::remove_file(b.path("zero")).unwrap();
    std::fs::remove_dir_all(b.path("empty")).unwrap();
    w(&b, "docs/notes/todo.txt", b"buy milk\nand bread\n");
    w(&b, "new from b.txt", b"hello from B");
    std::fs::set_permissions(
        b.path("bin/run.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let report = b.sync();
    // Two small new files' worth; the renamed 50 MiB file sends nothing.
    assert_eq!(report["blocks_uploaded"], 2, "{report}");
    assert!(report["bytes_uploaded"].as_u64().unwrap() < 100, "{report}");
    let report = a.sync();
    assert_eq!(
        report["renamed_local"], 1,
        "the rename arrives as a rename: {report}"
    );
    assert_eq!(report["blocks_downloaded"], 2, "{report}");
    assert_same(&a, &b);
    assert!(!a.path("empty").exists() && !a.path("zero").exists());

    // A file turns into a folder and back.
    std::fs::remove_file(a.path("new from b.txt")).unwrap();
    w(&a, "new from b.txt/inside", b"now a folder");
    a.sync();
    b.sync();
    assert_same(&a, &b);

    // Nothing left to do: a second round changes nothing.
    let report = a.sync();
    assert_eq!(report["commits"], 0);
    assert_eq!(report["downloaded"], 0);
}

#[test]
fn an_edit_on_both_sides_keeps_both_versions() {
    let (_dir, a, b) = pair();
    std::fs::write(a.path("report.txt"), b"v1").unwrap();
    a.sync();
    b.sync();
    std::fs::write(a.path("report.txt"), b"A's edit").unwrap();
    std::fs::write(b.path("report.txt"), b"B's edit").unwrap();
    a.sync();
    let report = b.sync();
    assert_eq!(report["conflicts"], 1, "{report}");
    let copy = format!("report (B's conflicted copy {}).txt", today());
    assert_eq!(std::fs::read(b.path("report.txt")).unwrap(), b"A's edit");
    assert_eq!(std::fs::read(b.path(&copy)).unwrap(), b"B's edit");
    a.sync();
    assert_eq!(std::fs::read(a.path(&copy)).unwrap(), b"B's edit");
    assert_same(&a, &b);
}

#[test]
fn a_delete_against_an_edit_keeps_the_edit() {
    let (_dir, a, b) = pair();
    std::fs::write(a.path("keep.txt"), b"original").unwrap();
    std::fs::write(a.path("other.txt"), b"original").unwrap();
    a.sync();
    b.sync();
    // Delete on A, edit on B; and the other way round for the second file.
    std::fs::remove_file(a.path("keep.txt")).unwrap();
    std::fs::write(b.path("keep.txt"), b"edited on B").unwrap();
    std::fs::write(a.path("other.txt"), b"edited on A").unwrap();
    std::fs::remove_file(b.path("other.txt")).unwrap();
    a.sync();
    b.sync();
    a.sync();
    for device in [&a, &b] {
        assert_eq!(
            std::fs::read(device.path("keep.txt")).unwrap(),
            b"edited on B"
        );
        assert_eq!(
            std::fs::read(device.path("other.txt")).unwrap(),
            b"edited on A"
        );
    }
    assert_same(&a, &b);
}

#[test]
fn inserting_100_bytes_into_a_64_mib_file_sends_at_most_3_blocks() {
    let (dir, a, b) = pair();
    let mut data = noise(2, 64 << 20);
    std::fs::write(a.path("video.raw"), &data).unwrap();
    a.sync();
    b.sync();
    let stats = || {
        pouch_backend_own::engine::Store::open(&dir.path().join("store"), Default::default())
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
