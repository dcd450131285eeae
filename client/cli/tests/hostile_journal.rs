//! A journal entry naming a path outside the root (written straight into
//! the store, as a malicious or corrupt client could) is refused, and
//! nothing is written outside the root.

mod common;

use bytes::Bytes;
use common::Device;
use pouch_backend::{Block, Seq};
use pouch_backend_own::storage::Store;

#[test]
fn paths_leaving_the_root_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let a = Device::init(dir.path(), "A", &store_dir);

    let store = Store::open(&store_dir, Default::default()).unwrap();
    let payload = Bytes::from_static(b"pwned");
    let block = Block::encode(payload.clone());
    store.put_blocks(vec![block.clone()]).unwrap();
    let file = serde_json::json!({
        "kind": "file", "size": 5, "mtime_ns": 0, "exec": false,
        "blocks": [{"id": block.id().to_string(), "len": 5}]
    });
    let outside = dir.path().join("outside");
    let absolute = dir.path().join("absolute");
    let entry = serde_json::json!({
        "v": 1,
        "device": "mallory",
        "changes": [
            {"path": "../outside", "node": file},
            {"path": absolute.to_str().unwrap(), "node": file},
            {"path": "sub/../../outside", "node": file},
            {"path": "ok.txt", "node": file},
        ]
    });
    store
        .append(Seq(1), serde_json::to_vec(&entry).unwrap().as_slice())
        .unwrap();
    // Garbage that is not a commit at all is refused too, without wedging
    // the journal.
    store.append(Seq(2), b"\x00not json").unwrap();
    drop(store);

    let out = a.run(&["sync"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a refused entry must fail the sync: {stderr}"
    );
    assert!(stderr.contains("refused"), "{stderr}");
    assert!(stderr.contains("../outside"), "{stderr}");
    assert!(!outside.exists(), "a file was written outside the root");
    assert!(!absolute.exists(), "a file was written at an absolute path");
    // The well-formed change in the same entry still applies.
    assert_eq!(std::fs::read(a.path("ok.txt")).unwrap(), b"pwned");
    let mut listing: Vec<String> = dir
        .path()
        .read_dir()
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != ".config-home")
        .collect();
    listing.sort();
    assert_eq!(
        listing,
        ["A", "A.journal.lock", "A.journal.sqlite", "A.toml", "store"],
        "only A, A.toml, its local state (and its sync lock) and the store are here"
    );
}

/// A move entry written by someone with write access to the store (or by
/// the store itself) that points at a store with another history is never
/// followed: the device keeps its store, its config and its files.
#[test]
fn a_move_to_a_store_with_another_history_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let a = Device::init(dir.path(), "A", &store_dir);
    std::fs::write(a.path("mine.txt"), b"mine").unwrap();
    a.sync();
    // The attacker's store, with a history of its own as long as ours.
    let theirs = dir.path().join("theirs");
    let m = Device::init(dir.path(), "M", &theirs);
    for i in 0..3 {
        std::fs::write(m.path(&format!("bait{i}.txt")), b"bait").unwrap();
        m.sync();
    }
    let config_before = std::fs::read_to_string(&a.config).unwrap();
    // The hostile entry, appended to our store with its own means.
    let store = Store::open(&store_dir, Default::default()).unwrap();
    let head = store.journal_head().unwrap();
    let entry = serde_json::json!({
        "v": 1, "device": "mallory", "changes": [],
        "moved_to": {"kind": "own", "store": theirs.to_str().unwrap()}
    });
    store
        .append(head.next(), serde_json::to_vec(&entry).unwrap().as_slice())
        .unwrap();
    drop(store);

    let out = a.run(&["sync"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("holds another history") && stderr.contains("not following"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&a.config).unwrap(), config_before);
    assert!(
        !a.path("bait0.txt").exists(),
        "files came from the other store"
    );
    assert_eq!(std::fs::read(a.path("mine.txt")).unwrap(), b"mine");
}

/// Names and device names from the journal reach the terminal with their
/// control characters escaped; `--json` keeps them exact; the file itself
/// syncs under its real (odd) name.
#[test]
fn escape_sequences_from_the_journal_never_reach_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let a = Device::init(dir.path(), "A", &store_dir);
    let store = Store::open(&store_dir, Default::default()).unwrap();
    let payload = Bytes::from_static(b"hi");
    let block = Block::encode(payload);
    store.put_blocks(vec![block.clone()]).unwrap();
    let name = "title\x1b]0;pwned\x07\x1b[2J.txt";
    let entry = serde_json::json!({
        "v": 1,
        "device": "mal\x1b[31mlory",
        "changes": [{"path": name, "node": {
            "kind": "file", "size": 2, "mtime_ns": 0, "exec": false,
            "blocks": [{"id": block.id().to_string(), "len": 2}]
        }}]
    });
    store
        .append(Seq(1), serde_json::to_vec(&entry).unwrap().as_slice())
        .unwrap();
    drop(store);

    let outputs = [
        a.run(&["sync"]),
        a.run(&["ls"]),
        a.run(&["ls", "--remote"]),
        a.run(&["history", name]),
        a.run(&["status"]),
    ];
    for out in &outputs {
        for stream in [&out.stdout, &out.stderr] {
            assert!(
                !stream.contains(&0x1b) && !stream.contains(&0x07),
                "a control character reached the terminal: {:?}",
                String::from_utf8_lossy(stream)
            );
        }
    }
    let listing = String::from_utf8_lossy(&outputs[1].stdout);
    assert!(listing.contains("title\\x1b]0;pwned\\x07"), "{listing}");
    let history = String::from_utf8_lossy(&outputs[3].stdout);
    assert!(history.contains("mal\\x1b[31mlory"), "{history}");
    // Exact in JSON, and on disk.
    let revisions: serde_json::Value =
        serde_json::from_str(&a.ok(&["history", name, "--json"])).unwrap();
    assert_eq!(revisions[0]["device"], "mal\x1b[31mlory");
    assert_eq!(std::fs::read(a.path(name)).unwrap(), b"hi");
}
