//! `pouch gc` end to end: on the embedded store, through a real
//! `pouch-store` process and on S3 (moto) the space of deleted files comes
//! back and what is live still syncs to a new device byte-identical; and a
//! collector killed with SIGKILL anywhere loses nothing.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{Device, bytes_under, init_on_server, noise, snapshot, start_server, wait_for};
use pouch_backend::Block;
use pouch_backend_own::storage::Store;

/// The bytes written and deleted: 48 MiB, or `POUCH_GC_TEST_MIB` (the
/// long run in TESTING.md sets 1024).
fn deleted() -> u64 {
    std::env::var("POUCH_GC_TEST_MIB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(48)
        << 20
}

/// Writes a large file and a few small ones on `a`, syncs, deletes the
/// large one, syncs, and sets a retention of zero days.
fn deleted_past_retention(a: &Device) {
    std::fs::write(a.path("large.bin"), noise(1, deleted() as usize)).unwrap();
    std::fs::create_dir_all(a.path("docs")).unwrap();
    for i in 0..20 {
        std::fs::write(a.path(&format!("docs/{i}.txt")), format!("note {i}")).unwrap();
    }
    a.sync();
    std::fs::remove_file(a.path("large.bin")).unwrap();
    a.sync();
    a.ok(&["retention", "set", "0d"]);
    let shown = a.ok(&["retention"]);
    assert!(shown.contains("0 days"), "{shown}");
    // Entries of this very second are not yet older than 0 days.
    std::thread::sleep(Duration::from_millis(1100));
}

#[test]
fn gc_on_the_embedded_store_gives_the_space_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let a = Device::init(dir.path(), "A", &store);
    deleted_past_retention(&a);
    let before = bytes_under(&store);
    assert!(before > deleted());

    let dry = a.json(&["gc", "--dry-run", "--json"]);
    assert!(dry["blocks_unreferenced"].as_u64().unwrap() > 0, "{dry}");
    assert_eq!(dry["blocks_deleted"], 0, "nothing was marked yet: {dry}");
    assert_eq!(bytes_under(&store), before, "a dry run changes nothing");

    // The default grace: marked only.
    let marked = a.json(&["gc", "--json"]);
    assert_eq!(marked["blocks_deleted"], 0, "{marked}");
    assert_eq!(marked["marked"], marked["blocks_unreferenced"], "{marked}");
    let report = a.json(&["gc", "--grace", "0s", "--json"]);
    assert!(
        report["bytes_deleted"].as_u64().unwrap() >= deleted(),
        "{report}"
    );
    assert!(
        report["journal_trimmed_through"].as_u64().is_some(),
        "at 0 days the journal is trimmed: {report}"
    );
    let after = bytes_under(&store);
    let live = report["bytes_stored"].as_u64().unwrap() - report["bytes_deleted"].as_u64().unwrap();
    assert!(
        after < deleted() / 20 + live + (64 << 10),
        "{after} bytes left on disk of {before}: {report}"
    );

    let history = a.ok(&["history", "large.bin"]);
    assert!(history.contains("(expired)"), "{history}");
    let restore = a.run(&["restore", "large.bin"]);
    assert!(!restore.status.success());
    let said = String::from_utf8_lossy(&restore.stderr);
    assert!(said.contains("expired"), "{said}");
    assert!(!a.path("large.bin").exists());

    let c = Device::init(dir.path(), "C", &store);
    c.sync();
    assert_eq!(snapshot(&c.root), snapshot(&a.root));
}

#[test]
fn gc_through_a_pouch_store_process_gives_the_space_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server-data");
    let server = start_server(&data);
    let a = init_on_server(dir.path(), "A", &server.url);
    deleted_past_retention(&a);
    let report = a.json(&["gc", "--grace", "0s", "--json"]);
    assert!(
        report["bytes_deleted"].as_u64().unwrap() >= deleted(),
        "{report}"
    );
    assert!(
        report["journal_trimmed_through"].as_u64().is_some(),
        "at 0 days the journal is trimmed: {report}"
    );
    // The server compacts by itself after a sweep.
    let live = report["bytes_stored"].as_u64().unwrap() - report["bytes_deleted"].as_u64().unwrap();
    wait_for("the server to compact", || {
        bytes_under(&data) < deleted() / 20 + live + (64 << 10)
    });
    let c = init_on_server(dir.path(), "C", &server.url);
    c.sync();
    assert_eq!(snapshot(&c.root), snapshot(&a.root));
}

