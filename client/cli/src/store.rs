//! Store wiring: the only place that names concrete backends. It turns the
//! store arguments of `init` and `migrate` into a config, and a config into
//! an `Arc<dyn Backend>` (two stores in a `Dual` during a migration or its
//! fallback).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use pouch_backend::{Backend, StoreId};
use pouch_backend_own::{EmbeddedBackend, RemoteBackend};
use pouch_backend_s3::{S3Backend, S3Config};
use pouch_config::{BackendConfig, Config, OwnStore};
use pouch_core::dual::{Dual, DualStats};
use pouch_core::location::{ConfigLocation, S3Location, StoreLocation};

use crate::cli::{BackendKind, StoreArgs};

/// Which store the arguments name.
pub enum Target {
    /// An embedded store folder (the default one when `None`).
    Embedded(Option<PathBuf>),
    /// A `pouch-store` server.
    Server {
        url: String,
        namespace: String,
        token: Option<String>,
        /// The account to log in to (its home is the namespace).
        user: Option<String>,
    },
    /// An S3 bucket.
    S3(S3Config),
}

impl Target {
    /// Reads the store arguments of `init` and `migrate`.
    pub fn from_args(args: StoreArgs) -> anyhow::Result<Target> {
        let StoreArgs {
            backend,
            store,
            url,
            namespace,
            token,
            user,
            bucket,
            endpoint,
            region,
            prefix,
            path_style,
        } = args;
        Ok(match (backend, url, bucket) {
            (BackendKind::S3, _, Some(bucket)) => {
                if let Some(endpoint) = &endpoint {
                    refuse_userinfo(endpoint, "--endpoint")?;
                }
                let mut s3 = S3Config::new(bucket);
                s3.path_style = path_style || endpoint.is_some();
                s3.endpoint = endpoint;
                s3.region = region;
                s3.prefix = prefix.unwrap_or_default();
                Target::S3(s3)
            }
            (BackendKind::S3, _, None) => bail!("--backend s3 needs --bucket"),
            (BackendKind::Own, _, Some(_)) => bail!("--bucket is for --backend s3"),
            (BackendKind::Own, Some(url), None) => {
                refuse_userinfo(&url, "--url")?;
                Target::Server {
                    url,
                    namespace,
                    token,
                    user,
                }
            }
            (BackendKind::Own, None, None) => Target::Embedded(store),
        })
    }

    /// With `--user`: logs in to the account as device `device` (the
    /// password asked for once, never kept) and names its home with the
    /// device's credential. Other targets are returned as they are.
    pub async fn logged_in(self, device: &str) -> anyhow::Result<Target> {
        match self {
            Target::Server {
                url,
                user: Some(user),
                ..
            } => {
                let login = crate::commands::account::log_in(&url, &user, device).await?;
                Ok(Target::Server {
                    url,
                    namespace: login.namespace,
                    token: Some(login.credential),
                    user: None,
                })
            }
            other => Ok(other),
        }
    }

    /// The config naming this store, without touching it.
    pub fn config(self) -> anyhow::Result<BackendConfig> {
        Ok(match self {
            Target::Embedded(store) => {
                let store = match store {
                    Some(store) => absolute(&store)?,
                    None => pouch_config::default_store_path()
                        .context("no data folder for the store; pass --store DIR")?,
                };
                BackendConfig::Own(OwnStore::Embedded { store })
            }
            Target::Server {
                url,
                namespace,
                token,
                user,
            } => BackendConfig::Own(OwnStore::Server {
                url,
                namespace: user.map_or(namespace, |u| format!("home.{u}")),
                token,
            }),
            // The settings the user chose, not the defaults (so later
            // defaults apply), and never credentials: what names the store.
            Target::S3(s3) => StoreLocation::S3(S3Location {
                bucket: s3.bucket,
                prefix: s3.prefix,
                region: s3.region,
                endpoint: s3.endpoint,
                path_style: s3.path_style,
            })
            .to_config(),
        })
    }

    /// Makes the store (or joins the one there): checks that it is usable
    /// (creating an embedded one, reaching a server with its token,
    /// probing S3's conditional writes), gives it an identity unless it
    /// has one, and returns its config. The only way a store is made:
    /// `sync` and `daemon` never create one.
    pub async fn prepare(self) -> anyhow::Result<BackendConfig> {
        if let Target::Server { user: Some(_), .. } = &self {
            bail!(
                "--user logs a new folder in (`pouch init --user`); to move a folder to an account's home, pass its device credential with --token"
            );
        }
        prepare(self.config()?).await
    }
}

/// [`Target::prepare`] for a target already turned into its config.
pub async fn prepare(config: BackendConfig) -> anyhow::Result<BackendConfig> {
    let backend: Arc<dyn Backend> = match &config {
        BackendConfig::Own(OwnStore::Embedded { store }) => {
            // Opening creates the store and proves the folder is usable.
            Arc::new(
                EmbeddedBackend::open(store)
                    .with_context(|| format!("cannot open the store at {}", store.display()))?,
            )
        }
        BackendConfig::Own(own @ OwnStore::Server { .. }) => server_backend(own)?,
        BackendConfig::S3(table) => {
            let backend = S3Backend::connect(s3_config(table)?, None)?;
            // Never run a journal on a store that could lose commits.
            backend
                .probe_conditional_writes()
                .await
                .with_context(|| format!("cannot use {}", backend.describe()))?;
            Arc::new(backend)
        }
    };
    // Also proves a server answers and takes the token before saving.
    backend
        .init_identity(StoreId::random())
        .await
        .with_context(|| format!("cannot make a store at {}", backend.describe()))?;
    Ok(config)
}

