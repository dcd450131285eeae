//! Plans made a slice at a time (`engine/slices.rs`): a sync of many more
//! unsettled paths than a slice does what one plan of them all does. The
//! slices here are a few paths, so small trees take the path a million
//! files take. On a real embedded store and real folders.

mod common;

use std::sync::Arc;

use common::{Device, device};
use pouch_backend::{Backend, StoreId};
use pouch_backend_own::EmbeddedBackend;
use pouch_core::Scope;

/// Devices "a" and "b" on one embedded store, planning `slice` paths at
/// a time.
async fn two_devices(slice: usize) -> (tempfile::TempDir, Device, Device) {
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn Backend> =
        Arc::new(EmbeddedBackend::open(&dir.path().join("store")).unwrap());
    backend.init_identity(StoreId::random()).await.unwrap();
    let mut a = device(dir.path(), "a", backend.clone());
    let mut b = device(dir.path(), "b", backend);
    a.engine.set_plan_slice(slice);
    b.engine.set_plan_slice(slice);
    (dir, a, b)
}

/// Every file under `root`, with its bytes, by relative path.
fn tree(root: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                out.insert(format!("{rel}/"), Vec::new());
                stack.push(path);
            } else {
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

#[tokio::test]
async fn a_large_sync_in_small_slices_matches_the_tree() {
    let (_dir, mut a, mut b) = two_devices(7).await;
    for i in 0..300 {
        a.write(
            &format!("d{}/e{}/f{i}.txt", i % 5, i % 3),
            format!("file {i}").as_bytes(),
        );
    }
    let report = a.sync(Scope::Everything).await;
    // 300 files and 20 folders, in a commit per slice at least.
    assert_eq!(report.uploaded, 320, "{report:?}");
    assert!(report.commits >= 320 / 7, "{report:?}");
    assert_eq!(a.engine.db().unsettled_count().unwrap(), 0);
    let report = b.sync(Scope::Everything).await;
    assert_eq!(report.downloaded, 320, "{report:?}");
    assert_eq!(b.engine.db().unsettled_count().unwrap(), 0);
    assert_eq!(tree(&a.root), tree(&b.root));
}

#[tokio::test]
async fn a_folder_moved_across_slices_arrives_as_renames() {
    for (from, to) in [("a-first", "z-last"), ("z-first", "a-last")] {
        let (_dir, mut a, mut b) = two_devices(3).await;
        for i in 0..40 {
            a.write(
                &format!("{from}/sub/f{i:02}.txt"),
                format!("moved file {i}, long enough to be worth not fetching").as_bytes(),
            );
        }
        a.write("m-between/keep.txt", b"stays");
        a.sync(Scope::Everything).await;
        b.sync(Scope::Everything).await;

        std::fs::rename(a.root.join(from), a.root.join(to)).unwrap();
        a.sync(Scope::Everything).await;
        let report = b.sync(Scope::Everything).await;
        // The files' bytes were already on b: renamed, nothing fetched,
        // wherever the slices fell.
        assert_eq!(report.renamed_local, 40, "{from} -> {to}: {report:?}");
        assert_eq!(report.blocks_downloaded, 0, "{from} -> {to}: {report:?}");
        assert!(report.problems.is_empty(), "{report:?}");
        assert!(!b.root.join(from).exists(), "{from} -> {to}");
        assert_eq!(tree(&a.root), tree(&b.root));
        assert_eq!(b.engine.db().unsettled_count().unwrap(), 0);
    }
}

#[tokio::test]
async fn a_folder_turned_into_a_file_is_planned_with_its_insides() {
    let (_dir, mut a, mut b) = two_devices(1).await;
    for i in 0..10 {
        a.write(&format!("x/f{i}.txt"), b"inside");
    }
    a.write("x.txt", b"a neighbour sorting between x and x/");
    a.sync(Scope::Everything).await;
    b.sync(Scope::Everything).await;

    std::fs::remove_dir_all(a.root.join("x")).unwrap();
    a.write("x", b"now a file");
    let report = a.sync(Scope::Everything).await;
    assert_eq!(
        (report.uploaded, report.deleted_remote),
        (1, 10),
        "{report:?}"
    );
    let report = b.sync(Scope::Everything).await;
    assert!(report.problems.is_empty(), "{report:?}");
    assert_eq!(std::fs::read(b.root.join("x")).unwrap(), b"now a file");
    assert_eq!(tree(&a.root), tree(&b.root));
}

#[tokio::test]
async fn the_mass_delete_guard_counts_every_slice() {
    let (_dir, mut a, _b) = two_devices(5).await;
    for i in 0..200 {
        a.write(&format!("d{}/f{i}.txt", i % 4), b"x");
    }
    a.sync(Scope::Everything).await;
    // 150 deletes in folders of 50, each under a slice's worth: together
    // they are a mass delete.
    for d in 0..3 {
        std::fs::remove_dir_all(a.root.join(format!("d{d}"))).unwrap();
    }
    let err = a
        .engine
        .sync_once()
        .await
        .expect_err("a mass delete is held back");
    assert!(matches!(err, pouch_core::Error::MassDelete { .. }), "{err}");
}

/// What `pending` (`pouch status`) counts on `device`, planned `slice`
/// paths at a time.
async fn pending(device: &mut Device, slice: usize) -> pouch_core::Pending {
    device.engine.set_plan_slice(slice);
    let (pending, problems) = device.engine.pending().await.unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    pending
}

#[tokio::test]
async fn a_look_counts_every_slice_as_one_plan_would_and_changes_no_file() {
    let (_dir, mut a, mut b) = two_devices(4).await;
    for i in 0..60 {
        a.write(
            &format!("d{}/f{i:02}.txt", i % 3),
            format!("file {i}").as_bytes(),
        );
    }
    let sliced = pending(&mut a, 4).await;
    assert_eq!(sliced, pending(&mut a, 100_000).await);
    // 60 files and 3 folders.
    assert_eq!(sliced.upload, 63, "{sliced:?}");
    a.sync(Scope::Everything).await;
    assert_eq!(pending(&mut a, 4).await, pouch_core::Pending::default());

    let before = tree(&b.root);
    let sliced = pending(&mut b, 4).await;
    assert_eq!(sliced, pending(&mut b, 100_000).await);
    assert_eq!(sliced.download, 63, "{sliced:?}");
    assert_eq!(tree(&b.root), before, "a look wrote to the disk");
    b.sync(Scope::Everything).await;

    // A folder moved on one side and a file edited on both: renames
    // (paired across slices), deletes and a conflict, counted alike.
    std::fs::rename(a.root.join("d0"), a.root.join("z0")).unwrap();
    a.write("d1/f01.txt", b"edited on a");
    a.sync(Scope::Everything).await;
    b.write("d1/f01.txt", b"edited on b");
    b.write("new-on-b.txt", b"new");
    let sliced = pending(&mut b, 4).await;
    assert_eq!(sliced, pending(&mut b, 100_000).await);
    assert_eq!((sliced.conflicts, sliced.upload), (1, 1), "{sliced:?}");
    let report = b.sync(Scope::Everything).await;
    // A conflict brings the other side's version too.
    assert_eq!(
        (
            (report.downloaded + report.renamed_local) as usize,
            report.deleted_local as usize,
            report.renamed_local
        ),
        (sliced.download + sliced.conflicts, sliced.delete_local, 20),
        "{sliced:?} {report:?}"
    );
    a.sync(Scope::Everything).await;
    assert_eq!(tree(&a.root), tree(&b.root));
}
