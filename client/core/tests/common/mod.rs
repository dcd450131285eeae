//! Devices for the engine's integration tests: a real folder and a local
//! state under a temp folder, on a store the test opens.

#![allow(dead_code, missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pouch_backend::Backend;
use pouch_core::{Engine, NoProgress, Scope, SyncOptions, SyncReport, SystemClock};

/// One device: its folder and its engine.
pub struct Device {
    pub root: PathBuf,
    pub engine: Engine,
}

/// Device `name` under `dir` (folder `name`, local state `name.sqlite`) on
/// `backend`.
pub fn device(dir: &Path, name: &str, backend: Arc<dyn Backend>) -> Device {
    let root = dir.join(name);
    std::fs::create_dir_all(&root).unwrap();
    let engine = Engine::open(
        &root,
        name,
        &dir.join(format!("{name}.sqlite")),
        backend,
        Arc::new(SystemClock),
        Arc::new(NoProgress),
    )
    .unwrap();
    Device { root, engine }
}

impl Device {
    /// One sync of `scope`, which must succeed with no problem.
    pub async fn sync(&mut self, scope: Scope) -> SyncReport {
        let report = self
            .engine
            .sync_with(SyncOptions {
                scope,
                ..SyncOptions::default()
            })
            .await
            .unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        report
    }

    /// Writes `bytes` at `path`, making its folders.
    pub fn write(&self, path: &str, bytes: &[u8]) {
        let full = self.root.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, bytes).unwrap();
    }
}
