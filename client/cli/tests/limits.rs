//! Bandwidth limits: a limited transfer holds its rate (within 10 %), both
//! ways, and a running daemon's limits change at once, the transfer in
//! flight included. Real processes on a real embedded store.

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, Device, noise, wait_for};

const MIB: f64 = 1024.0 * 1024.0;

/// Runs `pouch sync --json` with `args`; its wall time and report.
fn timed_sync(device: &Device, args: &[&str]) -> (f64, serde_json::Value) {
    let mut all = vec!["sync", "--json"];
    all.extend_from_slice(args);
    let start = Instant::now();
    let report = device.json(&all);
    (start.elapsed().as_secs_f64(), report)
}

/// The same amount moved unlimited first tells the fixed cost of a sync
/// (start, scan, hashing, commit), which is taken off the limited one's
/// time before dividing.
#[test]
fn a_limited_sync_holds_its_rate_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let a = Device::init(dir.path(), "A", &store);
    let b = Device::init(dir.path(), "B", &store);
    let c = Device::init(dir.path(), "C", &store);
    const LEN: usize = 8 << 20;
    let check = |what: &str, limit: f64, bytes: f64, secs: f64| {
        let rate = bytes / secs / MIB;
        eprintln!("{what}: {rate:.3} MiB/s ({bytes} bytes in {secs:.2} s)");
        assert!(
            (0.9 * limit..=1.1 * limit).contains(&rate),
            "{what}: {rate:.3} MiB/s against a limit of {limit} MiB/s ({bytes} bytes in {secs:.2} s)"
        );
    };

    std::fs::write(a.path("unlimited.bin"), noise(1, LEN)).unwrap();
    let (fixed, _) = timed_sync(&a, &[]);
    std::fs::write(a.path("limited.bin"), noise(2, LEN)).unwrap();
    let (limited, report) = timed_sync(&a, &["--limit-up", "1MiB"]);
    let sent = report["bytes_uploaded"].as_f64().unwrap();
    assert!(sent >= LEN as f64, "{report}");
    check("upload", 1.0, sent, limited - fixed);

    let (fixed, _) = timed_sync(&c, &[]);
    let (limited, report) = timed_sync(&b, &["--limit-down", "2 MiB/s"]);
    assert_eq!(report["downloaded"], 2, "{report}");
    check("download", 2.0, 2.0 * LEN as f64, limited - fixed);
    assert_eq!(std::fs::read(b.path("limited.bin")).unwrap(), noise(2, LEN));
}

#[test]
fn a_running_daemons_limits_change_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let a = Device::init(dir.path(), "A", &store);
    let b = Device::init(dir.path(), "B", &store);
    let daemon = Daemon::start_with(&a, &["--limit-up", "128KiB"]);
    assert_eq!(a.ok(&["limit"]).trim(), "up 128.0 KiB/s, down off");
    let status = a.json(&["status", "--json"]);
    assert_eq!(status["daemon"]["limits"]["up"], 128 * 1024, "{status}");

    // 4 MiB at 128 KiB/s would take 32 s; the limit lifts a second in.
    const LEN: usize = 4 << 20;
    let start = Instant::now();
    std::fs::write(a.path("big.bin"), noise(3, LEN)).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        a.ok(&["limit", "up", "off"]).trim(),
        "limits: up off, down off"
    );
    wait_for("the file on B", || {
        b.sync();
        b.path("big.bin").exists()
    });
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "the lifted limit did not apply to the upload in flight ({:?})",
        start.elapsed()
    );
    assert_eq!(std::fs::read(b.path("big.bin")).unwrap(), noise(3, LEN));

    // Kept in the config only when asked; wrong words are refused.
    a.ok(&["limit", "down", "2MiB"]);
    let config = std::fs::read_to_string(&a.config).unwrap();
    assert!(!config.contains("[limits]"), "{config}");
    a.ok(&["limit", "up", "3MiB", "--save"]);
    let config = std::fs::read_to_string(&a.config).unwrap();
    assert!(config.contains("[limits]"), "{config}");
    assert_eq!(a.ok(&["limit"]).trim(), "up 3.0 MiB/s, down 2.0 MiB/s");
    for (args, says) in [
        (&["limit", "sideways", "1MiB"][..], "not a direction"),
        (&["limit", "up", "fast"][..], "not a rate"),
        (&["limit", "up"][..], "needs a rate"),
    ] {
        let out = a.run(args);
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    daemon.stop();
    // The saved limit is the config's for later runs.
    assert_eq!(
        a.ok(&["limit"]).trim(),
        "up 3.0 MiB/s, down off (the config's; no daemon runs)"
    );
}
