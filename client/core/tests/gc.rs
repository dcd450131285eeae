//! Garbage collection on a real embedded store with real folders: what
//! retention lets go is deleted, what it keeps stays restorable, and no
//! interleaving with a device's push lets the journal name a missing block.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use common::{Device, device};
use pouch_backend::conformance::noise;
use pouch_backend::{
    Backend, Block, BlockId, GcLease, JournalEntry, LeaseRequest, ReclaimReport,
    Result as BackendResult, Seq, Snapshot, StoreId, StoredBlock, SweepReport,
};
use pouch_backend_own::EmbeddedBackend;
use pouch_core::gc::{GcOptions, GcReport, collect};
use pouch_core::node::Node;
use pouch_core::path::RelPath;
use pouch_core::retention::Retention;
use pouch_core::state::Tree;
use pouch_core::{Error, Pick, Scope};

const DAY: i64 = 86_400;

async fn store(dir: &Path) -> (Arc<EmbeddedBackend>, Arc<dyn Backend>) {
    let embedded = Arc::new(EmbeddedBackend::open(&dir.join("store")).unwrap());
    let backend: Arc<dyn Backend> = embedded.clone();
    backend.init_identity(StoreId::random()).await.unwrap();
    (embedded, backend)
}

async fn gc(backend: &dyn Backend, grace: Duration, now: i64) -> GcReport {
    let mut options = GcOptions::new("test collector".into());
    options.grace = grace;
    options.now = now;
    collect(backend, &options, &pouch_core::gc::Quiet)
        .await
        .unwrap()
}

/// Sets the namespace's retention to zero days, keeping the last
/// `keep_last` versions of existing files.
async fn zero_retention(device: &mut Device, keep_last: u32) {
    device
        .engine
        .set_retention(Retention {
            keep_secs: 0,
            keep_last,
        })
        .await
        .unwrap();
}

/// Every block the device's Remote tree names is stored.
async fn every_named_block_is_stored(device: &Device, backend: &dyn Backend) {
    let mut ids = Vec::new();
    for node in device.engine.db().tree(Tree::Remote).unwrap().values() {
        if let Node::File { blocks, .. } = node {
            ids.extend(blocks.iter().map(|b| b.id));
        }
    }
    let stored = backend.has_blocks(&ids).await.unwrap();
    assert!(
        stored.iter().all(|s| *s),
        "the journal names a missing block"
    );
}

