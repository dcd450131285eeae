//! `pouch doctor`: is the store reachable and safe to sync through?

use std::path::Path;
use std::process::ExitCode;

use pouch_backend::BackendExt;
use pouch_config::Config;

use crate::store;

/// Checks the configured store: reachable, credentials accepted, and (for
/// S3) conditional writes enforced. Exit code 1 when a check fails.
pub(super) async fn doctor(config_path: &Path) -> anyhow::Result<ExitCode> {
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
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
