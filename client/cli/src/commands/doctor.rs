//! `pouch doctor`: is the store reachable and safe to sync through, is the
//! local state sound, and (with `--blocks`) can every block be read back?

use std::path::Path;
use std::process::ExitCode;

use pouch_backend::BackendExt;
use pouch_config::Config;
use pouch_core::state::LocalState;

use crate::session::{Session, sync_lock};
use crate::store;

/// How many paths a problem line names.
const PATHS_LISTED: usize = 3;

/// Checks the configured store: reachable, credentials accepted, and (for
/// S3) conditional writes enforced; the local state's integrity; with
/// `blocks`, every block of the current tree. Exit code 1 when a check
/// fails.
pub(super) async fn doctor(config_path: &Path, blocks: bool) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    let backend = store::open_for_sync(&config)?.backend;
    say!("store: {}", backend.describe());
    let mut healthy = true;
    match backend.journal_head().await {
        Ok(head) => say!("  ok    reachable; the journal has {head} entries"),
        Err(e) => {
            healthy = false;
            say!("  FAIL  cannot read the journal: {e}");
        }
    }
    if let Some(s3) = store::s3_backend(&config.backend)? {
        match s3.probe_conditional_writes().await {
            Ok(()) => say!("  ok    conditional writes (If-None-Match) are enforced"),
            Err(e) => {
                healthy = false;
                say!("  FAIL  {e}");
            }
        }
    }
    healthy &= check_state(&config);
    if blocks && healthy {
        healthy &= check_blocks(config_path, &config).await?;
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// SQLite's integrity check of the local state; says how to recover.
fn check_state(config: &Config) -> bool {
    say!("local state: {}", config.state.display());
    let found = LocalState::open(&config.state).and_then(|state| state.integrity_check());
    let problems = match found {
        Ok(problems) if problems.is_empty() => {
            say!("  ok    the database passes SQLite's integrity check");
            return true;
        }
        Ok(problems) => problems,
        Err(e) => vec![e.to_string()],
    };
    for problem in problems.iter().take(10) {
        say!("  FAIL  {problem}");
    }
    say!(
        "  It can be rebuilt from the store: stop the daemon, move {} aside and run `pouch sync`; files that differ from the store are kept as conflicted copies, nothing is deleted",
        config.state.display()
    );
    false
}

/// Reads back every block the current tree names and repairs what this
/// device can.
async fn check_blocks(config_path: &Path, config: &Config) -> anyhow::Result<bool> {
    let _lock = sync_lock(config).await?;
    let mut engine = Session::open(config_path)?.engine;
    let readback = engine.read_back_blocks().await?;
    say!("blocks: read back {} blocks", readback.checked);
    let unreadable: Vec<_> = readback
        .damaged
        .iter()
        .map(|(id, _, _)| *id)
        .chain(readback.missing.iter().map(|(id, _)| *id))
        .collect();
    for (id, reason, paths) in &readback.damaged {
        say!(
            "  FAIL  block {id} is damaged in the store ({reason}); in {}",
            listed(paths)
        );
    }
    for (id, paths) in &readback.missing {
        say!(
            "  FAIL  block {id} is missing from the store; in {}",
            listed(paths)
        );
    }
    let bad = unreadable.len() as u64;
    let heal = engine.repair_blocks(unreadable).await?;
    if bad == 0 && heal.lacking == 0 {
        say!("  ok    every block is stored and reads back intact");
        return Ok(true);
    }
    if heal.resent > 0 {
        say!(
            "  sent {} lost blocks again from this device's files",
            heal.resent
        );
    }
    let left = heal.lacking.saturating_sub(heal.resent);
    if left == 0 {
        say!("  ok    repaired: every block the store lost was sent again");
        return Ok(true);
    }
    say!(
        "  {left} blocks are not on this device either; they are reported in the journal, and a device that has those files sends them at its next sync"
    );
    if !heal.unrepaired.is_empty() {
        say!(
            "  changed here since, so not repairable from here: {}",
            listed(&heal.unrepaired)
        );
    }
    Ok(false)
}

fn listed(paths: &[String]) -> String {
    let mut text = paths
        .iter()
        .take(PATHS_LISTED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if paths.len() > PATHS_LISTED {
        text.push_str(&format!(" and {} more", paths.len() - PATHS_LISTED));
    }
    text
}