fn tree_bytes(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_string_lossy().into();
                out.push((rel, std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_retention_lets_go_is_collected_and_the_rest_syncs_to_a_new_device() {
    let dir = tempfile::tempdir().unwrap();
    let (embedded, backend) = store(dir.path()).await;
    let mut a = device(dir.path(), "a", backend.clone());
    a.write("big.bin", &noise(1, 6 << 20));
    a.write("edited.bin", &noise(2, 3 << 20));
    a.write("kept/small.txt", b"small and current");
    a.sync(Scope::Everything).await;
    std::fs::remove_file(a.root.join("big.bin")).unwrap();
    a.write("edited.bin", &noise(3, 3 << 20));
    a.sync(Scope::Everything).await;
    let now = pouch_core::unix_secs();
    let before = embedded.store().stats().unwrap();

    // Within the default 30 days, everything is retained: nothing goes,
    // nothing is even marked.
    let report = gc(backend.as_ref(), Duration::ZERO, now).await;
    assert_eq!(
        (report.blocks_unreferenced, report.blocks_deleted),
        (0, 0),
        "{report:?}"
    );
    assert_eq!(report.retention, "30 days");

    // Thirty-one days on, the deleted file and the replaced version are
    // past retention. With the default grace their blocks are marked and
    // wait; with none, a run deletes them.
    let later = now + 31 * DAY;
    let report = gc(backend.as_ref(), pouch_backend::gc::DEFAULT_GRACE, later).await;
    assert!(
        report.marked > 0 && report.blocks_deleted == 0,
        "{report:?}"
    );
    assert_eq!(report.blocks_waiting, report.blocks_unreferenced);
    assert_eq!(report.versions_expired, 2);
    let report = gc(backend.as_ref(), Duration::ZERO, later).await;
    assert_eq!(
        report.blocks_deleted, report.blocks_unreferenced,
        "{report:?}"
    );
    assert!(report.bytes_deleted >= 9 << 20, "{report:?}");
    let after = embedded.store().stats().unwrap();
    assert_eq!(after.blocks, before.blocks - report.blocks_deleted);
    embedded.store().compact(0.2).unwrap();

    every_named_block_is_stored(&a, backend.as_ref()).await;
    let mut b = device(dir.path(), "b", backend.clone());
    b.sync(Scope::Everything).await;
    assert_eq!(tree_bytes(&b.root), tree_bytes(&a.root));
    // A second collection finds nothing more.
    let again = gc(backend.as_ref(), Duration::ZERO, later).await;
    assert_eq!((again.blocks_unreferenced, again.blocks_deleted), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_is_the_namespaces_and_restore_refuses_what_it_let_go() {
    let dir = tempfile::tempdir().unwrap();
    let (_, backend) = store(dir.path()).await;
    let mut a = device(dir.path(), "a", backend.clone());
    let mut b = device(dir.path(), "b", backend.clone());
    a.write("notes.txt", b"first");
    a.sync(Scope::Everything).await;
    a.write("notes.txt", b"second");
    a.sync(Scope::Everything).await;
    b.sync(Scope::Everything).await;
    let path = RelPath::parse("notes.txt").unwrap();
    assert!(
        b.engine
            .kept_history(&path, pouch_core::unix_secs())
            .unwrap()[0]
            .retained
    );

    zero_retention(&mut a, 0).await;
    b.sync(Scope::Everything).await;
    assert_eq!(
        b.engine.retention().unwrap().keep_secs,
        0,
        "b follows a's policy"
    );
    let now = pouch_core::unix_secs();
    let history = b.engine.kept_history(&path, now).unwrap();
    assert_eq!(
        history.iter().map(|k| k.retained).collect::<Vec<_>>(),
        [false, true]
    );
    match b
        .engine
        .restore(&path, Pick::Seq(history[0].revision.seq))
        .await
    {
        Err(Error::Refused { reason, .. }) => {
            assert!(reason.contains("expired"), "{reason}");
        }
        other => panic!("restored an expired version: {other:?}"),
    }
    assert_eq!(std::fs::read(b.root.join("notes.txt")).unwrap(), b"second");

    // Keep-last holds the previous version however old.
    zero_retention(&mut a, 2).await;
    b.sync(Scope::Everything).await;
    b.engine
        .restore(&path, Pick::Seq(history[0].revision.seq))
        .await
        .unwrap();
    assert_eq!(std::fs::read(b.root.join("notes.txt")).unwrap(), b"first");
    let report = gc(backend.as_ref(), Duration::ZERO, now).await;
    assert_eq!(report.blocks_deleted, 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_files_are_listed_while_retention_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let (_, backend) = store(dir.path()).await;
    let mut a = device(dir.path(), "a", backend.clone());
    a.write("docs/gone.txt", b"bye");
    a.write("docs/stays.txt", b"hi");
    a.write("other/gone too.txt", b"bye bye");
    a.sync(Scope::Everything).await;
    std::fs::remove_file(a.root.join("docs/gone.txt")).unwrap();
    std::fs::remove_dir_all(a.root.join("other")).unwrap();
    a.sync(Scope::Everything).await;
    let now = pouch_core::unix_secs();
    let listed = |folder: Option<&str>, at: i64| -> Vec<String> {
        let folder = folder.map(|f| RelPath::parse(f).unwrap());
        a.engine
            .deleted_files(folder.as_ref(), at)
            .unwrap()
            .into_iter()
            .map(|(path, _)| path.to_string())
            .collect()
    };
    let mut all = listed(None, now);
    all.sort();
    assert_eq!(all, ["docs/gone.txt", "other/gone too.txt"]);
    assert_eq!(listed(Some("docs"), now), ["docs/gone.txt"]);
    assert!(listed(None, now + 31 * DAY).is_empty(), "past retention");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_put_but_not_committed_wait_out_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let (_, backend) = store(dir.path()).await;
    let block = Block::encode(noise(7, 100_000));
    backend.put_blocks(vec![block.clone()]).await.unwrap();
    let now = pouch_core::unix_secs();
    let report = gc(backend.as_ref(), Duration::from_secs(3600), now).await;
    assert_eq!((report.marked, report.blocks_deleted), (1, 0));
    // A device checking it (about to commit it) revives it.
    assert_eq!(backend.has_blocks(&[block.id()]).await.unwrap(), [true]);
    let listed = backend.gc_list(None, 10).await.unwrap();
    assert_eq!(listed[0].marked_ms, None);
    // Still unreferenced at the next run: marked again, and with no grace
    // deleted.
    let report = gc(backend.as_ref(), Duration::ZERO, now).await;
    assert_eq!(report.blocks_deleted, 1);
    assert_eq!(backend.has_blocks(&[block.id()]).await.unwrap(), [false]);
}

/// A store whose first put of more than one block is followed, before the
/// device can commit, by a whole collection with no grace: the worst
/// interleaving a collector run by an impatient operator can produce.
struct CollectorStrikes {
    inner: Arc<dyn Backend>,
    struck: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl Backend for CollectorStrikes {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn put_blocks(&self, blocks: Vec<Block>) -> BackendResult<()> {
        self.inner.put_blocks(blocks).await?;
        if !self.struck.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let report = gc(self.inner.as_ref(), Duration::ZERO, pouch_core::unix_secs()).await;
            assert!(report.blocks_deleted > 0, "{report:?}");
        }
        Ok(())
    }
    async fn get_block(&self, id: BlockId) -> BackendResult<Bytes> {
        self.inner.get_block(id).await
    }
    async fn has_blocks(&self, ids: &[BlockId]) -> BackendResult<Vec<bool>> {
        self.inner.has_blocks(ids).await
    }
    async fn delete_blocks(&self, ids: &[BlockId]) -> BackendResult<()> {
        self.inner.delete_blocks(ids).await
    }
    async fn gc_lease(&self, request: LeaseRequest) -> BackendResult<GcLease> {
        self.inner.gc_lease(request).await
    }
    async fn gc_list(
        &self,
        after: Option<BlockId>,
        limit: usize,
    ) -> BackendResult<Vec<StoredBlock>> {
        self.inner.gc_list(after, limit).await
    }
    async fn gc_mark(
        &self,
        generation: u64,
        mark: &[BlockId],
        unmark: &[BlockId],
    ) -> BackendResult<()> {
        self.inner.gc_mark(generation, mark, unmark).await
    }
    async fn gc_sweep(
        &self,
        generation: u64,
        ids: &[BlockId],
        marked_by_ms: i64,
    ) -> BackendResult<SweepReport> {
        self.inner.gc_sweep(generation, ids, marked_by_ms).await
    }
    async fn gc_reclaim(&self, generation: u64) -> BackendResult<ReclaimReport> {
        self.inner.gc_reclaim(generation).await
    }
    async fn trim_journal(&self, through: Seq) -> BackendResult<()> {
        self.inner.trim_journal(through).await
    }
    async fn append(&self, seq: Seq, data: Bytes) -> BackendResult<()> {
        self.inner.append(seq, data).await
    }
    async fn read_journal(&self, after: Seq, limit: usize) -> BackendResult<Vec<JournalEntry>> {
        self.inner.read_journal(after, limit).await
    }
    async fn wait_journal(&self, after: Seq, timeout: Duration) -> BackendResult<Seq> {
        self.inner.wait_journal(after, timeout).await
    }
    async fn put_snapshot(&self, snapshot: Snapshot) -> BackendResult<()> {
        self.inner.put_snapshot(snapshot).await
    }
    async fn get_snapshot(&self) -> BackendResult<Option<Snapshot>> {
        self.inner.get_snapshot().await
    }
    async fn identity(&self) -> BackendResult<Option<StoreId>> {
        self.inner.identity().await
    }
    async fn init_identity(&self, proposed: StoreId) -> BackendResult<StoreId> {
        self.inner.init_identity(proposed).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_whose_blocks_were_collected_before_its_commit_sends_them_again() {
    let dir = tempfile::tempdir().unwrap();
    let (_, store) = store(dir.path()).await;
    let striking: Arc<dyn Backend> = Arc::new(CollectorStrikes {
        inner: store.clone(),
        struck: false.into(),
    });
    let mut a = device(dir.path(), "a", striking);
    // Trusting no answer at all: every commit asks the store again (the
    // default trusts answers for the commit window, shorter than the
    // default grace).
    a.engine.set_commit_window(Duration::ZERO);
    a.write("one.bin", &noise(11, 2 << 20));
    a.write("two.bin", &noise(12, 2 << 20));
    match a.engine.sync_once().await {
        Err(Error::ChangedDuringSync) => {}
        other => panic!("the push committed blocks a collector deleted: {other:?}"),
    }
    assert_eq!(
        store.read_journal(Seq::ZERO, 10).await.unwrap().len(),
        0,
        "nothing was committed"
    );
    a.sync(Scope::Everything).await;
    every_named_block_is_stored(&a, store.as_ref()).await;
    let mut b = device(dir.path(), "b", store.clone());
    b.sync(Scope::Everything).await;
    assert_eq!(tree_bytes(&b.root), tree_bytes(&a.root));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_collects_garbage_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let (embedded, backend) = store(dir.path()).await;
    let mut a = device(dir.path(), "a", backend.clone());
    a.write("notes.bin", &noise(21, 1 << 20));
    a.sync(Scope::Everything).await;
    a.write("notes.bin", &noise(22, 1 << 20));
    a.sync(Scope::Everything).await;
    zero_retention(&mut a, 0).await;
    let before = embedded.store().stats().unwrap().blocks;

    let mut options = pouch_core::daemon::DaemonOptions::new(dir.path().join("daemon.sock"));
    options.collect = Some((Duration::from_millis(200), Duration::ZERO));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let root = a.root.clone();
    let daemon = tokio::spawn(async move {
        pouch_core::daemon::run(a.engine, backend, &root, options, async {
            let _ = stop_rx.await;
        })
        .await
    });
    let state = pouch_core::state::LocalState::open(&dir.path().join("a.sqlite")).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    // Collected, and the run remembered for the next start.
    while embedded.store().stats().unwrap().blocks >= before
        || state.meta("gc_last").unwrap().is_none()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon never collected the replaced version"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_tx.send(()).unwrap();
    daemon.await.unwrap().unwrap();
}

/// A collection writes the journal's snapshot, with retention applied; a
/// new device starts from it (reading none of the entries it folds), ends
/// with the same tree, sees only the retained history, and goes on with
/// the entries after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_device_starts_from_the_snapshot_a_collection_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (_embedded, backend) = store(dir.path()).await;
    let mut a = device(dir.path(), "a", backend.clone());
    for version in 0..3u64 {
        a.write("notes.txt", format!("version {version}").as_bytes());
        a.write(&format!("folder/{version}.txt"), b"stays");
        a.sync(Scope::Everything).await;
    }
    a.write("gone.txt", b"deleted soon");
    a.sync(Scope::Everything).await;
    std::fs::remove_file(a.root.join("gone.txt")).unwrap();
    a.sync(Scope::Everything).await;
    zero_retention(&mut a, 0).await;
    let head = pouch_backend::BackendExt::journal_head(backend.as_ref())
        .await
        .unwrap();

    let report = gc(
        backend.as_ref(),
        Duration::ZERO,
        pouch_core::unix_secs() + 1,
    )
    .await;
    assert_eq!(report.snapshot_seq, Some(head.0), "{report:?}");
    assert!(report.snapshot_bytes > 0);

    let mut b = device(dir.path(), "b", backend.clone());
    let pulled = b.sync(Scope::Everything).await;
    assert_eq!(pulled.entries_pulled, 0, "every entry came in the snapshot");
    assert_eq!(tree_bytes(&b.root), tree_bytes(&a.root));
    let notes = RelPath::parse("notes.txt").unwrap();
    assert_eq!(a.engine.db().history(&notes).unwrap().len(), 3);
    assert_eq!(
        b.engine.db().history(&notes).unwrap().len(),
        1,
        "only the retained version"
    );
    let gone = RelPath::parse("gone.txt").unwrap();
    assert_eq!(
        b.engine.db().history(&gone).unwrap().len(),
        1,
        "the delete, the current version"
    );
    assert!(!b.root.join("gone.txt").exists());
    assert_eq!(
        b.engine.retention().unwrap().keep_secs,
        0,
        "the policy came too"
    );

    a.write("notes.txt", b"after the snapshot");
    a.sync(Scope::Everything).await;
    let pulled = b.sync(Scope::Everything).await;
    assert_eq!(pulled.entries_pulled, 1);
    assert_eq!(tree_bytes(&b.root), tree_bytes(&a.root));
}

/// A device that slept through a collection which dropped the entries it
/// had not read starts again from the snapshot: remote deletes, edits and
/// new files arrive as if it had read every entry, and what it changed
/// meanwhile is sent, not lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_behind_a_trimmed_journal_starts_again_from_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (_embedded, backend) = store(dir.path()).await;
    let mut a = device(dir.path(), "a", backend.clone());
    let mut b = device(dir.path(), "b", backend.clone());
    a.write("gone.txt", b"deleted while b sleeps");
    a.write("edited.txt", b"first");
    a.sync(Scope::Everything).await;
    b.sync(Scope::Everything).await;
    assert!(b.root.join("gone.txt").exists());

    // b sleeps, with a change of its own; a goes on and collects.
    b.write("made-offline.txt", b"b's own");
    std::fs::remove_file(a.root.join("gone.txt")).unwrap();
    a.write("edited.txt", b"second");
    a.write("new.txt", b"arrived later");
    a.sync(Scope::Everything).await;
    zero_retention(&mut a, 0).await;
    let report = gc(
        backend.as_ref(),
        Duration::ZERO,
        pouch_core::unix_secs() + 1,
    )
    .await;
    let head = pouch_backend::BackendExt::journal_head(backend.as_ref())
        .await
        .unwrap();
    assert_eq!(report.journal_trimmed_through, Some(head.0), "{report:?}");
    assert!(matches!(
        backend.read_journal(Seq::ZERO, 1).await,
        Err(pouch_backend::Error::Trimmed { .. })
    ));

    b.sync(Scope::Everything).await;
    assert!(
        !b.root.join("gone.txt").exists(),
        "the remote delete arrived"
    );
    assert_eq!(std::fs::read(b.root.join("edited.txt")).unwrap(), b"second");
    assert_eq!(
        std::fs::read(b.root.join("new.txt")).unwrap(),
        b"arrived later"
    );
    a.sync(Scope::Everything).await;
    assert_eq!(
        std::fs::read(a.root.join("made-offline.txt")).unwrap(),
        b"b's own",
        "b's own change was sent"
    );
    assert_eq!(tree_bytes(&a.root), tree_bytes(&b.root));
    // Collecting again reads the snapshot and the entries after it.
    let again = gc(
        backend.as_ref(),
        Duration::ZERO,
        pouch_core::unix_secs() + 2,
    )
    .await;
    assert_eq!(again.blocks_unreferenced, 0, "{again:?}");
    every_named_block_is_stored(&b, backend.as_ref()).await;
}

/// A store whose journal was trimmed still migrates: the target gets the
/// snapshot and the same start, then the entries after it; it verifies,
/// and a device on it syncs the same tree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trimmed_store_copies_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (_embedded, backend) = store(dir.path()).await;
    let mut a = device(dir.path(), "a", backend.clone());
    for round in 0..3u64 {
        a.write(&format!("round{round}.bin"), &noise(round, 200_000));
        a.write("edited.txt", format!("edit {round}").as_bytes());
        a.sync(Scope::Everything).await;
    }
    zero_retention(&mut a, 0).await;
    let report = gc(
        backend.as_ref(),
        Duration::ZERO,
        pouch_core::unix_secs() + 1,
    )
    .await;
    let trimmed = report.journal_trimmed_through.expect("trimmed");
    a.write("after-the-trim.txt", b"an entry the copy must bring");
    a.sync(Scope::Everything).await;

    let target_dir = dir.path().join("target");
    std::fs::create_dir_all(&target_dir).unwrap();
    let target: Arc<dyn Backend> =
        Arc::new(EmbeddedBackend::open(&target_dir.join("store")).unwrap());
    let copied =
        pouch_core::migrate::copy(backend.as_ref(), target.as_ref(), &pouch_core::NoProgress)
            .await
            .unwrap();
    assert!(copied.snapshot_copied, "{copied:?}");
    assert_eq!(
        copied.entries_copied, 1,
        "only the entry after the trim: {copied:?}"
    );
    pouch_core::migrate::verify(backend.as_ref(), target.as_ref(), &pouch_core::NoProgress)
        .await
        .unwrap();
    assert_eq!(
        pouch_backend::BackendExt::journal_start(target.as_ref())
            .await
            .unwrap(),
        Seq(trimmed)
    );
    target.init_identity(StoreId::random()).await.unwrap();
    let mut c = device(dir.path(), "c", target.clone());
    c.sync(Scope::Everything).await;
    assert_eq!(tree_bytes(&c.root), tree_bytes(&a.root));
}

/// A clock stopped at one second.
struct Stopped(i64);

impl pouch_core::Clock for Stopped {
    fn unix_secs(&self) -> i64 {
        self.0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_after_retention_was_widened_reports_what_was_collected_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (_, backend) = store(dir.path()).await;
    // Every entry at one second, so that the collection below runs at
    // the very second the deleted version expires, when its entry is not
    // yet old enough to be dropped from the journal.
    let t = pouch_core::unix_secs();
    let root = dir.path().join("a");
    std::fs::create_dir_all(&root).unwrap();
    let engine = pouch_core::Engine::open(
        &root,
        "a",
        &dir.path().join("a.sqlite"),
        backend.clone(),
        Arc::new(Stopped(t)),
        Arc::new(pouch_core::NoProgress),
    )
    .unwrap();
    let mut a = Device { root, engine };
    a.engine
        .set_retention(Retention {
            keep_secs: 3600,
            keep_last: 0,
        })
        .await
        .unwrap();
    a.write("gone.bin", &noise(1, 1 << 20));
    a.write("kept.txt", b"current");
    a.sync(Scope::Everything).await;
    std::fs::remove_file(a.root.join("gone.bin")).unwrap();
    a.sync(Scope::Everything).await;
    let later = t + 3600;
    let report = gc(backend.as_ref(), Duration::ZERO, later).await;
    assert!(report.blocks_deleted > 0, "{report:?}");
    assert_eq!(report.journal_trimmed_through, None, "{report:?}");

    // A policy that keeps more names the collected version again: its
    // blocks cannot come back, and a copy says so instead of failing.
    a.engine
        .set_retention(Retention {
            keep_secs: 7200,
            keep_last: 0,
        })
        .await
        .unwrap();
    let target: Arc<dyn Backend> =
        Arc::new(EmbeddedBackend::open(&dir.path().join("target")).unwrap());
    let options = pouch_core::migrate::CopyOptions {
        now: Some(later),
        ..Default::default()
    };
    let copied = pouch_core::migrate::copy_with(
        backend.as_ref(),
        target.as_ref(),
        &pouch_core::NoProgress,
        &options,
    )
    .await
    .unwrap();
    assert_eq!(
        copied.blocks_missing_at_source, report.blocks_deleted,
        "{copied:?}"
    );
    assert!(copied.blocks_copied > 0, "{copied:?}");
    let verified = pouch_core::migrate::verify_at(
        backend.as_ref(),
        target.as_ref(),
        &pouch_core::NoProgress,
        later,
    )
    .await
    .unwrap();
    assert_eq!(verified.blocks_missing_at_source, report.blocks_deleted);

    // A block lost from the target alone still fails the verify.
    let kept: Vec<BlockId> = match a
        .engine
        .db()
        .tree(Tree::Remote)
        .unwrap()
        .get(&RelPath::parse("kept.txt").unwrap())
    {
        Some(Node::File { blocks, .. }) => blocks.iter().map(|b| b.id).collect(),
        other => panic!("{other:?}"),
    };
    target.delete_blocks(&kept).await.unwrap();
    let refused = pouch_core::migrate::verify_at(
        backend.as_ref(),
        target.as_ref(),
        &pouch_core::NoProgress,
        later,
    )
    .await;
    assert!(refused.is_err(), "{refused:?}");
}
