//! `pouch share` and `pouch shares`: shared folders of an account on a
//! `pouch-store` server. A shared folder is a namespace of its own,
//! mounted at a path of each member's home folder and synced there by an
//! engine of its own; the home's engine leaves that path alone. Every
//! permission is the server's decision: this only asks and reports.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use pouch_backend::StoreId;
use pouch_backend_own::account::{self, ShareInfo};
use pouch_config::{Config, Mount};
use pouch_core::node::Node;
use pouch_core::state::{LocalState, Tree};
use pouch_core::{SyncOptions, SyncReport};

use super::account::account_of;
use super::history::inside_root;
use super::rel_path;
use crate::cli::{LimitArgs, LinkAction, SharesAction};
use crate::session::{Session, sync_following, sync_lock};

/// An account call's error, said for a person.
fn refused(e: pouch_backend::Error) -> anyhow::Error {
    match e {
        pouch_backend::Error::Unauthorized => anyhow::anyhow!(
            "the server refused this device's credential (revoked?): `pouch login` to log in again"
        ),
        other => anyhow::Error::new(other),
    }
}

/// Brings the config's mounts up to date with the server's list: a share
/// the account mounted (from any of its devices) is added, and the home
/// leaves its path to it; one the account no longer has is detached (its
/// folder stays here, no longer synced). Returns the config as saved.
pub(super) async fn refresh_mounts(config_path: &Path) -> anyhow::Result<Config> {
    let mut config = Config::load(config_path)?;
    let (url, _, credential) = account_of(&config)?;
    let listed = account::shares(&url, &credential).await.map_err(refused)?;
    let mut changed = false;
    for share in &listed {
        let Some(path) = &share.path else { continue };
        if let Some(mount) = config
            .mounts
            .iter_mut()
            .find(|m| m.namespace == share.namespace && !m.detached)
        {
            if mount.path != *path {
                // Mounted elsewhere since: the old folder stays, unsynced.
                mount.detached = true;
                tell!(
                    "{} moved to {path}; its old copy at {} stays here, no longer synced",
                    share.name,
                    mount.path
                );
            } else if mount.role != share.role {
                tell!("your role in {} is now {}", share.name, share.role);
                mount.role = share.role.clone();
                changed = true;
                continue;
            } else {
                continue;
            }
        }
        // The server checks mount points; a hostile one is checked here too.
        let at = rel_path(path)?;
        LocalState::open(&config.state)?.exclude(&at)?;
        config.mounts.retain(|m| m.path != at.as_str());
        let mount = Mount {
            namespace: share.namespace.clone(),
            name: share.name.clone(),
            path: at.to_string(),
            role: share.role.clone(),
            detached: false,
        };
        forget_mount_state(&config, &mount)?;
        config.mounts.push(mount);
        tell!(
            "the shared folder {} is mounted at {at} ({})",
            share.name,
            share.role
        );
        changed = true;
    }
    for mount in config.mounts.iter_mut().filter(|m| !m.detached) {
        let still = listed
            .iter()
            .any(|s| s.namespace == mount.namespace && s.path.is_some());
        if !still {
            mount.detached = true;
            changed = true;
            tell!(
                "this account no longer has the shared folder {}: its copy at {} stays here, no longer synced",
                mount.name,
                mount.path
            );
        }
    }
    if changed {
        config.save(config_path)?;
    }
    Ok(config)
}

/// Deletes the local state a mount of the same share had before (at this
/// path or another): a mount starts from what is on disk at its path and
/// in the share, never from trees of a folder elsewhere, which would read
/// as deletes.
fn forget_mount_state(config: &Config, mount: &Mount) -> anyhow::Result<()> {
    let Some(mount_config) = config.mount_config(mount) else {
        return Ok(());
    };
    for ext in ["sqlite", "sqlite-wal", "sqlite-shm"] {
        let file = mount_config.state.with_extension(ext);
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", file.display())),
        }
    }
    Ok(())
}

