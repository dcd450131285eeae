//! Two devices sync through two front ends of one `pouch-store` cell
//! (PostgreSQL, three storage nodes, all real processes): `pouch init
//! --url` and sync work against a cell as against one server.

mod common;

use common::{TOKEN, init_on_server, noise, pouch_store_binary, snapshot};
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
