//! Nothing propagates a disaster: a mass delete stops and asks, and a sync
//! root that vanished (an unmounted disk) deletes nothing remotely.

mod common;

use common::Device;

fn pair() -> (tempfile::TempDir, Device, Device) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let a = Device::init(dir.path(), "A", &store);
    let b = Device::init(dir.path(), "B", &store);
    (dir, a, b)
}

fn count(device: &Device) -> usize {
    std::fs::read_dir(&device.root).unwrap().count()
}

#[test]
fn a_mass_delete_is_held_back_until_allowed() {
    let (_dir, a, b) = pair();
    for i in 0..150 {
        std::fs::write(a.path(&format!("f{i:03}")), format!("{i}")).unwrap();
    }
    a.sync();
    b.sync();
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
    assert_eq!(count(&b), 150, "deletes reached B without being allowed");

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