/// Refuses a URL with `user:password@` in it: the config would keep the
/// secret in plain sight and every log line naming the store would show it.
fn refuse_userinfo(url: &str, flag: &str) -> anyhow::Result<()> {
    let authority = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', '?', '#'])
        .next()
        .unwrap_or("");
    if authority.contains('@') {
        bail!(
            "{flag} must not carry a user name or password (the part before '@'): it would be \
             written into the config and shown wherever the store is named. Give a pouch-store \
             token with --token or POUCH_STORE_TOKEN, S3 keys with AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY or a profile"
        );
    }
    Ok(())
}

/// `path`, absolute.
pub fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot make {} absolute", path.display()))
}

fn s3_config(table: &toml::Table) -> anyhow::Result<S3Config> {
    toml::Value::Table(table.clone())
        .try_into()
        .context("the [backend] table of kind \"s3\" is not valid")
}

/// The configured S3 store, for its own checks (`pouch doctor`); `None`
/// for other stores.
pub fn s3_backend(backend: &BackendConfig) -> anyhow::Result<Option<S3Backend>> {
    match backend {
        BackendConfig::S3(table) => Ok(Some(S3Backend::connect(s3_config(table)?, None)?)),
        BackendConfig::Own(_) => Ok(None),
    }
}

/// The store a device syncs with.
pub struct SyncStore {
    /// One store, or two in a `Dual`.
    pub backend: Arc<dyn Backend>,
    /// A migration's counters when two stores are in play.
    pub migration: Option<Arc<DualStats>>,
}

/// The store this device syncs with: during a migration, the old and the
/// new store together (double writes, shadow reads); after a switch, the
/// new store with the old one as a read fallback until `migrate finish`.
pub fn open_for_sync(config: &Config) -> anyhow::Result<SyncStore> {
    let store = open_existing(&config.backend, Some(config.s3_cache_dir()))?;
    if let Some(migration) = &config.migration {
        let target = open_existing(&migration.target, None).with_context(|| {
            "cannot open the store this folder is migrating to (`pouch migrate cancel` stops the migration)"
        })?;
        let dual = Dual::migrating(store, target, migration.shadow_reads);
        return Ok(SyncStore {
            migration: Some(dual.stats()),
            backend: Arc::new(dual),
        });
    }
    // Only a fallback: a store that is gone (a deleted bucket or folder)
    // must not stop syncing, nor be created again.
    if let Some(previous) = &config.previous_backend
        && !matches!(previous, BackendConfig::Own(OwnStore::Embedded { store }) if !store.exists())
    {
        match open(previous, None) {
            Ok(old) => {
                let dual = Dual::falling_back(store, old);
                return Ok(SyncStore {
                    migration: Some(dual.stats()),
                    backend: Arc::new(dual),
                });
            }
            Err(e) => tracing::info!("the previous store is not available as a fallback: {e:#}"),
        }
    }
    Ok(SyncStore {
        backend: store,
        migration: None,
    })
}

/// Opens the store `backend` names; an S3 store keeps its index cache in
/// `cache` (none: memory only). An embedded store is created if missing.
pub fn open(backend: &BackendConfig, cache: Option<PathBuf>) -> anyhow::Result<Arc<dyn Backend>> {
    match backend {
        BackendConfig::S3(table) => Ok(Arc::new(S3Backend::connect(s3_config(table)?, cache)?)),
        BackendConfig::Own(OwnStore::Embedded { store }) => Ok(Arc::new(
            EmbeddedBackend::open(store)
                .with_context(|| format!("cannot open the store at {}", store.display()))?,
        )),
        BackendConfig::Own(own @ OwnStore::Server { .. }) => Ok(server_backend(own)?),
    }
}

/// Opens a store that must already exist, creating nothing: for syncing
/// (an unmounted disk must not get a fresh, empty store) and for checks
/// that only read (`pouch migrate verify`).
pub fn open_existing(
    backend: &BackendConfig,
    cache: Option<PathBuf>,
) -> anyhow::Result<Arc<dyn Backend>> {
    if let BackendConfig::Own(OwnStore::Embedded { store }) = backend
        && !EmbeddedBackend::exists(store)
    {
        return Err(pouch_core::Error::NoStore {
            store: EmbeddedBackend::description(store),
        }
        .into());
    }
    open(backend, cache)
}

fn server_backend(own: &OwnStore) -> anyhow::Result<Arc<dyn Backend>> {
    let OwnStore::Server {
        url,
        namespace,
        token,
    } = own
    else {
        unreachable!("called for servers only")
    };
    let token = match token {
        Some(token) => token.clone(),
        None => std::env::var("POUCH_STORE_TOKEN")
            .context("set POUCH_STORE_TOKEN to the pouch-store namespace's token")?,
    };
    Ok(Arc::new(RemoteBackend::new(url, namespace, token)?))
}

/// The embedded store folders `config` uses (its store, a migration's
/// target, the previous store), which are never synced themselves.
pub fn embedded_folders(config: &Config) -> Vec<PathBuf> {
    [
        Some(&config.backend),
        config.migration.as_ref().map(|m| &m.target),
        config.previous_backend.as_ref(),
    ]
    .into_iter()
    .flatten()
    .filter_map(|backend| match backend {
        BackendConfig::Own(OwnStore::Embedded { store }) => Some(store.clone()),
        _ => None,
    })
    .collect()
}

/// A store's description. An embedded store is named, not opened: opening
/// one that was deleted (a retired store) would create it again, and
/// `pouch status` should not open a second store to name it.
pub fn describe(backend: &BackendConfig) -> String {
    match backend {
        BackendConfig::Own(OwnStore::Embedded { store }) => EmbeddedBackend::description(store),
        // Building these clients touches no network.
        other => open(other, None).map_or_else(|_| "the store".into(), |b| b.describe()),
    }
}