#[test]
fn gc_on_s3_gives_the_bucket_space_back() {
    let (rt, server, bucket) = common::s3_fixture();
    let dir = tempfile::tempdir().unwrap();
    let a = Device::init_s3(dir.path(), "A", &server.endpoint, &bucket);
    deleted_past_retention(&a);
    let before = rt.block_on(server.bytes(&bucket));
    assert!(before > deleted());
    let packs = || {
        let keys = rt.block_on(server.keys(&bucket));
        keys.iter().filter(|k| k.ends_with(".pack")).count()
    };
    let packs_before = packs();

    let marked = a.json(&["gc", "--json"]);
    assert_eq!(marked["blocks_deleted"], 0, "{marked}");
    assert_eq!(marked["packs_deleted"], 0, "{marked}");
    assert_eq!(
        packs(),
        packs_before,
        "a run that only marks deletes no pack"
    );
    let report = a.json(&["gc", "--grace", "0s", "--json"]);
    assert!(
        report["bytes_deleted"].as_u64().unwrap() >= deleted(),
        "{report}"
    );
    assert!(
        report["journal_trimmed_through"].as_u64().is_some(),
        "at 0 days the journal is trimmed: {report}"
    );
    assert!(report["packs_deleted"].as_u64().unwrap() >= 3, "{report}");
    let after = rt.block_on(server.bytes(&bucket));
    let live = report["bytes_stored"].as_u64().unwrap() - report["bytes_deleted"].as_u64().unwrap();
    assert!(
        after < deleted() / 20 + live + (64 << 10),
        "{after} bytes left in the bucket of {before}: {report}"
    );
    let b = Device::init_s3(dir.path(), "B", &server.endpoint, &bucket);
    b.sync();
    assert_eq!(snapshot(&b.root), snapshot(&a.root));
}

/// `pouch gc --grace 0s --json`, waiting while another collector's lease
/// is in force.
fn gc_when_the_lease_is_free(device: &Device) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let out = device.run(&["gc", "--grace", "0s", "--json"]);
        if out.status.success() {
            return serde_json::from_slice(&out.stdout).unwrap();
        }
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            said.contains("fenced") && std::time::Instant::now() < deadline,
            "gc failed: {said}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Where in a run a collector is killed.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// After a delay from its start (before or around taking the lease).
    Delay(Duration),
    /// When it prints this progress line (listing, sweeping, a share of
    /// the sweep done), plus a delay.
    Line(&'static str, Duration),
}

/// Starts `pouch gc --grace 0s` and kills it with SIGKILL at `at` (it may
/// have finished by then).
fn kill_gc(device: &Device, at: KillAt) {
    use std::io::{BufRead, BufReader};
    let mut child = common::pouch()
        .arg("--config")
        .arg(&device.config)
        .args(["gc", "--grace", "0s"])
        .envs(device.env.iter().cloned())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    match at {
        KillAt::Delay(delay) => std::thread::sleep(delay),
        KillAt::Line(prefix, delay) => {
            for line in BufReader::new(stderr).lines() {
                if line.unwrap().starts_with(prefix) {
                    break;
                }
            }
            std::thread::sleep(delay);
        }
    }
    let _ = child.kill(); // SIGKILL
    child.wait().unwrap();
}

/// Inits a device named the `&str` in the folder on one store.
type Init<'a> = Box<dyn Fn(&std::path::Path, &str) -> Device + 'a>;

/// A store the kill test runs on.
struct Target<'a> {
    /// Inits a device on the store.
    init: Init<'a>,
    /// Puts blocks no journal entry names (a device that died before its
    /// commit).
    put_uncommitted: Box<dyn Fn(Vec<Block>) + 'a>,
    /// How many blocks the store holds.
    stored: Box<dyn Fn() -> u64 + 'a>,
    /// Checks the store's own consistency at the end.
    verify: Box<dyn Fn() + 'a>,
}

#[test]
fn a_collector_killed_anywhere_loses_nothing_and_the_next_one_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let open = || Store::open(&store_dir, Default::default()).unwrap();
    let target = Target {
        init: Box::new(|dir, name| Device::init(dir, name, &store_dir)),
        put_uncommitted: Box::new(|blocks| open().put_blocks(blocks).unwrap()),
        stored: Box::new(|| open().stats().unwrap().blocks),
        verify: Box::new(|| assert!(open().verify().unwrap().corrupt.is_empty())),
    };
    killed_collectors_lose_nothing(dir.path(), &target, 20);
}

