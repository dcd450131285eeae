//! The simulated store: one shared in-memory namespace, seen by each device
//! through its own handle, which can fail calls (before or after they take
//! effect), crash (every call after a chosen one fails, as when the process
//! dies), and read the journal late so that appends lose races.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pouch_backend::{
    Backend, Block, BlockId, Error, GcLease, JournalEntry, LeaseRequest, Result, Seq, Snapshot,
    StoreId, StoredBlock, SweepReport,
};

use super::rng::Rng;

/// Where the simulated store's clock starts (ms since the epoch): the
/// devices' fixed clock.
pub const EPOCH_MS: i64 = 1_790_000_000_000;

/// The namespace's contents.
#[derive(Debug)]
pub struct Namespace {
    pub blocks: HashMap<BlockId, Bytes>,
    /// Every entry ever appended (the oracle keeps the trimmed ones).
    pub journal: Vec<Bytes>,
    /// Entries up to here were trimmed: reads from before fail.
    pub trimmed: u64,
    pub snapshot: Option<Snapshot>,
    pub identity: Option<StoreId>,
    /// The collector's marks: block, store time made.
    pub marks: HashMap<BlockId, i64>,
    /// The collector's lease: holder, generation, expiry.
    pub lease: Option<(String, u64, i64)>,
    /// The store's clock (ms), moved only by the run's steps.
    pub now_ms: i64,
}

impl Default for Namespace {
    fn default() -> Self {
        Self {
            blocks: HashMap::new(),
            journal: Vec::new(),
            trimmed: 0,
            snapshot: None,
            identity: None,
            marks: HashMap::new(),
            lease: None,
            now_ms: EPOCH_MS,
        }
    }
}

impl Namespace {
    fn check_lease(&self, generation: u64) -> Result<()> {
        match &self.lease {
            Some((_, held, expires)) if *held == generation && *expires > self.now_ms => Ok(()),
            _ => Err(Error::Fenced(format!(
                "generation {generation} is not the lease"
            ))),
        }
    }
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
    /// A whole garbage collection (default grace) runs just before this
    /// call (1-based), between a device's uploads and its commit.
    pub collect_at_call: Option<u32>,
}

impl Faults {
    pub const NONE: Faults = Faults {
        seed: 0,
        fail_per_mille: 0,
        lagging_reads: false,
        crash_at_call: None,
        collect_at_call: None,
    };
}

struct Armed {
    faults: Faults,
    rng: Rng,
    calls: u32,
    crashed: bool,
}

/// One device's (or the collector's) handle on the shared namespace.
pub struct SimBackend {
    shared: Arc<Mutex<Namespace>>,
    armed: Mutex<Armed>,
    /// The last journal entry this handle returned from a read.
    pub read_up_to: std::sync::atomic::AtomicU64,
    /// The collections run in the middle of this handle's calls.
    pub collections: Mutex<Vec<Collection>>,
}

/// One collection, for the invariants: what it read and when it ran.
#[derive(Debug, Clone, Copy)]
pub struct Collection {
    /// The last journal entry the collector read.
    pub read_up_to: u64,
    /// The time retention was measured at (seconds).
    pub now: i64,
}

