//! `pouch login` and `pouch devices`: a device's account on a
//! `pouch-store` server. The password is asked for once per login and
//! never kept; the device's credential is the token in the config (0600),
//! revocable from any device of the account.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use pouch_backend_own::account::{self, Login};
use pouch_config::{BackendConfig, Config, OwnStore};

use crate::cli::DevicesAction;

/// The account's password: `POUCH_PASSWORD`, else standard input's first
/// line when that is not a terminal, else asked for without echo.
fn password(user: &str) -> anyhow::Result<String> {
    use std::io::IsTerminal;
    if let Ok(password) = std::env::var("POUCH_PASSWORD") {
        return Ok(password);
    }
    if !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    Ok(rpassword::prompt_password(format!(
        "password for {user}: "
    ))?)
}

/// Logs in to account `user` at `url` as device `device`.
pub async fn log_in(url: &str, user: &str, device: &str) -> anyhow::Result<Login> {
    let password = password(user)?;
    account::login(url, user, &password, device)
        .await
        .map_err(|e| match e {
            pouch_backend::Error::Unauthorized => {
                anyhow::anyhow!("{url} refused the login: wrong account name or password")
            }
            other => anyhow::Error::new(other).context(format!("cannot log in at {url}")),
        })
}

/// The server and credential of this folder's account.
pub(super) fn account_of(config: &Config) -> anyhow::Result<(String, String, String)> {
    match &config.backend {
        BackendConfig::Own(OwnStore::Server {
            url,
            namespace,
            token,
        }) => {
            let Some(user) = namespace.strip_prefix("home.") else {
                bail!("this folder syncs namespace {namespace} of {url}, not an account's home");
            };
            let token = match token {
                Some(token) => token.clone(),
                None => std::env::var("POUCH_STORE_TOKEN")
                    .context("this folder has no device credential; run `pouch login`")?,
            };
            Ok((url.clone(), user.to_owned(), token))
        }
        _ => bail!("this folder does not sync through an account on a pouch-store server"),
    }
}

/// `pouch login`: a new credential for this folder's device.
pub async fn login(config_path: &Path, device: Option<String>) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(config_path)?;
    let BackendConfig::Own(OwnStore::Server { url, namespace, .. }) = &config.backend else {
        bail!("this folder does not sync through a pouch-store server");
    };
    let Some(user) = namespace.strip_prefix("home.") else {
        bail!(
            "this folder syncs namespace {namespace}, not an account's home: `pouch init --user` logs a new folder in"
        );
    };
    let (url, user) = (url.clone(), user.to_owned());
    let device = device.unwrap_or_else(|| config.device.clone());
    let login = log_in(&url, &user, &device).await?;
    if login.namespace != namespace.as_str() {
        bail!(
            "{url} gave the home {} where this folder syncs {namespace}",
            login.namespace
        );
    }
    if let BackendConfig::Own(OwnStore::Server { token, .. }) = &mut config.backend {
        *token = Some(login.credential);
    }
    config.save(config_path)?;
    say!(
        "logged in to {user} at {url} as {device}; the credential is in {} (0600)",
        config_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `pouch devices [revoke NAME]`.
pub async fn devices(
    config_path: &Path,
    action: Option<DevicesAction>,
) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    let (url, user, credential) = account_of(&config)?;
    let refused = |e: pouch_backend::Error| match e {
        pouch_backend::Error::Unauthorized => anyhow::anyhow!(
            "{url} refused this device's credential (revoked?): `pouch login` to log in again"
        ),
        other => anyhow::Error::new(other),
    };
    match action {
        None => {
            for device in account::devices(&url, &credential).await.map_err(refused)? {
                let when = |secs: i64| {
                    humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64),
                    )
                };
                match device.revoked {
                    Some(at) => say!("{}  revoked {}", device.name, when(at)),
                    None => say!("{}  since {}", device.name, when(device.created)),
                }
            }
        }
        Some(DevicesAction::Revoke { name }) => {
            account::revoke(&url, &credential, &name)
                .await
                .map_err(refused)?;
            say!(
                "{user}'s device {name} can no longer sync (its files stay on it); the share links it made no longer open"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
