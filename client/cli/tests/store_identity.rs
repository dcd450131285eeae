//! A device syncs only with the store its state belongs to: a store with
//! another identity, or none, at the configured place stops the sync with
//! a clear error, and nothing is written to it; `sync` never makes a store.

mod common;

use common::{Device, pair};

/// Runs `sync` expecting it to fail; returns its stderr.
fn refused(device: &Device) -> String {
    let out = device.run(&["sync"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "the sync went through: {stderr}");
    stderr
}

fn listing(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn an_unmounted_store_disk_is_not_replaced_by_an_empty_store() {
    let (dir, a, b) = pair();
    std::fs::write(a.path("precious.txt"), b"keep me").unwrap();
    a.sync();
    b.sync();
    // The disk holding the store is unmounted: its mount point is empty.
    let store = dir.path().join("store");
    std::fs::rename(&store, dir.path().join("store-unmounted")).unwrap();
    std::fs::create_dir(&store).unwrap();
    let stderr = refused(&a);
    assert!(
        stderr.contains("there is no Pouch store there") && stderr.contains("mounted"),
        "{stderr}"
    );
    assert!(
        listing(&store).is_empty(),
        "sync made a store: {:?}",
        listing(&store)
    );
    // Nor does the daemon.
    let out = a.run(&["daemon"]);
    assert!(!out.status.success());
    assert!(listing(&store).is_empty(), "the daemon made a store");
    // The disk comes back: syncing goes on.
    std::fs::remove_dir(&store).unwrap();
    std::fs::rename(dir.path().join("store-unmounted"), &store).unwrap();
    std::fs::write(a.path("later.txt"), b"later").unwrap();
    a.sync();
    b.sync();
    assert_eq!(std::fs::read(b.path("later.txt")).unwrap(), b"later");
}

#[test]
fn a_recreated_store_is_refused_and_left_untouched() {
    let (dir, a, b) = pair();
    std::fs::write(a.path("precious.txt"), b"keep me").unwrap();
    a.sync();
    b.sync();
    // Someone replaces the store folder with a new store (another `init`).
    let store = dir.path().join("store");
    std::fs::rename(&store, dir.path().join("store-old")).unwrap();
    let c = Device::init(dir.path(), "C", &store);
    std::fs::write(c.path("other.txt"), b"another history").unwrap();
    c.sync();
    let before = listing(&store.join("volumes"));
    let head = c.json(&["status", "--json"])["remote_head"].clone();

    let stderr = refused(&a);
    assert!(
        stderr.contains("is not the store this folder synced with")
            && stderr.contains("another store")
            && stderr.contains("Nothing was synced"),
        "{stderr}"
    );
    assert!(!stderr.contains(": : "), "{stderr}");
    // Nothing of A's reached it, nothing of it reached A.
    assert!(!a.path("other.txt").exists());
    assert!(a.path("precious.txt").exists());
    assert_eq!(listing(&store.join("volumes")), before);
    assert_eq!(c.json(&["status", "--json"])["remote_head"], head);
    assert!(!refused(&b).is_empty());
    // `status` says so too.
    let out = a.run(&["status"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not the store"));
}

/// The index is not the only copy of anything: the volumes hold the
/// journal too, so a store that lost its index rebuilds it when opened and
/// a new device still gets every file and every version.
#[test]
fn a_store_that_lost_its_index_rebuilds_it_and_loses_nothing() {
    let (dir, a, _b) = pair();
    std::fs::write(a.path("precious.txt"), b"version one").unwrap();
    a.sync();
    std::fs::write(a.path("precious.txt"), b"version two").unwrap();
    std::fs::write(a.path("second.txt"), b"two").unwrap();
    a.sync();
    let store = dir.path().join("store");
    for name in ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm"] {
        let _ = std::fs::remove_file(store.join(name));
    }
    // The device that wrote it goes on syncing.
    std::fs::write(a.path("third.txt"), b"three").unwrap();
    a.sync();
    assert!(store.join("index.sqlite").is_file());

    let c = Device::init(dir.path(), "C", &store);
    c.sync();
    assert_eq!(
        std::fs::read(c.path("precious.txt")).unwrap(),
        b"version two"
    );
    assert_eq!(std::fs::read(c.path("second.txt")).unwrap(), b"two");
    assert_eq!(std::fs::read(c.path("third.txt")).unwrap(), b"three");
    let history = c.json(&["history", "precious.txt", "--json"]);
    let revisions = history.as_array().unwrap();
    assert_eq!(revisions.len(), 2, "{history}");
    let first = revisions[0]["seq"].as_u64().unwrap().to_string();
    c.ok(&["restore", "precious.txt", "--rev", &first]);
    assert_eq!(
        std::fs::read(c.path("precious.txt")).unwrap(),
        b"version one"
    );

    // `pouch-store` checks and rebuilds an embedded store's folder too.
    let verify = std::process::Command::new(common::pouch_store_binary())
        .args(["verify", "--data"])
        .arg(&store)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{said}");
    assert!(
        said.contains("store: checked") && said.contains(" 0 corrupt"),
        "{said}"
    );
    let rebuild = std::process::Command::new(common::pouch_store_binary())
        .args(["rebuild", "--data"])
        .arg(&store)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&rebuild.stdout);
    assert!(rebuild.status.success(), "{said}");
    assert!(said.contains("4 journal entries"), "{said}");
    a.sync();
}

#[test]
fn a_store_from_before_identities_is_given_one_and_keeps_syncing() {
    let (dir, a, b) = pair();
    std::fs::write(a.path("old.txt"), b"from an older Pouch").unwrap();
    a.sync();
    b.sync();
    // As an older Pouch left it: no identity file, devices unbound.
    let store = dir.path().join("store");
    std::fs::remove_file(store.join("identity")).unwrap();
    for device in [&a, &b] {
        let state = device.config.with_extension("journal.sqlite");
        assert!(unbind(&state), "could not unbind {}", state.display());
    }
    std::fs::write(a.path("new.txt"), b"after the upgrade").unwrap();
    a.sync();
    assert!(
        store.join("identity").is_file(),
        "the store got no identity"
    );
    b.sync();
    assert_eq!(
        std::fs::read(b.path("new.txt")).unwrap(),
        b"after the upgrade"
    );
}

/// Removes a device's binding from its local state, as an older Pouch's
/// state lacks it (with Python's sqlite3, which the test command installs
/// for moto anyway).
fn unbind(state: &std::path::Path) -> bool {
    let status = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); \
             c.execute(\"DELETE FROM meta WHERE key IN ('store_identity','store_first_entry')\"); \
             c.commit()",
        )
        .arg(state)
        .status();
    status.is_ok_and(|s| s.success())
}
