//! `pouch migrate copy` and `verify` between real stores, with a copy
//! killed (SIGKILL) midway and resumed without sending again what it sent;
//! the switch, followed by the other device; and migrations announced in
//! the journal, joined by every device that may write there.

mod common;

use common::{Daemon, Device, noise, pair, snapshot, wait_for};

/// The journal head of the embedded store at `store`.
fn head(store: &std::path::Path) -> u64 {
    use pouch_backend::BackendExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let backend = pouch_backend_own::EmbeddedBackend::open(store).unwrap();
    rt.block_on(backend.journal_head()).unwrap().0
}

/// Bytes in the store's volume files.
fn volume_bytes(store: &std::path::Path) -> u64 {
    std::fs::read_dir(store.join("volumes"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn a_copy_killed_midway_resumes_verifies_and_serves_a_new_device() {
    let (dir, a, b) = pair();
    for i in 0..12u64 {
        std::fs::write(a.path(&format!("big{i}.bin")), noise(i, 16 << 20)).unwrap();
    }
    std::fs::create_dir(a.path("docs")).unwrap();
    std::fs::write(a.path("docs/note.txt"), b"first").unwrap();
    a.sync();
    std::fs::write(a.path("docs/note.txt"), b"second").unwrap();
    a.sync();
    b.sync();

    let new_store = dir.path().join("new-store");
    let new = new_store.to_str().unwrap();
    let mut copy = common::pouch()
        .arg("--config")
        .arg(&a.config)
        .args(["migrate", "copy", "--to", "own", "--store", new, "--json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once its first batch of blocks is on disk.
    let started = std::time::Instant::now();
    while volume_bytes(&new_store) < (4 << 20) {
        assert!(started.elapsed().as_secs() < 60, "the copy never started");
        if copy.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    copy.kill().unwrap();
    let killed = copy.wait().unwrap();
    assert!(
        !killed.success(),
        "the copy finished before it could be killed"
    );

    let report = a.json(&["migrate", "copy", "--to", "own", "--store", new, "--json"]);
    let referenced = report["blocks_referenced"].as_u64().unwrap();
    let present = report["blocks_present"].as_u64().unwrap();
    let copied = report["blocks_copied"].as_u64().unwrap();
    assert!(
        present > 0,
        "the killed copy's blocks were sent again: {report}"
    );
    assert!(copied > 0, "{report}");
    assert_eq!(present + copied, referenced, "{report}");
    assert_eq!(report["entries_copied"], 2, "{report}");

    let checked = a.json(&["migrate", "verify", "--to", "own", "--store", new, "--json"]);
    assert_eq!(checked["blocks"].as_u64(), Some(referenced), "{checked}");
    assert_eq!(checked["entries"], 2);

    // A device on the new store syncs the same folder, history included.
    let c = Device::init(dir.path(), "C", &new_store);
    c.sync();
    assert_eq!(snapshot(&c.root), snapshot(&a.root));
    let history = c.json(&["history", "docs/note.txt", "--json"]);
    assert_eq!(history.as_array().unwrap().len(), 2, "{history}");

    // The store in use is not a target; a second copy sends nothing.
    let same = a.run(&[
        "migrate",
        "copy",
        "--to",
        "own",
        "--store",
        dir.path().join("store").to_str().unwrap(),
    ]);
    assert!(!same.status.success());
    let again = a.json(&["migrate", "copy", "--to", "own", "--store", new, "--json"]);
    assert_eq!(again["blocks_copied"], 0, "{again}");
    drop(b);
}

/// `pouch migrate switch` moves the folder: the old journal is frozen by a
/// last entry naming the new store, the device that switched flips its
/// config, another device follows at its next sync with its unsynced
/// change, and nothing is written to the old store afterwards.
#[test]
fn a_switch_is_followed_by_the_other_device() {
    let (dir, a, b) = pair();
    for i in 0..5u64 {
        std::fs::write(a.path(&format!("f{i}")), noise(i, 200_000)).unwrap();
    }
    a.sync();
    b.sync();
    std::fs::write(b.path("from-b.txt"), b"written on B before it knew").unwrap();

    let new_store = dir.path().join("new-store");
    a.ok(&[
        "migrate",
        "switch",
        "--to",
        "own",
        "--store",
        new_store.to_str().unwrap(),
    ]);
    let config = std::fs::read_to_string(&a.config).unwrap();
    assert!(
        config.contains("new-store") && config.contains("[previous_backend]"),
        "{config}"
    );

    let frozen = head(&dir.path().join("store"));

    let report = b.sync();
    assert_eq!(
        report["commits"], 1,
        "B's change goes to the new store: {report}"
    );
    let config = std::fs::read_to_string(&b.config).unwrap();
    assert!(config.contains("new-store"), "B followed: {config}");
    assert_eq!(
        head(&dir.path().join("store")),
        frozen,
        "nothing more on the old store"
    );

    a.sync();
    assert_eq!(snapshot(&a.root), snapshot(&b.root));
    assert_eq!(
        std::fs::read(a.path("from-b.txt")).unwrap(),
        b"written on B before it knew"
    );

    a.ok(&["migrate", "finish"]);
    assert!(
        !std::fs::read_to_string(&a.config)
            .unwrap()
            .contains("previous_backend")
    );
}

/// `pouch migrate start` announces the migration in the journal: the other
/// device (the same kind of store on the same machine: it may follow by
/// itself) joins it at its next sync and writes its own changes to both
/// stores, so the new store holds them with no copy; `pouch migrate
/// cancel` on A stops it on B too.
#[test]
fn an_announced_migration_is_joined_and_left_by_the_other_device() {
    let (dir, a, b) = pair();
    for i in 0..3u64 {
        std::fs::write(a.path(&format!("f{i}")), noise(i, 200_000)).unwrap();
    }
    a.sync();
    b.sync();
    let old_store = dir.path().join("store");
    let new_store = dir.path().join("new-store");
    let to = ["--to", "own", "--store", new_store.to_str().unwrap()];
    a.ok(&[&["migrate", "start"][..], &to].concat());

    std::fs::write(b.path("from-b.bin"), noise(40, 300_000)).unwrap();
    let report = b.sync();
    assert_eq!(report["commits"], 1, "{report}");
    let config = std::fs::read_to_string(&b.config).unwrap();
    assert!(
        config.contains("[migration") && config.contains("new-store"),
        "B joined: {config}"
    );
    // B's entry and blocks went to the new store too: it holds everything
    // though nothing was copied after B wrote.
    assert_eq!(head(&new_store), head(&old_store));
    a.ok(&[&["migrate", "verify"][..], &to].concat());

    a.ok(&["migrate", "cancel"]);
    b.sync();
    let config = std::fs::read_to_string(&b.config).unwrap();
    assert!(!config.contains("[migration"), "B left: {config}");
    let frozen = head(&new_store);
    std::fs::write(b.path("after-cancel.txt"), b"old store only").unwrap();
    b.sync();
    assert_eq!(head(&new_store), frozen, "B writes to the old store alone");
    a.sync();
    assert_eq!(snapshot(&a.root), snapshot(&b.root));
}

/// The same with B's daemon running: it notices the announcement, opens its
/// stores again with the migration, and double-writes what B's user does.
#[test]
fn a_running_daemon_joins_an_announced_migration() {
    let (dir, a, b) = pair();
    std::fs::write(a.path("first.txt"), b"before").unwrap();
    a.sync();
    b.sync();
    let _daemon = Daemon::start(&b);
    let new_store = dir.path().join("new-store");
    a.ok(&[
        "migrate",
        "start",
        "--to",
        "own",
        "--store",
        new_store.to_str().unwrap(),
    ]);
    wait_for("B's daemon to join the migration", || {
        std::fs::read_to_string(&b.config)
            .unwrap()
            .contains("new-store")
    });
    std::fs::write(b.path("from-b-daemon.bin"), noise(41, 250_000)).unwrap();
    wait_for("B's change in both stores", || {
        let old = head(&dir.path().join("store"));
        old > 2 && head(&new_store) == old
    });
}

/// A migration entry naming a store on another server (anyone holding the
/// folder's token, or a compromised store, can write one) is never joined
/// by itself: the device keeps syncing with its store alone, never opens a
/// connection there, and `pouch status` says `pouch migrate join` would.
#[test]
fn an_announced_migration_to_another_server_waits_for_the_user() {
    use pouch_backend::{Backend, BackendExt};
    use pouch_core::commit::{COMMIT_VERSION, Commit, MigrationNotice};
    use pouch_core::location::{OwnLocation, StoreLocation};
    let (dir, a, b) = pair();
    std::fs::write(a.path("first.txt"), b"before").unwrap();
    a.sync();
    b.sync();
    let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    elsewhere.set_nonblocking(true).unwrap();
    let url = format!("http://{}", elsewhere.local_addr().unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = pouch_backend_own::EmbeddedBackend::open(&dir.path().join("store")).unwrap();
    let next = pouch_backend::Seq(rt.block_on(store.journal_head()).unwrap().0 + 1);
    let entry = Commit {
        v: COMMIT_VERSION,
        device: "mallory".into(),
        time: None,
        changes: Vec::new(),
        moved_to: None,
        migration: Some(MigrationNotice {
            to: Some(StoreLocation::Own(OwnLocation::Server {
                url: url.clone(),
                namespace: "default".into(),
            })),
        }),
        missing: Vec::new(),
        retention: None,
    };
    rt.block_on(store.append(next, entry.encode())).unwrap();
    drop(store);

    std::fs::write(b.path("from-b.txt"), b"still syncing").unwrap();
    let report = b.sync();
    assert_eq!(report["commits"], 1, "{report}");
    let config = std::fs::read_to_string(&b.config).unwrap();
    assert!(
        !config.contains("[migration"),
        "B joined by itself: {config}"
    );
    let status = b.ok(&["status"]);
    assert!(
        status.contains("pouch migrate join") && status.contains(&url),
        "{status}"
    );
    assert!(
        matches!(elsewhere.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "B connected to the announced server"
    );
    a.sync();
    assert_eq!(snapshot(&a.root), snapshot(&b.root));
}
