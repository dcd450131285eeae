//! The embedded store passes the whole conformance suite on a real folder.

use std::sync::Arc;

use pouch_backend::Backend;
use pouch_backend::conformance::{Capabilities, run_all};
use pouch_backend_own::EmbeddedBackend;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_store_passes_the_conformance_suite() {
    let root = tempfile::tempdir().unwrap();
    let mut n = 0;
    run_all(
        Capabilities {
            push: true,
            gc: true,
        },
        || {
            n += 1;
            let dir = root.path().join(format!("store-{n}"));
            async move { Arc::new(EmbeddedBackend::open(&dir).unwrap()) as Arc<dyn Backend> }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_holds_across_volume_rolls() {
    // Tiny volumes force every batch to span several volumes.
    use pouch_backend_own::storage::{Store, StoreOptions};
    let root = tempfile::tempdir().unwrap();
    let mut n = 0;
    run_all(
        Capabilities {
            push: true,
            gc: true,
        },
        || {
            n += 1;
            let dir = root.path().join(format!("store-{n}"));
            async move {
                let store = Store::open(
                    &dir,
                    StoreOptions {
                        volume_size: 64 << 10,
                    },
                )
                .unwrap();
                Arc::new(EmbeddedBackend::new(Arc::new(store))) as Arc<dyn Backend>
            }
        },
    )
    .await;
}
