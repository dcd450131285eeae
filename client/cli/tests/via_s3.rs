//! Two devices sync end to end through a real S3-compatible server (moto's,
//! started by the test command), directly and through a proxy that fails
//! one request in ten.

mod common;

use common::{Device, noise, scenarios, snapshot};
use pouch_testkit::proxy::{FaultProxy, Faults};
use pouch_testkit::s3;

/// A pair of devices on a fresh bucket at `endpoint` (the server's, or a
/// proxy's in front of it).
fn pair_on(
    endpoint: &str,
    runtime: &tokio::runtime::Runtime,
) -> (tempfile::TempDir, Device, Device) {
    let bucket = runtime.block_on(s3::server().fresh_bucket());
    let dir = tempfile::tempdir().unwrap();
    let a = Device::init_s3(dir.path(), "A", endpoint, &bucket);
    let b = Device::init_s3(dir.path(), "B", endpoint, &bucket);
    (dir, a, b)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn everything_propagates_both_ways_through_s3() {
    let rt = runtime();
    let (_dir, a, b) = pair_on(&s3::server().endpoint, &rt);
    scenarios::everything_propagates_both_ways(&a, &b);
}

#[test]
fn edits_and_deletes_on_both_sides_through_s3() {
    let rt = runtime();
    let (_dir, a, b) = pair_on(&s3::server().endpoint, &rt);
    scenarios::an_edit_on_both_sides_keeps_both_versions(&a, &b);
    scenarios::a_delete_against_an_edit_keeps_the_edit(&a, &b);
}

/// 2,000 small files travel in a handful of requests, not 2,000.
#[test]
fn many_small_files_are_few_requests() {
    let rt = runtime();
    let proxy = rt.block_on(FaultProxy::start(&s3::server().endpoint, Faults::default()));
    let (_dir, a, b) = pair_on(&proxy.url, &rt);
    for i in 0..2000u64 {
        let dir = a.path(&format!("src/m{}", i % 40));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("f{i}.txt")), noise(i, 1500)).unwrap();
    }
    let before = proxy
        .counters
        .requests
        .load(std::sync::atomic::Ordering::Relaxed);
    a.sync();
    let used = proxy
        .counters
        .requests
        .load(std::sync::atomic::Ordering::Relaxed)
        - before;
    assert!(used <= 20, "uploading 2,000 files took {used} requests");
    // A new device fetches them with a few ranged reads, not one each.
    let before = proxy
        .counters
        .requests
        .load(std::sync::atomic::Ordering::Relaxed);
    b.sync();
    let used = proxy
        .counters
        .requests
        .load(std::sync::atomic::Ordering::Relaxed)
        - before;
    assert!(used <= 30, "downloading 2,000 files took {used} requests");
    scenarios::assert_same(&a, &b);
}

#[test]
fn sync_completes_byte_identical_when_one_request_in_ten_fails() {
    let rt = runtime();
    let proxy = rt.block_on(FaultProxy::start(
        &s3::server().endpoint,
        Faults {
            fail_percent: 10,
            seed: 2026,
            strip_if_none_match: false,
        },
    ));
    let (_dir, a, b) = pair_on(&proxy.url, &rt);
    for i in 0..60u64 {
        let dir = a.path(&format!("d{}", i % 6));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(format!("f{i}")),
            noise(i, 1 + (i as usize * 37_171) % 300_000),
        )
        .unwrap();
    }
    std::fs::write(a.path("large.bin"), noise(99, 12 << 20)).unwrap();
    a.sync();
    b.sync();
    assert_eq!(snapshot(&a.root), snapshot(&b.root));
    // Changes on both sides, then both sync again.
    std::fs::write(b.path("d1/f1"), b"edited on B").unwrap();
    std::fs::remove_file(b.path("d2/f2")).unwrap();
    std::fs::write(a.path("from-a.txt"), noise(5, 4000)).unwrap();
    b.sync();
    a.sync();
    b.sync();
    assert_eq!(snapshot(&a.root), snapshot(&b.root));
    assert_eq!(std::fs::read(a.path("d1/f1")).unwrap(), b"edited on B");
    let failed = proxy
        .counters
        .failed
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(failed >= 5, "only {failed} requests were failed on purpose");
}

