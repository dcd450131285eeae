//! `pouch gc` and `pouch retention`: collecting the blocks retention let
//! go, and the policy that decides it. A collection ends by giving the
//! space back: the embedded store compacts, a pouch-store server compacts
//! by itself, S3 deletes and rewrites packs.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use indicatif::HumanBytes;
use pouch_core::gc::{GcOptions, collect};
use pouch_core::retention::Retention;

use crate::cli::RetentionAction;
use crate::session::Session;

pub(super) async fn gc(
    config_path: &Path,
    dry_run: bool,
    json: bool,
    grace: Option<Duration>,
) -> anyhow::Result<ExitCode> {
    let Session {
        config,
        mut engine,
        backend,
        ..
    } = Session::open(config_path)?;
    // Checks that this is the folder's store, and learns its policy.
    engine.pull_only().await?;
    let mut options = GcOptions::new(format!("{}, pid {}", config.device, std::process::id()));
    options.dry_run = dry_run;
    options.lease_note = Some(config.state.with_extension("gc-lease"));
    if let Some(grace) = grace {
        options.grace = grace;
    }
    let progress = crate::progress::for_stderr();
    let report = collect(
        backend.as_ref(),
        &options,
        &pouch_core::CollectorProgress::new(progress.as_ref()),
    )
    .await?;
    drop(progress);

    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    say!(
        "retention: {}; {} versions past it",
        report.retention,
        report.versions_expired
    );
    say!(
        "store: {} blocks ({}), {} named by kept versions, {} unreferenced ({})",
        report.blocks_stored,
        HumanBytes(report.bytes_stored),
        report.blocks_live,
        report.blocks_unreferenced,
        HumanBytes(report.bytes_unreferenced)
    );
    let verb = if dry_run { "would delete" } else { "deleted" };
    say!(
        "{verb} {} blocks ({}); {} wait out the grace period ({})",
        report.blocks_deleted,
        HumanBytes(report.bytes_deleted),
        report.blocks_waiting,
        humantime::format_duration(options.grace)
    );
    if report.packs_deleted > 0 {
        say!(
            "gave back {}: {} of the store's files deleted ({} rewritten first)",
            HumanBytes(report.bytes_reclaimed),
            report.packs_deleted,
            report.packs_rewritten
        );
    }
    if let Some(seq) = report.snapshot_seq {
        let trimmed = report
            .journal_trimmed_through
            .map_or_else(String::new, |t| format!("; entries up to {t} dropped"));
        say!(
            "journal: snapshot at entry {seq} ({}){trimmed}",
            HumanBytes(report.snapshot_bytes)
        );
    }
    if let Some(why) = &report.skipped {
        say!("{why}");
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn retention(
    config_path: &Path,
    action: Option<RetentionAction>,
) -> anyhow::Result<ExitCode> {
    let Session { mut engine, .. } = Session::open(config_path)?;
    match action.unwrap_or(RetentionAction::Show) {
        RetentionAction::Show => {
            engine.pull_only().await?;
            say!("{}", engine.retention()?.describe());
        }
        RetentionAction::Set { period, keep_last } => {
            let policy = Retention {
                keep_secs: period.as_secs(),
                keep_last,
            };
            engine.set_retention(policy).await?;
            say!(
                "every device of this folder now keeps {}",
                policy.describe()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
