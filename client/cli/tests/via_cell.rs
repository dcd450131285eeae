//! Two devices sync through two front ends of one `pouch-store` cell
//! (PostgreSQL, three storage nodes, all real processes): `pouch init
//! --url` and sync work against a cell as against one server, and a folder
//! moves into a cell, out of it and back with `pouch migrate` while both
//! devices keep syncing.

mod common;

use common::{
    TOKEN, init_on_server, noise, pouch_store_binary, s3_fixture, snapshot, start_server,
};
use pouch_testkit::cell;

#[test]
fn two_devices_sync_through_different_front_ends_of_a_cell() {
    let dir = tempfile::tempdir().unwrap();
    let store = pouch_store_binary();
    let pg = cell::Postgres::start();
    cell::init(&store, &pg.url());
    let _nodes: Vec<cell::Node> = (0..3)
        .map(|i| cell::Node::start(&store, &pg.url(), &dir.path().join(format!("node-{i}"))))
        .collect();
    let namespaces = [("default".to_owned(), TOKEN.to_owned())];
    let one = cell::FrontEnd::start(&store, &pg.url(), &dir.path().join("fe-1"), &namespaces);
    let two = cell::FrontEnd::start(&store, &pg.url(), &dir.path().join("fe-2"), &namespaces);

    let a = init_on_server(dir.path(), "A", &one.url);
    let b = init_on_server(dir.path(), "B", &two.url);
    std::fs::create_dir_all(a.root.join("photos")).unwrap();
    std::fs::write(a.root.join("photos/big.raw"), noise(3, 9 << 20)).unwrap();
    std::fs::write(a.root.join("notes.txt"), b"from A").unwrap();
    a.sync();
    b.sync();
    assert_eq!(snapshot(&a.root), snapshot(&b.root));

    std::fs::write(b.root.join("notes.txt"), b"B edits").unwrap();
    std::fs::remove_file(b.root.join("photos/big.raw")).unwrap();
    b.sync();
    a.sync();
    assert_eq!(snapshot(&a.root), snapshot(&b.root));
    assert_eq!(std::fs::read(a.root.join("notes.txt")).unwrap(), b"B edits");
    assert!(!a.root.join("photos/big.raw").exists());
}

/// The folder moves from a single-node `pouch-store` into a cell, from the
/// cell out to S3, and from S3 back into the cell (another namespace):
/// at each hop A starts the migration (copy, then double writes), both
/// devices write and sync while it runs, A switches and B's user follows.
/// Every file written on either device along the way is on both at the
/// end, byte for byte.
#[test]
fn a_folder_moves_into_a_cell_out_to_s3_and_back_while_syncing() {
    let (_rt, server_s3, bucket) = s3_fixture();
    let dir = tempfile::tempdir().unwrap();
    let store = pouch_store_binary();
    let pg = cell::Postgres::start();
    cell::init(&store, &pg.url());
    let _nodes: Vec<cell::Node> = (0..3)
        .map(|i| cell::Node::start(&store, &pg.url(), &dir.path().join(format!("node-{i}"))))
        .collect();
    let namespaces = [
        ("default".to_owned(), TOKEN.to_owned()),
        ("back".to_owned(), TOKEN.to_owned()),
    ];
    let front = cell::FrontEnd::start(&store, &pg.url(), &dir.path().join("fe"), &namespaces);
    let single = start_server(&dir.path().join("single"));

    let mut a = init_on_server(dir.path(), "A", &single.url);
    let mut b = init_on_server(dir.path(), "B", &single.url);
    for device in [&mut a, &mut b] {
        device.env.extend(common::s3_keys());
    }
    for i in 0..4u64 {
        std::fs::write(a.path(&format!("a{i}.bin")), noise(i, 300_000)).unwrap();
    }
    a.sync();
    b.sync();

    let hops: [(&str, Vec<&str>); 3] = [
        ("the cell", vec!["--to", "own", "--url", &front.url]),
        (
            "S3",
            vec![
                "--to",
                "s3",
                "--bucket",
                &bucket,
                "--endpoint",
                &server_s3.endpoint,
            ],
        ),
        (
            "the cell again",
            vec!["--to", "own", "--url", &front.url, "--namespace", "back"],
        ),
    ];
    for (hop, (to, args)) in hops.iter().enumerate() {
        a.ok(&[&["migrate", "start"][..], args].concat());
        // Both write while it runs: A through both stores, B through the
        // old one.
        std::fs::write(
            a.path(&format!("a-during-{hop}.txt")),
            format!("A, hop {hop}"),
        )
        .unwrap();
        std::fs::write(
            b.path(&format!("b-during-{hop}.bin")),
            noise(100 + hop as u64, 150_000),
        )
        .unwrap();
        b.sync();
        a.sync();
        b.sync();
        a.ok(&[&["migrate", "switch"][..], args].concat());
        std::fs::write(
            b.path(&format!("b-after-{hop}.txt")),
            format!("B, after hop {hop}"),
        )
        .unwrap();
        // Another store: B's user says yes.
        b.ok(&["migrate", "follow"]);
        a.sync();
        b.sync();
        a.ok(&["migrate", "finish"]);
        b.ok(&["migrate", "finish"]);
        assert_eq!(
            snapshot(&a.root),
            snapshot(&b.root),
            "after the move to {to}"
        );
    }
    let status = b.json(&["status", "--json"]);
    assert!(
        status["backend"].as_str().unwrap().contains(&front.url),
        "{status}"
    );
    for hop in 0..3 {
        for name in [
            format!("a-during-{hop}.txt"),
            format!("b-during-{hop}.bin"),
            format!("b-after-{hop}.txt"),
        ] {
            assert!(a.path(&name).exists() && b.path(&name).exists(), "{name}");
        }
    }
    assert_eq!(
        std::fs::read(a.path("b-during-1.bin")).unwrap(),
        noise(101, 150_000)
    );
    // The single-node store and the bucket can go: the cell serves alone.
    drop(single);
    std::fs::write(a.path("last.txt"), b"through the cell alone").unwrap();
    a.sync();
    b.sync();
    assert_eq!(
        std::fs::read(b.path("last.txt")).unwrap(),
        b"through the cell alone"
    );
}
