//! A copy's progress, recorded in the local state for `pouch status` and
//! the daemon (and so the tray) to show while `pouch migrate` runs in
//! another process.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::Result;
use crate::clock::unix_secs;
use crate::progress::{Phase, Progress};
use crate::state::LocalState;

/// The steps of a copy, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CopyPhase {
    /// Sending blocks and journal entries.
    Copying,
    /// Reading everything back from the target.
    Verifying,
    /// The last copy or check finished.
    Done,
}

impl std::fmt::Display for CopyPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CopyPhase::Copying => "copying",
            CopyPhase::Verifying => "verifying",
            CopyPhase::Done => "done",
        })
    }
}

impl CopyPhase {
    fn of(phase: Phase) -> Self {
        match phase {
            Phase::Verifying => CopyPhase::Verifying,
            Phase::Copying
            | Phase::Uploading
            | Phase::Downloading
            | Phase::Listing
            | Phase::Sweeping => CopyPhase::Copying,
        }
    }
}

/// The meta key under which `pouch migrate` records its progress.
const PROGRESS_META: &str = "migration_progress";

/// How far a copy has come, as recorded in the local state for `pouch
/// status` and the daemon (and so the tray) to show.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CopyProgress {
    /// The step under way.
    pub phase: CopyPhase,
    /// Blocks in this phase.
    pub blocks: u64,
    /// Bytes handled so far.
    pub done_bytes: u64,
    /// Bytes this phase handles.
    pub total_bytes: u64,
    /// Unix time of the phase's start.
    pub started: i64,
    /// Unix time of this record.
    pub updated: i64,
}

/// The progress `pouch migrate` last recorded, if any.
pub fn recorded_progress(db: &LocalState) -> Option<CopyProgress> {
    db.meta(PROGRESS_META)
        .ok()
        .flatten()
        .and_then(|text| serde_json::from_str(&text).ok())
}

/// Forgets the recorded progress (the migration ended).
pub fn clear_progress(db: &LocalState) -> Result<()> {
    db.delete_meta(PROGRESS_META)
}

/// Passes progress on to `inner` and records it in the local state, at
/// most twice a second.
pub struct RecordedProgress<'a> {
    inner: &'a dyn Progress,
    db: &'a LocalState,
    state: Mutex<(Option<CopyProgress>, Instant)>,
}

impl<'a> RecordedProgress<'a> {
    /// Records into `db`, passing everything on to `inner`.
    pub fn new(inner: &'a dyn Progress, db: &'a LocalState) -> Self {
        Self {
            inner,
            db,
            state: Mutex::new((None, Instant::now())),
        }
    }

    /// Records that the phase under way finished.
    pub fn done(&self) {
        let mut state = self.state.lock().expect("progress lock");
        if let Some(progress) = &mut state.0 {
            progress.phase = CopyPhase::Done;
            progress.done_bytes = progress.total_bytes;
            self.write(progress);
        }
    }

    fn write(&self, progress: &mut CopyProgress) {
        progress.updated = unix_secs();
        let text = serde_json::to_string(progress).expect("progress serialises");
        if let Err(e) = self.db.set_meta(PROGRESS_META, &text) {
            tracing::warn!("cannot record the migration's progress: {e}");
        }
    }
}

impl Progress for RecordedProgress<'_> {
    fn phase(&self, phase: Phase, items: u64, total_bytes: u64) {
        self.inner.phase(phase, items, total_bytes);
        let mut state = self.state.lock().expect("progress lock");
        let mut progress = CopyProgress {
            phase: CopyPhase::of(phase),
            blocks: items,
            done_bytes: 0,
            total_bytes,
            started: unix_secs(),
            updated: 0,
        };
        self.write(&mut progress);
        *state = (Some(progress), Instant::now());
    }

    fn advance(&self, bytes: u64) {
        self.inner.advance(bytes);
        let mut state = self.state.lock().expect("progress lock");
        let (progress, written) = &mut *state;
        if let Some(progress) = progress {
            progress.done_bytes += bytes;
            if written.elapsed() >= Duration::from_millis(500) {
                self.write(progress);
                *written = Instant::now();
            }
        }
    }
}
