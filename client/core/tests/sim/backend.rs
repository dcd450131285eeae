//! The simulated store: one shared in-memory namespace, seen by each device
//! through its own handle, which can fail calls (before or after they take
//! effect), crash (every call after a chosen one fails, as when the process
//! dies), and read the journal late so that appends lose races.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pouch_backend::{Backend, Block, BlockId, Error, JournalEntry, Result, Seq, Snapshot, StoreId};

use super::rng::Rng;

/// The namespace's contents.
#[derive(Debug, Default)]
pub struct Namespace {
    pub blocks: HashMap<BlockId, Bytes>,
    pub journal: Vec<Bytes>,
    pub snapshot: Option<Snapshot>,
    pub identity: Option<StoreId>,
}

/// What goes wrong during one sync of one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Faults {
    pub seed: u64,
    /// Share of calls that fail, per mille.
    pub fail_per_mille: u64,
    /// Journal reads may miss the newest entries.
    pub lagging_reads: bool,
    /// The process dies at this call (1-based): it and every later call fail.
    pub crash_at_call: Option<u32>,
}

impl Faults {
    pub const NONE: Faults = Faults {
        seed: 0,
        fail_per_mille: 0,
        lagging_reads: false,
        crash_at_call: None,
    };
}

struct Armed {
    faults: Faults,
    rng: Rng,
    calls: u32,
    crashed: bool,
}

/// One device's handle on the shared namespace.
pub struct SimBackend {
    shared: Arc<Mutex<Namespace>>,
    armed: Mutex<Armed>,
}

/// Whether a call's effect happens, and whether it then reports failure.
enum Fate {
    Ok,
    FailBefore,
    FailAfter,
}

fn injected(what: &'static str) -> Error {
    Error::Unavailable {
        source: what.into(),
    }
}

impl SimBackend {
    pub fn new(shared: Arc<Mutex<Namespace>>) -> Self {
        Self {
            shared,
            armed: Mutex::new(Armed {
                faults: Faults::NONE,
                rng: Rng::new(0),
                calls: 0,
                crashed: false,
            }),
        }
    }

    /// Sets the faults of the next sync.
    pub fn arm(&self, faults: Faults) {
        *self.armed.lock().unwrap() = Armed {
            faults,
            rng: Rng::new(faults.seed),
            calls: 0,
            crashed: false,
        };
    }

    /// Whether the process "died" during the sync.
    pub fn crashed(&self) -> bool {
        self.armed.lock().unwrap().crashed
    }

    fn fate(&self) -> Fate {
        let mut armed = self.armed.lock().unwrap();
        if armed.crashed {
            return Fate::FailBefore;
        }
        armed.calls += 1;
        let after = armed.rng.chance(500);
        if armed.faults.crash_at_call == Some(armed.calls) {
            armed.crashed = true;
            return if after {
                Fate::FailAfter
            } else {
                Fate::FailBefore
            };
        }
        let fail_per_mille = armed.faults.fail_per_mille;
        if armed.rng.chance(fail_per_mille) {
            return if after {
                Fate::FailAfter
            } else {
                Fate::FailBefore
            };
        }
        Fate::Ok
    }

    /// How many of the newest entries a read misses.
    fn lag(&self) -> usize {
        let mut armed = self.armed.lock().unwrap();
        if armed.faults.lagging_reads && armed.rng.chance(400) {
            1 + armed.rng.below(2) as usize
        } else {
            0
        }
    }

    /// Runs `effect` under this call's fate.
    fn call<T>(
        &self,
        what: &'static str,
        effect: impl FnOnce(&mut Namespace) -> Result<T>,
    ) -> Result<T> {
        match self.fate() {
            Fate::FailBefore => Err(injected(what)),
            Fate::Ok => effect(&mut self.shared.lock().unwrap()),
            Fate::FailAfter => {
                let _ = effect(&mut self.shared.lock().unwrap());
                Err(injected(what))
            }
        }
    }
}

#[async_trait]
impl Backend for SimBackend {
    fn describe(&self) -> String {
        "simulated store".into()
    }

    async fn put_blocks(&self, blocks: Vec<Block>) -> Result<()> {
        let mut raw = Vec::with_capacity(blocks.len());
        for block in &blocks {
            raw.push((block.id(), block.decode()?));
        }
        self.call("put_blocks", |ns| {
            ns.blocks.extend(raw);
            Ok(())
        })
    }

    async fn get_block(&self, id: BlockId) -> Result<Bytes> {
        self.call("get_block", |ns| {
            ns.blocks.get(&id).cloned().ok_or(Error::BlockNotFound(id))
        })
    }

    async fn has_blocks(&self, ids: &[BlockId]) -> Result<Vec<bool>> {
        self.call("has_blocks", |ns| {
            Ok(ids.iter().map(|id| ns.blocks.contains_key(id)).collect())
        })
    }

    async fn delete_blocks(&self, ids: &[BlockId]) -> Result<()> {
        self.call("delete_blocks", |ns| {
            for id in ids {
                ns.blocks.remove(id);
            }
            Ok(())
        })
    }

    async fn append(&self, seq: Seq, data: Bytes) -> Result<()> {
        self.call("append", |ns| {
            let head = ns.journal.len() as u64;
            match seq.0 {
                0 => Err(Error::InvalidInput("entry 0")),
                s if s <= head => Err(Error::SlotTaken(seq)),
                s if s == head + 1 => {
                    ns.journal.push(data);
                    Ok(())
                }
                _ => Err(Error::Gap {
                    seq,
                    head: Seq(head),
                }),
            }
        })
    }

    async fn read_journal(&self, after: Seq, limit: usize) -> Result<Vec<JournalEntry>> {
        let lag = self.lag();
        self.call("read_journal", |ns| {
            let visible = ns.journal.len().saturating_sub(lag);
            Ok((after.0 as usize..visible)
                .take(limit)
                .map(|i| JournalEntry {
                    seq: Seq(i as u64 + 1),
                    data: ns.journal[i].clone(),
                })
                .collect())
        })
    }

    async fn wait_journal(&self, after: Seq, _timeout: Duration) -> Result<Seq> {
        self.call("wait_journal", |ns| {
            Ok(Seq((ns.journal.len() as u64).max(after.0)))
        })
    }

    async fn put_snapshot(&self, snapshot: Snapshot) -> Result<()> {
        self.call("put_snapshot", |ns| {
            ns.snapshot = Some(snapshot);
            Ok(())
        })
    }

    async fn get_snapshot(&self) -> Result<Option<Snapshot>> {
        self.call("get_snapshot", |ns| Ok(ns.snapshot.clone()))
    }
    // Outside the fault schedule: the identity is made once, by `init`, and
    // the runs' fault points stay where they were before it existed.
    async fn identity(&self) -> Result<Option<StoreId>> {
        Ok(self.shared.lock().unwrap().identity)
    }
    async fn init_identity(&self, proposed: StoreId) -> Result<StoreId> {
        Ok(*self.shared.lock().unwrap().identity.get_or_insert(proposed))
    }
}
