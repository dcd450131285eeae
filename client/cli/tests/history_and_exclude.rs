//! `pouch history`, `pouch restore` and selective sync (`pouch exclude`),
//! with the real binary on real folders.

mod common;

use common::{pair, snapshot};

#[test]
fn a_deleted_file_is_restored_from_history_on_another_device() {
    let (_dir, a, b) = pair();
    std::fs::write(a.path("plan.txt"), b"version one").unwrap();
    a.sync();
    std::fs::write(a.path("plan.txt"), b"version two, longer").unwrap();
    a.sync();
    std::fs::remove_file(a.path("plan.txt")).unwrap();
    a.sync();
    b.sync();
    assert!(!b.path("plan.txt").exists());

    let history: serde_json::Value = b.json(&["history", "plan.txt", "--json"]);
    let revisions = history.as_array().unwrap();
    assert_eq!(revisions.len(), 3, "{history}");
    assert!(
        revisions[2]["node"].is_null(),
        "the last version is the delete"
    );
    assert_eq!(revisions[0]["device"], "A");
    assert!(revisions[0]["time"].as_i64().unwrap() > 1_700_000_000);
    let first = revisions[0]["seq"].as_u64().unwrap().to_string();
    let human = b.ok(&["history", "plan.txt"]);
    assert!(
        human.contains("deleted") && human.contains("rev"),
        "{human}"
    );

    // Latest: the version before the delete; restore syncs it right away.
    b.ok(&["restore", "plan.txt"]);
    assert_eq!(
        std::fs::read(b.path("plan.txt")).unwrap(),
        b"version two, longer"
    );
    a.sync();
    assert_eq!(
        std::fs::read(a.path("plan.txt")).unwrap(),
        b"version two, longer"
    );

    // An older version by its revision; the current one stays in history.
    b.ok(&["restore", "plan.txt", "--rev", &first]);
    assert_eq!(std::fs::read(b.path("plan.txt")).unwrap(), b"version one");
    a.sync();
    assert_eq!(std::fs::read(a.path("plan.txt")).unwrap(), b"version one");
    assert_eq!(snapshot(&a.root), snapshot(&b.root));

    // Unsynced changes are never overwritten.
    std::fs::write(b.path("plan.txt"), b"edited, not synced").unwrap();
    let refused = b.run(&["restore", "plan.txt", "--rev", &first]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not synced"));
    assert_eq!(
        std::fs::read(b.path("plan.txt")).unwrap(),
        b"edited, not synced"
    );

    // A time before any version: nothing to restore, said clearly.
    let early = b.run(&["restore", "plan.txt", "--at", "2001-01-01T00:00:00Z"]);
    assert!(!early.status.success());
    assert!(String::from_utf8_lossy(&early.stderr).contains("no such version"));
    // A time after everything: the state then (here: the unsynced edit
    // blocks it, as above).
    let now = b.run(&["restore", "plan.txt", "--at", "4000000000"]);
    assert!(!now.status.success());
}

#[test]
fn an_excluded_folder_stays_off_this_device_and_on_the_others() {
    let (_dir, a, b) = pair();
    std::fs::create_dir_all(a.path("photos/2026")).unwrap();
    std::fs::write(a.path("photos/1.jpg"), b"one").unwrap();
    std::fs::write(a.path("photos/2026/2.jpg"), b"two").unwrap();
    std::fs::create_dir_all(a.path("docs")).unwrap();
    std::fs::write(a.path("docs/x.txt"), b"x").unwrap();
    a.sync();
    b.sync();
    assert!(b.path("photos/2026/2.jpg").exists());

    b.ok(&["exclude", "add", "photos"]);
    assert!(!b.path("photos").exists(), "the local copy goes");
    assert_eq!(b.ok(&["exclude", "list"]).trim(), "photos");

    std::fs::write(a.path("photos/3.jpg"), b"three").unwrap();
    a.sync();
    let report = b.sync();
    assert_eq!(report["deleted_remote"], 0, "{report}");
    assert!(
        !b.path("photos").exists(),
        "nothing arrives in an excluded folder"
    );
    a.sync();
    assert!(a.path("photos/1.jpg").exists() && a.path("photos/3.jpg").exists());

    // A folder with unsynced changes cannot be excluded.
    std::fs::write(b.path("docs/new.txt"), b"unsynced").unwrap();
    let refused = b.run(&["exclude", "add", "docs"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not synced"));
    assert!(b.path("docs/new.txt").exists());

    b.ok(&["exclude", "remove", "photos"]);
    b.sync();
    a.sync();
    assert_eq!(snapshot(&a.root), snapshot(&b.root));
    assert_eq!(std::fs::read(b.path("photos/3.jpg")).unwrap(), b"three");
    assert!(b.ok(&["exclude", "list"]).trim().is_empty());
}
