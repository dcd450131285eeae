//! A commit that loses the race for its journal slot is pulled, re-planned
//! and retried: nothing is lost on either side. The race is forced by a
//! layer over the real embedded store that lets another device commit
//! just before this device's first append.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pouch_backend::{Backend, Block, BlockId, JournalEntry, Result, Seq, Snapshot, StoreId};
use pouch_backend_own::EmbeddedBackend;
use pouch_core::commit::{COMMIT_VERSION, Change, Commit};
use pouch_core::node::{BlockRef, Node};
use pouch_core::{Engine, NoProgress, SystemClock};

/// Delegates everything; on the first append, another device appends first.
struct RivalFirst {
    inner: EmbeddedBackend,
    fired: AtomicBool,
}

#[async_trait]
impl Backend for RivalFirst {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn put_blocks(&self, blocks: Vec<Block>) -> Result<()> {
        self.inner.put_blocks(blocks).await
    }
    async fn get_block(&self, id: BlockId) -> Result<Bytes> {
        self.inner.get_block(id).await
    }
    async fn has_blocks(&self, ids: &[BlockId]) -> Result<Vec<bool>> {
        self.inner.has_blocks(ids).await
    }
    async fn delete_blocks(&self, ids: &[BlockId]) -> Result<()> {
        self.inner.delete_blocks(ids).await
    }
    async fn append(&self, seq: Seq, data: Bytes) -> Result<()> {
        if !self.fired.swap(true, Ordering::SeqCst) {
            let content = Bytes::from_static(b"the rival's file");
            let block = Block::encode(content.clone());
            self.inner.put_blocks(vec![block.clone()]).await?;
            let rival = Commit {
                time: None,
                moved_to: None,
                migration: None,
                missing: Vec::new(),
                retention: None,
                v: COMMIT_VERSION,
                device: "rival".into(),
                changes: vec![Change {
                    path: "rival.txt".into(),
                    node: Some(Node::File {
                        size: content.len() as u64,
                        mtime_ns: 0,
                        exec: false,
                        mode: None,
                        blocks: vec![BlockRef {
                            id: block.id(),
                            len: content.len() as u32,
                        }],
                    }),
                }],
            };
            self.inner.append(seq, rival.encode()).await?;
        }
        self.inner.append(seq, data).await
    }
    async fn read_journal(&self, after: Seq, limit: usize) -> Result<Vec<JournalEntry>> {
        self.inner.read_journal(after, limit).await
    }
    async fn wait_journal(&self, after: Seq, timeout: Duration) -> Result<Seq> {
        self.inner.wait_journal(after, timeout).await
    }
    async fn put_snapshot(&self, snapshot: Snapshot) -> Result<()> {
        self.inner.put_snapshot(snapshot).await
    }
    async fn get_snapshot(&self) -> Result<Option<Snapshot>> {
        self.inner.get_snapshot().await
    }
    async fn identity(&self) -> Result<Option<StoreId>> {
        self.inner.identity().await
    }
    async fn init_identity(&self, proposed: StoreId) -> Result<StoreId> {
        self.inner.init_identity(proposed).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_commit_race_is_pulled_replanned_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("mine.txt"), b"my file").unwrap();
    let backend = Arc::new(RivalFirst {
        inner: EmbeddedBackend::open(&dir.path().join("store")).unwrap(),
        fired: AtomicBool::new(false),
    });
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

    let report = engine.sync_once().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.commits, 1);
    assert_eq!(
        std::fs::read(root.join("rival.txt")).unwrap(),
        b"the rival's file"
    );
    let entries = backend.read_journal(Seq::ZERO, 10).await.unwrap();
    assert_eq!(
        entries.len(),
        2,
        "the rival's commit, then ours at the next slot"
    );
    let ours = Commit::decode(2, &entries[1].data).unwrap();
    assert_eq!(ours.device, "me");
    assert_eq!(ours.changes.len(), 1);
    assert_eq!(ours.changes[0].path, "mine.txt");
}
