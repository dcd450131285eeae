//! A device's side of a `pouch-store` server's accounts: logging in with
//! the account's password for a device credential (the password is sent
//! once and kept nowhere), and listing or revoking the account's devices
//! with that credential.

use std::time::Duration;

use pouch_backend::{Error, Result};

/// What a login gives a device.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Login {
    /// The device's credential: the bearer token of the account's home.
    pub credential: String,
    /// The account's home namespace.
    pub namespace: String,
}

/// A device of an account, as the server lists them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct DeviceInfo {
    /// The name it logged in with.
    pub name: String,
    /// When it logged in (seconds since the epoch).
    pub created: i64,
    /// When it was revoked, if it was.
    pub revoked: Option<i64>,
}

fn http() -> Result<reqwest::Client> {
    pouch_backend::tls::install_provider();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(Error::internal("building the HTTP client"))
}

fn unreachable(e: reqwest::Error) -> Error {
    Error::Unavailable {
        source: Box::new(e),
    }
}

fn refused(status: reqwest::StatusCode) -> Error {
    match status.as_u16() {
        401 | 403 => Error::Unauthorized,
        501 => Error::Unsupported("this pouch-store server has no accounts".into()),
        _ => Error::Unavailable {
            source: format!("the server answered {status}").into(),
        },
    }
}

/// Sends `request` and reads its successful answer as JSON (`what` names
/// it in the error when it is not what Pouch expects).
async fn json_answer<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
    what: &str,
) -> Result<T> {
    let response = request.send().await.map_err(unreachable)?;
    if !response.status().is_success() {
        return Err(refused(response.status()));
    }
    let bytes = response.bytes().await.map_err(unreachable)?;
    serde_json::from_slice(&bytes).map_err(|_| Error::Format {
        what: format!("the server's {what} is not what Pouch expects"),
    })
}

/// Logs device `device` into account `user` on the server at `url`.
/// A wrong name or password is [`Error::Unauthorized`].
pub async fn login(url: &str, user: &str, password: &str, device: &str) -> Result<Login> {
    let body = serde_json::json!({"user": user, "password": password, "device": device});
    let request = http()?
        .post(format!("{}/v1/login", url.trim_end_matches('/')))
        .body(body.to_string());
    json_answer(request, "answer to a login").await
}

/// The devices of the account `credential` belongs to.
pub async fn devices(url: &str, credential: &str) -> Result<Vec<DeviceInfo>> {
    let request = http()?
        .get(format!("{}/v1/account/devices", url.trim_end_matches('/')))
        .bearer_auth(credential);
    json_answer(request, "list of devices").await
}

/// Revokes the credential of the account's device `device` at once.
pub async fn revoke(url: &str, credential: &str, device: &str) -> Result<()> {
    let mut target = reqwest::Url::parse(&format!(
        "{}/v1/account/devices/",
        url.trim_end_matches('/')
    ))
    .map_err(|_| Error::InvalidInput("the server's URL cannot be parsed"))?;
    target
        .path_segments_mut()
        .map_err(|()| Error::InvalidInput("the server's URL cannot be parsed"))?
        .pop_if_empty()
        .push(device);
    let response = http()?
        .delete(target)
        .bearer_auth(credential)
        .send()
        .await
        .map_err(unreachable)?;
    match response.status().as_u16() {
        204 => Ok(()),
        400 => Err(Error::InvalidInput("the account has no such device")),
        _ => Err(refused(response.status())),
    }
}
