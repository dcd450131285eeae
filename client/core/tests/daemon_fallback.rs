//! A daemon that cannot watch the folder (the OS watch limit, injected)
//! says so in its status and still finds changes by rescanning; its event
//! stream reports the syncs.

use std::io::{BufRead, BufReader, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pouch_backend::{Backend, StoreId};
use pouch_backend_own::EmbeddedBackend;
use pouch_core::daemon::{DaemonOptions, run};
use pouch_core::{Engine, NoProgress, SystemClock};
use pouch_protocol::{Request, Response, request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_limit_falls_back_to_rescans_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let backend: Arc<dyn Backend> =
        Arc::new(EmbeddedBackend::open(&dir.path().join("store")).unwrap());
    // A store made as `pouch init` makes one.
    backend.init_identity(StoreId::random()).await.unwrap();
    let engine = Engine::open(
        &root,
        "me",
        &dir.path().join("journal.sqlite"),
        backend.clone(),
        Arc::new(SystemClock),
        Arc::new(NoProgress),
    )
    .unwrap();
    let socket = dir.path().join("daemon.sock");
    let mut options = DaemonOptions::new(socket.clone());
    options.simulate_watch_limit = true;
    options.fallback_rescan_every = Duration::from_millis(200);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn({
        let root = root.clone();
        async move {
            run(engine, backend, &root, options, async {
                let _ = stop_rx.await;
            })
            .await
        }
    });

    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Ok(Some(Response::Status(status))) = request(&socket, &Request::Status).await
            && status.syncs > 0
        {
            break status;
        }
        assert!(Instant::now() < deadline, "the daemon never answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let problem = status.watch_problem.expect("the watch problem is reported");
    assert!(problem.contains("max_user_watches"), "{problem}");

    // Subscribe, then change a file: with no watcher, a rescan finds it.
    let sock = socket.clone();
    let events = tokio::task::spawn_blocking(move || {
        let mut stream = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        stream.write_all(b"{\"cmd\":\"subscribe\"}\n").unwrap();
        let mut lines = BufReader::new(stream).lines();
        loop {
            let line = lines.next().unwrap().unwrap();
            let event: serde_json::Value = serde_json::from_str(&line).unwrap();
            if event["event"] == "synced" && event["uploaded"] == 1 {
                return event;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    std::fs::write(root.join("seen-by-rescan.txt"), b"found").unwrap();
    let event = tokio::time::timeout(Duration::from_secs(60), events)
        .await
        .expect("no sync event reported the change")
        .unwrap();
    assert_eq!(event["commits"], 1, "{event}");

    stop_tx.send(()).unwrap();
    daemon.await.unwrap().unwrap();
    assert!(!socket.exists(), "the socket was left behind");
}
