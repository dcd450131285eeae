//! What a simulated run does: its steps, generated from a seed.

use super::backend::Faults;
use super::rng::Rng;

/// One thing that happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A user's change on a device's folder.
    Op { device: usize, op: LocalOp },
    /// One `sync_once` of a device under `faults`.
    Sync { device: usize, faults: Faults },
    /// The device's process restarts (engine reopened from its journal).
    Restart { device: usize },
    /// Time moves on by `advance_secs` (the store's clock and the time
    /// retention is measured at), then a garbage collection runs with
    /// `grace_secs` of grace under `faults` (a crash kills the collector).
    Collect {
        advance_secs: u64,
        grace_secs: u64,
        faults: Faults,
    },
    /// A device sets the namespace's retention policy.
    SetRetention {
        device: usize,
        keep_secs: u64,
        keep_last: u32,
    },
}

/// Changes a user makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalOp {
    /// Create or overwrite a file.
    Write {
        path: String,
        seed: u64,
        len: usize,
    },
    Append {
        path: String,
        seed: u64,
        len: usize,
    },
    Truncate {
        path: String,
        len: usize,
    },
    /// Rename a file or a folder (onto a free name).
    Rename {
        from: String,
        to: String,
    },
    /// Delete a file or a whole folder.
    Delete {
        path: String,
    },
    Mkdir {
        path: String,
    },
    /// A file becomes a folder, or a folder (and its contents) a file.
    TypeChange {
        path: String,
        seed: u64,
    },
    /// A symbolic link (to a relative name) where nothing is.
    Symlink {
        path: String,
        target: String,
    },
    /// Change a file's permission bits (exec bits and others' read).
    Chmod {
        path: String,
    },
}

const DAY: u64 = 86_400;

const NAMES: [&str; 4] = ["a", "b", "c", "d.txt"];
/// Lengths repeat on purpose: same-size rewrites are where stat-based
/// change detection is weakest.
const LENGTHS: [usize; 6] = [0, 7, 100, 4096, 70_000, 300_000];

fn random_path(rng: &mut Rng) -> String {
    let depth = 1 + rng.below(3) as usize;
    (0..depth)
        .map(|_| *rng.pick(&NAMES))
        .collect::<Vec<_>>()
        .join("/")
}

/// A run's shape from its seed.
pub fn generate(seed: u64) -> (usize, Vec<Step>) {
    let mut rng = Rng::new(seed);
    let devices = 2 + rng.below(3) as usize;
    let count = 8 + rng.below(40) as usize;
    let mut steps = Vec::with_capacity(count);
    for _ in 0..count {
        let device = rng.below(devices as u64) as usize;
        let roll = rng.below(100);
        let step = if roll < 62 {
            let path = random_path(&mut rng);
            let op = match rng.below(12) {
                0..=2 => LocalOp::Write {
                    path,
                    seed: rng.next_u64(),
                    len: *rng.pick(&LENGTHS),
                },
                3 => LocalOp::Append {
                    path,
                    seed: rng.next_u64(),
                    len: *rng.pick(&LENGTHS),
                },
                4 => LocalOp::Truncate {
                    path,
                    len: *rng.pick(&LENGTHS),
                },
                5 | 6 => LocalOp::Rename {
                    from: path,
                    to: random_path(&mut rng),
                },
                7 => LocalOp::Delete { path },
                8 => LocalOp::Mkdir { path },
                9 => LocalOp::Symlink {
                    path,
                    target: (*rng.pick(&NAMES)).to_owned(),
                },
                10 => LocalOp::Chmod { path },
                _ => LocalOp::TypeChange {
                    path,
                    seed: rng.next_u64(),
                },
            };
            Step::Op { device, op }
        } else if roll < 90 {
            let faulty = rng.chance(400);
            Step::Sync {
                device,
                faults: if faulty {
                    Faults {
                        seed: rng.next_u64(),
                        fail_per_mille: *rng.pick(&[0, 50, 200]),
                        lagging_reads: rng.chance(500),
                        crash_at_call: rng.chance(500).then(|| 1 + rng.below(12) as u32),
                        collect_at_call: rng.chance(300).then(|| 1 + rng.below(10) as u32),
                    }
                } else {
                    Faults::NONE
                },
            }
        } else if roll < 95 {
            Step::Collect {
                advance_secs: *rng.pick(&[0, 30, 3600, 2 * DAY, 31 * DAY]),
                grace_secs: *rng.pick(&[0, 0, 3600, DAY]),
                faults: if rng.chance(300) {
                    Faults {
                        seed: rng.next_u64(),
                        fail_per_mille: *rng.pick(&[0, 100]),
                        lagging_reads: false,
                        crash_at_call: Some(1 + rng.below(8) as u32),
                        collect_at_call: None,
                    }
                } else {
                    Faults::NONE
                },
            }
        } else if roll < 97 {
            Step::SetRetention {
                device,
                keep_secs: *rng.pick(&[0, 0, 3600, 30 * DAY]),
                keep_last: *rng.pick(&[0, 0, 2]),
            }
        } else {
            Step::Restart { device }
        };
        steps.push(step);
    }
    (devices, steps)
}
