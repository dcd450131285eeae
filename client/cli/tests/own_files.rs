//! Pouch never syncs itself: with the folder at `~` and Pouch's config,
//! local state and store in their usual places under it, none of them is
//! uploaded, and syncing settles.

mod common;

use common::Device;

#[test]
fn pouch_never_syncs_its_own_files_even_inside_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    // As `pouch init --root ~` with the default folders would lay it out.
    let a = Device {
        config: home.join(".config/pouch/config.toml"),
        root: home.clone(),
        // The default folders are under it, the local state and the
        // machine's list of synced folders too.
        env: vec![
            (
                "XDG_CONFIG_HOME".into(),
                home.join(".config").to_str().unwrap().into(),
            ),
            (
                "XDG_DATA_HOME".into(),
                home.join(".local/share").to_str().unwrap().into(),
            ),
        ],
    };
    let store = home.join(".local/share/pouch/store");
    a.ok(&[
        "init",
        "--device",
        "A",
        "--root",
        home.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
    ]);
    std::fs::write(home.join("notes.txt"), b"mine").unwrap();
    let first = a.sync();
    assert_eq!(first["problems"], serde_json::json!([]), "{first}");
    let remote = a.ok(&["ls", "--remote"]);
    assert!(remote.contains("notes.txt"), "{remote}");
    for own in [
        "config.toml",
        "folders.toml",
        "journal",
        "store/",
        "index.sqlite",
        "volumes",
        "identity",
    ] {
        assert!(!remote.contains(own), "{own} was synced:\n{remote}");
    }
    // The state changed with that sync; the next one has nothing to send.
    assert_eq!(a.sync()["uploaded"], 0);
    assert_eq!(a.sync()["uploaded"], 0);

    // Another device gets the user's files and none of A's own.
    let b = Device::init(dir.path(), "B", &store);
    b.sync();
    assert_eq!(std::fs::read(b.path("notes.txt")).unwrap(), b"mine");
    assert!(!b.path(".config/pouch/config.toml").exists());
    assert!(!b.path(".local/share/pouch/store").exists());
}
