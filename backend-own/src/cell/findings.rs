//! What this process's repair and verification passes found and did,
//! counted since it started, for `/metrics` (each front end counts the
//! passes it ran; the lease gives each pass to one of them).

use std::sync::atomic::{AtomicU64, Ordering};

use super::{CompactReport, RepairReport, VerifyReport};

/// Counters of the passes' findings.
#[derive(Debug, Default)]
pub struct Findings {
    repair_passes: AtomicU64,
    replicas_rebuilt: AtomicU64,
    blocks_copied: AtomicU64,
    volumes_lost: AtomicU64,
    blocks_unreadable: AtomicU64,
    shards_rebuilt: AtomicU64,
    damage_mended: AtomicU64,
    volumes_coded: AtomicU64,
    volumes_compacted: AtomicU64,
    compaction_bytes_moved: AtomicU64,
    verify_passes: AtomicU64,
    copies_checked: AtomicU64,
    copies_repaired: AtomicU64,
    copies_unrepairable: AtomicU64,
    journal_blocks_missing: AtomicU64,
}

impl Findings {
    pub(super) fn repaired(&self, report: &RepairReport) {
        for (counter, value) in [
            (&self.repair_passes, 1),
            (&self.replicas_rebuilt, report.replicas_rebuilt),
            (&self.blocks_copied, report.blocks_copied),
            (&self.volumes_lost, report.volumes_lost),
            (&self.blocks_unreadable, report.blocks_unreadable),
            (&self.shards_rebuilt, report.shards_rebuilt),
            (&self.damage_mended, report.damage_mended),
            (&self.volumes_coded, report.volumes_coded),
        ] {
            counter.fetch_add(value, Ordering::Relaxed);
        }
    }

    pub(super) fn compacted(&self, report: &CompactReport) {
        self.volumes_compacted
            .fetch_add(report.volumes_compacted, Ordering::Relaxed);
        self.compaction_bytes_moved
            .fetch_add(report.bytes_moved, Ordering::Relaxed);
    }

    pub(super) fn verified(&self, report: &VerifyReport) {
        for (counter, value) in [
            (&self.verify_passes, 1),
            (&self.copies_checked, report.copies_checked),
            (&self.copies_repaired, report.copies_repaired),
            (&self.copies_unrepairable, report.copies_unrepairable),
            (&self.journal_blocks_missing, report.journal_blocks_missing),
        ] {
            counter.fetch_add(value, Ordering::Relaxed);
        }
    }

    /// Every counter: its metric name (after `pouch_store_cell_`), help
    /// text and value.
    pub fn counters(&self) -> Vec<(&'static str, &'static str, u64)> {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            (
                "repair_passes_total",
                "Repair passes run here.",
                load(&self.repair_passes),
            ),
            (
                "replicas_rebuilt_total",
                "Volume copies made again on a live node by repair.",
                load(&self.replicas_rebuilt),
            ),
            (
                "repair_blocks_copied_total",
                "Blocks copied by repair.",
                load(&self.blocks_copied),
            ),
            (
                "volumes_lost_total",
                "Volumes repair found with no live copy (counted each pass).",
                load(&self.volumes_lost),
            ),
            (
                "repair_blocks_unreadable_total",
                "Blocks no live copy gave back intact to repair.",
                load(&self.blocks_unreadable),
            ),
            (
                "shards_rebuilt_total",
                "Shards of coded volumes rebuilt on a live node by repair.",
                load(&self.shards_rebuilt),
            ),
            (
                "damage_mended_total",
                "Ranges nodes' scrubbers found damaged, written again by repair.",
                load(&self.damage_mended),
            ),
            (
                "volumes_coded_total",
                "Sealed volumes erasure-coded into shards, their replicas dropped.",
                load(&self.volumes_coded),
            ),
            (
                "volumes_compacted_total",
                "Volumes whose live blocks compaction moved before dropping them.",
                load(&self.volumes_compacted),
            ),
            (
                "compaction_bytes_moved_total",
                "Bytes of live blocks compaction wrote anew.",
                load(&self.compaction_bytes_moved),
            ),
            (
                "verify_passes_total",
                "Verification passes run here.",
                load(&self.verify_passes),
            ),
            (
                "copies_checked_total",
                "Block copies read and checked by the verifier.",
                load(&self.copies_checked),
            ),
            (
                "copies_repaired_total",
                "Missing or damaged copies the verifier wrote again.",
                load(&self.copies_repaired),
            ),
            (
                "copies_unrepairable_total",
                "Missing or damaged copies with no intact one to take from.",
                load(&self.copies_unrepairable),
            ),
            (
                "journal_blocks_missing_total",
                "Blocks a journal names that the index lacks (counted each pass).",
                load(&self.journal_blocks_missing),
            ),
        ]
    }
}
