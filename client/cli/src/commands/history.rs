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
    let (_, from) = engine.history(&path)?;
    let versions = engine.kept_history(&path, pouch_core::unix_secs())?;
    if json {
        println!("{}", serde_json::to_string_pretty(&versions)?);
        return Ok(ExitCode::SUCCESS);
    }
    if versions.is_empty() {
        say!("{path}: no versions recorded");
    }
    for kept in &versions {
        let revision = &kept.revision;
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
        let expired = if kept.retained { "" } else { "  (expired)" };
        say!(
            "rev {:<6} {when}  {:<16} {what}{expired}",
            revision.seq,
            revision.device
        );
    }
    if versions.iter().any(|k| !k.retained) {
        say!(
            "(expired versions are past the folder's retention, {}, and cannot be restored)",
            engine.retention()?.describe()
        );
    }
    if from > 1 {
        say!("(this device keeps history from journal entry {from} on)");
    }
    Ok(ExitCode::SUCCESS)
}

/// `pouch history --deleted`: files deleted within the retention period,
/// newest deletes first, like Dropbox's deleted-files page.
pub(super) async fn deleted(
    config_path: &Path,
    folder: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut engine = Session::open(config_path)?.engine;
    engine.pull_only().await?;
    let folder = folder.map(rel_path).transpose()?;
    let files = engine.deleted_files(folder.as_ref(), pouch_core::unix_secs())?;
    if json {
        let listed: Vec<serde_json::Value> = files
            .iter()
            .map(|(path, kept)| {
                serde_json::json!({
                    "path": path.as_str(),
                    "deleted_at": kept.replaced_at,
                    "last_version": kept.revision,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&listed)?);
        return Ok(ExitCode::SUCCESS);
    }
    if files.is_empty() {
        say!("no deleted files within the retention period");
    }
    for (path, kept) in &files {
        let when = kept
            .replaced_at
            .map_or_else(|| "(time unknown)".to_owned(), crate::time::format);
        let size = kept.revision.node.as_ref().map_or(0, |n| n.size());
        say!(
            "{when}  {path}  ({}, rev {}; `pouch restore {path}` brings it back)",
            indicatif::HumanBytes(size),
            kept.revision.seq
        );
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
pub(super) fn inside_root(root: &Path, arg: &str) -> anyhow::Result<RelPath> {
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
