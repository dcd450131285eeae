//! The subcommands' bodies, one module per family. Each parses nothing
//! and decides nothing about stores: it opens a [`Session`] (or the store
//! wiring in [`crate::store`]), calls the engine, and prints.
//!
//! [`Session`]: crate::session::Session

pub(crate) mod account;
mod daemon;
mod doctor;
mod gc;
mod history;
mod init;
mod limit;
mod migrate;
mod shares;
mod status;
mod sync;

use std::process::ExitCode;

use anyhow::Context;
use pouch_core::Pick;
use pouch_core::path::RelPath;
use pouch_protocol::Request;

use crate::cli::{Cli, Command};
use crate::store::Target;

/// Runs one command; the exit code says whether everything synced.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config_path = match cli.config {
        Some(path) => path,
        None => pouch_config::default_config_path()
            .context("no home folder to keep the config in; pass --config FILE")?,
    };
    match cli.command {
        Command::Init(args) => {
            let crate::cli::InitArgs {
                root,
                device,
                store,
            } = *args;
            init::init(&config_path, root, device, Target::from_args(store)?).await
        }
        Command::Login { device } => account::login(&config_path, device).await,
        Command::Devices { action } => account::devices(&config_path, action).await,
        Command::Share {
            link: Some(action), ..
        } => shares::link(&config_path, action).await,
        Command::Share {
            folder,
            with,
            role,
            limits,
            ..
        } => {
            let (Some(folder), Some(with)) = (folder, with) else {
                anyhow::bail!("`pouch share FOLDER --with USER`, or `pouch share link PATH`");
            };
            shares::share(&config_path, &folder, &with, &role, &limits).await
        }
        Command::Shares { action, limits } => shares::shares(&config_path, action, &limits).await,
        Command::Migrate { action } => migrate::migrate(&config_path, action).await,
        Command::Doctor { blocks } => doctor::doctor(&config_path, blocks).await,
        Command::History {
            path,
            deleted: true,
            json,
        } => history::deleted(&config_path, path.as_deref(), json).await,
        Command::History { path, json, .. } => {
            history::history(&config_path, path.as_deref().unwrap_or_default(), json)
        }
        Command::Retention { action } => gc::retention(&config_path, action).await,
        Command::Gc {
            dry_run,
            json,
            grace,
        } => gc::gc(&config_path, dry_run, json, grace).await,
        Command::Restore { path, rev, at } => {
            let pick = match (rev, at) {
                (Some(seq), _) => Pick::Seq(seq),
                (None, Some(at)) => Pick::At(crate::time::parse(&at)?),
                (None, None) => Pick::Latest,
            };
            history::restore(&config_path, &path, pick).await
        }
        Command::Exclude { action } => history::exclude(&config_path, action).await,
        Command::GenerateAssets { dir } => {
            crate::assets::generate(&dir)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sync {
            json,
            allow_mass_delete,
            limits,
        } => sync::sync(&config_path, json, allow_mass_delete, &limits).await,
        Command::Status { json } => status::status(&config_path, json).await,
        Command::Ls { remote } => sync::ls(&config_path, remote).await,
        Command::Daemon { limits } => daemon::daemon(&config_path, &limits).await,
        Command::Limit { settings, save } => limit::limit(&config_path, &settings, save).await,
        Command::Pause => daemon::control(&config_path, Request::Pause).await,
        Command::Resume { allow_mass_delete } => {
            daemon::control(&config_path, Request::Resume { allow_mass_delete }).await
        }
    }
}

/// A path argument, as the journal spells paths.
fn rel_path(path: &str) -> anyhow::Result<RelPath> {
    RelPath::parse(path.trim_end_matches('/'))
        .with_context(|| format!("{path:?} is not a path inside the synced folder"))
}

/// Whether a daemon answers on `config`'s control socket.
async fn daemon_runs(config: &pouch_config::Config) -> bool {
    matches!(
        pouch_protocol::request(&config.socket_path(), &Request::Status).await,
        Ok(Some(_))
    )
}
