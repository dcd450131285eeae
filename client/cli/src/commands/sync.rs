//! `pouch sync` and `pouch ls`.

use std::path::Path;
use std::process::ExitCode;

use pouch_core::SyncOptions;
use pouch_core::state::Tree;

use crate::cli::LimitArgs;
use crate::session::{Session, sync_following};

pub(super) async fn sync(
    config_path: &Path,
    json: bool,
    allow_mass_delete: bool,
    limits: &LimitArgs,
) -> anyhow::Result<ExitCode> {
    let options = SyncOptions {
        allow_mass_delete,
        ..SyncOptions::default()
    };
    // An account's shared folders first: the home must leave a new
    // mount's folder alone before it pulls.
    let account = pouch_config::Config::load(config_path)?.is_account_home();
    if account && let Err(e) = super::shares::refresh_mounts(config_path).await {
        tell!("shared folders not checked: {e:#}");
    }
    let synced = sync_following(config_path, options.clone(), limits).await;
    let (config, report) = match synced {
        Ok(done) => done,
        // A script reading `--json` gets an object on failure too.
        Err(e) if json => {
            let error = pouch_backend::error_chain(e.as_ref());
            let failure = serde_json::json!({ "ok": false, "error": error });
            println!("{}", serde_json::to_string_pretty(&failure)?);
            tell!("pouch: {error}");
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        say!(
            "synced {}: {} up, {} down, {} deleted here, {} deleted remotely, {} renamed, {} conflicts; {} blocks sent ({})",
            config.root.display(),
            report.uploaded,
            report.downloaded,
            report.deleted_local,
            report.deleted_remote,
            report.renamed_local,
            report.conflicts,
            report.blocks_uploaded,
            indicatif::HumanBytes(report.bytes_uploaded),
        );
    }
    for problem in &report.problems {
        tell!("not synced: {problem}");
    }
    let mut mounts_ok = true;
    for (mount, outcome) in super::shares::sync_mounts(config_path, &config, &options, limits).await
    {
        match outcome {
            Ok(report) => {
                let line = format!(
                    "synced the shared folder {} at {}: {} up, {} down, {} conflicts",
                    mount.name, mount.path, report.uploaded, report.downloaded, report.conflicts
                );
                // `--json` keeps standard output to the home's report.
                if json {
                    tell!("{line}");
                } else {
                    say!("{line}");
                }
                for problem in &report.problems {
                    tell!("not synced: {}/{problem}", mount.path);
                }
                mounts_ok &= report.problems.is_empty();
            }
            Err(e) => {
                tell!(
                    "the shared folder {} at {} did not sync: {e:#}",
                    mount.name,
                    mount.path
                );
                mounts_ok = false;
            }
        }
    }
    Ok(if report.problems.is_empty() && mounts_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub(super) async fn ls(config_path: &Path, remote: bool) -> anyhow::Result<ExitCode> {
    let mut engine = Session::open(config_path)?.engine;
    let nodes: Vec<(String, pouch_core::node::Node)> = if remote {
        engine.pull_only().await?;
        engine
            .db()
            .tree(Tree::Remote)?
            .into_iter()
            .map(|(p, n)| (p.to_string(), n))
            .collect()
    } else {
        engine
            .db()
            .local()?
            .into_iter()
            .map(|(p, (_, n))| (p.to_string(), n))
            .collect()
    };
    for (path, node) in nodes {
        match &node {
            pouch_core::node::Node::Symlink { target } => {
                say!("{:<7} {:>12} {path} -> {target}", node.kind_name(), "")
            }
            pouch_core::node::Node::Dir => say!("{:<7} {:>12} {path}/", node.kind_name(), ""),
            pouch_core::node::Node::File { size, .. } => {
                say!("{:<7} {size:>12} {path}", node.kind_name())
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
