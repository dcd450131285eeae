//! Nothing propagates a disaster: a mass delete stops and asks, and a sync
//! root that vanished (an unmounted disk) deletes nothing remotely.

mod common;

use common::{Daemon, Device, pair, wait_for};

fn count(device: &Device) -> usize {
    std::fs::read_dir(&device.root).unwrap().count()
}

/// Two devices sharing `files` small files `f000`, `f001`, ...
fn synced_pair(files: usize) -> (tempfile::TempDir, Device, Device) {
    let (dir, a, b) = pair();
    for i in 0..files {
        std::fs::write(a.path(&format!("f{i:03}")), format!("{i}")).unwrap();
    }
    a.sync();
    b.sync();
    (dir, a, b)
}

#[test]
fn a_mass_delete_is_held_back_until_allowed() {
    let (_dir, a, b) = synced_pair(150);
    assert_eq!(count(&b), 150);

    for i in 0..120 {
        std::fs::remove_file(a.path(&format!("f{i:03}"))).unwrap();
    }
    std::fs::write(a.path("new.txt"), b"still synced").unwrap();
    let out = a.run(&["sync"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the guard did not stop the sync");
    assert!(
        stderr.contains("not propagating") && stderr.contains("--allow-mass-delete"),
        "{stderr}"
    );
    b.sync();
    // The deletes wait; everything else went through.
    assert_eq!(count(&b), 151, "deletes reached B without being allowed");
    assert_eq!(std::fs::read(b.path("new.txt")).unwrap(), b"still synced");

    let out = a.run(&["sync", "--allow-mass-delete"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    b.sync();
    assert_eq!(count(&b), 31);
    assert_eq!(std::fs::read(b.path("new.txt")).unwrap(), b"still synced");
    // A small delete is not a mass delete.
    std::fs::remove_file(b.path("f149")).unwrap();
    b.sync();
    a.sync();
    assert!(!a.path("f149").exists());
}

/// The daemon holds back a mass delete and nothing else: it keeps running
/// and syncing every other change, says in its status what waits, and
/// sends the deletes once the user allows them.
#[test]
fn the_daemon_holds_back_only_the_deletes_and_keeps_syncing() {
    let (_dir, a, b) = synced_pair(150);
    let daemon = Daemon::start(&a);
    for i in 0..120 {
        std::fs::remove_file(a.path(&format!("f{i:03}"))).unwrap();
    }
    std::fs::write(a.path("during.txt"), b"sent by the daemon").unwrap();
    wait_for("the daemon's status to name the held-back deletes", || {
        a.ok(&["status"]).contains("--allow-mass-delete")
    });
    wait_for("A's new file on B", || {
        b.sync();
        b.path("during.txt").exists()
    });
    assert_eq!(count(&b), 151, "deletes reached B without being allowed");
    // Still syncing after the guard tripped.
    std::fs::write(a.path("later.txt"), b"and later").unwrap();
    wait_for("A's later file on B", || {
        b.sync();
        b.path("later.txt").exists()
    });
    assert_eq!(count(&b), 152);

    a.ok(&["resume", "--allow-mass-delete"]);
    wait_for("the allowed deletes on B", || {
        b.sync();
        count(&b) == 32
    });
    daemon.stop();
}

/// A slow `rm -rf` under the daemon: a sync lands between its first
/// deletes and the rest. The first slice alone is no mass delete, but it
/// is not sent either (new deletes wait a moment), so the next sync sees
/// the whole of it and holds all of it back.
#[test]
fn a_sync_in_the_middle_of_an_rm_rf_sends_none_of_it() {
    let (_dir, a, b) = synced_pair(150);
    let daemon = Daemon::start(&a);
    for i in 0..60 {
        std::fs::remove_file(a.path(&format!("f{i:03}"))).unwrap();
    }
    // An edit goes at once (new paths wait with the deletes, as a move is
    // both): the daemon syncs the first slice 100 ms after the last event.
    std::fs::write(a.path("f149"), b"edited meanwhile").unwrap();
    wait_for("the first slice's sync to send the edit", || {
        b.sync();
        std::fs::read(b.path("f149")).unwrap() == b"edited meanwhile"
    });
    assert_eq!(count(&b), 150, "the first slice of deletes was sent");
    for i in 60..120 {
        std::fs::remove_file(a.path(&format!("f{i:03}"))).unwrap();
    }
    wait_for("the daemon's status to name the held-back deletes", || {
        a.ok(&["status"]).contains("--allow-mass-delete")
    });
    b.sync();
    assert_eq!(count(&b), 150, "deletes reached B without being allowed");
    a.ok(&["resume", "--allow-mass-delete"]);
    wait_for("the allowed deletes on B", || {
        b.sync();
        count(&b) == 30
    });
    daemon.stop();
}

/// Deletes the daemon sees are sent once they stayed deleted a moment.
#[test]
fn the_daemon_sends_a_small_delete_after_a_moment() {
    let (_dir, a, b) = synced_pair(10);
    let daemon = Daemon::start(&a);
    std::fs::remove_file(a.path("f003")).unwrap();
    wait_for("the delete on B", || {
        b.sync();
        !b.path("f003").exists()
    });
    assert_eq!(count(&b), 9);
    daemon.stop();
}

/// A folder of 150 files turned into a file is a mass delete, and the
/// file waits with the deletes: the other device never sees a file with
/// children (it would try to write the file over a full folder).
#[test]
fn a_folder_turned_into_a_file_waits_with_its_held_deletes() {
    let (_dir, a, b) = pair();
    std::fs::create_dir(a.path("big")).unwrap();
    for i in 0..150 {
        std::fs::write(a.path(&format!("big/f{i:03}")), format!("{i}")).unwrap();
    }
    a.sync();
    b.sync();
    std::fs::remove_dir_all(a.path("big")).unwrap();
    std::fs::write(a.path("big"), b"a file now").unwrap();
    std::fs::write(a.path("other.txt"), b"still synced").unwrap();
    let out = a.run(&["sync"]);
    assert!(!out.status.success(), "the guard did not stop the sync");
    let report = b.sync();
    assert!(
        report["problems"].as_array().unwrap().is_empty(),
        "{report}"
    );
    assert!(b.path("big").is_dir());
    assert_eq!(std::fs::read_dir(b.path("big")).unwrap().count(), 150);
    assert_eq!(std::fs::read(b.path("other.txt")).unwrap(), b"still synced");

    a.ok(&["sync", "--allow-mass-delete"]);
    b.sync();
    assert_eq!(std::fs::read(b.path("big")).unwrap(), b"a file now");
}

#[test]
fn deletes_in_small_batches_count_together() {
    let (_dir, a, b) = synced_pair(150);
    // A slow `rm -rf`: three batches, each too small to trip the guard.
    for batch in 0..3 {
        for i in batch * 40..(batch + 1) * 40 {
            std::fs::remove_file(a.path(&format!("f{i:03}"))).unwrap();
        }
        let out = a.run(&["sync"]);
        if batch < 2 {
            assert!(out.status.success(), "batch {batch} was stopped");
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success(),
                "120 of 150 deleted in minutes went through"
            );
            assert!(stderr.contains("120 of 150"), "{stderr}");
        }
    }
    b.sync();
    assert_eq!(count(&b), 70, "the third batch reached B");
    a.ok(&["sync", "--allow-mass-delete"]);
    b.sync();
    assert_eq!(count(&b), 30);
}

#[test]
fn a_missing_root_deletes_nothing_remotely() {
    let (dir, a, b) = pair();
    std::fs::write(a.path("precious.txt"), b"keep me").unwrap();
    a.sync();
    b.sync();
    // The disk holding A's folder is unmounted.
    std::fs::rename(&a.root, dir.path().join("A-unmounted")).unwrap();
    let out = a.run(&["sync"]);
    assert!(!out.status.success());
    b.sync();
    assert_eq!(std::fs::read(b.path("precious.txt")).unwrap(), b"keep me");
}

#[test]
fn ignored_paths_stay_where_they_are() {
    let (_dir, a, b) = pair();
    std::fs::write(a.path(".pouchignore"), "build/\n*.log\n").unwrap();
    std::fs::create_dir(a.path("build")).unwrap();
    std::fs::write(a.path("build/out.bin"), b"artifact").unwrap();
    std::fs::write(a.path("debug.log"), b"noise").unwrap();
    std::fs::write(a.path("keep.txt"), b"keep").unwrap();
    std::fs::write(a.path(".keep.txt.swp"), b"vim swap").unwrap();
    a.sync();
    b.sync();
    let mut names: Vec<String> = std::fs::read_dir(&b.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, [".pouchignore", "keep.txt"]);

    // B's own ignored files are neither sent nor deleted, and A's stay too.
    std::fs::write(b.path("local.log"), b"b's log").unwrap();
    b.sync();
    a.sync();
    assert!(!a.path("local.log").exists());
    assert!(b.path("local.log").exists());
    assert!(a.path("build/out.bin").exists() && a.path("debug.log").exists());

    // A synced file that becomes ignored is left alone on both sides.
    std::fs::write(a.path(".pouchignore"), "build/\n*.log\nkeep.txt\n").unwrap();
    a.sync();
    std::fs::remove_file(a.path("keep.txt")).unwrap();
    a.sync();
    b.sync();
    assert_eq!(std::fs::read(b.path("keep.txt")).unwrap(), b"keep");
    assert_eq!(
        std::fs::read_to_string(b.path(".pouchignore")).unwrap(),
        "build/\n*.log\nkeep.txt\n"
    );
}

/// Sockets, FIFOs and names that are not UTF-8 are skipped, each named in
/// the report with why; everything else keeps syncing.
#[test]
fn special_files_and_bad_names_are_reported_one_by_one_and_the_rest_syncs() {
    use std::os::unix::ffi::OsStrExt;
    let (_dir, a, b) = common::pair();
    std::fs::write(a.path("fine.txt"), b"fine").unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(a.path("app.sock")).unwrap();
    let fifo = std::process::Command::new("mkfifo")
        .arg(a.path("pipe"))
        .status()
        .unwrap();
    assert!(fifo.success());
    let bad_name = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
    std::fs::write(a.root.join(bad_name), b"latin-1 name").unwrap();

    let out = a.run(&["sync", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "skipped files fail the exit code"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = report["problems"].to_string();
    assert!(
        problems.contains("app.sock: a socket cannot be synced"),
        "{problems}"
    );
    assert!(
        problems.contains("pipe: a named pipe (FIFO) cannot be synced"),
        "{problems}"
    );
    assert!(problems.contains("not valid UTF-8"), "{problems}");

    let status: serde_json::Value =
        serde_json::from_slice(&a.run(&["status", "--json"]).stdout).unwrap();
    assert_eq!(status["problems"].as_array().unwrap().len(), 3, "{status}");

    b.sync();
    assert_eq!(std::fs::read(b.path("fine.txt")).unwrap(), b"fine");
    assert!(!b.path("app.sock").exists() && !b.path("pipe").exists());
}

/// A file appended to while syncs run is never committed torn: every
/// version that reaches the other device is a prefix the writer really
/// wrote, and the final one arrives whole once the writes stop.
#[test]
fn a_file_appended_to_while_it_syncs_is_never_committed_torn() {
    use std::io::Write;
    let (_dir, a, b) = common::pair();
    let data = common::noise(77, 12 << 20);
    let path = a.path("growing.log");
    let writer = {
        let (data, path) = (data.clone(), path.clone());
        std::thread::spawn(move || {
            let mut file = std::fs::File::create(&path).unwrap();
            for piece in data.chunks(96 << 10) {
                file.write_all(piece).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(8));
            }
        })
    };
    let mut rounds = 0;
    while !writer.is_finished() {
        let out = a.run(&["sync", "--json"]);
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains("changed"), "{stderr}");
        }
        b.sync();
        if let Ok(seen) = std::fs::read(b.path("growing.log")) {
            assert!(
                data.starts_with(&seen),
                "B got {} bytes that are not what A wrote",
                seen.len()
            );
        }
        rounds += 1;
    }
    writer.join().unwrap();
    a.sync();
    b.sync();
    assert!(
        rounds >= 2,
        "the writer finished before syncs overlapped it"
    );
    assert_eq!(std::fs::read(b.path("growing.log")).unwrap(), data);
}
