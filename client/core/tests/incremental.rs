//! Incremental syncs: a sync scans only the paths it is given (what the
//! daemon's watcher saw) and plans only over the unsettled paths, yet
//! misses nothing a whole sync would do. On a real embedded store and
//! real folders.

mod common;

use std::sync::Arc;

use common::{Device, device};
use pouch_backend::{Backend, StoreId};
use pouch_backend_own::EmbeddedBackend;
use pouch_core::path::RelPath;
use pouch_core::{Scope, SyncOptions};

/// Devices "a" and "b" on one embedded store in a temp folder.
async fn two_devices() -> (tempfile::TempDir, Arc<dyn Backend>, Device, Device) {
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn Backend> =
        Arc::new(EmbeddedBackend::open(&dir.path().join("store")).unwrap());
    backend.init_identity(StoreId::random()).await.unwrap();
    let a = device(dir.path(), "a", backend.clone());
    let b = device(dir.path(), "b", backend.clone());
    (dir, backend, a, b)
}

fn paths(paths: &[&str]) -> Scope {
    Scope::Paths(paths.iter().map(|p| RelPath::parse(p).unwrap()).collect())
}

#[tokio::test]
async fn a_sync_of_some_paths_scans_only_them_and_settles_what_agrees() {
    let (dir, _, mut a, mut b) = two_devices().await;
    for i in 0..200 {
        a.write(
            &format!("d{}/f{i}.txt", i % 10),
            format!("file {i}").as_bytes(),
        );
    }
    assert_eq!(a.sync(Scope::Everything).await.uploaded, 210);
    assert_eq!(a.engine.db().unsettled_count().unwrap(), 0);
    assert_eq!(b.sync(Scope::Everything).await.downloaded, 210);
    assert_eq!(b.engine.db().unsettled_count().unwrap(), 0);

    // Two edits; the sync is told of one: it sends that one only.
    a.write("d1/f1.txt", b"edited");
    a.write("d2/f2.txt", b"edited too");
    let report = a.sync(paths(&["d1/f1.txt"])).await;
    assert_eq!((report.uploaded, report.commits), (1, 1));
    assert_eq!(a.engine.db().unsettled_count().unwrap(), 0);
    // The other device plans over what the journal changed: one path.
    let report = b.sync(paths(&[])).await;
    assert_eq!(report.downloaded, 1);
    assert_eq!(std::fs::read(b.root.join("d1/f1.txt")).unwrap(), b"edited");
    // A whole scan finds the edit nobody named.
    assert_eq!(a.sync(Scope::Everything).await.uploaded, 1);

    // A folder moved in, named by its own path only, is sent whole; a
    // folder deleted, named by its path, is deleted whole.
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(outside.join("deep/er")).unwrap();
    std::fs::write(outside.join("deep/er/x.txt"), b"x").unwrap();
    std::fs::write(outside.join("y.txt"), b"y").unwrap();
    std::fs::rename(&outside, a.root.join("moved-in")).unwrap();
    std::fs::remove_dir_all(a.root.join("d3")).unwrap();
    let report = a
        .sync(paths(&["moved-in/deep/er/x.txt", "moved-in", "d3"]))
        .await;
    assert_eq!(
        (report.uploaded, report.deleted_remote),
        (5, 21),
        "{report:?}"
    );
    b.sync(paths(&[])).await;
    assert_eq!(
        std::fs::read(b.root.join("moved-in/deep/er/x.txt")).unwrap(),
        b"x"
    );
    assert!(!b.root.join("d3").exists());

    // A path named inside a folder the Local tree does not know is
    // scanned from that folder.
    a.write("fresh/sub/z.txt", b"z");
    a.write("fresh/other.txt", b"o");
    let report = a.sync(paths(&["fresh/sub/z.txt"])).await;
    assert_eq!(report.uploaded, 4, "{report:?}");

    // New ignore rules: everything is planned again, and a file they no
    // longer leave out is found without being named.
    a.write(".pouchignore", b"*.log\n");
    a.write("d4/kept.log", b"log");
    a.sync(Scope::Everything).await;
    assert!(!b.root.join("d4/kept.log").exists());
    b.sync(paths(&[])).await;
    a.write(".pouchignore", b"");
    let report = a.sync(paths(&[".pouchignore"])).await;
    assert_eq!(report.uploaded, 2, "{report:?}");
    // The other device plans its first pull with the rules it had, so
    // the file comes at its next sync, as it always has (the daemon's
    // watcher sees the new `.pouchignore` land).
    b.sync(paths(&[])).await;
    assert!(b.engine.db().unsettled_count().unwrap() > 0);
    b.sync(paths(&[])).await;
    assert_eq!(std::fs::read(b.root.join("d4/kept.log")).unwrap(), b"log");
    assert_eq!(a.engine.db().unsettled_count().unwrap(), 0);
    assert_eq!(b.engine.db().unsettled_count().unwrap(), 0);
}

