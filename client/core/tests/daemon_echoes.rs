//! A daemon that downloads many files tells the watcher's echoes of its
//! own writes apart as they come: they never reach its loop, so a
//! download larger than the loop's news holds is not followed by a whole
//! scan (at a million files, seconds of a core), while a user's change
//! made just after still syncs. A real daemon, watcher and embedded store.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::device;
use pouch_backend::{Backend, StoreId};
use pouch_backend_own::EmbeddedBackend;
use pouch_core::Scope;
use pouch_core::daemon::{DaemonOptions, run};
use pouch_protocol::{DaemonStatus as Status, Request, Response, request};

/// The daemon's log, kept to count its whole scans.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    /// Syncs the daemon logged as done with a whole scan.
    fn whole_scans(&self) -> usize {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        text.lines()
            .filter(|line| line.contains("synced") && line.contains("everything"))
            .count()
    }
}

async fn status(socket: &std::path::Path) -> Option<Status> {
    match request(socket, &Request::Status).await {
        Ok(Some(Response::Status(status))) => Some(*status),
        _ => None,
    }
}

/// Waits (a minute at most) until `done` holds for the daemon's status.
async fn wait_for(socket: &std::path::Path, what: &str, done: impl Fn(&Status) -> bool) -> Status {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = status(socket).await
            && done(&status)
        {
            return status;
        }
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_larger_than_the_loops_news_is_not_scanned_again() {
    const FILES: usize = 400;
    let log = Log::default();
    let writer = log.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn Backend> =
        Arc::new(EmbeddedBackend::open(&dir.path().join("store")).unwrap());
    backend.init_identity(StoreId::random()).await.unwrap();
    let mut a = device(dir.path(), "a", backend.clone());
    for i in 0..FILES {
        a.write(
            &format!("d{}/f{i}.txt", i % 20),
            format!("file {i}").as_bytes(),
        );
    }
    a.sync(Scope::Everything).await;

    let b = device(dir.path(), "b", backend.clone());
    let root = b.root.clone();
    let socket = dir.path().join("b.sock");
    let mut options = DaemonOptions::new(socket.clone());
    // The loop holds 20 paths' news: the download's 420 echoes, had they
    // reached it, would count as lost and ask for a whole scan.
    options.news_limit = 20;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn({
        let root = root.clone();
        async move {
            run(b.engine, backend, &root, options, async {
                let _ = stop_rx.await;
            })
            .await
        }
    });

    let first = wait_for(&socket, "the first sync downloads everything", |s| {
        s.syncs >= 1 && s.state == pouch_protocol::State::Idle
    })
    .await;
    assert!(
        first.recent.iter().any(|c| c.path == "d9/f9.txt"),
        "{first:?}"
    );
    assert_eq!(std::fs::read(root.join("d9/f9.txt")).unwrap(), b"file 9");
    // Echoes would have been read by now (the loop waits 100 ms of quiet
    // before a sync): only the start's scan was whole. (A second sync may
    // come of the journal's news at start, of no path.)
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        log.whole_scans(),
        1,
        "the download's echoes made a whole scan"
    );

    // A user's edit of a downloaded file, and a new file, are news.
    std::fs::write(root.join("d3/f3.txt"), b"edited on b").unwrap();
    std::fs::write(root.join("d4/new.txt"), b"new on b").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        a.sync(Scope::Paths(Vec::new())).await;
        let has = |path: &str, bytes: &[u8]| {
            std::fs::read(a.root.join(path)).ok().as_deref() == Some(bytes)
        };
        if has("d3/f3.txt", b"edited on b") && has("d4/new.txt", b"new on b") {
            break;
        }
        assert!(Instant::now() < deadline, "b's edits never reached a");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_tx.send(()).unwrap();
    daemon.await.unwrap().unwrap();
}
