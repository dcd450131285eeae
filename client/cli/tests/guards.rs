//! Nothing propagates a disaster: a mass delete stops and asks, and a sync
//! root that vanished (an unmounted disk) deletes nothing remotely.

mod common;

use common::{Device, pair};

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
