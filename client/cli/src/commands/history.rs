//! `pouch history`, `pouch restore` and `pouch exclude`: one path's
//! versions, bringing one back, and folders this device does not keep.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use pouch_core::Pick;
use pouch_core::path::RelPath;

use super::{daemon_runs, rel_path};
use crate::cli::ExcludeAction;
use crate::session::Session;

pub(super) fn history(config_path: &Path, path: &str, json: bool) -> anyhow::Result<ExitCode> {
    let engine = Session::open(config_path)?.engine;
    let path = rel_path(path)?;
    let (revisions, from) = engine.history(&path)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&revisions)?);
        return Ok(ExitCode::SUCCESS);
    }
    if revisions.is_empty() {
        say!("{path}: no versions recorded");
    }
    for revision in &revisions {
        let when = revision
            .time
            .map_or_else(|| "(time unknown)".to_owned(), crate::time::format);
        let what = match &revision.node {
            None => "deleted".to_owned(),
            Some(node) if node.is_dir() => "folder".to_owned(),
            Some(node) => format!(
                "{} {}",
                node.kind_name(),
                indicatif::HumanBytes(node.size())
            ),
        };
        say!(
            "rev {:<6} {when}  {:<16} {what}",
            revision.seq,
            revision.device
        );
    }
    if from > 1 {
        say!("(this device keeps history from journal entry {from} on)");
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn restore(
    config_path: &Path,
    path: &str,
    pick: Pick,
) -> anyhow::Result<ExitCode> {
    let Session {
        config, mut engine, ..
    } = Session::open(config_path)?;
    let path = rel_path(path)?;
    let revision = engine.restore(&path, pick).await?;
    say!("restored {path} from rev {}", revision.seq);
    // A running daemon sees the file appear and syncs it; otherwise sync now.
    if !daemon_runs(&config).await {
        let _lock = crate::session::sync_lock(&config).await?;
        let report = engine
            .sync_once()
            .await
            .with_context(|| format!("sync of {} stopped", config.root.display()))?;
        for problem in &report.problems {
            tell!("not synced: {problem}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A folder argument: relative to the root, or an absolute path inside it.
fn inside_root(root: &Path, arg: &str) -> anyhow::Result<RelPath> {
    let given = Path::new(arg);
    if !given.is_absolute() {
        return rel_path(arg);
    }
    let root = root.canonicalize().unwrap_or_else(|_| root.to_owned());
    let given = given.canonicalize().unwrap_or_else(|_| given.to_owned());
    let inside = given.strip_prefix(&root).with_context(|| {
        format!(
            "{} is not inside the synced folder {}",
            given.display(),
            root.display()
        )
    })?;
    rel_path(&inside.to_string_lossy())
}

pub(super) async fn exclude(config_path: &Path, action: ExcludeAction) -> anyhow::Result<ExitCode> {
    let Session {
        config, mut engine, ..
    } = Session::open(config_path)?;
    match action {
        ExcludeAction::Add { path } => {
            let path = inside_root(&config.root, &path)?;
            let full = path.to_fs(&config.root);
            if !full.exists() {
                bail!(
                    "{} does not exist; `pouch exclude add` takes a folder that is synced here \
                     (`pouch ls` lists them)",
                    full.display()
                );
            }
            engine.exclude(&path)?;
            say!("{path} is no longer synced on this device; its local copy is removed");
        }
        ExcludeAction::Remove { path } => {
            let path = rel_path(&path)?;
            if engine.include(&path)? {
                say!("{path} syncs again on this device; the next sync downloads it");
            } else {
                bail!("{path} was not excluded");
            }
        }
        ExcludeAction::List => {
            for path in engine.excluded()? {
                say!("{path}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
