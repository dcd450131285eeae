//! Share links over HTTP: making, listing and revoking them with a device
//! credential, and the pages anyone with a link sees.
//!
//! ```text
//! POST   /v1/account/links  {namespace, path, expires_secs?, password?}  200 {id, url}
//! GET    /v1/account/links                                              200 [links]
//! DELETE /v1/account/links/{id}                                         204
//! GET    /s/{token}             a folder's files (or one file), or the password form
//! POST   /s/{token}             password=…: a cookie for this link, back to the page
//! GET    /s/{token}/f/{*path}   one file of the listing, streamed
//! GET    /s/{token}/zip         every file of the listing as one streamed .zip
//! ```
//!
//! A link serves exactly the files its listing names: the namespace's
//! current tree, folded from its journal, filtered to the link's path.
//! A requested path is looked up among those names, never joined to
//! anything, so `..` or an encoded slash reaches nothing else.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt;
use pouch_backend::Error;
use pouch_journal::gc::Fold;
use pouch_journal::node::Node;
use serde::Deserialize;

use super::links::{self, Closed, Opened};
use super::{ApiError, ApiResult, Served, Server, Shared, account_of};

/// The routes of share links (merged into the server's router).
pub(super) fn routes() -> Router<Arc<Server>> {
    Router::new()
        .route("/v1/account/links", get(list).post(create))
        .route("/v1/account/links/{id}", axum::routing::delete(revoke))
        .route("/s/{token}", get(page).post(unlock))
        .route("/s/{token}/f/{*path}", get(file))
        .route("/s/{token}/zip", get(zip))
}

/// Namespaces whose folds are kept between requests at most; the least
/// recently read goes first, so the memory they take stays bounded however
/// many namespaces have links.
const KEPT_FOLDS: usize = 32;

/// The journal folds of namespaces that links read, kept between requests
/// and brought up to date by reading only the new entries. Each has a
/// lock of its own: a slow read of one namespace holds up no other.
#[derive(Default)]
pub(super) struct Folds(std::sync::Mutex<FoldMap>);

#[derive(Default)]
struct FoldMap {
    /// Namespace → (when last asked for, its fold).
    kept: HashMap<String, (u64, Arc<tokio::sync::Mutex<Fold>>)>,
    /// Counts requests, for "when".
    clock: u64,
}

impl Folds {
    /// The fold of `namespace` (empty the first time, or after it was
    /// dropped to make room).
    fn of(&self, namespace: &str) -> Arc<tokio::sync::Mutex<Fold>> {
        let mut map = self.0.lock().expect("folds lock");
        map.clock += 1;
        let now = map.clock;
        if let Some((used, fold)) = map.kept.get_mut(namespace) {
            *used = now;
            return fold.clone();
        }
        if map.kept.len() >= KEPT_FOLDS {
            let oldest = map
                .kept
                .iter()
                .min_by_key(|(_, (used, _))| *used)
                .map(|(name, _)| name.clone());
            if let Some(oldest) = oldest {
                map.kept.remove(&oldest);
            }
        }
        let fold = Arc::new(tokio::sync::Mutex::new(Fold::default()));
        map.kept.insert(namespace.to_owned(), (now, fold.clone()));
        fold
    }
}

fn json_response(value: &impl serde::Serialize) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(value).expect("answers always serialise"),
    )
        .into_response()
}

#[derive(Deserialize)]
struct CreateRequest {
    namespace: String,
    path: String,
    expires_secs: Option<u64>,
    password: Option<String>,
}

async fn create(State(server): Shared, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    let (accounts, holder) = account_of(&server, &headers)?;
    let request: CreateRequest = serde_json::from_slice(&body).map_err(|_| {
        ApiError(Error::InvalidInput(
            "a link is JSON: namespace, path, expires_secs, password",
        ))
    })?;
    let (id, token) = tokio::task::spawn_blocking(move || {
        accounts.create_link(
            &holder,
            &request.namespace,
            &request.path,
            request.expires_secs,
            request.password.as_deref(),
        )
    })
    .await
    .map_err(Error::internal("making a link"))??;
    tracing::info!(link = %id, "a share link was made");
    Ok(json_response(
        &serde_json::json!({ "id": id, "url": format!("/s/{token}") }),
    ))
}