#[test]
fn a_collector_on_s3_killed_anywhere_loses_nothing_and_the_next_one_finishes() {
    use pouch_backend::Backend;
    let (rt, server, bucket) = common::s3_fixture();
    let dir = tempfile::tempdir().unwrap();
    let connect = || {
        let mut config = pouch_backend_s3::S3Config::new(&bucket);
        config.endpoint = Some(server.endpoint.clone());
        config.path_style = true;
        config.prefix = "folder".into();
        config.credentials = Some(pouch_backend_s3::Credentials {
            access_key_id: pouch_testkit::s3::ACCESS_KEY_ID.into(),
            secret_access_key: pouch_testkit::s3::SECRET_ACCESS_KEY.into(),
            session_token: None,
        });
        pouch_backend_s3::S3Backend::connect(config, None).unwrap()
    };
    let target = Target {
        init: Box::new(|dir, name| Device::init_s3(dir, name, &server.endpoint, &bucket)),
        put_uncommitted: Box::new(|blocks| rt.block_on(connect().put_blocks(blocks)).unwrap()),
        stored: Box::new(|| {
            rt.block_on(connect().gc_list(None, usize::MAX))
                .unwrap()
                .len() as u64
        }),
        // Every block listed reads back, verified.
        verify: Box::new(|| {
            let backend = connect();
            let listed = rt.block_on(backend.gc_list(None, usize::MAX)).unwrap();
            for block in listed {
                rt.block_on(backend.get_block(block.id)).unwrap();
            }
        }),
    };
    killed_collectors_lose_nothing(dir.path(), &target, 12);
}

/// `rounds` times: fresh garbage, a collector killed with SIGKILL
/// somewhere in its run, and a new device that must sync the whole live
/// tree. Then a collection that finishes must leave only live blocks.
fn killed_collectors_lose_nothing(dir: &std::path::Path, target: &Target<'_>, rounds: u64) {
    let a = (target.init)(dir, "A");
    std::fs::write(a.path("stays.bin"), noise(3, 3 << 20)).unwrap();
    a.sync();
    a.ok(&["retention", "set", "0d"]);
    let (mut before_sweep, mut after_sweep) = (0, 0);
    for round in 0..rounds {
        // Garbage of two kinds: an expired version, and blocks put but
        // never committed (a device that died before its commit).
        std::fs::write(a.path("edited.txt"), noise(100 + round, 300_000)).unwrap();
        a.sync();
        let blocks: Vec<Block> = (0..12_000)
            .map(|i| Block::encode(pouch_backend::conformance::noise(round * 10_000 + i, 1500)))
            .collect();
        (target.put_uncommitted)(blocks);
        let blocks_before = (target.stored)();
        // Kill points spread over the run: around taking the lease, while
        // it lists and marks, as the sweep starts, between its batches
        // (and, on S3, while it reclaims).
        let ms = |n: u64| Duration::from_millis(n);
        let at = match round % 4 {
            0 => KillAt::Delay(ms(round * 3)),
            1 => KillAt::Line("listing", ms(round * 2)),
            2 => KillAt::Line("sweeping", ms(round % 3)),
            // After its first batch of 10,000 (of some 12,000).
            _ => KillAt::Line("sweeping 80%", ms(round * 5)),
        };
        kill_gc(&a, at);
        if (target.stored)() == blocks_before {
            before_sweep += 1;
        } else {
            after_sweep += 1;
        }
        // Whatever the collector got to, the live tree is whole.
        let check = (target.init)(dir, &format!("check{round}"));
        check.sync();
        assert_eq!(snapshot(&check.root), snapshot(&a.root), "round {round}");
    }
    // A collection that runs to its end leaves only what is live. (A kill
    // between taking the lease and noting it leaves a lease no one here can
    // release: it blocks collections until it expires, a minute at most.)
    let report = gc_when_the_lease_is_free(&a);
    assert_eq!(report["blocks_waiting"], 0, "{report}");
    let final_ = a.json(&["gc", "--grace", "0s", "--json"]);
    assert_eq!(final_["blocks_unreferenced"], 0, "{final_}");
    assert_eq!(final_["blocks_stored"], final_["blocks_live"], "{final_}");
    (target.verify)();
    let last = (target.init)(dir, "last");
    last.sync();
    assert_eq!(snapshot(&last.root), snapshot(&a.root));
    eprintln!("{before_sweep} kills landed before the sweep, {after_sweep} after");
    assert!(
        before_sweep > 0 && after_sweep > 0,
        "the kills did not spread over the run ({before_sweep} before the sweep, {after_sweep} after): the test proves little"
    );
}