#[test]
fn init_refuses_a_store_that_ignores_conditional_writes_and_doctor_checks() {
    let rt = runtime();
    let honest = {
        let (_dir, a, _b) = pair_on(&s3::server().endpoint, &rt);
        let out = a.run(&["doctor"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{text}");
        assert!(text.contains("conditional writes"), "{text}");
        text
    };
    assert!(honest.contains("ok"));
    let proxy = rt.block_on(FaultProxy::start(
        &s3::server().endpoint,
        Faults {
            strip_if_none_match: true,
            ..Faults::default()
        },
    ));
    let bucket = rt.block_on(s3::server().fresh_bucket());
    let dir = tempfile::tempdir().unwrap();
    let device = Device::new(dir.path(), "c", common::s3_keys());
    let root = device.root.to_str().unwrap().to_owned();
    let out = device.run(&[
        "init",
        "--root",
        &root,
        "--backend",
        "s3",
        "--bucket",
        &bucket,
        "--endpoint",
        &proxy.url,
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("conditional writes"), "{stderr}");
    assert!(
        !device.config.exists(),
        "a refused store must not be configured"
    );
}

/// `pouch migrate copy` and `verify` from the embedded store to S3 and
/// from S3 back to a new embedded store; a device on each target syncs the
/// same folder.
#[test]
fn migrate_copy_to_s3_and_back() {
    let rt = runtime();
    let server = s3::server();
    let bucket = rt.block_on(server.fresh_bucket());
    let (dir, mut a, _b) = common::pair();
    a.env = common::s3_keys();
    for i in 0..30u64 {
        std::fs::write(a.path(&format!("f{i}")), noise(i, 30_000 + i as usize)).unwrap();
    }
    a.sync();
    std::fs::write(a.path("f0"), b"edited").unwrap();
    a.sync();
    let to_s3 = [
        "--to",
        "s3",
        "--bucket",
        &bucket,
        "--endpoint",
        &server.endpoint,
        "--prefix",
        "folder",
    ];
    let report = a.json(&[&["migrate", "copy", "--json"][..], &to_s3].concat());
    assert_eq!(report["entries_copied"], 2, "{report}");
    a.json(&[&["migrate", "verify", "--json"][..], &to_s3].concat());

    let on_s3 = Device::init_s3(dir.path(), "S", &server.endpoint, &bucket);
    on_s3.sync();
    assert_eq!(snapshot(&on_s3.root), snapshot(&a.root));

    let back = dir.path().join("back-store");
    let back = back.to_str().unwrap();
    on_s3.json(&["migrate", "copy", "--json", "--to", "own", "--store", back]);
    let checked = on_s3.json(&[
        "migrate", "verify", "--json", "--to", "own", "--store", back,
    ]);
    assert_eq!(checked["entries"], 2, "{checked}");
    let home = Device::init(dir.path(), "H", std::path::Path::new(back));
    home.sync();
    assert_eq!(snapshot(&home.root), snapshot(&a.root));
}

/// A switch from a folder to S3 is a move to another server: the other
/// device waits for its user (`pouch migrate follow`) and keeps its files
/// and config; without S3 keys, following says what is missing; with keys
/// it follows.
#[test]
fn a_move_to_another_server_waits_for_the_user_and_for_credentials() {
    let rt = runtime();
    let server = s3::server();
    let bucket = rt.block_on(server.fresh_bucket());
    let (_dir, mut a, mut b) = common::pair();
    std::fs::write(a.path("shared.txt"), b"before the move").unwrap();
    a.sync();
    b.sync();
    a.env = common::s3_keys();
    a.ok(&[
        "migrate",
        "switch",
        "--to",
        "s3",
        "--bucket",
        &bucket,
        "--endpoint",
        &server.endpoint,
    ]);

    // B waits for its user: nothing synced, nothing changed.
    let before = std::fs::read_to_string(&b.config).unwrap();
    let out = b.run(&["sync"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "B followed by itself: {stderr}");
    assert!(
        stderr.contains("moved")
            && stderr.contains("safe")
            && stderr.contains("pouch migrate follow"),
        "{stderr}"
    );
    let status = b.ok(&["status"]);
    assert!(status.contains("waiting for you"), "{status}");

    // B has no keys: moto takes any, so point B at no credentials at all by
    // an empty shared-credentials file and a metadata endpoint that is closed.
    let out = common::pouch()
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_METADATA_ENDPOINT", "http://127.0.0.1:9")
        .arg("--config")
        .arg(&b.config)
        .args(["migrate", "follow"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "B followed without credentials: {stderr}"
    );
    assert!(
        stderr.contains("moved") && stderr.contains("safe"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&b.config).unwrap(), before);
    assert_eq!(
        std::fs::read(b.path("shared.txt")).unwrap(),
        b"before the move"
    );

    // With keys, B follows and syncs through S3.
    std::fs::write(b.path("after.txt"), b"after the move").unwrap();
    b.env = common::s3_keys();
    b.ok(&["migrate", "follow"]);
    a.ok(&["sync"]);
    assert_eq!(
        std::fs::read(a.path("after.txt")).unwrap(),
        b"after the move"
    );
}

#[test]
fn a_bucket_emptied_by_hand_is_refused() {
    let rt = runtime();
    let bucket = rt.block_on(s3::server().fresh_bucket());
    let dir = tempfile::tempdir().unwrap();
    let endpoint = &s3::server().endpoint;
    let a = Device::init_s3(dir.path(), "A", endpoint, &bucket);
    std::fs::write(a.path("precious.txt"), b"keep me").unwrap();
    a.sync();
    // Someone empties the bucket by hand.
    rt.block_on(s3::server().delete_bucket(&bucket));
    rt.block_on(s3::server().create_bucket(&bucket));
    let out = a.run(&["sync"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "synced into an emptied bucket");
    assert!(
        stderr.contains("is not the store this folder synced with")
            && stderr.contains("no store identity"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(a.path("precious.txt")).unwrap(), b"keep me");
    // Nothing was written to it.
    let keys = rt.block_on(s3::server().keys(&bucket));
    assert!(keys.is_empty(), "the refused sync wrote {keys:?}");
    assert!(!a.run(&["status"]).status.success());
}