async fn list(State(server): Shared, headers: HeaderMap) -> ApiResult<Response> {
    let (accounts, holder) = account_of(&server, &headers)?;
    Ok(json_response(&accounts.links_of(&holder.user)?))
}

async fn revoke(
    State(server): Shared,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let (accounts, holder) = account_of(&server, &headers)?;
    accounts.revoke_link(&holder.user, &id)?;
    tracing::info!(link = %id, by = %holder.user, "a share link was revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// A page for a person: HTML, with headers that keep the token in the
/// address from leaking (no referrer, no caching) and nothing run.
fn html(status: StatusCode, title: &str, body: &str) -> Response {
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title>\
         <style>body{{font-family:sans-serif;max-width:48em;margin:2em auto}}\
         li{{margin:.3em 0}}</style></head><body>{body}</body></html>",
        escape(title)
    );
    let mut response = (status, page).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure(headers);
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
        ),
    );
    response
}

/// The headers every answer to a link carries.
fn secure(headers: &mut HeaderMap) {
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// `text` safe inside HTML text and quoted attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Characters escaped in one segment of a link's path.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `rel` as a URL path, each segment escaped.
fn url_path(rel: &str) -> String {
    rel.split('/')
        .map(|s| percent_encoding::utf8_percent_encode(s, SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// Why a link shows nothing, as a page.
fn closed(why: Closed) -> Response {
    match why {
        Closed::Unknown => html(
            StatusCode::NOT_FOUND,
            "Not found",
            "<h1>This link does not work</h1><p>It was revoked, or never existed.</p>",
        ),
        Closed::Expired => html(
            StatusCode::GONE,
            "Expired",
            "<h1>This link has expired</h1>",
        ),
    }
}

/// The cookie that says a link's password was given: a keyed hash of
/// the token, under a key this server process drew at start.
fn unlock_cookie(server: &Server, token: &str) -> String {
    blake3::keyed_hash(&server.link_key, token.as_bytes())
        .to_hex()
        .to_string()
}

/// Whether `headers` carry the cookie for `token`.
fn unlocked(server: &Server, token: &str, headers: &HeaderMap) -> bool {
    let wanted = unlock_cookie(server, token);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix("pouch_link="))
        .any(|value| super::constant_time_eq(value.as_bytes(), wanted.as_bytes()))
}

/// What the link `token` opens, if the request may see it: `Err` is the
/// answer to give instead (not found, expired, the password form).
fn opened(server: &Server, token: &str, headers: &HeaderMap) -> Result<Opened, Box<Response>> {
    let Some((accounts, _)) = &server.accounts else {
        return Err(Box::new(closed(Closed::Unknown)));
    };
    let opened = match accounts.open_link(token) {
        Ok(Ok(opened)) => opened,
        Ok(Err(why)) => return Err(Box::new(closed(why))),
        Err(e) => return Err(Box::new(ApiError(e).into_response())),
    };
    if opened.password.is_some() && !unlocked(server, token, headers) {
        return Err(Box::new(password_form(StatusCode::UNAUTHORIZED, false)));
    }
    Ok(opened)
}

fn password_form(status: StatusCode, wrong: bool) -> Response {
    let said = if wrong {
        "<p id=\"wrong\">Wrong password.</p>"
    } else {
        ""
    };
    html(
        status,
        "Password",
        &format!(
            "<h1>This link asks for a password</h1>{said}<form method=\"post\">\
             <input type=\"password\" name=\"password\" autofocus> \
             <button type=\"submit\">Open</button></form>"
        ),
    )
}

#[derive(Deserialize)]
struct Unlock {
    password: String,
}

/// `POST /s/{token}`: the password form's answer. Checked in turn with
/// logins (two at once at most, a wrong one holding its turn half a
/// second), so guessing is as slow as guessing account passwords.
async fn unlock(
    State(server): Shared,
    Path(token): Path<String>,
    Form(form): Form<Unlock>,
) -> Response {
    let Some((accounts, _)) = &server.accounts else {
        return closed(Closed::Unknown);
    };
    let opened = match accounts.open_link(&token) {
        Ok(Ok(opened)) => opened,
        Ok(Err(why)) => return closed(why),
        Err(e) => return ApiError(e).into_response(),
    };
    let Ok(_turn) = server.logins.acquire().await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let right = tokio::task::spawn_blocking(move || links::password_ok(&opened, &form.password))
        .await
        .map(|r| r.unwrap_or(false))
        .unwrap_or(false);
    if !right {
        server.metrics.unauthorized();
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        return password_form(StatusCode::UNAUTHORIZED, true);
    }
    let cookie = format!(
        "pouch_link={}; Path=/s/{token}; HttpOnly; SameSite=Strict",
        unlock_cookie(&server, &token)
    );
    let mut response = (StatusCode::SEE_OTHER, "").into_response();
    let headers = response.headers_mut();
    if let (Ok(cookie), Ok(location)) = (
        HeaderValue::from_str(&cookie),
        HeaderValue::from_str(&format!("/s/{token}")),
    ) {
        headers.insert(header::SET_COOKIE, cookie);
        headers.insert(header::LOCATION, location);
    }
    secure(headers);
    response
}

/// One file a link serves: its path relative to the link, and its node.
struct Listed {
    rel: String,
    node: Node,
}

/// The files link `opened` serves now, in path order: the files of its
/// namespace's current tree at its path or under it, named relative to
/// it (a link to one file names it by its own name). Names that could
/// escape a folder when saved (`..`, empty parts) are left out.
async fn listing(server: &Arc<Server>, opened: &Opened) -> Result<(Served, Vec<Listed>), ApiError> {
    let backend = server.open_account_namespace(&opened.namespace)?;
    let fold = server.folds.of(&opened.namespace);
    let mut fold = fold.lock().await;
    if let Err(e) = fold.read(&*backend).await {
        // A trim since the last read: start again from the snapshot.
        tracing::info!("reading a namespace for a link again: {e}");
        *fold = Fold::default();
        fold.read(&*backend)
            .await
            .map_err(|e| ApiError(Error::internal("reading the journal for a link")(e)))?;
    }
    let base = opened.path.as_str();
    let inside = format!("{base}/");
    let files = fold
        .current(|p| base.is_empty() || p == base || p.starts_with(&inside))
        .into_iter()
        .filter(|(_, node)| matches!(node, Node::File { .. }))
        .filter_map(|(path, node)| {
            let rel = if base.is_empty() {
                path
            } else if path == base {
                path.rsplit('/').next().unwrap_or_default().to_owned()
            } else {
                path[inside.len()..].to_owned()
            };
            (!rel.is_empty() && links::valid_path(&rel)).then_some(Listed { rel, node })
        })
        .collect();
    Ok((backend, files))
}

fn size_text(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// What link `token` serves, for a request that may see it: `Err` is the
/// answer to give instead.
async fn open_listing(
    server: &Arc<Server>,
    token: &str,
    headers: &HeaderMap,
) -> Result<(Opened, Served, Vec<Listed>), Box<Response>> {
    let opened = opened(server, token, headers)?;
    let (backend, files) = listing(server, &opened)
        .await
        .map_err(|e| Box::new(e.into_response()))?;
    Ok((opened, backend, files))
}

/// `GET /s/{token}`: the files the link serves, each a download link, and
/// the whole as a `.zip`.
async fn page(State(server): Shared, Path(token): Path<String>, headers: HeaderMap) -> Response {
    let (opened, _, files) = match open_listing(&server, &token, &headers).await {
        Ok(listed) => listed,
        Err(answer) => return *answer,
    };
    if files.is_empty() {
        return html(
            StatusCode::NOT_FOUND,
            "Not found",
            "<h1>Nothing is here any more</h1>",
        );
    }
    let title = match opened.path.rsplit('/').next() {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ => "Shared files".to_owned(),
    };
    let mut body = format!("<h1>{}</h1><ul id=\"files\">", escape(&title));
    for file in &files {
        let size = match file.node {
            Node::File { size, .. } => size,
            _ => 0,
        };
        body.push_str(&format!(
            "<li><a class=\"file\" href=\"/s/{token}/f/{}\" download>{}</a> <span>{}</span></li>",
            url_path(&file.rel),
            escape(&file.rel),
            size_text(size)
        ));
    }
    body.push_str(&format!(
        "</ul><p><a id=\"zip\" href=\"/s/{token}/zip\" download>Download all ({} files, .zip)</a></p>",
        files.len()
    ));
    html(StatusCode::OK, &title, &body)
}

/// The blocks of `node` as one stream of bytes.
fn content(
    backend: Served,
    node: &Node,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + use<> {
    let ids: Vec<_> = match node {
        Node::File { blocks, .. } => blocks.iter().map(|b| b.id).collect(),
        _ => Vec::new(),
    };
    futures_util::stream::iter(ids).then(move |id| {
        let backend = backend.clone();
        async move { backend.get_block(id).await.map_err(std::io::Error::other) }
    })
}

/// `Content-Disposition` for a download named `name`.
fn attachment(name: &str) -> HeaderValue {
    let encoded = percent_encoding::utf8_percent_encode(name, SEGMENT);
    HeaderValue::from_str(&format!("attachment; filename*=UTF-8''{encoded}"))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// `GET /s/{token}/f/{*path}`: one file of the listing.
async fn file(
    State(server): Shared,
    Path((token, path)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let (_, backend, files) = match open_listing(&server, &token, &headers).await {
        Ok(listed) => listed,
        Err(answer) => return *answer,
    };
    let Some(found) = files.into_iter().find(|f| f.rel == path) else {
        return html(
            StatusCode::NOT_FOUND,
            "Not found",
            "<h1>No such file here</h1>",
        );
    };
    let name = found.rel.rsplit('/').next().unwrap_or("file").to_owned();
    let mut response = Response::new(Body::from_stream(content(backend, &found.node)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Node::File { size, .. } = found.node {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    }
    headers.insert(header::CONTENT_DISPOSITION, attachment(&name));
    secure(headers);
    response
}

/// A writer that hands what it is given to an async body, a piece at a
/// time (the zip is made on a blocking thread).
struct ToBody(tokio::sync::mpsc::Sender<std::io::Result<Bytes>>);

impl Write for ToBody {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `GET /s/{token}/zip`: every file of the listing, stored (not
/// compressed: most of what people share is compressed already), made as
/// it is sent, a block in memory at a time.
async fn zip(State(server): Shared, Path(token): Path<String>, headers: HeaderMap) -> Response {
    let (opened, backend, files) = match open_listing(&server, &token, &headers).await {
        Ok(listed) => listed,
        Err(answer) => return *answer,
    };
    let name = match opened.path.rsplit('/').next() {
        Some(name) if !name.is_empty() => format!("{name}.zip"),
        _ => "shared.zip".to_owned(),
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let error = tx.clone();
        let made = (|| -> std::io::Result<()> {
            let out = std::io::BufWriter::with_capacity(256 << 10, ToBody(tx));
            let mut archive = zip::ZipWriter::new_stream(out);
            for file in files {
                let Node::File { size, blocks, .. } = &file.node else {
                    continue;
                };
                let options = zip::write::SimpleFileOptions::default()
                    .compression_method(zip::CompressionMethod::Stored)
                    .large_file(*size >= u32::MAX as u64);
                archive.start_file(file.rel.as_str(), options)?;
                for block in blocks {
                    let bytes = runtime
                        .block_on(backend.get_block(block.id))
                        .map_err(std::io::Error::other)?;
                    archive.write_all(&bytes)?;
                }
            }
            archive.finish()?.flush()
        })();
        if let Err(e) = made {
            tracing::warn!("a link's zip was cut short: {e}");
            // The client sees the body end early, not a whole archive.
            let _ = error.blocking_send(Err(e));
        }
    });
    let body = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    headers.insert(header::CONTENT_DISPOSITION, attachment(&name));
    secure(headers);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_are_kept_per_namespace_and_the_least_recently_read_goes_first() {
        let folds = Folds::default();
        let first = folds.of("share.0");
        assert!(Arc::ptr_eq(&first, &folds.of("share.0")), "kept");
        for i in 1..KEPT_FOLDS {
            folds.of(&format!("share.{i}"));
        }
        // share.0 read again: share.1 is now the least recently read.
        folds.of("share.0");
        folds.of("one.more");
        let map = folds.0.lock().unwrap();
        assert_eq!(map.kept.len(), KEPT_FOLDS);
        assert!(map.kept.contains_key("share.0"));
        assert!(!map.kept.contains_key("share.1"), "dropped to make room");
        assert!(map.kept.contains_key("share.2"));
    }
}
