//! The cell on real processes: PostgreSQL in a temp folder, `pouch-store
//! node` processes, and the front end's backend in this process. It passes
//! the conformance suite; every acknowledged block survives `kill -9` of a
//! node and a damaged copy, and writes go on.

#[path = "common/cell.rs"]
mod cell;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pouch_backend::conformance::{Capabilities, noise, run_all};
use pouch_backend::{Backend, Block, BlockId};
use pouch_backend_own::cell::{Cell, CellOptions};

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
    cell::init(&pg.url());
    let dir = tempfile::tempdir().unwrap();
    let nodes: Vec<cell::Node> = (0..nodes)
        .map(|i| cell::Node::start(&pg.url(), &dir.path().join(format!("node-{i}"))))
        .collect();
    let front = Cell::connect(&pg.url(), cell::TOKEN.into(), CellOptions::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while front.live_nodes().await.unwrap().len() < nodes.len() {
        assert!(Instant::now() < deadline, "the nodes never registered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (pg, dir, nodes, front)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cell_passes_the_conformance_suite() {
    let (_pg, _dir, _nodes, front) = cell(3).await;
    let mut n = 0;
    run_all(
        Capabilities {
            push: true,
            gc: false,
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

/// Every file under `dir`.
fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
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
    let holding: Vec<usize> = (0..nodes.len())
        .filter(|&i| !files(&nodes[i].data.join("volumes")).is_empty())
        .collect();
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
    let one = cell::FrontEnd::start(&pg.url(), &dir.path().join("fe-1"), 30);
    let two = cell::FrontEnd::start(&pg.url(), &dir.path().join("fe-2"), 30);
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
    let holding: Vec<usize> = (0..nodes.len()).filter(|&i| holds(&nodes[i])).collect();
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