/// Files this device downloaded are not read again by the next whole scan
/// (the daemon's at start, after lost events, every hour): Pouch took
/// their stat data right after writing them with the synced mtime (an
/// hour old here), which any later write would move. A file changed since
/// is read again.
#[tokio::test]
async fn a_whole_scan_does_not_read_downloaded_files_again() {
    let (_dir, _, mut a, mut b) = two_devices().await;
    // B's whole scan starts before anything arrives.
    assert_eq!(b.sync(Scope::Everything).await.files_hashed, 0);
    let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for i in 0..50 {
        let path = format!("d/f{i}.txt");
        a.write(&path, format!("file {i}").as_bytes());
        let file = std::fs::File::options()
            .write(true)
            .open(a.root.join(&path))
            .unwrap();
        file.set_modified(an_hour_ago).unwrap();
    }
    assert_eq!(a.sync(Scope::Everything).await.uploaded, 51);
    assert_eq!(b.sync(Scope::Everything).await.downloaded, 51);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    b.write("d/f7.txt", b"changed on B");
    let report = b.sync(Scope::Everything).await;
    // f7.txt only, read by both of the sync's whole scans (it changed
    // too recently for the second to trust what the first recorded).
    assert_eq!(report.files_hashed, 2, "{report:?}");
    assert_eq!(report.uploaded, 1, "{report:?}");
}

/// A push of more than 10,000 changes is several commits, and the tree
/// the journal describes after each one is whole: no path without its
/// folder (a deleted folder goes after everything in it), no file with
/// children.
#[tokio::test]
async fn a_large_push_is_several_whole_commits() {
    use pouch_backend::Seq;
    use pouch_core::commit::Commit;
    use std::collections::BTreeMap;

    let (_dir, backend, mut a, mut b) = two_devices().await;
    for i in 0..10_050 {
        a.write(&format!("big/d{}/f{i}", i % 50), b"x");
    }
    let report = a.sync(Scope::Everything).await;
    assert_eq!((report.uploaded, report.commits), (10_101, 2));
    assert_eq!(b.sync(Scope::Everything).await.downloaded, 10_101);

    // The folder goes, and a file takes its name.
    std::fs::remove_dir_all(a.root.join("big")).unwrap();
    a.write("big", b"a file now");
    let report = a
        .engine
        .sync_with(SyncOptions {
            allow_mass_delete: true,
            ..SyncOptions::default()
        })
        .await
        .unwrap();
    assert_eq!((report.deleted_remote, report.commits), (10_100, 2));

    // Replay the journal: after every entry, every path's folder is a
    // folder in the tree.
    let mut tree: BTreeMap<String, bool> = BTreeMap::new();
    for entry in backend.read_journal(Seq::ZERO, 100).await.unwrap() {
        let commit = Commit::decode(entry.seq.0, &entry.data).unwrap();
        for change in commit.changes {
            match change.node {
                Some(node) => tree.insert(change.path, node.is_dir()),
                None => tree.remove(&change.path),
            };
        }
        for path in tree.keys() {
            if let Some((parent, _)) = path.rsplit_once('/') {
                assert_eq!(
                    tree.get(parent),
                    Some(&true),
                    "after entry {}: {path} without its folder",
                    entry.seq
                );
            }
        }
    }
    assert_eq!(tree.len(), 1);
    let report = b.sync(Scope::Everything).await;
    assert_eq!(report.deleted_local, 10_100);
    assert_eq!(std::fs::read(b.root.join("big")).unwrap(), b"a file now");
}
