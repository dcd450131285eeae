//! The cell on real processes: PostgreSQL in a temp folder, `pouch-store
//! node` processes, and the front end's backend in this process. It passes
//! the conformance suite; every acknowledged block survives `kill -9` of a
//! node and a damaged copy, and writes go on.

use pouch_testkit::cell;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pouch_backend::conformance::{Capabilities, noise, run_all};
use pouch_backend::{Backend, Block, BlockId, Seq};
use pouch_backend_own::cell::{Cell, CellOptions};

/// The `pouch-store` binary this package's build made.
fn store() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_pouch-store"))
}

/// A cell of `nodes` nodes on a fresh database, and its front end.
async fn cell(
    nodes: usize,
) -> (
    cell::Postgres,
    tempfile::TempDir,
    Vec<cell::Node>,
    Arc<Cell>,
) {
    let pg = cell::Postgres::start();
    cell::init(store(), &pg.url());
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_nodes(&pg.url(), dir.path(), nodes, &[]);
    let front = Cell::connect(&pg.url(), cell::TOKEN.into(), CellOptions::default())
        .await
        .unwrap();
    wait_for_nodes(&front, nodes.len()).await;
    (pg, dir, nodes, front)
}

/// `count` node processes of the cell at `url`, their data in `dir`, with
/// `args` beside the usual ones.
fn start_nodes(url: &str, dir: &std::path::Path, count: usize, args: &[&str]) -> Vec<cell::Node> {
    (0..count)
        .map(|i| cell::Node::start_with(store(), url, &dir.join(format!("node-{i}")), args))
        .collect()
}

