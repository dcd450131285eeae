//! `pouch sync` killed with SIGKILL in the middle of a large upload: the
//! next sync finishes without sending the blocks already stored, and the
//! result is intact.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::{Device, noise};
use pouch_backend_own::storage::Store;

/// Starts `pouch sync` on `device` and kills it with SIGKILL once it
/// prints progress line `at`; the sync must not have finished.
fn kill_sync_at(device: &Device, at: &str) {
    let mut child = common::pouch()
        .arg("--config")
        .arg(&device.config)
        .arg("sync")
        .envs(device.env.iter().cloned())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    for line in stderr.lines() {
        let line = line.unwrap();
        let there = line == at;
        seen.push(line);
        if there {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the sync finished before it was killed: {seen:?}"
    );
}

#[test]
fn sigkill_mid_upload_resumes_without_resending() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let a = Device::init(dir.path(), "A", &store_dir);
    let b = Device::init(dir.path(), "B", &store_dir);
    let data = noise(11, 300 << 20);
    std::fs::write(a.path("large.bin"), &data).unwrap();

    kill_sync_at(&a, "uploading 50%");

    let stored_before = Store::open(&store_dir, Default::default())
        .unwrap()
        .stats()
        .unwrap();
    assert!(
        stored_before.blocks > 0,
        "nothing was stored before the kill; the test proves nothing"
    );
    assert_eq!(
        stored_before.journal_head.0, 0,
        "no commit may exist before its blocks are all stored"
    );

    let report = a.sync();
    let store = Store::open(&store_dir, Default::default()).unwrap();
    let after = store.stats().unwrap();
    let sent = report["blocks_uploaded"].as_u64().unwrap();
    assert_eq!(after.blocks, stored_before.blocks + sent, "{report}");
    assert!(
        sent < after.blocks,
        "blocks stored before the kill were sent again: {report}"
    );
    assert_eq!(
        after.blocks_written, after.blocks,
        "a block was written twice"
    );
    let verify = store.verify().unwrap();
    assert!(verify.corrupt.is_empty(), "{:?}", verify.corrupt);

    b.sync();
    assert!(
        std::fs::read(b.path("large.bin")).unwrap() == data,
        "B's copy differs"
    );
}

/// `pouch sync` killed with SIGKILL in the middle of a new device's
/// download (the batched read running ahead of the files being written):
/// the files written before the kill are whole and stay; the next sync
/// fetches only the rest, and leaves no temp file behind.
#[test]
fn sigkill_mid_download_resumes_without_fetching_finished_files_again() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let a = Device::init(dir.path(), "A", &store_dir);
    let b = Device::init(dir.path(), "B", &store_dir);
    let files: Vec<Vec<u8>> = (0..300u64).map(|i| noise(500 + i, 400 << 10)).collect();
    for (i, data) in files.iter().enumerate() {
        std::fs::write(a.path(&format!("f{i:03}.bin")), data).unwrap();
    }
    a.sync();

    // Downloads are finished (made durable, renamed in) in batches of at
    // most 64 MiB: by 80 % of these 120 MiB one batch is in place.
    kill_sync_at(&b, "downloading 80%");

    let finished: Vec<usize> = (0..files.len())
        .filter(|i| b.path(&format!("f{i:03}.bin")).exists())
        .collect();
    assert!(
        !finished.is_empty() && finished.len() < files.len(),
        "the kill did not land mid-download: {} files",
        finished.len()
    );
    for &i in &finished {
        assert!(
            std::fs::read(b.path(&format!("f{i:03}.bin"))).unwrap() == files[i],
            "f{i:03}.bin was left torn"
        );
    }

    let report = b.sync();
    assert_eq!(
        report["downloaded"].as_u64().unwrap() as usize,
        files.len() - finished.len(),
        "{report}"
    );
    for (i, data) in files.iter().enumerate() {
        assert!(
            std::fs::read(b.path(&format!("f{i:03}.bin"))).unwrap() == *data,
            "f{i:03}.bin differs"
        );
    }
    let names: Vec<String> = std::fs::read_dir(&b.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), files.len(), "leftovers: {names:?}");
}
