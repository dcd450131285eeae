//! Two processes share one store folder: concurrent block writes and racing
//! journal appends, with no corruption, one winner per slot, and each
//! seeing the other's work.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use pouch_backend::conformance::noise;
use pouch_backend::{Block, BlockId, Error, Seq};
use pouch_backend_own::storage::{Store, StoreOptions};

mod child;

const SLOTS: u64 = 120;
const BLOCKS_PER_COMMIT: u64 = 5;

fn writer_block(writer: u64, n: u64) -> Block {
    Block::encode(noise((writer << 32) | n, 2000 + (n as usize % 7) * 3000))
}

/// Child role: until the journal has `SLOTS` entries, put a few blocks and
/// race to append an entry naming them; report each slot won; then check
/// that every entry's blocks, whoever wrote them, read back.
#[test]
fn child_racer() {
    child::run("racer", |dir| {
        let me: u64 = std::env::var("WRITER").unwrap().parse().unwrap();
        // Small volumes so both writers also race through volume rolls.
        let store = Store::open(
            dir,
            StoreOptions {
                volume_size: 1 << 20,
            },
        )
        .unwrap();
        let go = dir.join("go");
        while !go.exists() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut n = 0;
        loop {
            let blocks: Vec<Block> = (0..BLOCKS_PER_COMMIT)
                .map(|_| {
                    n += 1;
                    writer_block(me, n)
                })
                .collect();
            let ids: Vec<String> = blocks.iter().map(|b| b.id().to_string()).collect();
            store.put_blocks(blocks).unwrap();
            let head = store.journal_head().unwrap();
            if head.0 >= SLOTS {
                break;
            }
            let entry = format!("{me} {}", ids.join(" "));
            match store.append(head.next(), entry.as_bytes()) {
                Ok(()) => child::say(format!("won {}", head.next())),
                Err(Error::SlotTaken(_)) => {}
                Err(other) => panic!("append failed: {other}"),
            }
        }
        check_journal(&store);
        child::say("done");
    });
}

/// Every entry names blocks that exist and verify.
fn check_journal(store: &Store) -> BTreeMap<u64, u64> {
    let entries = store.read_journal(Seq::ZERO, 10_000).unwrap();
    assert_eq!(entries.len() as u64, SLOTS);
    let mut writer_of = BTreeMap::new();
    for entry in entries {
        let text = String::from_utf8(entry.data.to_vec()).unwrap();
        let mut words = text.split(' ');
        let writer: u64 = words.next().unwrap().parse().unwrap();
        for id in words {
            let id: BlockId = id.parse().unwrap();
            store
                .get_block(id)
                .unwrap_or_else(|e| panic!("entry {}: {e}", entry.seq));
        }
        writer_of.insert(entry.seq.0, writer);
    }
    writer_of
}

fn wait_all(children: &mut [std::process::Child]) {
    let deadline = Instant::now() + Duration::from_secs(300);
    for child in children {
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "a child failed: {status}");
                break;
            }
            assert!(Instant::now() < deadline, "children hung");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn run_race(dir: &Path) {
    let mut children: Vec<_> = (1..=2u64)
        .map(|w| child::spawn("racer", dir, &[("WRITER", w.to_string())]))
        .collect();
    // Both are up and have opened the store before the race starts.
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(dir.join("go"), b"").unwrap();
    let said: Vec<Vec<String>> = children
        .iter_mut()
        .map(|c| {
            let mut said = child::Said::of(c);
            let mut lines = Vec::new();
            for line in said.by_ref() {
                let done = line == "done";
                lines.push(line);
                if done {
                    break;
                }
            }
            lines
        })
        .collect();
    wait_all(&mut children);

    let mut won: Vec<BTreeSet<u64>> = Vec::new();
    for lines in &said {
        assert_eq!(lines.last().map(String::as_str), Some("done"), "{lines:?}");
        won.push(
            lines
                .iter()
                .filter_map(|l| l.strip_prefix("won "))
                .map(|s| s.parse().unwrap())
                .collect(),
        );
    }
    assert!(won[0].is_disjoint(&won[1]), "a slot had two winners");
    let all: BTreeSet<u64> = won[0].union(&won[1]).copied().collect();
    assert_eq!(
        all,
        (1..=SLOTS).collect(),
        "every slot has exactly one winner"
    );
    assert!(
        !won[0].is_empty() && !won[1].is_empty(),
        "both writers should win some slots: {:?} / {:?}",
        won[0].len(),
        won[1].len()
    );

    let store = Store::open(dir, StoreOptions::default()).unwrap();
    let writer_of = check_journal(&store);
    for (w, slots) in won.iter().enumerate() {
        for slot in slots {
            assert_eq!(
                writer_of[slot],
                w as u64 + 1,
                "slot {slot} holds the other writer's entry"
            );
        }
    }
    let report = store.verify().unwrap();
    assert!(report.corrupt.is_empty(), "{:?}", report.corrupt);
    assert!(report.checked >= SLOTS * BLOCKS_PER_COMMIT);
}

#[test]
fn two_processes_race_on_one_store() {
    let dir = tempfile::tempdir().unwrap();
    run_race(dir.path());
}
