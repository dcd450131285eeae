//! Files that trip naive sync clients: leftovers of a killed download,
//! sparse files, and conflicts on names at the file-system limit.

mod common;

use std::os::unix::fs::MetadataExt;

use common::pair;

/// The id of a process that has exited.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn temp_files_of_a_killed_download_are_cleared_and_keep_no_folder_alive() {
    let (_dir, a, b) = pair();
    std::fs::create_dir(a.path("photos")).unwrap();
    std::fs::write(a.path("photos/one.jpg"), b"jpeg").unwrap();
    a.sync();
    b.sync();
    // A download into B's folder was killed: its temp file stays behind.
    let leftover = b.path(&format!("photos/.pouch-tmp-{}-0", dead_pid()));
    std::fs::write(&leftover, b"half a file").unwrap();
    // A temp file of a live process (this test's) is not touched.
    let live = b.path(&format!(".pouch-tmp-{}-7", std::process::id()));
    std::fs::write(&live, b"being written").unwrap();

    std::fs::remove_dir_all(a.path("photos")).unwrap();
    a.sync();
    let report = b.sync();
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    assert!(!leftover.exists(), "the leftover temp file is still there");
    assert!(
        !b.path("photos").exists(),
        "the deleted folder was kept alive"
    );
    assert!(live.exists(), "a live process's temp file was removed");
}

#[test]
fn a_sparse_file_arrives_sparse() {
    let (_dir, a, b) = pair();
    let size = 256u64 << 20;
    let file = std::fs::File::create(a.path("disk.img")).unwrap();
    file.set_len(size).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, b"end", size - 3).unwrap();
    drop(file);
    a.sync();
    b.sync();
    let meta = std::fs::metadata(b.path("disk.img")).unwrap();
    assert_eq!(meta.len(), size);
    let allocated = meta.blocks() * 512;
    assert!(
        allocated < 16 << 20,
        "{allocated} bytes allocated for a file of 256 MiB of holes"
    );
    let data = std::fs::read(b.path("disk.img")).unwrap();
    assert_eq!(&data[data.len() - 3..], b"end");
    assert!(data[..data.len() - 3].iter().all(|&b| b == 0));
}

#[test]
fn a_conflict_on_a_name_at_the_limit_converges() {
    let (_dir, a, b) = pair();
    let name = format!("{}.txt", "n".repeat(251));
    assert_eq!(name.len(), 255);
    std::fs::write(a.path(&name), b"from A").unwrap();
    std::fs::write(b.path(&name), b"from B").unwrap();
    a.sync();
    let report = b.sync();
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    assert_eq!(report["conflicts"], 1, "{report}");
    a.sync();
    let names = |dir: &std::path::Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(&a.root), names(&b.root));
    assert_eq!(names(&a.root).len(), 2);
    assert!(names(&a.root).iter().all(|n| n.len() <= 255));
    assert_eq!(std::fs::read(a.path(&name)).unwrap(), b"from A");
    // Quiet afterwards: nothing left to do on either side.
    assert_eq!(a.sync()["uploaded"], 0);
    assert_eq!(b.sync()["uploaded"], 0);
}
