//! The two-device scenarios, run on every kind of store (embedded,
//! `pouch-store`, S3) so that each passes the same end-to-end checks.

use super::{Device, Item, noise, set_exec, snapshot, today};

/// The two folders hold the same things.
pub fn assert_same(a: &Device, b: &Device) {
    let (sa, sb) = (snapshot(&a.root), snapshot(&b.root));
    assert_eq!(sa, sb, "the two folders differ");
}

/// Every kind of change, made on either side, arrives on the other.
pub fn everything_propagates_both_ways(a: &Device, b: &Device) {
    let w = |d: &Device, rel: &str, bytes: &[u8]| {
        let p = d.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    };

    // A creates a bit of everything.
    w(a, "docs/notes/todo.txt", b"buy milk\n");
    std::fs::create_dir_all(a.path("empty/also empty")).unwrap();
    w(a, "zero", b"");
    w(a, "big.bin", &noise(1, 50 << 20));
    w(a, "ünïcødé/日本語 ファイル.txt", "こんにちは".as_bytes());
    w(a, "bin/run.sh", b"#!/bin/sh\necho hi\n");
    set_exec(&a.path("bin/run.sh"));
    std::os::unix::fs::symlink("docs/notes/todo.txt", a.path("link-to-todo")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/elsewhere", a.path("dangling")).unwrap();
    let report = a.sync();
    assert_eq!(report["commits"], 1);
    b.sync();
    assert_same(a, b);
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
    w(b, "docs/notes/todo.txt", b"buy milk\nand bread\n");
    w(b, "new from b.txt", b"hello from B");
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
    assert_same(a, b);
    assert!(!a.path("empty").exists() && !a.path("zero").exists());

    // A file turns into a folder and back.
    std::fs::remove_file(a.path("new from b.txt")).unwrap();
    w(a, "new from b.txt/inside", b"now a folder");
    a.sync();
    b.sync();
    assert_same(a, b);

    // Nothing left to do: a second round changes nothing.
    let report = a.sync();
    assert_eq!(report["commits"], 0);
    assert_eq!(report["downloaded"], 0);
}

/// An edit on both sides keeps both versions: the loser as a conflicted copy.
pub fn an_edit_on_both_sides_keeps_both_versions(a: &Device, b: &Device) {
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
    assert_same(a, b);
}

/// A delete against an edit keeps the edit, whichever side deleted.
pub fn a_delete_against_an_edit_keeps_the_edit(a: &Device, b: &Device) {
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
    for device in [a, b] {
        assert_eq!(
            std::fs::read(device.path("keep.txt")).unwrap(),
            b"edited on B"
        );
        assert_eq!(
            std::fs::read(device.path("other.txt")).unwrap(),
            b"edited on A"
        );
    }
    assert_same(a, b);
}
