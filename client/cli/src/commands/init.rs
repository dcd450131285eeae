//! `pouch init`: this device's config for one folder and one store.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use pouch_config::{CONFIG_VERSION, Config};

use crate::store::{Target, absolute};

pub(super) async fn init(
    config_path: &Path,
    root: PathBuf,
    device: Option<String>,
    target: Target,
) -> anyhow::Result<ExitCode> {
    let root = absolute(&root)?;
    if config_path.exists() {
        // Running the set-up command twice is fine; changing course is not.
        let existing = Config::load(config_path)?;
        if existing.root == root {
            say!("{} already syncs {}", config_path.display(), root.display());
            return Ok(ExitCode::SUCCESS);
        }
        bail!(
            "{} already exists for {}; edit it, or pass another --config FILE",
            config_path.display(),
            existing.root.display()
        );
    }
    // Everything that can be checked is checked before anything is made,
    // so a failed init leaves nothing behind.
    if root.exists() && !root.is_dir() {
        bail!(
            "{} is a file, not a folder: pass the folder to keep in sync",
            root.display()
        );
    }
    let device = device.unwrap_or_else(host_name);
    if device.is_empty() || device.contains('/') {
        bail!("a device name must be non-empty and contain no '/'");
    }
    // The file names keep the word "journal" of earlier versions, so that
    // their folders stay where they were.
    let state = match cli_default_config(config_path) {
        true => pouch_config::project_dirs()
            .context("no data folder for the local state")?
            .data_dir()
            .join("journal.sqlite"),
        false => config_path.with_extension("journal.sqlite"),
    };
    let backend = target.prepare().await?;
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let config = Config {
        version: CONFIG_VERSION,
        root,
        device,
        state: absolute(&state)?,
        backend,
        previous_backend: None,
        migration: None,
    };
    config.save(config_path)?;
    say!("wrote {}", config_path.display());
    say!("  folder: {}", config.root.display());
    say!("  device: {}", config.device);
    say!("run `pouch sync` to sync it");
    Ok(ExitCode::SUCCESS)
}

fn cli_default_config(path: &Path) -> bool {
    pouch_config::default_config_path().is_some_and(|default| default == path)
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "this device".to_owned())
}
