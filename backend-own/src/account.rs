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

/// The error a refusal stands for: 401 a wrong credential (or password),
/// 403 or 400 the server's reason.
async fn refused(response: reqwest::Response) -> Error {
    let status = response.status();
    let message = response.text().await.unwrap_or_default().trim().to_owned();
    match status.as_u16() {
        401 => Error::Unauthorized,
        400 | 403 => Error::Forbidden(message),
        501 => Error::Unsupported("this pouch-store server has no accounts".into()),
        _ => Error::Unavailable {
            source: format!("the server answered {status}: {message}").into(),
        },
    }
}

/// Sends `request`; a refusal becomes its error.
async fn send(request: reqwest::RequestBuilder) -> Result<reqwest::Response> {
    let response = request.send().await.map_err(unreachable)?;
    if response.status().is_success() {
        Ok(response)
    } else {
        Err(refused(response).await)
    }
}

/// Sends `request` and reads its successful answer as JSON (`what` names
/// it in the error when it is not what Pouch expects).
async fn json_answer<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
    what: &str,
) -> Result<T> {
    let bytes = send(request).await?.bytes().await.map_err(unreachable)?;
    serde_json::from_slice(&bytes).map_err(|_| Error::Format {
        what: format!("the server's {what} is not what Pouch expects"),
    })
}

/// `url`'s API path made of `segments`, each escaped as one segment.
fn endpoint(url: &str, segments: &[&str]) -> Result<reqwest::Url> {
    let mut target = reqwest::Url::parse(&format!("{}/", url.trim_end_matches('/')))
        .map_err(|_| Error::InvalidInput("the server's URL cannot be parsed"))?;
    target
        .path_segments_mut()
        .map_err(|()| Error::InvalidInput("the server's URL cannot be parsed"))?
        .pop_if_empty()
        .extend(segments);
    Ok(target)
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
    let target = endpoint(url, &["v1", "account", "devices", device])?;
    send(http()?.delete(target).bearer_auth(credential)).await?;
    Ok(())
}

/// A shared folder as the server lists it for one of its members.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ShareInfo {
    /// Its namespace.
    pub namespace: String,
    /// The name its owner gave it.
    pub name: String,
    /// This account's role: `owner`, `editor` or `viewer`.
    pub role: String,
    /// Where this account mounted it (`None`: an invitation).
    pub path: Option<String>,
    /// Every member and their role, owner first.
    pub members: Vec<(String, String)>,
}

/// The shared folders the account is a member of.
pub async fn shares(url: &str, credential: &str) -> Result<Vec<ShareInfo>> {
    let target = endpoint(url, &["v1", "account", "shares"])?;
    json_answer(
        http()?.get(target).bearer_auth(credential),
        "list of shares",
    )
    .await
}

/// Makes a shared folder named `name` of the account's folder at `path`
/// (which it mounts there). Returns its namespace.
pub async fn create_share(url: &str, credential: &str, name: &str, path: &str) -> Result<String> {
    #[derive(serde::Deserialize)]
    struct Made {
        namespace: String,
    }
    let target = endpoint(url, &["v1", "account", "shares"])?;
    let body = serde_json::json!({ "name": name, "path": path });
    let made: Made = json_answer(
        http()?
            .post(target)
            .bearer_auth(credential)
            .body(body.to_string()),
        "answer to a new share",
    )
    .await?;
    Ok(made.namespace)
}

/// Sends a `body` (JSON) with `method` to the share route `segments`.
async fn share_call(
    url: &str,
    credential: &str,
    method: reqwest::Method,
    segments: &[&str],
    body: serde_json::Value,
) -> Result<()> {
    let mut path = vec!["v1", "account", "shares"];
    path.extend(segments);
    let target = endpoint(url, &path)?;
    send(
        http()?
            .request(method, target)
            .bearer_auth(credential)
            .body(body.to_string()),
    )
    .await?;
    Ok(())
}

/// Invites `user` into the share as `role` (`editor` or `viewer`), or
/// changes its role; the owner's call.
pub async fn invite(
    url: &str,
    credential: &str,
    share: &str,
    user: &str,
    role: &str,
) -> Result<()> {
    let body = serde_json::json!({ "user": user, "role": role });
    share_call(
        url,
        credential,
        reqwest::Method::POST,
        &[share, "members"],
        body,
    )
    .await
}

