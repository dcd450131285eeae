//! Two `pouch daemon` processes on one store: changes flow with no command
//! run; pause holds them back, also across the daemon opening its stores
//! again, and resume lets them through.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Daemon, Device, wait_for};

fn reads(path: &Path, content: &[u8]) -> bool {
    std::fs::read(path).is_ok_and(|c| c == content)
}

#[test]
fn two_daemons_keep_two_folders_in_step() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let a = Device::init(dir.path(), "A", &store);
    let b = Device::init(dir.path(), "B", &store);
    let da = Daemon::start(&a);
    let db = Daemon::start(&b);

    std::fs::write(a.path("hello.txt"), b"hello from A").unwrap();
    wait_for("a new file to reach B", || {
        reads(&b.path("hello.txt"), b"hello from A")
    });

    std::fs::create_dir_all(a.path("folder/sub")).unwrap();
    std::fs::write(a.path("folder/sub/x.txt"), b"x").unwrap();
    wait_for("a folder to reach B", || {
        reads(&b.path("folder/sub/x.txt"), b"x")
    });
    std::fs::rename(a.path("folder"), a.path("renamed")).unwrap();
    wait_for("a folder rename to reach B", || {
        reads(&b.path("renamed/sub/x.txt"), b"x") && !b.path("folder").exists()
    });

    // A folder moved in from outside the root: the watcher names only the
    // folder, and the sync scans it whole.
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(outside.join("deep/er")).unwrap();
    std::fs::write(outside.join("deep/er/y.txt"), b"y").unwrap();
    std::fs::rename(&outside, a.path("renamed/sub/moved-in")).unwrap();
    wait_for("a folder moved in to reach B", || {
        reads(&b.path("renamed/sub/moved-in/deep/er/y.txt"), b"y")
    });

    std::fs::remove_file(b.path("hello.txt")).unwrap();
    wait_for("a delete to reach A", || !a.path("hello.txt").exists());
    // B's status lists what arrived most recently, newest first.
    let recent = |device: &Device| -> Vec<(String, String)> {
        let status: serde_json::Value =
            serde_json::from_slice(&device.run(&["status", "--json"]).stdout).unwrap();
        status["daemon"]["recent"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["path"].as_str().unwrap().to_owned(),
                    c["action"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let on_b = recent(&b);
    assert_eq!(
        on_b[0],
        ("hello.txt".into(), "deleted_remotely".into()),
        "{on_b:?}"
    );
    assert!(
        on_b.contains(&("renamed/sub/x.txt".into(), "renamed".into())),
        "{on_b:?}"
    );
    wait_for("A to list the delete among its recent changes", || {
        recent(&a).first() == Some(&("hello.txt".into(), "deleted_here".into()))
    });

    std::fs::create_dir(a.path("burst")).unwrap();
    for i in 0..1000 {
        std::fs::write(a.path(&format!("burst/f{i:04}")), format!("file {i}")).unwrap();
    }
    // Count real files only: a download in flight shows as a temp file.
    let arrived = || {
        std::fs::read_dir(b.path("burst")).map_or(0, |d| {
            d.flatten()
                .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with('f')))
                .count()
        })
    };
    wait_for("a burst of 1,000 files to reach B", || {
        arrived() == 1000 && reads(&b.path("burst/f0999"), b"file 999")
    });

    // Pause B: A's change waits; resume: it arrives.
    let out = b.run(&["pause"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value =
        serde_json::from_slice(&b.run(&["status", "--json"]).stdout).unwrap();
    assert_eq!(status["daemon"]["paused"], true, "{status}");
    std::fs::write(a.path("while-paused.txt"), b"held back").unwrap();
    wait_for("A to commit while B is paused", || {
        let s: serde_json::Value =
            serde_json::from_slice(&a.run(&["status", "--json"]).stdout).unwrap();
        s["to_upload"] == 0 && s["remote_head"].as_u64() > status["remote_head"].as_u64()
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !b.path("while-paused.txt").exists(),
        "a paused daemon synced"
    );
    // A config change makes B's daemon open its stores again (as a new
    // mount or a migration does): it stays paused.
    let b_status = || -> serde_json::Value {
        // Between two openings there may be no daemon to ask.
        serde_json::from_slice(&b.run(&["status", "--json"]).stdout).unwrap_or_default()
    };
    assert!(b_status()["daemon"]["syncs"].as_u64() > Some(0));
    let mut config = std::fs::read_to_string(&b.config).unwrap();
    assert!(!config.contains("[gc]"), "{config}");
    config.push_str("\n[gc]\nevery_hours = 12\n");
    std::fs::write(&b.config, config).unwrap();
    wait_for("B's daemon to open its stores again", || {
        b_status()["daemon"]["syncs"] == 0
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(b_status()["daemon"]["paused"], true, "{}", b_status());
    assert!(
        !b.path("while-paused.txt").exists(),
        "a paused daemon synced once it had opened its stores again"
    );
    assert!(b.run(&["resume"]).status.success());
    wait_for("the held-back change after resume", || {
        reads(&b.path("while-paused.txt"), b"held back")
    });

    da.stop();
    db.stop();
    assert!(
        !a.config.with_extension("journal.sock").exists(),
        "the socket was left behind"
    );
    let out = a.run(&["pause"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no daemon runs"));
}

/// A daemon whose folder moves to another store follows the move by itself
/// (never writing to the old store again) and syncs through the new one.
#[test]
fn a_daemon_follows_a_move_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let a = Device::init(dir.path(), "A", &store);
    let b = Device::init(dir.path(), "B", &store);
    std::fs::write(a.path("before.txt"), b"before").unwrap();
    a.sync();
    let db = Daemon::start(&b);
    wait_for("the first file to reach B", || {
        reads(&b.path("before.txt"), b"before")
    });

    let new_store = dir.path().join("new-store");
    a.ok(&[
        "migrate",
        "switch",
        "--to",
        "own",
        "--store",
        new_store.to_str().unwrap(),
    ]);
    wait_for("B's daemon to follow", || {
        std::fs::read_to_string(&b.config)
            .unwrap()
            .contains("new-store")
    });
    std::fs::write(a.path("after.txt"), b"after").unwrap();
    a.sync();
    wait_for("a file committed to the new store to reach B", || {
        reads(&b.path("after.txt"), b"after")
    });
    std::fs::write(b.path("from-b.txt"), b"from B").unwrap();
    wait_for("B's daemon to send its file", || {
        a.sync();
        reads(&a.path("from-b.txt"), b"from B")
    });
    db.stop();
}

/// `pouch migrate start` while A's daemon runs: the daemon reopens its
/// stores and writes every change to both (the new store stays complete
/// with no further copy), shadow reads are counted and shown, B keeps
/// syncing through the old store; after `switch` A's daemon carries on
/// through the new store, B follows, and the old store can be deleted.
#[test]
fn a_running_daemon_double_writes_during_a_migration_and_carries_on_after_the_switch() {
    let dir = tempfile::tempdir().unwrap();
    let (old_store, new_store) = (dir.path().join("old-store"), dir.path().join("new-store"));
    let new = new_store.to_str().unwrap();
    let a = Device::init(dir.path(), "A", &old_store);
    let b = Device::init(dir.path(), "B", &old_store);
    for i in 0..20u64 {
        std::fs::write(a.path(&format!("before{i}.bin")), common::noise(i, 200_000)).unwrap();
    }
    a.sync();
    b.sync();
    let daemon = Daemon::start(&a);

    let started = a.ok(&[
        "migrate",
        "start",
        "--to",
        "own",
        "--store",
        new,
        "--shadow-reads",
        "1",
    ]);
    assert!(started.contains("copied to"), "{started}");
    wait_for("A's daemon to reopen with both stores", || {
        let status = a.json(&["status", "--json"]);
        status["daemon"]["migration"]["mode"] == "migrating"
    });

    // Changes on both sides while migrating: A's go to both stores by
    // itself, B's reach A through the old store (shadow-read against the
    // new one, which lacks them until the next copy).
    std::fs::write(a.path("during-a.txt"), b"written on A while migrating").unwrap();
    std::fs::write(b.path("during-b.bin"), common::noise(99, 300_000)).unwrap();
    b.sync();
    wait_for("B's file on A", || {
        b.path("during-b.bin").exists() && a.path("during-b.bin").exists()
    });
    wait_for("A's file committed", || {
        a.json(&["status", "--json"])["daemon"]["migration"]["journal_entries_mirrored"].as_u64()
            > Some(0)
    });
    let status = a.json(&["status", "--json"]);
    let migration = &status["daemon"]["migration"];
    assert!(migration["shadow_reads"].as_u64() > Some(0), "{status}");
    assert_eq!(migration["shadow_mismatches"], 0, "{status}");
    assert_eq!(status["migration"]["copy"]["phase"], "done", "{status}");
    let text = a.ok(&["status"]);
    assert!(text.contains("migrating to embedded store at"), "{text}");

    // Switch with the daemon running; it reopens on the new store.
    let switched = a.ok(&["migrate", "switch", "--to", "own", "--store", new]);
    assert!(switched.contains("switched to"), "{switched}");
    wait_for("A's daemon on the new store", || {
        let status = a.json(&["status", "--json"]);
        status["daemon"]["backend"]
            .as_str()
            .is_some_and(|b| b.contains("new-store"))
            && status["migration"].is_null()
    });
    b.sync(); // follows the move
    std::fs::write(a.path("after-a.txt"), b"after, from A").unwrap();
    wait_for("A's daemon to send after-a.txt", || {
        let status = a.json(&["status", "--json"]);
        status["to_upload"] == 0 && status["daemon"]["state"] == "idle"
    });
    std::fs::remove_dir_all(&old_store).unwrap();
    std::fs::write(b.path("after-b.txt"), b"after, from B").unwrap();
    b.sync();
    wait_for("B's last file on A", || {
        reads(&a.path("after-b.txt"), b"after, from B")
    });
    wait_for("both folders identical", || {
        b.sync();
        common::snapshot(&a.root) == common::snapshot(&b.root)
    });
    assert!(reads(
        &b.path("during-a.txt"),
        b"written on A while migrating"
    ));
    assert!(
        !old_store.exists(),
        "the old store was created again: {:?}",
        walk(&old_store)
    );
    daemon.stop();
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        out.push(entry.path().display().to_string());
        if entry.path().is_dir() {
            out.extend(walk(&entry.path()));
        }
    }
    out
}