/// Syncs every mounted shared folder of the folder `config_path`
/// configures, each under its own lock; the outcome of each.
pub(super) async fn sync_mounts(
    config_path: &Path,
    config: &Config,
    options: &SyncOptions,
    limits: &LimitArgs,
) -> Vec<(Mount, anyhow::Result<SyncReport>)> {
    let mut outcomes = Vec::new();
    for mount in config.mounts.iter().filter(|m| !m.detached) {
        let outcome = async {
            let mut session = Session::open_mount(config_path, mount, None)?;
            let _lock = sync_lock(&session.config).await?;
            limits.apply(&session.limits);
            let report = session.engine.sync_with(options.clone()).await?;
            anyhow::Ok(report)
        }
        .await;
        outcomes.push((mount.clone(), outcome));
    }
    outcomes
}

/// `pouch share FOLDER --with USER [--role ROLE]`: makes a folder of the
/// home a shared folder (or, if it is one, invites another member).
pub(super) async fn share(
    config_path: &Path,
    folder: &str,
    with: &str,
    role: &str,
    limits: &LimitArgs,
) -> anyhow::Result<ExitCode> {
    if !matches!(role, "editor" | "viewer") {
        bail!(
            "a member is an editor or a viewer (one owner per shared folder: `pouch shares transfer`)"
        );
    }
    let config = refresh_mounts(config_path).await?;
    let (url, _, credential) = account_of(&config)?;
    let path = inside_root(&config.root, folder)?;
    if let Some(mount) = config
        .mounts
        .iter()
        .find(|m| !m.detached && m.path == path.as_str())
    {
        account::invite(&url, &credential, &mount.namespace, with, role)
            .await
            .map_err(refused)?;
        say!("invited {with} to {} as {role}", mount.name);
        return Ok(ExitCode::SUCCESS);
    }
    for mount in config.mounts.iter().filter(|m| !m.detached) {
        let other = rel_path(&mount.path)?;
        if path.is_inside(&other) || other.is_inside(&path) {
            bail!(
                "{path} would nest with the shared folder {} at {other}: shared folders do not nest",
                mount.name
            );
        }
    }
    if !path.to_fs(&config.root).is_dir() {
        bail!("{path} is not a folder of {}", config.root.display());
    }
    // Everything in it synced first, so the share starts from what the
    // home holds (and its blocks are the server's already).
    let (config, report) = sync_following(config_path, SyncOptions::default(), limits).await?;
    if !report.problems.is_empty() {
        bail!(
            "{} is not fully synced ({}); nothing was shared",
            config.root.display(),
            report.problems.join("; ")
        );
    }
    let _lock = sync_lock(&config).await?;
    let mut home = Session::open(config_path)?;
    let name = path.name().to_owned();
    let namespace = account::create_share(&url, &credential, &name, path.as_str())
        .await
        .map_err(refused)?;
    let mount = Mount {
        namespace: namespace.clone(),
        name: name.clone(),
        path: path.to_string(),
        role: "owner".into(),
        detached: false,
    };
    let share_config = config
        .mount_config(&mount)
        .context("not an account's home")?;
    let store = crate::store::open(&share_config.backend, None)?;
    store.init_identity(StoreId::random()).await?;
    // Its blocks are copied by the server from the home: none is sent.
    let blocks: Vec<_> = home
        .engine
        .db()
        .tree(Tree::Synced)?
        .into_iter()
        .filter(|(p, _)| p.is_inside(&path))
        .flat_map(|(_, node)| match node {
            Node::File { blocks, .. } => blocks.into_iter().map(|b| b.id).collect(),
            _ => Vec::new(),
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let home_namespace = format!("home.{}", account_of(&config)?.1);
    let adopted = account::adopt(&url, &credential, &namespace, &home_namespace, &blocks)
        .await
        .map_err(refused)?;
    let mut saved = Config::load(config_path)?;
    saved.mounts.retain(|m| m.path != mount.path);
    saved.mounts.push(mount.clone());
    saved.save(config_path)?;
    home.engine
        .hand_over(&path)
        .await
        .context("the shared folder was made, but the home could not let go of it")?;
    let mut session = Session::open_mount(config_path, &mount, None)?;
    let report = session.engine.sync_once().await?;
    tell!(
        "{path} is now the shared folder {name}: {} files, {adopted} blocks copied on the server, {} sent",
        report.uploaded,
        report.blocks_uploaded
    );
    account::invite(&url, &credential, &namespace, with, role)
        .await
        .map_err(refused)?;
    say!("shared {path} with {with} as {role}");
    Ok(ExitCode::SUCCESS)
}

/// The share `name` names (its name or namespace) in `listed`.
fn find<'a>(listed: &'a [ShareInfo], name: &str) -> anyhow::Result<&'a ShareInfo> {
    let found: Vec<&ShareInfo> = listed
        .iter()
        .filter(|s| s.namespace == name || s.name == name)
        .collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => bail!(
            "this account has no shared folder or invitation named {name} (`pouch shares` lists them)"
        ),
        _ => bail!(
            "several shared folders are named {name}: give its namespace (`pouch shares` lists them)"
        ),
    }
}

