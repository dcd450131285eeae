//! Copying a namespace between two real embedded stores: everything
//! arrives, a copy cut short resumes without sending again what it sent,
//! and a device on the target syncs the same files.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pouch_backend::{Backend, Block, BlockId, Error, JournalEntry, Result, Seq, Snapshot, StoreId};
use pouch_backend_own::EmbeddedBackend;
use pouch_core::migrate;
use pouch_core::{Engine, NoProgress, SystemClock};

/// A target that dies (every call fails) after `budget` block puts.
struct Dying {
    inner: Arc<dyn Backend>,
    budget: std::sync::atomic::AtomicI64,
}

impl Dying {
    fn check(&self) -> Result<()> {
        if self.budget.load(std::sync::atomic::Ordering::SeqCst) < 0 {
            return Err(Error::Unavailable {
                source: "the copy was killed".into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl Backend for Dying {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn put_blocks(&self, blocks: Vec<Block>) -> Result<()> {
        self.check()?;
        self.budget
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.put_blocks(blocks).await
    }
    async fn get_block(&self, id: BlockId) -> Result<Bytes> {
        self.check()?;
        self.inner.get_block(id).await
    }
    async fn has_blocks(&self, ids: &[BlockId]) -> Result<Vec<bool>> {
        self.check()?;
        self.inner.has_blocks(ids).await
    }
    async fn delete_blocks(&self, ids: &[BlockId]) -> Result<()> {
        self.check()?;
        self.inner.delete_blocks(ids).await
    }
    async fn append(&self, seq: Seq, data: Bytes) -> Result<()> {
        self.check()?;
        self.inner.append(seq, data).await
    }
    async fn read_journal(&self, after: Seq, limit: usize) -> Result<Vec<JournalEntry>> {
        self.check()?;
        self.inner.read_journal(after, limit).await
    }
    async fn wait_journal(&self, after: Seq, timeout: Duration) -> Result<Seq> {
        self.check()?;
        self.inner.wait_journal(after, timeout).await
    }
    async fn put_snapshot(&self, snapshot: Snapshot) -> Result<()> {
        self.check()?;
        self.inner.put_snapshot(snapshot).await
    }
    async fn get_snapshot(&self) -> Result<Option<Snapshot>> {
        self.check()?;
        self.inner.get_snapshot().await
    }
    async fn identity(&self) -> Result<Option<StoreId>> {
        self.check()?;
        self.inner.identity().await
    }
    async fn init_identity(&self, proposed: StoreId) -> Result<StoreId> {
        self.check()?;
        self.inner.init_identity(proposed).await
    }
}

fn engine(dir: &std::path::Path, name: &str, backend: Arc<dyn Backend>) -> Engine {
    let root = dir.join(name);
    std::fs::create_dir_all(&root).unwrap();
    Engine::open(
        &root,
        name,
        &dir.join(format!("{name}.sqlite")),
        backend,
        Arc::new(SystemClock),
        Arc::new(NoProgress),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_copies_resumes_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let old: Arc<dyn Backend> = Arc::new(EmbeddedBackend::open(&dir.path().join("old")).unwrap());
    let new: Arc<dyn Backend> = Arc::new(EmbeddedBackend::open(&dir.path().join("new")).unwrap());
    // Stores made as `pouch init` and `pouch migrate` make them.
    old.init_identity(StoreId::random()).await.unwrap();
    new.init_identity(StoreId::random()).await.unwrap();

    // History on the old store: files, an edit, a delete.
    let mut a = engine(dir.path(), "A", old.clone());
    let root = dir.path().join("A");
    for i in 0..40u64 {
        std::fs::write(
            root.join(format!("f{i}")),
            pouch_backend::conformance::noise(i, 500_000 + i as usize * 1000),
        )
        .unwrap();
    }
    a.sync_once().await.unwrap();
    std::fs::write(root.join("f0"), b"edited").unwrap();
    let gone = pouch_backend::conformance::noise(1, 501_000);
    std::fs::remove_file(root.join("f1")).unwrap();
    a.sync_once().await.unwrap();

    // Killed after its first batch of blocks (16 MiB of the 20), then run
    // again.
    let dying = Dying {
        inner: new.clone(),
        budget: std::sync::atomic::AtomicI64::new(0),
    };
    let killed = migrate::copy(old.as_ref(), &dying, &NoProgress).await;
    assert!(killed.is_err());
    let report = migrate::copy(old.as_ref(), new.as_ref(), &NoProgress)
        .await
        .unwrap();
    // 41 file versions (40 files and one edit), some of two blocks.
    let referenced = report.blocks_referenced;
    assert!(referenced >= 41, "{report:?}");
    assert!(
        report.blocks_present > 20 && report.blocks_copied > 0,
        "the first try's blocks are not sent again: {report:?}"
    );
    assert_eq!(report.blocks_present + report.blocks_copied, referenced);
    assert_eq!(report.entries_copied, 2);

    // Again: nothing left to send.
    let again = migrate::copy(old.as_ref(), new.as_ref(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(
        (again.blocks_copied, again.entries_copied),
        (0, 0),
        "{again:?}"
    );
    assert_eq!(again.entries_present, 2);

    let checked = migrate::verify(old.as_ref(), new.as_ref(), &NoProgress)
        .await
        .unwrap();
    assert_eq!((checked.entries, checked.blocks), (2, referenced));

    // A device on the new store gets the same files, and the deleted one's
    // blocks are there to restore.
    let mut b = engine(dir.path(), "B", new.clone());
    b.sync_once().await.unwrap();
    assert_eq!(std::fs::read(dir.path().join("B/f0")).unwrap(), b"edited");
    assert!(!dir.path().join("B/f1").exists());
    let restored = b
        .restore(
            &pouch_core::path::RelPath::parse("f1").unwrap(),
            pouch_core::Pick::Latest,
        )
        .await
        .unwrap();
    assert_eq!(restored.seq, 1);
    assert_eq!(std::fs::read(dir.path().join("B/f1")).unwrap(), gone);

    // A target holding another namespace is refused.
    let other: Arc<dyn Backend> =
        Arc::new(EmbeddedBackend::open(&dir.path().join("other")).unwrap());
    other
        .append(Seq(1), Bytes::from_static(b"not the same"))
        .await
        .unwrap();
    let refused = migrate::copy(old.as_ref(), other.as_ref(), &NoProgress).await;
    assert!(
        matches!(refused, Err(pouch_core::Error::Refused { .. })),
        "{refused:?}"
    );
}
