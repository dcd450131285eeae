//! The engine's reports as the protocol's messages. The protocol owns its
//! types, so an engine struct can change without changing the wire format;
//! this is the one place that maps one onto the other.

use pouch_protocol as wire;

use crate::dual::{DualCounts, Role};
use crate::migrate::{CopyPhase, CopyProgress};
use crate::progress::Phase;
use crate::report::{Action, SyncReport};

/// A sync's report, for `synced` events and the status.
pub(super) fn report(report: &SyncReport) -> wire::SyncReport {
    wire::SyncReport {
        entries_pulled: report.entries_pulled,
        downloaded: report.downloaded,
        deleted_local: report.deleted_local,
        renamed_local: report.renamed_local,
        conflicts: report.conflicts,
        uploaded: report.uploaded,
        deleted_remote: report.deleted_remote,
        blocks_uploaded: report.blocks_uploaded,
        bytes_uploaded: report.bytes_uploaded,
        blocks_downloaded: report.blocks_downloaded,
        blocks_resent: report.blocks_resent,
        commits: report.commits,
        problems: report.problems.clone(),
        kept_here: report.kept_here.clone(),
        changed: report
            .changed
            .iter()
            .map(|c| wire::Changed {
                path: c.path.clone(),
                action: action(c.action),
            })
            .collect(),
    }
}

fn action(action: Action) -> wire::Action {
    match action {
        Action::Uploaded => wire::Action::Uploaded,
        Action::DeletedRemotely => wire::Action::DeletedRemotely,
        Action::Downloaded => wire::Action::Downloaded,
        Action::DeletedHere => wire::Action::DeletedHere,
        Action::Renamed => wire::Action::Renamed,
        Action::Conflict => wire::Action::Conflict,
    }
}

/// A sync phase as a transfer's direction (a migration's phases never
/// reach the daemon's engine; they count as uploads if they did).
pub(super) fn transfer_phase(phase: Phase) -> wire::TransferPhase {
    match phase {
        Phase::Downloading => wire::TransferPhase::Downloading,
        // The daemon runs no collection; its phases would show as sending.
        Phase::Uploading | Phase::Copying | Phase::Verifying | Phase::Listing | Phase::Sweeping => {
            wire::TransferPhase::Uploading
        }
    }
}

/// A store pair's counters.
pub(super) fn counts(counts: &DualCounts) -> wire::MigrationCounts {
    wire::MigrationCounts {
        mode: match counts.mode {
            Role::Migrating => wire::StoreMode::Migrating,
            Role::FallingBack => wire::StoreMode::FallingBack,
        },
        other: counts.other.clone(),
        secondary_write_failures: counts.secondary_write_failures,
        journal_entries_mirrored: counts.journal_entries_mirrored,
        shadow_reads: counts.shadow_reads,
        shadow_missing: counts.shadow_missing,
        shadow_mismatches: counts.shadow_mismatches,
        fallback_reads: counts.fallback_reads,
    }
}

/// A migration copy's recorded progress.
pub(super) fn copy(progress: &CopyProgress) -> wire::CopyProgress {
    wire::CopyProgress {
        phase: match progress.phase {
            CopyPhase::Copying => wire::CopyPhase::Copying,
            CopyPhase::Verifying => wire::CopyPhase::Verifying,
            CopyPhase::Done => wire::CopyPhase::Done,
        },
        blocks: progress.blocks,
        done_bytes: progress.done_bytes,
        total_bytes: progress.total_bytes,
        started: progress.started,
        updated: progress.updated,
    }
}
