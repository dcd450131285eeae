//! What a new user runs into: one sync per folder at a time, JSON on
//! failure too, and `init` and `exclude` that say plainly what is wrong
//! and leave nothing behind.

mod common;

use std::time::{Duration, Instant};

use common::{Device, pair, pouch};

#[test]
fn a_second_sync_waits_for_the_first() {
    let (_dir, a, _b) = pair();
    std::fs::write(a.path("f.txt"), b"x").unwrap();
    a.sync();
    // Another sync of this folder holds the lock (as a running one does).
    let state = a.config.with_extension("journal.sqlite");
    let held = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(state.with_extension("lock"))
        .unwrap();
    held.lock().unwrap();
    let mut child = pouch()
        .arg("--config")
        .arg(&a.config)
        .arg("sync")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        child.try_wait().unwrap().is_none(),
        "a second sync ran beside the first"
    );
    held.unlock().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the waiting sync never ran");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("waiting for it to finish"), "{stderr}");
}

#[test]
fn sync_json_reports_a_failure_as_json() {
    let (dir, a, _b) = pair();
    std::fs::rename(dir.path().join("store"), dir.path().join("elsewhere")).unwrap();
    let out = a.run(&["sync", "--json"]);
    assert!(!out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(report["ok"], false);
    assert!(
        report["error"].as_str().unwrap().contains("no Pouch store"),
        "{report}"
    );
}

#[test]
fn init_says_plainly_what_is_wrong_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a folder").unwrap();
    let device = Device::new(dir.path(), "A", Vec::new());
    let store = dir.path().join("store");
    let out = device.run(&[
        "init",
        "--root",
        file.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("is a file, not a folder"), "{stderr}");

    // A URL with a password in it is refused, and explained.
    let root = dir.path().join("A");
    let out = device.run(&[
        "init",
        "--root",
        root.to_str().unwrap(),
        "--url",
        "http://alice:hunter2@127.0.0.1:1",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("must not carry a user name or password"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("hunter2"),
        "the password was echoed: {stderr}"
    );

    // A store that cannot be reached: the init fails, and leaves no folder,
    // no config and no state.
    let out = device.run(&[
        "init",
        "--root",
        root.to_str().unwrap(),
        "--url",
        "http://127.0.0.1:1",
        "--token",
        "a-token-long-enough-0123",
    ]);
    assert!(!out.status.success());
    // Said once, not once per layer of the error's chain.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("error sending request").count(),
        1,
        "{stderr}"
    );
    let mut left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["a-file"], "a failed init left things behind");
}

/// A folder is synced once: `init` refuses one inside its store folder, and
/// one inside, around or equal to a folder this machine already syncs;
/// deleting that folder's config frees it.
#[test]
fn init_refuses_folders_that_would_be_synced_twice() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let a = Device::init(dir.path(), "A", &store);
    let refused = |name: &str, root: &std::path::Path, store: &std::path::Path| {
        let device = Device::new(dir.path(), name, Vec::new());
        let out = device.run(&[
            "init",
            "--root",
            root.to_str().unwrap(),
            "--store",
            store.to_str().unwrap(),
        ]);
        assert!(!out.status.success(), "{name}: init went through");
        assert!(!device.config.exists(), "{name}: a config was written");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let inside_store = store.join("synced");
    let said = refused("S", &inside_store, &store);
    assert!(said.contains("inside the store folder"), "{said}");
    assert!(!inside_store.exists());
    let said = refused("C", &a.path("photos"), &dir.path().join("store-c"));
    assert!(
        said.contains("is inside") && said.contains("A.toml"),
        "{said}"
    );
    assert!(!dir.path().join("store-c").exists(), "a store was made");
    let said = refused("D", dir.path(), &dir.path().join("store-d"));
    assert!(said.contains("holds"), "{said}");
    let said = refused("E", &a.root, &store);
    assert!(said.contains("already synced"), "{said}");
    // Two names of one folder are one folder.
    let link = dir.path().join("link-to-a");
    std::os::unix::fs::symlink(&a.root, &link).unwrap();
    assert!(refused("F", &link, &store).contains("already synced"));
    // A sibling is fine; a folder whose config is gone is free again.
    Device::init(dir.path(), "G", &store);
    std::fs::remove_file(&a.config).unwrap();
    let e = Device::new(dir.path(), "E", Vec::new());
    e.ok(&[
        "init",
        "--root",
        a.root.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
    ]);
}

#[test]
fn exclude_add_takes_an_absolute_path_and_names_a_missing_folder() {
    let (_dir, a, _b) = pair();
    std::fs::create_dir(a.path("big")).unwrap();
    std::fs::write(a.path("big/f"), b"x").unwrap();
    a.sync();
    let absolute = a.path("big");
    a.ok(&["exclude", "add", absolute.to_str().unwrap()]);
    assert_eq!(a.ok(&["exclude", "list"]).trim(), "big");
    let out = a.run(&["exclude", "add", "nowhere"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("does not exist"), "{stderr}");
    let out = a.run(&["exclude", "add", "/etc"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not inside the synced folder"));
}