/// Removes `user` from the share (the owner's call; or the account's own
/// name: leaving it).
pub async fn remove_member(url: &str, credential: &str, share: &str, user: &str) -> Result<()> {
    let segments = [share, "members", user];
    share_call(
        url,
        credential,
        reqwest::Method::DELETE,
        &segments,
        serde_json::Value::Null,
    )
    .await
}

/// Makes member `user` the share's owner; the owner's call.
pub async fn transfer(url: &str, credential: &str, share: &str, user: &str) -> Result<()> {
    let body = serde_json::json!({ "user": user });
    share_call(
        url,
        credential,
        reqwest::Method::POST,
        &[share, "owner"],
        body,
    )
    .await
}

/// Mounts the share at `path` of the account's home (`None`: unmounts).
pub async fn mount(url: &str, credential: &str, share: &str, path: Option<&str>) -> Result<()> {
    let body = serde_json::json!({ "path": path });
    share_call(
        url,
        credential,
        reqwest::Method::PUT,
        &[share, "mount"],
        body,
    )
    .await
}

/// Removes every member but the owner; the owner's call.
pub async fn unshare(url: &str, credential: &str, share: &str) -> Result<()> {
    let segments = [share, "unshare"];
    share_call(
        url,
        credential,
        reqwest::Method::POST,
        &segments,
        serde_json::Value::Null,
    )
    .await
}

/// Has the server copy into namespace `to` the blocks of `ids` that
/// namespace `from` holds (no byte sent from here). Returns how many it
/// copied.
pub async fn adopt(
    url: &str,
    credential: &str,
    to: &str,
    from: &str,
    ids: &[pouch_backend::BlockId],
) -> Result<u64> {
    let mut adopted = 0;
    for batch in ids.chunks(crate::wire::MAX_READ_IDS) {
        let mut target = endpoint(url, &["v1", to, "blocks", "adopt"])?;
        target.query_pairs_mut().append_pair("from", from);
        let response = send(
            http()?
                .post(target)
                .bearer_auth(credential)
                .body(crate::wire::encode_ids(batch)),
        )
        .await?;
        let text = response.text().await.map_err(unreachable)?;
        adopted += text.trim().parse::<u64>().unwrap_or(0);
    }
    Ok(adopted)
}

/// A share link as its maker lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct LinkInfo {
    /// Its public id (for `unlink`).
    pub id: String,
    /// The namespace it reads.
    pub namespace: String,
    /// The path in it.
    pub path: String,
    /// When it stops working (seconds since the epoch), if it does.
    pub expires: Option<i64>,
    /// Whether it asks for a password.
    pub password: bool,
}

/// A link just made: its id, and its address on the server (the only time
/// the secret in it is shown).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct NewLink {
    /// Its public id.
    pub id: String,
    /// Its path on the server (`/s/…`).
    pub url: String,
}

/// Makes a link to `path` of `namespace`.
pub async fn create_link(
    url: &str,
    credential: &str,
    namespace: &str,
    path: &str,
    expires_secs: Option<u64>,
    password: Option<&str>,
) -> Result<NewLink> {
    let target = endpoint(url, &["v1", "account", "links"])?;
    let body = serde_json::json!({
        "namespace": namespace,
        "path": path,
        "expires_secs": expires_secs,
        "password": password,
    });
    json_answer(
        http()?
            .post(target)
            .bearer_auth(credential)
            .body(body.to_string()),
        "answer to a new link",
    )
    .await
}

/// The links this account made.
pub async fn links(url: &str, credential: &str) -> Result<Vec<LinkInfo>> {
    let target = endpoint(url, &["v1", "account", "links"])?;
    json_answer(http()?.get(target).bearer_auth(credential), "list of links").await
}

/// Revokes link `id`.
pub async fn unlink(url: &str, credential: &str, id: &str) -> Result<()> {
    let target = endpoint(url, &["v1", "account", "links", id])?;
    send(http()?.delete(target).bearer_auth(credential)).await?;
    Ok(())
}
