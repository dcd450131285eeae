//! An engine whose root disappears while it runs (an unmounted disk) fails
//! the sync instead of reading the empty view as "delete everything".

use std::sync::Arc;

use pouch_backend::{Backend, BackendExt, StoreId};
use pouch_backend_own::EmbeddedBackend;
use pouch_core::Error;
use pouch_core::{Engine, NoProgress, SystemClock};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_root_fails_the_sync_and_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("a.txt"), b"a").unwrap();
    let backend: Arc<dyn Backend> =
        Arc::new(EmbeddedBackend::open(&dir.path().join("store")).unwrap());
    // A store made as `pouch init` makes one.
    backend.init_identity(StoreId::random()).await.unwrap();
    let mut engine = Engine::open(
        &root,
        "me",
        &dir.path().join("journal.sqlite"),
        backend.clone(),
        Arc::new(SystemClock),
        Arc::new(NoProgress),
    )
    .unwrap();
    engine.sync_once().await.unwrap();
    let head = backend.journal_head().await.unwrap();

    std::fs::rename(&root, dir.path().join("elsewhere")).unwrap();
    match engine.sync_once().await {
        Err(Error::RootUnavailable { .. }) => {}
        other => panic!("expected RootUnavailable, got {other:?}"),
    }
    assert_eq!(
        backend.journal_head().await.unwrap(),
        head,
        "something was committed"
    );
}
