//! `pouch init`: this device's config for one folder and one store.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use pouch_config::{BackendConfig, CONFIG_VERSION, Config, OwnStore};
use pouch_core::own_files::resolved;

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
    // An account's login first: its home is the namespace.
    let planned = target.logged_in(&device).await?.config()?;
    refuse_overlaps(config_path, &root, &planned)?;
    let backend = crate::store::prepare(planned).await?;
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let config = Config {
        version: CONFIG_VERSION,
        root,
        device,
        state: absolute(&state)?,
        backend,
        previous_backend: None,
        migration: None,
        limits: pouch_config::Limits::default(),
        gc: pouch_config::GcSettings::default(),
        mounts: Vec::new(),
    };
    config.save(config_path)?;
    if let Some(registry) = pouch_config::folders::registry_path() {
        // The config is written: a failure here loses only the check.
        if let Err(e) =
            pouch_config::folders::register(&registry, &absolute(config_path)?, &config.root)
        {
            tell!(
                "pouch: could not record the folder in {}: {e}",
                registry.display()
            );
        }
    }
    say!("wrote {}", config_path.display());
    say!("  folder: {}", config.root.display());
    say!("  device: {}", config.device);
    say!("run `pouch sync` to sync it");
    Ok(ExitCode::SUCCESS)
}

/// Refuses a folder that cannot be synced safely: inside the store folder
/// it syncs with (every write to the store would be a change to sync), or
/// inside, around or equal to a folder this machine already syncs.
/// (Pouch's own files inside the folder are fine: the scanner skips them,
/// so `pouch init --root ~` works with the default folders.)
fn refuse_overlaps(config_path: &Path, root: &Path, backend: &BackendConfig) -> anyhow::Result<()> {
    let root = resolved(root);
    if let BackendConfig::Own(OwnStore::Embedded { store }) = backend {
        let store = resolved(store);
        if root.starts_with(&store) {
            bail!(
                "{} is inside the store folder {}: pick a synced folder outside the store",
                root.display(),
                store.display()
            );
        }
    }
    let Some(registry) = pouch_config::folders::registry_path() else {
        return Ok(());
    };
    let others: Vec<_> = pouch_config::folders::synced_folders(&registry)
        .into_iter()
        .map(|mut f| {
            f.root = resolved(&f.root);
            f
        })
        .collect();
    if let Some(why) = pouch_config::folders::overlap(&root, &absolute(config_path)?, &others) {
        bail!("{why}");
    }
    Ok(())
}

fn cli_default_config(path: &Path) -> bool {
    pouch_config::default_config_path().is_some_and(|default| default == path)
}

pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "this device".to_owned())
}