/// Waits until `count` nodes beat their hearts in `front`'s database.
async fn wait_for_nodes(front: &Cell, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while front.live_nodes().await.unwrap().len() < count {
        assert!(Instant::now() < deadline, "the nodes never registered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cell_passes_the_conformance_suite() {
    let (_pg, _dir, _nodes, front) = cell(3).await;
    let mut n = 0;
    run_all(
        Capabilities {
            push: true,
            gc: true,
        },
        || {
            n += 1;
            let front = front.clone();
            async move {
                Arc::new(front.namespace(&format!("ns-{n}")).await.unwrap()) as Arc<dyn Backend>
            }
        },
    )
    .await;
}

/// Every file under `dir`, the scrubber's sidecars of hashes included.
fn all_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(all_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The volume and shard files under `dir` (not the sidecars).
fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    all_files(dir)
        .into_iter()
        .filter(|f| f.extension().is_none_or(|e| e != "sums"))
        .collect()
}

/// The indexes of the nodes that hold a volume file.
fn holding(nodes: &[cell::Node]) -> Vec<usize> {
    (0..nodes.len())
        .filter(|&i| !files(&nodes[i].data.join("volumes")).is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_blocks_survive_a_killed_node_and_a_damaged_copy() {
    let (_pg, _dir, mut nodes, front) = cell(4).await;
    let ns = front.namespace("default").await.unwrap();
    let raw: Vec<_> = (0..40)
        .map(|i| noise(i, 20_000 + i as usize * 37))
        .collect();
    let blocks: Vec<Block> = raw.iter().cloned().map(Block::encode).collect();
    let ids: Vec<BlockId> = blocks.iter().map(Block::id).collect();
    for batch in blocks.chunks(10) {
        ns.put_blocks(batch.to_vec()).await.unwrap();
    }
    // Three copies: three of the four nodes hold the volume.
    let holding = holding(&nodes);
    assert_eq!(holding.len(), 3, "{holding:?}");

    // A byte flipped in one copy: the read goes to another.
    let damaged = files(&nodes[holding[0]].data.join("volumes")).remove(0);
    let mut bytes = std::fs::read(&damaged).unwrap();
    bytes[100] ^= 0x40;
    std::fs::write(&damaged, &bytes).unwrap();
    // A node holding a copy dies.
    nodes[holding[1]].kill();
    for (id, want) in ids.iter().zip(&raw) {
        assert_eq!(&ns.get_block(*id).await.unwrap(), want, "block {id}");
    }

    // Writes go on, to the live nodes.
    let more: Vec<Block> = (100..110).map(|i| Block::encode(noise(i, 5_000))).collect();
    ns.put_blocks(more.clone()).await.unwrap();
    for block in &more {
        assert_eq!(
            ns.get_block(block.id()).await.unwrap(),
            block.decode().unwrap()
        );
    }
    assert!(ns.has_blocks(&ids).await.unwrap().iter().all(|h| *h));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_front_ends_serve_one_cell_over_the_client_api() {
    let (pg, dir, _nodes, _front) = cell(3).await;
    let namespaces: Vec<(String, String)> = (0..30)
        .map(|i| (format!("ns{i}"), format!("{}-{i}", cell::TOKEN)))
        .collect();
    let one = cell::FrontEnd::start(store(), &pg.url(), &dir.path().join("fe-1"), &namespaces);
    let two = cell::FrontEnd::start(store(), &pg.url(), &dir.path().join("fe-2"), &namespaces);
    let remote = |front: &cell::FrontEnd, i: usize| {
        Arc::new(
            pouch_backend_own::RemoteBackend::new(
                &front.url,
                &format!("ns{i}"),
                format!("{}-{i}", cell::TOKEN),
            )
            .unwrap(),
        ) as Arc<dyn Backend>
    };
    // The client API through a front end: the whole suite.
    let mut n = 0;
    run_all(
        Capabilities {
            push: true,
            gc: false,
        },
        || {
            n += 1;
            let backend = remote(&one, n);
            async move { backend }
        },
    )
    .await;

    // What one front end takes, the other serves; its long-poll wakes for
    // an append made through the first.
    let (a, b) = (remote(&one, 0), remote(&two, 0));
    let block = Block::encode(noise(7, 100_000));
    a.put_blocks(vec![block.clone()]).await.unwrap();
    assert_eq!(
        b.get_block(block.id()).await.unwrap(),
        block.decode().unwrap()
    );
    let waiter = tokio::spawn(async move {
        b.wait_journal(pouch_backend::Seq::ZERO, Duration::from_secs(30))
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.append(pouch_backend::Seq(1), bytes::Bytes::from_static(b"news"))
        .await
        .unwrap();
    let head = waiter.await.unwrap().unwrap();
    assert_eq!(head, pouch_backend::Seq(1));
    // A wrong token is refused.
    let wrong =
        pouch_backend_own::RemoteBackend::new(&one.url, "ns0", "wrong-token-0123456789".into())
            .unwrap();
    assert!(matches!(
        wrong.has_blocks(&[block.id()]).await,
        Err(pouch_backend::Error::Unauthorized)
    ));
}

/// `pouch-store cell status --json`.
fn status_json(url: &str) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pouch-store"))
        .args([
            "cell",
            "status",
            "--json",
            "--node-timeout",
            "2",
            "--db",
            url,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repair_rebuilds_the_copies_a_dead_node_held() {
    let (pg, _dir, mut nodes, _) = cell(4).await;
    let options = CellOptions {
        dead_after: Duration::from_secs(2),
        ..CellOptions::default()
    };
    let front = Cell::connect(&pg.url(), cell::TOKEN.into(), options)
        .await
        .unwrap();
    let ns = front.namespace("default").await.unwrap();
    let raw: Vec<_> = (0..30).map(|i| noise(i, 10_000 + i as usize)).collect();
    let blocks: Vec<Block> = raw.iter().cloned().map(Block::encode).collect();
    ns.put_blocks(blocks.clone()).await.unwrap();
    let holds = |node: &cell::Node| !files(&node.data.join("volumes")).is_empty();
    let holding = holding(&nodes);
    let spare = (0..nodes.len()).find(|i| !holding.contains(i)).unwrap();
    assert_eq!(
        front.repair_once().await.unwrap().unwrap().replicas_rebuilt,
        0
    );

    nodes[holding[0]].kill();
    let deadline = Instant::now() + Duration::from_secs(30);
    let degraded = loop {
        let status = front.status().await.unwrap();
        if status.nodes.iter().any(|n| !n.up) {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the dead node is never counted down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (
            degraded.blocks_degraded,
            degraded.blocks_redundant,
            degraded.volumes_to_repair
        ),
        (30, 0, 1),
        "{degraded:?}"
    );

    let report = front.repair_once().await.unwrap().unwrap();
    assert_eq!(
        (
            report.replicas_rebuilt,
            report.blocks_copied,
            report.blocks_unreadable
        ),
        (1, 30, 0),
        "{report:?}"
    );
    assert!(holds(&nodes[spare]), "the new copy is on the spare node");
    let json = status_json(&pg.url());
    assert_eq!(
        (
            json["blocks_redundant"].as_u64(),
            json["blocks_degraded"].as_u64()
        ),
        (Some(30), Some(0)),
        "{json}"
    );
    // With a second original copy gone too, the new one serves.
    nodes[holding[1]].kill();
    for (block, want) in blocks.iter().zip(&raw) {
        assert_eq!(&ns.get_block(block.id()).await.unwrap(), want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_verifier_finds_a_block_a_journal_names_that_the_index_lacks() {
    use pouch_journal::commit::{COMMIT_VERSION, Change, Commit};
    use pouch_journal::node::{BlockRef, Node};

    let (_pg, _dir, _nodes, front) = cell(3).await;
    let ns = front.namespace("default").await.unwrap();
    let stored: Vec<Block> = (0..3)
        .map(|i| Block::encode(noise(300 + i, 4_000)))
        .collect();
    ns.put_blocks(stored.clone()).await.unwrap();
    let never_put = Block::encode(noise(399, 4_000));
    let entry = |path: &str, blocks: &[&Block]| {
        Commit {
            v: COMMIT_VERSION,
            device: "verifier-test".into(),
            time: Some(1_800_000_000),
            changes: vec![Change {
                path: path.into(),
                node: Some(Node::File {
                    size: 4_000 * blocks.len() as u64,
                    mtime_ns: 0,
                    exec: false,
                    mode: None,
                    blocks: blocks
                        .iter()
                        .map(|b| BlockRef {
                            id: b.id(),
                            len: 4_000,
                        })
                        .collect(),
                }),
            }],
            moved_to: None,
            migration: None,
            missing: Vec::new(),
            retention: None,
        }
        .encode()
    };
    ns.append(Seq::ZERO.next(), entry("a.bin", &[&stored[0], &stored[1]]))
        .await
        .unwrap();
    let clean = front.verify_once().await.unwrap().unwrap();
    assert_eq!(
        (clean.journal_blocks_checked, clean.journal_blocks_missing),
        (2, 0),
        "{clean:?}"
    );

    // An entry naming a block the cell never indexed (lost, or a device's
    // bug) is found, and `cell verify` fails.
    ns.append(
        Seq::ZERO.next().next(),
        entry("b.bin", &[&stored[2], &never_put]),
    )
    .await
    .unwrap();
    let found = front.verify_once().await.unwrap().unwrap();
    assert_eq!(
        (found.journal_blocks_checked, found.journal_blocks_missing),
        (4, 1),
        "{found:?}"
    );
}

/// A front end's `/metrics`, with the metrics token or without.
async fn metrics(front: &cell::FrontEnd, with_token: bool) -> String {
    pouch_backend::tls::install_provider();
    let mut request = reqwest::Client::new().get(format!("{}/metrics", front.url));
    if with_token {
        request = request.bearer_auth(cell::METRICS_TOKEN);
    }
    request.send().await.unwrap().text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_front_ends_metrics_show_the_cells_redundancy_and_its_repairs() {
    let (pg, dir, mut nodes, front) = cell(4).await;
    let served = cell::FrontEnd::start(
        store(),
        &pg.url(),
        &dir.path().join("front"),
        &[("default".into(), "a-namespace-token-0123456789".into())],
    );
    let ns = front.namespace("default").await.unwrap();
    let blocks: Vec<Block> = (0..10)
        .map(|i| Block::encode(noise(500 + i, 3_000)))
        .collect();
    ns.put_blocks(blocks).await.unwrap();
    let page = metrics(&served, true).await;
    for line in [
        "pouch_store_cell_nodes_up 4",
        "pouch_store_cell_blocks_redundant 10",
    ] {
        assert!(page.lines().any(|l| l == line), "{line} in {page}");
    }
    // Without the token: the counters, not the cell's figures.
    let page = metrics(&served, false).await;
    assert!(
        page.contains("pouch_store_cell_repair_passes_total"),
        "{page}"
    );
    assert!(
        !page.contains("pouch_store_cell_blocks_redundant"),
        "{page}"
    );

    // A node holding the volume dies: the front end's own repair (every
    // 5 s, once the node is silent for 10 s) rebuilds its copy, and says so.
    let holding = holding(&nodes)[0];
    nodes[holding].kill();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let page = metrics(&served, true).await;
        if page
            .lines()
            .any(|l| l == "pouch_store_cell_replicas_rebuilt_total 1")
        {
            for line in [
                "pouch_store_cell_nodes_down 1",
                "pouch_store_cell_blocks_redundant 10",
            ] {
                assert!(page.lines().any(|l| l == line), "{line} in {page}");
            }
            break;
        }
        assert!(Instant::now() < deadline, "no repair in {page}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[test]
fn a_node_on_every_interface_must_say_where_it_is_reached() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(store())
        .args([
            "node",
            "--db",
            "postgresql://nobody@127.0.0.1:1/none",
            "--listen",
            "0.0.0.0:0",
            "--data",
        ])
        .arg(dir.path())
        .env("POUCH_CELL_TOKEN", cell::TOKEN)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pass --advertise"),
        "{out:?}"
    );
}

/// `pouch-store cell drain` of `node`, with its output.
fn drain(url: &str, node: &str) -> std::process::Output {
    std::process::Command::new(store())
        .args(["cell", "drain", "--db", url, node])
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drained_node_gives_its_copies_away_and_can_then_be_stopped() {
    let (pg, _dir, mut nodes, front) = cell(4).await;
    let ns = front.namespace("default").await.unwrap();
    let raw: Vec<_> = (0..20)
        .map(|i| noise(200 + i, 5_000 + i as usize))
        .collect();
    let blocks: Vec<Block> = raw.iter().cloned().map(Block::encode).collect();
    ns.put_blocks(blocks[..10].to_vec()).await.unwrap();
    let id_of = |node: &cell::Node| -> i64 {
        std::fs::read_to_string(node.data.join("node-id"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let holding = holding(&nodes)[0];
    let id = id_of(&nodes[holding]);

    let out = drain(&pg.url(), "12345");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no storage node 12345"),
        "{out:?}"
    );
    let out = drain(&pg.url(), &id.to_string());
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("is draining"),
        "{out:?}"
    );
    let json = status_json(&pg.url());
    let node = |json: &serde_json::Value| {
        json["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(node(&json)["draining"], true, "{json}");
    assert_eq!(json["volumes_to_repair"], 1, "{json}");

    // New blocks go to the three other nodes only; repair moves the
    // drained node's copies to the spare one.
    let volumes_before = files(&nodes[holding].data.join("volumes"));
    ns.put_blocks(blocks[10..].to_vec()).await.unwrap();
    let report = front.repair_once().await.unwrap().unwrap();
    assert_eq!(
        (
            report.replicas_rebuilt,
            report.blocks_copied,
            report.blocks_unreadable
        ),
        (1, 10, 0),
        "{report:?}"
    );
    assert_eq!(files(&nodes[holding].data.join("volumes")), volumes_before);
    let json = status_json(&pg.url());
    assert_eq!(
        (
            node(&json)["volumes"].as_u64(),
            json["volumes_to_repair"].as_u64()
        ),
        (Some(0), Some(0)),
        "{json}"
    );
    assert!(
        String::from_utf8_lossy(&drain(&pg.url(), &id.to_string()).stdout)
            .contains("can be stopped")
    );

    // Stopped, and one more node lost: every block still reads.
    nodes[holding].kill();
    let other = (0..nodes.len()).find(|&i| i != holding).unwrap();
    nodes[other].kill();
    for (block, want) in blocks.iter().zip(&raw) {
        assert_eq!(&ns.get_block(block.id()).await.unwrap(), want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_verifier_finds_and_mends_a_deleted_volume_and_a_flipped_byte() {
    let (_pg, _dir, mut nodes, front) = cell(3).await;
    let ns = front.namespace("default").await.unwrap();
    let raw: Vec<_> = (0..20).map(|i| noise(i, 30_000)).collect();
    let blocks: Vec<Block> = raw.iter().cloned().map(Block::encode).collect();
    ns.put_blocks(blocks.clone()).await.unwrap();
    let clean = front.verify_once().await.unwrap().unwrap();
    assert_eq!(
        (clean.blocks, clean.copies_checked, clean.copies_repaired),
        (20, 60, 0),
        "{clean:?}"
    );

    // Node 0 loses its volume file; node 1 gets a flipped byte.
    for file in files(&nodes[0].data.join("volumes")) {
        std::fs::remove_file(file).unwrap();
    }
    let damaged = files(&nodes[1].data.join("volumes")).remove(0);
    let mut bytes = std::fs::read(&damaged).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&damaged, &bytes).unwrap();
    let found = front.verify_once().await.unwrap().unwrap();
    assert_eq!(
        (found.copies_repaired, found.copies_unrepairable),
        (21, 0),
        "{found:?}"
    );
    let again = front.verify_once().await.unwrap().unwrap();
    assert_eq!(again.copies_repaired, 0, "{again:?}");

    // The mended copy on node 0 serves alone.
    nodes[1].kill();
    nodes[2].kill();
    for (block, want) in blocks.iter().zip(&raw) {
        assert_eq!(&ns.get_block(block.id()).await.unwrap(), want);
    }
}

/// A cell of `nodes` nodes whose volumes seal at 256 KiB (so that tests
/// see them coded) and whose nodes count as dead after 2 s, and a front end
/// with those options.
async fn small_volume_cell(
    nodes: usize,
) -> (
    cell::Postgres,
    tempfile::TempDir,
    Vec<cell::Node>,
    Arc<Cell>,
) {
    let (pg, dir, nodes, _) = cell(nodes).await;
    let options = CellOptions {
        volume_size: 256 << 10,
        dead_after: Duration::from_secs(2),
        ..CellOptions::default()
    };
    let front = Cell::connect(&pg.url(), cell::TOKEN.into(), options)
        .await
        .unwrap();
    (pg, dir, nodes, front)
}

/// Bytes of the files under each node's `folder` (`volumes` or `shards`),
/// the scrubber's sidecars of hashes included.
fn bytes_in(nodes: &[cell::Node], folder: &str) -> u64 {
    nodes
        .iter()
        .flat_map(|n| all_files(&n.data.join(folder)))
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum()
}

/// Bytes of the volume or shard files under each node's `folder`, without
/// the sidecars.
fn data_bytes_in(nodes: &[cell::Node], folder: &str) -> u64 {
    nodes
        .iter()
        .flat_map(|n| files(&n.data.join(folder)))
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum()
}

/// Sealed volumes are coded 4 + 2 on six of eight nodes, their replicas
/// dropped (≤ 1.6× their size on disk); with two shard holders killed every
/// block reads back (degraded reads); a deleted shard file and a flipped
/// byte in another are found by the verifier and mended; once the two are
/// counted dead, repair rebuilds their shards on the two spare nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sealed_volumes_are_coded_and_read_back_with_two_nodes_down() {
    let (_pg, _dir, mut nodes, front) = small_volume_cell(8).await;
    let ns = front.namespace("default").await.unwrap();
    let raw: Vec<_> = (0..120)
        .map(|i| noise(i, 20_000 + i as usize * 101))
        .collect();
    let blocks: Vec<Block> = raw.iter().cloned().map(Block::encode).collect();
    for batch in blocks.chunks(4) {
        ns.put_blocks(batch.to_vec()).await.unwrap();
    }
    let before = front.status().await.unwrap();
    assert!(before.volumes_sealed >= 8, "{before:?}");
    let report = front.repair_once().await.unwrap().unwrap();
    assert_eq!(report.volumes_coded, before.volumes_sealed, "{report:?}");
    assert_eq!(report.volumes_waiting_to_code, 0, "{report:?}");
    let coded = front.status().await.unwrap();
    assert_eq!(
        (
            coded.volumes_coded,
            coded.volumes_sealed,
            coded.blocks_redundant
        ),
        (before.volumes_sealed, 0, 120),
        "{coded:?}"
    );
    // On disk: the open volume's three replicas, and 1.5× (plus alignment)
    // of each coded volume in shards; the coded ones' replicas are gone.
    let open_bytes = coded.logical_bytes - report.bytes_coded;
    assert_eq!(data_bytes_in(&nodes, "volumes"), 3 * open_bytes);
    let shards = bytes_in(&nodes, "shards");
    let ratio = shards as f64 / report.bytes_coded as f64;
    println!(
        "coded {} bytes into {shards} bytes of shards: {ratio:.3}x",
        report.bytes_coded
    );
    assert!(ratio <= 1.6, "{ratio}");
    for (block, want) in blocks.iter().zip(&raw) {
        assert_eq!(&ns.get_block(block.id()).await.unwrap(), want);
    }

    // One node loses a shard file; another gets a byte flipped.
    let with_shards: Vec<usize> = (0..nodes.len())
        .filter(|&i| !files(&nodes[i].data.join("shards")).is_empty())
        .collect();
    assert!(with_shards.len() >= 6, "{with_shards:?}");
    let lost = files(&nodes[with_shards[0]].data.join("shards")).remove(0);
    let lost_bytes = std::fs::read(&lost).unwrap();
    std::fs::remove_file(&lost).unwrap();
    let damaged = files(&nodes[with_shards[1]].data.join("shards")).remove(0);
    let good = std::fs::read(&damaged).unwrap();
    let mut bytes = good.clone();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x08;
    std::fs::write(&damaged, &bytes).unwrap();
    let found = front.verify_once().await.unwrap().unwrap();
    assert_eq!(
        (found.copies_repaired, found.copies_unrepairable),
        (2, 0),
        "{found:?}"
    );
    assert_eq!(std::fs::read(&lost).unwrap(), lost_bytes);
    assert_eq!(std::fs::read(&damaged).unwrap(), good);

    // Two nodes holding shards die: every block still reads back.
    nodes[with_shards[2]].kill();
    nodes[with_shards[3]].kill();
    for (block, want) in blocks.iter().zip(&raw) {
        assert_eq!(&ns.get_block(block.id()).await.unwrap(), want);
    }
    // Once they count as dead, repair rebuilds their shards on the spare
    // nodes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let repaired = front.repair_once().await.unwrap().unwrap();
    assert!(repaired.shards_rebuilt >= 1, "{repaired:?}");
    assert_eq!(repaired.shards_waiting, 0, "{repaired:?}");
    let status = front.status().await.unwrap();
    assert_eq!(
        (
            status.blocks_degraded,
            status.blocks_lost,
            status.volumes_to_repair
        ),
        (0, 0, 0),
        "{status:?}"
    );
    let clean = front.verify_once().await.unwrap().unwrap();
    assert_eq!(
        (
            clean.copies_repaired,
            clean.copies_unrepairable,
            clean.journal_blocks_missing
        ),
        (0, 0, 0),
        "{clean:?}"
    );
    // And with two other nodes down, from the rebuilt shards.
    nodes[with_shards[0]].kill();
    nodes[with_shards[1]].kill();
    for (block, want) in blocks.iter().zip(&raw) {
        assert_eq!(&ns.get_block(block.id()).await.unwrap(), want);
    }
}

/// A node dies while another holds a silently damaged shard of the same
/// volume (a flipped byte its scrubber has not reached yet): repair
/// rebuilds the lost shard from intact ones only, for the damaged one's
/// node refuses a window that no longer matches its hash; the verifier
/// then mends the damaged one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuilt_shard_is_never_made_from_a_silently_damaged_one() {
    let (_pg, _dir, mut nodes, front) = small_volume_cell(8).await;
    let ns = front.namespace("default").await.unwrap();
    let raw: Vec<_> = (0..40).map(|i| noise(900 + i, 20_000)).collect();
    let blocks: Vec<Block> = raw.iter().cloned().map(Block::encode).collect();
    for batch in blocks.chunks(4) {
        ns.put_blocks(batch.to_vec()).await.unwrap();
    }
    assert!(front.repair_once().await.unwrap().unwrap().volumes_coded > 0);

    // Shard `index` of `volume` on a node other than `not`: the node and
    // its file.
    fn shard(
        nodes: &[cell::Node],
        volume: &str,
        index: usize,
        not: Option<usize>,
    ) -> Option<(usize, std::path::PathBuf)> {
        (0..nodes.len())
            .filter(|n| Some(*n) != not)
            .map(|n| {
                (
                    n,
                    nodes[n]
                        .data
                        .join("shards")
                        .join(format!("{volume}.{index}")),
                )
            })
            .find(|(_, file)| file.exists())
    }
    let some_shard = (0..nodes.len())
        .flat_map(|n| files(&nodes[n].data.join("shards")))
        .next()
        .expect("a coded volume");
    let name = some_shard.file_name().unwrap().to_str().unwrap().to_owned();
    let volume = name.split_once('.').unwrap().0.to_owned();
    // Lost: the last parity shard. Damaged: the first data shard, which a
    // rebuild that took the first four shards to answer would use.
    let (lost_node, lost_file) = shard(&nodes, &volume, 5, None).unwrap();
    let lost_bytes = std::fs::read(&lost_file).unwrap();
    let (_, damaged_file) = shard(&nodes, &volume, 0, None).unwrap();
    let good = std::fs::read(&damaged_file).unwrap();
    let mut bad = good.clone();
    bad[good.len() / 2] ^= 0x20;
    std::fs::write(&damaged_file, &bad).unwrap();

    nodes[lost_node].kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let repaired = front.repair_once().await.unwrap().unwrap();
    assert!(repaired.shards_rebuilt >= 1, "{repaired:?}");
    let (_, rebuilt) =
        shard(&nodes, &volume, 5, Some(lost_node)).expect("shard 5 rebuilt elsewhere");
    assert!(
        std::fs::read(&rebuilt).unwrap() == lost_bytes,
        "the rebuilt shard differs from the one lost"
    );

    let mended = front.verify_once().await.unwrap().unwrap();
    assert_eq!(
        (mended.copies_repaired, mended.copies_unrepairable),
        (1, 0),
        "{mended:?}"
    );
    assert_eq!(std::fs::read(&damaged_file).unwrap(), good);
    for (block, want) in blocks.iter().zip(&raw) {
        assert_eq!(&ns.get_block(block.id()).await.unwrap(), want);
    }
}

/// A repair pass stops coding once it has spent its budget (after one
/// volume at least), so a backlog of sealed volumes never keeps the
/// coordinator's lease from the repairs of the next pass for long; each
/// later pass codes more until none is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_repair_pass_codes_within_its_budget_and_the_next_goes_on() {
    let (pg, _dir, _nodes, _) = cell(6).await;
    let options = CellOptions {
        volume_size: 256 << 10,
        coding_budget: Duration::ZERO,
        ..CellOptions::default()
    };
    let front = Cell::connect(&pg.url(), cell::TOKEN.into(), options)
        .await
        .unwrap();
    let ns = front.namespace("default").await.unwrap();
    let raw: Vec<_> = (0..60).map(|i| noise(1200 + i, 20_000)).collect();
    let blocks: Vec<Block> = raw.iter().cloned().map(Block::encode).collect();
    for batch in blocks.chunks(4) {
        ns.put_blocks(batch.to_vec()).await.unwrap();
    }
    let sealed = front.status().await.unwrap().volumes_sealed;
    assert!(sealed >= 3, "{sealed}");
    for pass in 1..=sealed {
        let report = front.repair_once().await.unwrap().unwrap();
        assert_eq!(
            (report.volumes_coded, report.volumes_waiting_to_code),
            (1, sealed - pass),
            "pass {pass}: {report:?}"
        );
    }
    let status = front.status().await.unwrap();
    assert_eq!((status.volumes_sealed, status.volumes_coded), (0, sealed));
    for (block, want) in blocks.iter().zip(&raw) {
        assert_eq!(&ns.get_block(block.id()).await.unwrap(), want);
    }
}

/// Garbage collection in the cell: a collector's marks and sweep delete
/// index rows (the conformance suite checks the protocol); compaction then
/// moves the live quarter of the coded volumes into new ones and drops the
/// old, giving their space back on the nodes; what was kept reads back, what
/// was swept is gone, and the verifier finds nothing wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn swept_blocks_give_their_space_back_when_volumes_are_compacted() {
    use pouch_backend::LeaseRequest;
    let (_pg, _dir, nodes, front) = small_volume_cell(6).await;
    let ns = front.namespace("default").await.unwrap();
    let raw: Vec<_> = (0..120).map(|i| noise(i, 24_000)).collect();
    let blocks: Vec<Block> = raw.iter().cloned().map(Block::encode).collect();
    for batch in blocks.chunks(4) {
        ns.put_blocks(batch.to_vec()).await.unwrap();
    }
    let coded = front.repair_once().await.unwrap().unwrap().volumes_coded;
    assert!(coded >= 8, "{coded}");
    let on_disk = || bytes_in(&nodes, "volumes") + bytes_in(&nodes, "shards");
    let before = on_disk();

    let lease = ns
        .gc_lease(LeaseRequest {
            holder: "test collector".into(),
            generation: None,
            ttl: Duration::from_secs(60),
        })
        .await
        .unwrap();
    let doomed: Vec<BlockId> = blocks
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 4 != 0)
        .map(|(_, b)| b.id())
        .collect();
    ns.gc_mark(lease.generation, &doomed, &[]).await.unwrap();
    let swept = ns
        .gc_sweep(lease.generation, &doomed, i64::MAX)
        .await
        .unwrap();
    assert_eq!(swept.blocks, 90);
    assert_eq!(on_disk(), before, "a sweep only forgets");

    let report = front
        .compact_once(0.5, Duration::from_secs(3600))
        .await
        .unwrap()
        .unwrap();
    assert!(report.volumes_compacted >= coded, "{report:?}");
    // The kept quarter of each compacted volume moved (kept blocks in the
    // open volume stay where they are).
    assert!(
        (20..=30).contains(&report.blocks_moved) && report.blocks_unreadable == 0,
        "{report:?}"
    );
    for (i, (block, want)) in blocks.iter().zip(&raw).enumerate() {
        match ns.get_block(block.id()).await {
            Ok(got) => assert!(i % 4 == 0 && got == *want, "block {i}"),
            Err(pouch_backend::Error::BlockNotFound(_)) => assert!(i % 4 != 0, "block {i} lost"),
            Err(e) => panic!("block {i}: {e}"),
        }
    }
    // The moved blocks' new volumes are coded in turn.
    front.repair_once().await.unwrap().unwrap();
    let after = on_disk();
    println!("on the nodes: {before} bytes before, {after} after");
    assert!(after * 2 < before, "{after} of {before}");
    let status = front.status().await.unwrap();
    assert_eq!((status.blocks, status.blocks_lost), (30, 0), "{status:?}");
    let clean = front.verify_once().await.unwrap().unwrap();
    assert_eq!(
        (clean.copies_repaired, clean.copies_unrepairable),
        (0, 0),
        "{clean:?}"
    );
}

/// Every node's scrubber hashes what it holds against the hashes taken
/// when it was written: a byte flipped in a replica and one in a shard are
/// reported to the database, and the next repair pass writes both ranges
/// again from redundancy.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nodes_scrubber_reports_damage_that_repair_then_mends() {
    let pg = cell::Postgres::start();
    cell::init(store(), &pg.url());
    let dir = tempfile::tempdir().unwrap();
    let scrub_often = ["--scrub-every", "1", "--scrub-mib-per-sec", "64"];
    let nodes = start_nodes(&pg.url(), dir.path(), 6, &scrub_often);
    let options = CellOptions {
        volume_size: 256 << 10,
        ..CellOptions::default()
    };
    let front = Cell::connect(&pg.url(), cell::TOKEN.into(), options)
        .await
        .unwrap();
    wait_for_nodes(&front, 6).await;
    let ns = front.namespace("default").await.unwrap();
    let raw: Vec<_> = (0..40).map(|i| noise(i, 20_000)).collect();
    let blocks: Vec<Block> = raw.iter().cloned().map(Block::encode).collect();
    for batch in blocks.chunks(4) {
        ns.put_blocks(batch.to_vec()).await.unwrap();
    }
    assert!(front.repair_once().await.unwrap().unwrap().volumes_coded > 0);

    let flip = |folder: &str, node: usize| {
        let file = files(&nodes[node].data.join(folder)).remove(0);
        let good = std::fs::read(&file).unwrap();
        let mut bad = good.clone();
        bad[good.len() / 2] ^= 0x10;
        std::fs::write(&file, &bad).unwrap();
        (file, good)
    };
    let with = |folder: &str| {
        (0..nodes.len())
            .find(|&i| {
                files(&nodes[i].data.join(folder))
                    .iter()
                    .any(|f| f.extension().is_none_or(|e| e != "sums"))
            })
            .unwrap()
    };
    let replica = flip("volumes", with("volumes"));
    let shard = flip("shards", with("shards"));

    let db = pouch_backend_own::cell::db::pool(&pg.url()).unwrap();
    let client = db.get().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found: i64 = client
            .query_one("SELECT count(*) FROM damage", &[])
            .await
            .unwrap()
            .get(0);
        if found == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the scrubbers found {found} of 2"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let report = front.repair_once().await.unwrap().unwrap();
    assert_eq!(report.damage_mended, 2, "{report:?}");
    assert_eq!(std::fs::read(&replica.0).unwrap(), replica.1);
    assert_eq!(std::fs::read(&shard.0).unwrap(), shard.1);
    let left: i64 = client
        .query_one("SELECT count(*) FROM damage", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    for (block, want) in blocks.iter().zip(&raw) {
        assert_eq!(&ns.get_block(block.id()).await.unwrap(), want);
    }
}

/// A node counted dead and repaired around comes back with its old copy:
/// the database no longer places it there, so once it has not been written
/// for the grace period the compaction pass deletes it (sidecar too), and
/// nothing the database names is touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_comes_back_has_the_copies_moved_away_meanwhile_deleted() {
    let (pg, dir, mut nodes, _) = cell(4).await;
    let options = CellOptions {
        dead_after: Duration::from_secs(2),
        ..CellOptions::default()
    };
    let front = Cell::connect(&pg.url(), cell::TOKEN.into(), options)
        .await
        .unwrap();
    let ns = front.namespace("default").await.unwrap();
    let raw: Vec<_> = (0..20).map(|i| noise(i, 10_000)).collect();
    let blocks: Vec<Block> = raw.iter().cloned().map(Block::encode).collect();
    ns.put_blocks(blocks.clone()).await.unwrap();
    let gone = holding(&nodes)[0];
    nodes[gone].kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let repaired = front.repair_once().await.unwrap().unwrap();
    assert_eq!(repaired.replicas_rebuilt, 1, "{repaired:?}");
    nodes[gone] = cell::Node::start(store(), &pg.url(), &dir.path().join(format!("node-{gone}")));
    wait_for_nodes(&front, 4).await;
    assert_eq!(holding(&nodes).len(), 4, "the old copy is still there");

    let within_grace = front
        .compact_once(0.5, Duration::from_secs(3600))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(within_grace.orphans_deleted, 0);
    let report = front
        .compact_once(0.5, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.orphans_deleted, 1, "{report:?}");
    assert!(all_files(&nodes[gone].data.join("volumes")).is_empty());
    assert_eq!(holding(&nodes).len(), 3);
    for (block, want) in blocks.iter().zip(&raw) {
        assert_eq!(&ns.get_block(block.id()).await.unwrap(), want);
    }
    let again = front
        .compact_once(0.5, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.orphans_deleted, 0);
}

/// A small random number generator for the rounds below (xorshift): the
/// seed is printed, so a failing round can be replayed with
/// `POUCH_CELL_SEED`.
struct Rounds(u64);

impl Rounds {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_killed_under_write_load_lose_nothing_acknowledged() {
    let seed: u64 = std::env::var("POUCH_CELL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let rounds: usize = std::env::var("POUCH_CELL_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    println!("seed {seed} (POUCH_CELL_SEED={seed} replays it), {rounds} rounds");
    let mut random = Rounds(seed);
    // Eight nodes: sealed volumes are coded on six, and with two down
    // their lost shards need two spare nodes to be rebuilt on.
    let (pg, dir, mut nodes, front) = small_volume_cell(8).await;
    let ns = Arc::new(front.namespace("default").await.unwrap());
    let acknowledged: Arc<std::sync::Mutex<Vec<(BlockId, u64)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (ns, acknowledged, stop) = (ns.clone(), acknowledged.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let batch: Vec<(Block, u64)> = (n..n + 4)
                    .map(|i| (Block::encode(noise(i, 4_000 + (i % 7) as usize * 1_000)), i))
                    .collect();
                n += 4;
                let blocks = batch.iter().map(|(b, _)| b.clone()).collect();
                // A put that fails is not acknowledged: nothing is owed.
                if ns.put_blocks(blocks).await.is_ok() {
                    acknowledged
                        .lock()
                        .unwrap()
                        .extend(batch.iter().map(|(b, i)| (b.id(), *i)));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let mut checked = 0;
    for round in 0..rounds {
        let first = (random.next() % 8) as usize;
        let second = (first + 1 + (random.next() % 7) as usize) % 8;
        println!("round {round}: kill -9 of nodes {first} and {second}");
        nodes[first].kill();
        nodes[second].kill();
        // Every block acknowledged since the last round reads back from
        // what is left, and a sample of the older ones (all of them are
        // read at the end).
        let owed: Vec<(BlockId, u64)> = acknowledged.lock().unwrap().clone();
        let older = checked.min(owed.len());
        let sample = (0..50.min(older)).map(|_| (random.next() as usize) % older);
        let to_check: Vec<usize> = sample.chain(older..owed.len()).collect();
        checked = owed.len();
        for (id, i) in to_check.into_iter().map(|k| &owed[k]) {
            let want = noise(*i, 4_000 + (i % 7) as usize * 1_000);
            assert_eq!(
                ns.get_block(*id).await.unwrap(),
                want,
                "round {round}, block {i}"
            );
        }
        // Once the two are counted dead, repair brings every copy back.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            front.repair_once().await.unwrap();
            let status = front.status().await.unwrap();
            let down = status.nodes.iter().filter(|n| !n.up).count();
            if down == 2 && status.blocks_degraded == 0 && status.blocks_lost == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: never fully redundant: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        // They come back (their data intact, their copies replaced).
        nodes[first] = cell::Node::start(
            store(),
            &pg.url(),
            &dir.path().join(format!("node-{first}")),
        );
        nodes[second] = cell::Node::start(
            store(),
            &pg.url(),
            &dir.path().join(format!("node-{second}")),
        );
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.await.unwrap();
    let owed = acknowledged.lock().unwrap().clone();
    assert!(
        owed.len() > 20,
        "the writer made too little progress: {}",
        owed.len()
    );
    // Volumes filled, sealed and were coded while the rounds ran.
    let status = front.status().await.unwrap();
    assert!(status.volumes_coded > 0, "{status:?}");
    for (id, i) in &owed {
        let want = noise(*i, 4_000 + (i % 7) as usize * 1_000);
        assert_eq!(ns.get_block(*id).await.unwrap(), want, "block {i}");
    }
}

/// Blocks and journal entries a writer had acknowledged: when, the block,
/// its seed, the entry.
type Acknowledged = Arc<std::sync::Mutex<Vec<(Instant, BlockId, u64, Seq)>>>;

/// A writer putting a block and appending an entry every 20 ms, logging
/// what was acknowledged, until `stop`.
fn write_under_load(
    ns: Arc<pouch_backend_own::cell::CellBackend>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (Acknowledged, tokio::task::JoinHandle<()>) {
    use pouch_backend::BackendExt;
    let acknowledged: Acknowledged = Arc::default();
    let log = acknowledged.clone();
    let writer = tokio::spawn(async move {
        let mut i = 0u64;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            i += 1;
            let block = Block::encode(noise(i, 8_000));
            let written = async {
                ns.put_blocks(vec![block.clone()]).await?;
                // An append whose answer was lost may have landed: the
                // head says where to go on.
                let seq = Seq(ns.journal_head().await?.0 + 1);
                ns.append(seq, bytes::Bytes::from(format!("entry {i}")))
                    .await?;
                Ok::<_, pouch_backend::Error>(seq)
            };
            if let Ok(seq) = written.await {
                log.lock()
                    .unwrap()
                    .push((Instant::now(), block.id(), i, seq));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    (acknowledged, writer)
}

/// Waits until the writer had something acknowledged well after `since`,
/// stops it, and checks every block and entry it was told were stored;
/// then that long-polls wake again (the front end listens anew).
async fn resumed_and_nothing_lost(
    ns: &Arc<pouch_backend_own::cell::CellBackend>,
    stop: &std::sync::atomic::AtomicBool,
    acknowledged: &Acknowledged,
    writer: tokio::task::JoinHandle<()>,
    since: Instant,
) {
    use pouch_backend::BackendExt;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !acknowledged
        .lock()
        .unwrap()
        .iter()
        .any(|(at, ..)| *at > since + Duration::from_millis(200))
    {
        assert!(Instant::now() < deadline, "writes never resumed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.await.unwrap();

    let log = acknowledged.lock().unwrap().clone();
    assert!(log.iter().any(|(at, ..)| *at < since), "nothing before");
    let entries = ns.read_journal(Seq::ZERO, 100_000).await.unwrap();
    for (_, id, i, seq) in &log {
        assert_eq!(
            ns.get_block(*id).await.unwrap(),
            noise(*i, 8_000),
            "block {i}"
        );
        let entry = entries
            .iter()
            .find(|e| e.seq == *seq)
            .expect("an acknowledged entry");
        assert_eq!(entry.data, format!("entry {i}").as_bytes(), "entry {seq}");
    }
    let waiter = {
        let ns = ns.clone();
        let head = ns.journal_head().await.unwrap();
        tokio::spawn(async move { ns.wait_journal(head, Duration::from_secs(60)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let head = ns.journal_head().await.unwrap();
    ns.append(Seq(head.0 + 1), bytes::Bytes::from_static(b"news"))
        .await
        .unwrap();
    assert_eq!(waiter.await.unwrap().unwrap(), Seq(head.0 + 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_restart_under_load_loses_nothing_acknowledged() {
    let (pg, _dir, _nodes, front) = cell(3).await;
    let ns = Arc::new(front.namespace("default").await.unwrap());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (acknowledged, writer) = write_under_load(ns.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    pg.restart();
    let restarted = Instant::now();
    // The front end's pool finds the database back by itself.
    resumed_and_nothing_lost(&ns, &stop, &acknowledged, writer, restarted).await;
}

/// PostgreSQL with a synchronous streaming replica; the primary crashes
/// under load and the replica is promoted. Nodes and front end, given
/// both hosts with `target_session_attrs=read-write`, carry on against the
/// new primary by themselves, and nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_standby_promoted_under_load_loses_nothing_acknowledged() {
    let primary = cell::Postgres::start();
    cell::init(store(), &primary.url());
    let standby = primary.start_standby();
    let url = format!(
        "postgres://pouch@127.0.0.1:{},127.0.0.1:{}/postgres?connect_timeout=5&target_session_attrs=read-write",
        primary.port, standby.port
    );
    let dir = tempfile::tempdir().unwrap();
    let _nodes = start_nodes(&url, dir.path(), 3, &[]);
    let front = Cell::connect(&url, cell::TOKEN.into(), CellOptions::default())
        .await
        .unwrap();
    wait_for_nodes(&front, 3).await;
    let ns = Arc::new(front.namespace("default").await.unwrap());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (acknowledged, writer) = write_under_load(ns.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    primary.crash();
    standby.promote();
    let promoted = Instant::now();
    resumed_and_nothing_lost(&ns, &stop, &acknowledged, writer, promoted).await;
    assert_eq!(standby.psql("SELECT pg_is_in_recovery()"), "f");
}