/// Runs one whole collection on a handle of its own (faults `faults`) and
/// returns what it read, whether it finished or not.
pub async fn collect(
    shared: &Arc<Mutex<Namespace>>,
    grace: Duration,
    faults: Faults,
) -> (
    Collection,
    std::result::Result<pouch_core::gc::GcReport, String>,
) {
    let handle = SimBackend::new(shared.clone());
    handle.arm(faults);
    let now = shared.lock().unwrap().now_ms / 1000;
    let mut options = pouch_core::gc::GcOptions::new("sim collector".into());
    options.grace = grace;
    options.now = now;
    let outcome = pouch_core::gc::collect(&handle, &options, &pouch_core::gc::Quiet)
        .await
        .map_err(|e| e.to_string());
    let read_up_to = handle.read_up_to.load(std::sync::atomic::Ordering::SeqCst);
    (Collection { read_up_to, now }, outcome)
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
            read_up_to: 0.into(),
            collections: Mutex::new(Vec::new()),
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

    /// Runs the collection armed for this call, if it is due: just before
    /// the call counted next.
    async fn collect_if_due(&self) {
        let due = {
            let armed = self.armed.lock().unwrap();
            !armed.crashed && armed.faults.collect_at_call == Some(armed.calls + 1)
        };
        if due {
            let (done, _) =
                collect(&self.shared, pouch_backend::gc::DEFAULT_GRACE, Faults::NONE).await;
            self.collections.lock().unwrap().push(done);
        }
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
        self.collect_if_due().await;
        self.call("put_blocks", |ns| {
            for (id, bytes) in raw {
                // A put revives a marked block; a new copy has no mark.
                ns.marks.remove(&id);
                ns.blocks.insert(id, bytes);
            }
            Ok(())
        })
    }

    async fn get_block(&self, id: BlockId) -> Result<Bytes> {
        self.call("get_block", |ns| {
            ns.blocks.get(&id).cloned().ok_or(Error::BlockNotFound(id))
        })
    }

    async fn has_blocks(&self, ids: &[BlockId]) -> Result<Vec<bool>> {
        self.collect_if_due().await;
        self.call("has_blocks", |ns| {
            for id in ids {
                ns.marks.remove(id);
            }
            Ok(ids.iter().map(|id| ns.blocks.contains_key(id)).collect())
        })
    }

    async fn delete_blocks(&self, ids: &[BlockId]) -> Result<()> {
        self.call("delete_blocks", |ns| {
            for id in ids {
                ns.blocks.remove(id);
                ns.marks.remove(id);
            }
            Ok(())
        })
    }

    async fn gc_lease(&self, request: LeaseRequest) -> Result<GcLease> {
        self.call("gc_lease", |ns| {
            let now = ns.now_ms;
            let generation = match (request.generation, &ns.lease) {
                (None, Some((holder, _, expires))) if *expires > now => {
                    return Err(Error::Fenced(format!("{holder} holds the lease")));
                }
                (None, lease) => lease.as_ref().map_or(1, |(_, g, _)| g + 1),
                (Some(generation), _) => {
                    ns.check_lease(generation)?;
                    generation
                }
            };
            let ttl = request.ttl.as_millis() as i64;
            let expires = if ttl == 0 { 0 } else { now + ttl };
            ns.lease = Some((request.holder.clone(), generation, expires));
            Ok(GcLease {
                generation,
                expires_ms: expires,
                now_ms: now,
            })
        })
    }

    async fn gc_list(&self, after: Option<BlockId>, limit: usize) -> Result<Vec<StoredBlock>> {
        self.call("gc_list", |ns| {
            let mut ids: Vec<BlockId> = ns
                .blocks
                .keys()
                .filter(|id| after.is_none_or(|a| **id > a))
                .copied()
                .collect();
            ids.sort_unstable();
            Ok(ids
                .into_iter()
                .take(limit)
                .map(|id| StoredBlock {
                    id,
                    stored_len: ns.blocks[&id].len() as u64,
                    marked_ms: ns.marks.get(&id).copied(),
                })
                .collect())
        })
    }

    async fn gc_mark(&self, generation: u64, mark: &[BlockId], unmark: &[BlockId]) -> Result<()> {
        self.call("gc_mark", |ns| {
            ns.check_lease(generation)?;
            let now = ns.now_ms;
            for id in mark {
                if ns.blocks.contains_key(id) {
                    ns.marks.entry(*id).or_insert(now);
                }
            }
            for id in unmark {
                ns.marks.remove(id);
            }
            Ok(())
        })
    }

    async fn gc_sweep(
        &self,
        generation: u64,
        ids: &[BlockId],
        marked_by_ms: i64,
    ) -> Result<SweepReport> {
        self.call("gc_sweep", |ns| {
            ns.check_lease(generation)?;
            let mut report = SweepReport::default();
            for id in ids {
                if ns.marks.get(id).is_some_and(|at| *at <= marked_by_ms)
                    && let Some(bytes) = ns.blocks.remove(id)
                {
                    ns.marks.remove(id);
                    report.blocks += 1;
                    report.bytes += bytes.len() as u64;
                }
            }
            Ok(report)
        })
    }

    async fn append(&self, seq: Seq, data: Bytes) -> Result<()> {
        self.collect_if_due().await;
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
        let entries: Vec<JournalEntry> = self.call("read_journal", |ns| {
            if after.0 < ns.trimmed {
                return Err(Error::Trimmed {
                    through: Seq(ns.trimmed),
                });
            }
            let visible = ns.journal.len().saturating_sub(lag);
            Ok((after.0 as usize..visible)
                .take(limit)
                .map(|i| JournalEntry {
                    seq: Seq(i as u64 + 1),
                    data: ns.journal[i].clone(),
                })
                .collect())
        })?;
        if let Some(last) = entries.last() {
            self.read_up_to
                .fetch_max(last.seq.0, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(entries)
    }

    async fn wait_journal(&self, after: Seq, _timeout: Duration) -> Result<Seq> {
        self.call("wait_journal", |ns| {
            Ok(Seq((ns.journal.len() as u64).max(after.0)))
        })
    }

    async fn put_snapshot(&self, snapshot: Snapshot) -> Result<()> {
        self.call("put_snapshot", |ns| {
            if snapshot.seq.0 < ns.trimmed {
                return Err(Error::InvalidInput("a snapshot older than the trim"));
            }
            ns.snapshot = Some(snapshot);
            Ok(())
        })
    }

    async fn trim_journal(&self, through: Seq) -> Result<()> {
        self.call("trim_journal", |ns| {
            if ns.snapshot.as_ref().is_none_or(|s| s.seq < through) {
                return Err(Error::InvalidInput("no snapshot folds the entries"));
            }
            // A copy that starts from a snapshot: the entries it never
            // had are numbered, and empty (no oracle reads them).
            while (ns.journal.len() as u64) < through.0 {
                ns.journal.push(Bytes::new());
            }
            ns.trimmed = ns.trimmed.max(through.0);
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