/// `pouch shares [...]`.
pub(super) async fn shares(
    config_path: &Path,
    action: Option<SharesAction>,
    limits: &LimitArgs,
) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    let (url, user, credential) = account_of(&config)?;
    let listed = account::shares(&url, &credential).await.map_err(refused)?;
    match action {
        None => {
            let config = refresh_mounts(config_path).await?;
            for share in &listed {
                let members: Vec<String> = share
                    .members
                    .iter()
                    .map(|(user, role)| format!("{user} ({role})"))
                    .collect();
                match &share.path {
                    Some(path) => say!(
                        "{}  {}  mounted at {path}  [{}]  {}",
                        share.name,
                        share.role,
                        share.namespace,
                        members.join(", ")
                    ),
                    None => say!(
                        "{}  {}  invitation: `pouch shares accept {}`  [{}]  {}",
                        share.name,
                        share.role,
                        share.name,
                        share.namespace,
                        members.join(", ")
                    ),
                }
            }
            for mount in config.mounts.iter().filter(|m| m.detached) {
                say!(
                    "{}  no longer shared with you; the copy at {} stays here",
                    mount.name,
                    mount.path
                );
            }
        }
        Some(SharesAction::Accept { name, at }) => {
            let share = find(&listed, &name)?;
            let at = match at {
                Some(at) => inside_root(&config.root, &at)?,
                None => rel_path(&share.name.replace(['/', '\\'], "_"))?,
            };
            if std::fs::symlink_metadata(at.to_fs(&config.root)).is_ok() {
                bail!(
                    "{} exists already: choose another place with --at PATH",
                    at.to_fs(&config.root).display()
                );
            }
            account::mount(&url, &credential, &share.namespace, Some(at.as_str()))
                .await
                .map_err(refused)?;
            let config = refresh_mounts(config_path).await?;
            for (mount, outcome) in
                sync_mounts(config_path, &config, &SyncOptions::default(), limits).await
            {
                if mount.namespace == share.namespace {
                    let report = outcome?;
                    say!(
                        "mounted {} at {at}: {} files down",
                        share.name,
                        report.downloaded
                    );
                }
            }
        }
        Some(SharesAction::Unmount { name }) => {
            let share = find(&listed, &name)?;
            account::mount(&url, &credential, &share.namespace, None)
                .await
                .map_err(refused)?;
            refresh_mounts(config_path).await?;
            say!(
                "unmounted {}; its copy stays here, no longer synced",
                share.name
            );
        }
        Some(SharesAction::Leave { name }) => {
            let share = find(&listed, &name)?;
            account::remove_member(&url, &credential, &share.namespace, &user)
                .await
                .map_err(refused)?;
            refresh_mounts(config_path).await?;
            say!("left {}", share.name);
        }
        Some(SharesAction::Remove { name, member }) => {
            let share = find(&listed, &name)?;
            account::remove_member(&url, &credential, &share.namespace, &member)
                .await
                .map_err(refused)?;
            say!(
                "{member} is no longer a member of {}; their devices keep their copy",
                share.name
            );
        }
        Some(SharesAction::Transfer { name, to }) => {
            let share = find(&listed, &name)?;
            account::transfer(&url, &credential, &share.namespace, &to)
                .await
                .map_err(refused)?;
            refresh_mounts(config_path).await?;
            say!("{to} owns {} now; you are an editor", share.name);
        }
        Some(SharesAction::Unshare { name }) => {
            let share = find(&listed, &name)?;
            account::unshare(&url, &credential, &share.namespace)
                .await
                .map_err(refused)?;
            say!(
                "{} is shared with no one else now; its members keep their copies",
                share.name
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The namespace and path in it of `path` (of the home folder): a mounted
/// shared folder's for what is in one, the home's otherwise.
fn namespace_of(config: &Config, path: &str) -> anyhow::Result<(String, String)> {
    let path = inside_root(&config.root, path)?;
    for mount in config.mounts.iter().filter(|m| !m.detached) {
        let at = rel_path(&mount.path)?;
        if path == at {
            return Ok((mount.namespace.clone(), String::new()));
        }
        if path.is_inside(&at) {
            let rest = &path.as_str()[at.as_str().len() + 1..];
            return Ok((mount.namespace.clone(), rest.to_owned()));
        }
    }
    let (_, user, _) = account_of(config)?;
    Ok((format!("home.{user}"), path.to_string()))
}

/// A link's password: `POUCH_LINK_PASSWORD`, else standard input's first
/// line when that is not a terminal, else asked for twice without echo.
fn link_password() -> anyhow::Result<String> {
    use std::io::IsTerminal;
    if let Ok(password) = std::env::var("POUCH_LINK_PASSWORD") {
        return Ok(password);
    }
    if !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    let first = rpassword::prompt_password("the link's password: ")?;
    if rpassword::prompt_password("again: ")? != first {
        bail!("the two passwords differ; no link was made");
    }
    Ok(first)
}

/// `pouch share link|unlink|links`.
pub(super) async fn link(config_path: &Path, action: LinkAction) -> anyhow::Result<ExitCode> {
    let config = refresh_mounts(config_path).await?;
    let (url, _, credential) = account_of(&config)?;
    match action {
        LinkAction::Link {
            path,
            expires,
            password,
        } => {
            let (namespace, inside) = namespace_of(&config, &path)?;
            let expires_secs = expires
                .map(|e| humantime::parse_duration(&e).map(|d| d.as_secs()))
                .transpose()
                .context("--expires takes a duration such as 7d or 12h")?;
            let password = password.then(link_password).transpose()?;
            let made = account::create_link(
                &url,
                &credential,
                &namespace,
                &inside,
                expires_secs,
                password.as_deref(),
            )
            .await
            .map_err(refused)?;
            say!("{}{}", url.trim_end_matches('/'), made.url);
            tell!(
                "link {} made (`pouch share unlink {}` revokes it)",
                made.id,
                made.id
            );
        }
        LinkAction::Unlink { id } => {
            account::unlink(&url, &credential, &id)
                .await
                .map_err(refused)?;
            say!("link {id} no longer works");
        }
        LinkAction::Links => {
            for link in account::links(&url, &credential).await.map_err(refused)? {
                let expires = match link.expires {
                    Some(at) => format!(
                        "until {}",
                        humantime::format_rfc3339_seconds(
                            std::time::UNIX_EPOCH
                                + std::time::Duration::from_secs(at.max(0) as u64)
                        )
                    ),
                    None => "until revoked".to_owned(),
                };
                let password = if link.password { ", password" } else { "" };
                say!(
                    "{}  {}:/{}  {expires}{password}",
                    link.id,
                    link.namespace,
                    link.path
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
