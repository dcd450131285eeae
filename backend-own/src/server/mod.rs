//! The `pouch-store` HTTP server: the storage API over HTTP, one store
//! per namespace, bearer-token auth.
//!
//! Routes (all but `/metrics` and `/healthz` need `Authorization: Bearer`,
//! checked before anything else of the request is read: a caller without
//! the namespace's token gets 401 after the headers, whatever its path,
//! query or body):
//!
//! ```text
//! POST /v1/{ns}/blocks            put a batch (wire::encode_blocks)      204
//! GET  /v1/{ns}/blocks/{id}       one verified block, encoded            200 + x-pouch-codec
//! POST /v1/{ns}/blocks/has        ids -> one byte per id                 200
//! POST /v1/{ns}/blocks/delete     ids                                    204
//! PUT  /v1/{ns}/journal/{seq}     create-only append                     201 / 409
//! GET  /v1/{ns}/journal?after=&limit=                                    200 entries
//! GET  /v1/{ns}/journal/wait?after=&timeout_ms=   long-poll -> head      200
//! POST /v1/{ns}/journal/trim     x-pouch-seq: drop entries up to it      204
//! PUT  /v1/{ns}/snapshot          body, x-pouch-seq                      204
//! GET  /v1/{ns}/snapshot                                                 200 / 404
//! GET  /v1/{ns}/identity          the store's identity (32 hex digits)   200 / 404
//! PUT  /v1/{ns}/identity          proposed id -> the id in force         200
//! POST /v1/{ns}/blocks/adopt?from=NS  ids -> copied from NS (share_routes) 200
//! ```
//!
//! A device credential's account needs a role in the namespace: reads
//! (GETs, `blocks/has`, `blocks/read`) a viewer's, everything else an
//! editor's; without one it gets 403. Accounts, devices and shared folders
//! have routes of their own (`accounts.rs`, `share_routes.rs`), and so do
//! share links (`link_pages.rs`).
//!
//! Errors carry `x-pouch-error` (a kind the client maps back to
//! [`pouch_backend::Error`]) and a human message as the body.
//!
//! Request bodies together hold at most `bodies_in_flight` bytes: an
//! authorized request with a body first reserves its declared length (the
//! largest body when it declares none) and waits, body unread, while the
//! budget is taken. `/metrics` names namespaces only to a caller with the
//! `metrics_token`.

pub mod accounts;
mod config;
mod link_pages;
pub mod links;
mod maintenance;
mod metrics;
mod share_routes;
pub mod shares;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use pouch_backend::{Backend, BlockId, Error, Seq, Snapshot, StoreId};
use serde::Deserialize;
use tokio::sync::Semaphore;

pub use config::{Maintenance, NamespaceConfig, Secret, ServerConfig};
pub use metrics::Metrics;

use crate::EmbeddedBackend;
use crate::wire;

/// The largest request body accepted (a batch of blocks).
pub const MAX_BODY: usize = 64 << 20;
/// The longest a long-poll may hold a request.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// Most journal entries returned by one read.
pub const MAX_ENTRIES: usize = 10_000;

/// Header naming an error's kind.
pub const ERROR_HEADER: &str = "x-pouch-error";

/// One served namespace.
struct Namespace {
    /// The configured token (`None`: an account's home, reached with its
    /// devices' credentials only).
    token: Option<String>,
    backend: Served,
}

/// Where a single-node server makes the stores of accounts' homes.
struct Homes {
    data: std::path::PathBuf,
    options: crate::storage::StoreOptions,
}

/// What serves a namespace: a store on this machine's disk, or a cell's
/// namespace (this server is then one of the cell's front ends).
#[derive(Clone)]
pub enum Served {
    /// A store in a folder of its own.
    Embedded(EmbeddedBackend),
    /// A namespace of a cell.
    Cell(Arc<crate::cell::CellBackend>),
}

impl std::ops::Deref for Served {
    type Target = dyn Backend;

    fn deref(&self) -> &Self::Target {
        match self {
            Served::Embedded(backend) => backend,
            Served::Cell(backend) => backend.as_ref(),
        }
    }
}

impl Served {
    /// `put_blocks` of blocks verified as they streamed in.
    async fn put_verified_blocks(&self, blocks: Vec<pouch_backend::Block>) -> Result<(), Error> {
        match self {
            Served::Embedded(backend) => backend.put_verified_blocks(blocks).await,
            Served::Cell(backend) => backend.put_verified_blocks(blocks).await,
        }
    }

    /// Block `id` as stored, verified.
    async fn get_block_encoded(&self, id: BlockId) -> Result<pouch_backend::Block, Error> {
        match self {
            Served::Embedded(backend) => backend.get_block_encoded(id).await,
            Served::Cell(backend) => backend.get_block_encoded(id).await,
        }
    }

    /// The store on this machine's disk, if it is one.
    fn embedded(&self) -> Option<&EmbeddedBackend> {
        match self {
            Served::Embedded(backend) => Some(backend),
            Served::Cell(_) => None,
        }
    }
}

/// The server's shared state.
pub struct Server {
    /// The namespaces served: those configured, and accounts' homes and
    /// shared folders as they are first used.
    namespaces: std::sync::RwLock<HashMap<String, Namespace>>,
    /// The accounts (single-node servers), with where their homes go.
    accounts: Option<(Arc<accounts::Accounts>, Homes)>,
    /// Background work, for the homes opened after it started.
    maintenance: std::sync::OnceLock<Maintenance>,
    /// Logins checking a password at once (each an argon2 hash).
    logins: Semaphore,
    /// The cell this server is a front end of, if it is one.
    cell: Option<Arc<crate::cell::Cell>>,
    metrics: Metrics,
    metrics_token: Option<String>,
    /// One permit per byte of request body in flight.
    bodies: Semaphore,
    /// The key of the cookies that say a link's password was given
    /// (drawn at start: a restart asks for passwords again).
    link_key: [u8; 32],
    /// The journals links read, folded.
    folds: link_pages::Folds,
}

impl Server {
    /// Opens every namespace's store under `config.data`.
    pub fn open(config: &ServerConfig) -> pouch_backend::Result<Arc<Self>> {
        let mut namespaces = HashMap::new();
        for (name, ns) in &config.namespaces {
            let options = crate::storage::StoreOptions {
                volume_size: config.volume_size,
            };
            let store = crate::storage::Store::open(&config.data.join(name), options)?;
            let backend = EmbeddedBackend::new(Arc::new(store));
            namespaces.insert(
                name.clone(),
                Namespace {
                    token: Some(ns.token.clone()),
                    backend: Served::Embedded(backend),
                },
            );
        }
        let accounts = accounts::Accounts::open(&config.data)?;
        let homes = Homes {
            data: config.data.clone(),
            options: crate::storage::StoreOptions {
                volume_size: config.volume_size,
            },
        };
        Ok(Self::serving(
            namespaces,
            None,
            Some((Arc::new(accounts), homes)),
            config,
        ))
    }

    /// A front end of `cell`, serving the namespaces `config` names (its
    /// data folder and volume size are the cell's business, unused here).
    pub async fn open_cell(
        cell: &Arc<crate::cell::Cell>,
        config: &ServerConfig,
    ) -> pouch_backend::Result<Arc<Self>> {
        let mut namespaces = HashMap::new();
        for (name, ns) in &config.namespaces {
            let backend = cell.namespace(name).await?;
            namespaces.insert(
                name.clone(),
                Namespace {
                    token: Some(ns.token.clone()),
                    backend: Served::Cell(Arc::new(backend)),
                },
            );
        }
        Ok(Self::serving(namespaces, Some(cell.clone()), None, config))
    }

    fn serving(
        namespaces: HashMap<String, Namespace>,
        cell: Option<Arc<crate::cell::Cell>>,
        accounts: Option<(Arc<accounts::Accounts>, Homes)>,
        config: &ServerConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            namespaces: std::sync::RwLock::new(namespaces),
            accounts,
            maintenance: std::sync::OnceLock::new(),
            logins: Semaphore::new(2),
            cell,
            metrics: Metrics::default(),
            metrics_token: config.metrics_token.as_ref().map(|t| t.0.clone()),
            bodies: Semaphore::new(
                usize::try_from(config.bodies_in_flight)
                    .unwrap_or(usize::MAX)
                    .min(Semaphore::MAX_PERMITS),
            ),
            link_key: accounts::random_bytes::<32>().unwrap_or_else(|_| {
                // No randomness from the OS: no password cookie will match.
                *blake3::hash(format!("{:?}", std::time::SystemTime::now()).as_bytes()).as_bytes()
            }),
            folds: link_pages::Folds::default(),
        })
    }

    /// Starts the scrubber and compaction workers (on the current tokio
    /// runtime).
    pub fn start_maintenance(self: &Arc<Self>, settings: &Maintenance) {
        let _ = self.maintenance.set(settings.clone());
        maintenance::spawn(self, settings);
    }

    /// The router serving this state.
    pub fn router(self: &Arc<Self>) -> Router {
        let api = Router::new()
            .route("/v1/{ns}/blocks", post(put_blocks))
            .route("/v1/{ns}/blocks/has", post(has_blocks))
            .route("/v1/{ns}/blocks/read", post(read_blocks))
            .route("/v1/{ns}/blocks/delete", post(delete_blocks))
            .route("/v1/{ns}/blocks/adopt", post(share_routes::adopt_blocks))
            .route("/v1/{ns}/blocks/{id}", get(get_block))
            .route("/v1/{ns}/gc/lease", post(gc_lease))
            .route("/v1/{ns}/gc/list", get(gc_list))
            .route("/v1/{ns}/gc/mark", post(gc_mark))
            .route("/v1/{ns}/gc/unmark", post(gc_unmark))
            .route("/v1/{ns}/gc/sweep", post(gc_sweep))
            .route("/v1/{ns}/journal", get(read_journal))
            .route("/v1/{ns}/journal/wait", get(wait_journal))
            .route("/v1/{ns}/journal/trim", post(trim_journal))
            .route("/v1/{ns}/journal/{seq}", put(append))
            .route("/v1/{ns}/snapshot", put(put_snapshot).get(get_snapshot))
            .route("/v1/{ns}/identity", put(put_identity).get(get_identity))
            // Runs before any extractor of the routes: nothing of an
            // unauthorized request is parsed or read past its headers.
            .route_layer(middleware::from_fn_with_state(self.clone(), admit));
        Router::new()
            .merge(api)
            .route("/v1/login", post(login))
            .route("/v1/account/devices", get(list_devices))
            .route(
                "/v1/account/devices/{device}",
                axum::routing::delete(revoke_device),
            )
            .merge(share_routes::routes())
            .merge(link_pages::routes())
            .route("/metrics", get(metrics::serve))
            .route("/healthz", get(|| async { "ok\n" }))
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(self.clone())
    }

    /// The namespace `name` and what the caller may do there: everything
    /// with its configured token; with a device credential, what its
    /// account's role there allows (its home: everything). Unknown
    /// namespaces, wrong tokens and revoked credentials look the same from
    /// outside (401); a good credential where its account has no role is
    /// refused (403), so a member removed from a share learns so at once.
    fn authorize(self: &Arc<Self>, name: &str, headers: &HeaderMap) -> Result<Access, ApiError> {
        let token = bearer(headers);
        {
            let namespaces = self.namespaces.read().expect("namespaces");
            if let (
                Some(Namespace {
                    token: Some(wanted),
                    backend,
                }),
                Some(token),
            ) = (namespaces.get(name), token)
                && constant_time_eq(wanted.as_bytes(), token.as_bytes())
            {
                return Ok(Access {
                    backend: backend.clone(),
                    role: shares::Role::Owner,
                    user: None,
                });
            }
        }
        if let Some(holder) = self.holder(headers)? {
            let (accounts, _) = self.accounts.as_ref().expect("a holder has accounts");
            return match accounts.role(&holder.user, name)? {
                Some(role) => Ok(Access {
                    backend: self.open_account_namespace(name).map_err(ApiError)?,
                    role,
                    user: Some(holder.user),
                }),
                None => Err(ApiError(Error::Forbidden(
                    "this account is not a member of that folder (any more)".into(),
                ))),
            };
        }
        self.metrics.unauthorized();
        Err(ApiError(Error::Unauthorized))
    }

    /// The account and device whose credential `headers` carry, if any.
    fn holder(&self, headers: &HeaderMap) -> Result<Option<accounts::Holder>, ApiError> {
        match (&self.accounts, bearer(headers)) {
            (Some((accounts, _)), Some(token)) => Ok(accounts.holder(token)?),
            _ => Ok(None),
        }
    }

    /// An account's namespace `name` (a home or a shared folder), opened
    /// (and its background work started) at its first use.
    fn open_account_namespace(self: &Arc<Self>, name: &str) -> pouch_backend::Result<Served> {
        if let Some(ns) = self.namespaces.read().expect("namespaces").get(name) {
            return Ok(ns.backend.clone());
        }
        let Some((_, homes)) = &self.accounts else {
            return Err(Error::Unauthorized);
        };
        let mut namespaces = self.namespaces.write().expect("namespaces");
        if let Some(ns) = namespaces.get(name) {
            return Ok(ns.backend.clone());
        }
        let store = crate::storage::Store::open(&homes.data.join(name), homes.options.clone())?;
        let backend = EmbeddedBackend::new(Arc::new(store));
        namespaces.insert(
            name.to_owned(),
            Namespace {
                token: None,
                backend: Served::Embedded(backend.clone()),
            },
        );
        if let Some(settings) = self.maintenance.get() {
            maintenance::spawn_store(self, name, &backend, settings);
        }
        tracing::info!(namespace = %name, "an account's namespace opened");
        Ok(Served::Embedded(backend))
    }

    /// Refuses `bytes` more stored for `caller`'s account when that would
    /// take it over its quota, which counts its home and every shared
    /// folder it mounted (a share counts for each member who mounts it).
    async fn within_quota(self: &Arc<Self>, caller: &Caller, bytes: u64) -> Result<(), ApiError> {
        let (Some(user), Some((accounts, _))) = (&caller.0, &self.accounts) else {
            return Ok(());
        };
        let Some(quota) = accounts.quota(user)? else {
            return Ok(());
        };
        let mut used = 0u64;
        for namespace in accounts.counted_namespaces(user)? {
            if let Some(store) = self.open_account_namespace(&namespace)?.embedded() {
                let store = store.store().clone();
                used += tokio::task::spawn_blocking(move || store.payload_bytes())
                    .await
                    .map_err(Error::internal("reading an account's usage"))??;
            }
        }
        if used.saturating_add(bytes) > quota {
            tracing::info!(%user, used, quota, bytes, "an upload over quota was refused");
            return Err(ApiError(Error::Forbidden(format!(
                "the account {user} is over its quota: {used} of {quota} bytes used, this upload needs {bytes} more"
            ))));
        }
        Ok(())
    }

    /// Whether `headers` carry the metrics token.
    fn may_see_namespaces(&self, headers: &HeaderMap) -> bool {
        match (&self.metrics_token, bearer(headers)) {
            (Some(wanted), Some(token)) => constant_time_eq(wanted.as_bytes(), token.as_bytes()),
            _ => false,
        }
    }

    /// The namespaces served from a cell, for its garbage collection.
    fn cell_namespaces(&self) -> Vec<(String, Arc<dyn Backend>)> {
        self.namespaces
            .read()
            .expect("namespaces")
            .iter()
            .filter_map(|(name, ns)| match &ns.backend {
                Served::Cell(cell) => Some((name.clone(), cell.clone() as Arc<dyn Backend>)),
                Served::Embedded(_) => None,
            })
            .collect()
    }

    /// The stores on this machine's disk, for metrics and maintenance (a
    /// cell's are its nodes' business).
    fn stores(&self) -> Vec<(String, EmbeddedBackend)> {
        self.namespaces
            .read()
            .expect("namespaces")
            .iter()
            .filter_map(|(name, ns)| Some((name.clone(), ns.backend.embedded()?.clone())))
            .collect()
    }
}

/// The bearer token of a request, if it carries one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// The namespace a `/v1/{ns}/...` path names.
fn namespace_of(path: &str) -> &str {
    path.strip_prefix("/v1/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("")
}

/// The store an authorized request works on, put there by [`admit`].
type Authorized = Extension<Served>;

/// What [`Server::authorize`] grants.
struct Access {
    backend: Served,
    role: shares::Role,
    /// The account of a device credential (`None`: a namespace token).
    user: Option<String>,
}

/// The account an authorized request was made for, put there by
/// [`admit`] (`None`: a configured namespace token, which has no quota).
#[derive(Clone)]
struct Caller(Option<String>);

/// The least role a route of the API needs: reading needs a viewer,
/// anything that changes the namespace (blocks, journal, snapshot,
/// identity, the collector's lease and marks) an editor.
fn needed_role(method: &Method, path: &str) -> shares::Role {
    let reads = *method == Method::GET
        || (*method == Method::POST
            && (path.ends_with("/blocks/has") || path.ends_with("/blocks/read")));
    if reads {
        shares::Role::Viewer
    } else {
        shares::Role::Editor
    }
}

/// Admits a request to the API: checks the namespace's token first, from
/// the headers alone; then, for a request with a body, reserves its length
/// in the budget of bodies in flight (waiting while it is taken) before
/// the body is read.
async fn admit(State(server): Shared, mut request: Request, next: Next) -> Response {
    let access = match server.authorize(namespace_of(request.uri().path()), request.headers()) {
        Ok(access) => access,
        Err(e) => return e.into_response(),
    };
    if access.role < needed_role(request.method(), request.uri().path()) {
        tracing::info!(
            user = access.user.as_deref().unwrap_or(""),
            path = request.uri().path(),
            "a viewer's write was refused"
        );
        return ApiError(Error::Forbidden(
            "this account may only view that shared folder".into(),
        ))
        .into_response();
    }
    let has_body = matches!(*request.method(), Method::POST | Method::PUT);
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // A body declared larger than any accepted reserves the most one may
    // take; the handler refuses it once that much has arrived (answering
    // before reading it would break the client's pipe mid-upload and hide
    // the answer from it).
    let reserve = match (has_body, declared) {
        (false, _) => 0,
        (true, Some(len)) => len.min(MAX_BODY as u64) as u32,
        (true, None) => MAX_BODY as u32,
    };
    let _reserved = match reserve {
        0 => None,
        n => match server.bodies.acquire_many(n).await {
            Ok(permit) => Some(permit),
            Err(_) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
        },
    };
    request.extensions_mut().insert(access.backend);
    request.extensions_mut().insert(Caller(access.user));
    next.run(request).await
}

/// Compares secrets in time independent of where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A backend error as an HTTP response.
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

impl From<wire::Malformed> for ApiError {
    fn from(e: wire::Malformed) -> Self {
        Self(Error::InvalidInput(e.0))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut headers = HeaderMap::new();
        let (status, kind) = match &self.0 {
            Error::BlockNotFound(id) => {
                headers.insert("x-pouch-block", header(&id.to_string()));
                (StatusCode::NOT_FOUND, "not-found")
            }
            Error::SlotTaken(_) => (StatusCode::CONFLICT, "slot-taken"),
            Error::Trimmed { through } => {
                headers.insert("x-pouch-head", header(&through.to_string()));
                (StatusCode::GONE, "trimmed")
            }
            Error::Gap { head, .. } => {
                headers.insert("x-pouch-head", header(&head.to_string()));
                (StatusCode::CONFLICT, "gap")
            }
            Error::Corrupt { id, .. } => {
                headers.insert("x-pouch-block", header(&id.to_string()));
                (StatusCode::UNPROCESSABLE_ENTITY, "corrupt")
            }
            Error::InvalidInput(_) => (StatusCode::BAD_REQUEST, "invalid"),
            Error::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Error::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Error::Fenced(_) => (StatusCode::CONFLICT, "fenced"),
            Error::Unsupported(_) => (StatusCode::NOT_IMPLEMENTED, "unsupported"),
            Error::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status.is_server_error() {
            tracing::error!("request failed: {}", self.0);
        }
        headers.insert(ERROR_HEADER, HeaderValue::from_static(kind));
        let message = match &self.0 {
            // The client wraps the reason in its own `Forbidden`.
            Error::Forbidden(reason) => reason.clone(),
            other => other.to_string(),
        };
        (status, headers, format!("{message}\n")).into_response()
    }
}

fn header(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).expect("ids and numbers are valid header values")
}

type Shared = State<Arc<Server>>;
type ApiResult<T> = Result<T, ApiError>;

/// What `POST /v1/login` takes.
#[derive(Deserialize)]
struct LoginRequest {
    user: String,
    password: String,
    device: String,
}

/// `POST /v1/login`: an account's password for a credential of the device
/// named (JSON in, JSON out: `credential`, `namespace`). Two checks run at
/// once at most, and a wrong one holds its turn half a second, so guessing
/// is slow whatever the number of connections.
async fn login(State(server): Shared, body: Bytes) -> ApiResult<Response> {
    let Some((accounts, _)) = &server.accounts else {
        return Err(ApiError(Error::Unsupported(
            "this server has no accounts".into(),
        )));
    };
    let request: LoginRequest = serde_json::from_slice(&body).map_err(|_| {
        ApiError(Error::InvalidInput(
            "a login is JSON: user, password, device",
        ))
    })?;
    let _turn = server
        .logins
        .acquire()
        .await
        .map_err(|_| ApiError(Error::Unauthorized))?;
    let accounts = accounts.clone();
    let (user, device) = (request.user.clone(), request.device.clone());
    let credential = tokio::task::spawn_blocking(move || {
        accounts.login(&request.user, &request.password, &request.device)
    })
    .await
    .map_err(Error::internal("checking a password"))??;
    match credential {
        Some(credential) => {
            tracing::info!(%user, %device, "a device logged in");
            let body = serde_json::json!({
                "credential": credential,
                "namespace": accounts::home_namespace(&user),
            });
            Ok((
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response())
        }
        None => {
            tracing::warn!(%user, %device, "a login failed");
            server.metrics.unauthorized();
            tokio::time::sleep(Duration::from_millis(500)).await;
            Err(ApiError(Error::Unauthorized))
        }
    }
}

/// `GET /v1/account/devices`: the devices of the account whose device
/// credential the request carries (JSON).
async fn list_devices(State(server): Shared, headers: HeaderMap) -> ApiResult<Response> {
    let (accounts, holder) = account_of(&server, &headers)?;
    let devices = accounts.devices(&holder.user)?;
    let body = serde_json::to_string(&devices).expect("devices always serialise");
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// `DELETE /v1/account/devices/{device}`: revokes a device's credential at
/// once (any device of the account may revoke another, or itself).
async fn revoke_device(
    State(server): Shared,
    Path(device): Path<String>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let (accounts, holder) = account_of(&server, &headers)?;
    if accounts.revoke(&holder.user, &device)? {
        tracing::info!(user = %holder.user, %device, by = %holder.device, "a device was revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError(Error::InvalidInput(
            "the account has no such device",
        )))
    }
}

/// The accounts and the holder of the device credential `headers` carry.
fn account_of(
    server: &Server,
    headers: &HeaderMap,
) -> Result<(Arc<accounts::Accounts>, accounts::Holder), ApiError> {
    match (&server.accounts, server.holder(headers)?) {
        (Some((accounts, _)), Some(holder)) => Ok((accounts.clone(), holder)),
        _ => {
            server.metrics.unauthorized();
            Err(ApiError(Error::Unauthorized))
        }
    }
}

/// A batched put, read as it streams in: each block is decoded and
/// verified as soon as its last byte arrives, so a malformed or forged
/// block stops the request there. Nothing is stored unless every block
/// is good (the batch is one group commit).
async fn put_blocks(
    State(server): Shared,
    Extension(backend): Authorized,
    Extension(caller): Extension<Caller>,
    body: axum::body::Body,
) -> ApiResult<StatusCode> {
    use futures_util::StreamExt;
    let mut decoder = wire::BlockStream::default();
    let mut blocks = Vec::new();
    let mut received = 0usize;
    let mut body = body.into_data_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError(Error::Unavailable {
                source: Box::new(std::io::Error::other(e)),
            })
        })?;
        received += chunk.len();
        if received > MAX_BODY {
            return Err(ApiError(Error::InvalidInput(
                "the request body is larger than the server accepts",
            )));
        }
        for block in decoder.push(&chunk)? {
            let block = tokio::task::spawn_blocking(move || block.verify().map(|()| block))
                .await
                .map_err(Error::internal("verifying a block"))??;
            blocks.push(block);
        }
    }
    decoder.finish()?;
    let bytes: u64 = blocks.iter().map(|b| b.payload().len() as u64).sum();
    server.within_quota(&caller, bytes).await?;
    server.metrics.blocks_put(blocks.len());
    // Each was verified above, as it arrived.
    backend.put_verified_blocks(blocks).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_block(
    State(server): Shared,
    Extension(backend): Authorized,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let id: BlockId = id
        .parse()
        .map_err(|_| ApiError(Error::InvalidInput("a block id is 64 hex digits")))?;
    server.metrics.block_get();
    let block = backend.get_block_encoded(id).await.inspect_err(|e| {
        if matches!(e, Error::Corrupt { .. }) {
            server.metrics.corrupt_read();
            tracing::error!(block = %id, "refused to serve a corrupt block: {e}");
        }
    })?;
    let codec = match block.codec() {
        pouch_backend::Codec::Raw => "raw",
        pouch_backend::Codec::Zstd => "zstd",
    };
    Ok(([("x-pouch-codec", codec)], block.payload().clone()).into_response())
}

/// Bytes of answers gathered before they are sent on.
const READ_PIECE: usize = 256 << 10;

/// A batched read: the answer for each id, in order, streamed as the
/// blocks are read (each verified first, as `get_block`), so a client's
/// download of many small files is a few requests. A bounded channel holds
/// the server to the client's pace.
async fn read_blocks(
    State(server): Shared,
    Extension(backend): Authorized,
    body: Bytes,
) -> ApiResult<Response> {
    let ids = wire::decode_ids(&body)?;
    if ids.len() > wire::MAX_READ_IDS {
        return Err(ApiError(Error::InvalidInput(
            "a batched read asks for at most 4096 blocks",
        )));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::spawn(async move {
        let mut out = bytes::BytesMut::new();
        for id in ids {
            server.metrics.block_get();
            let answer = match backend.get_block_encoded(id).await {
                Ok(block) => wire::Answer::Block(block),
                Err(Error::BlockNotFound(_)) => wire::Answer::NotFound,
                Err(e @ Error::Corrupt { .. }) => {
                    server.metrics.corrupt_read();
                    tracing::error!(block = %id, "refused to serve a corrupt block: {e}");
                    wire::Answer::Corrupt
                }
                Err(e) => {
                    // Cut short: the client sees the body end mid-answer.
                    tracing::warn!("a batched read failed: {e}");
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    return;
                }
            };
            wire::encode_answer(&mut out, &answer);
            if out.len() >= READ_PIECE && tx.send(Ok(out.split().freeze())).await.is_err() {
                return; // the client went away
            }
        }
        if !out.is_empty() {
            let _ = tx.send(Ok(out.freeze())).await;
        }
    });
    let answers = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|piece| (piece, rx))
    });
    Ok(Response::new(axum::body::Body::from_stream(answers)))
}

async fn has_blocks(Extension(backend): Authorized, body: Bytes) -> ApiResult<Vec<u8>> {
    let ids = wire::decode_ids(&body)?;
    let has = backend.has_blocks(&ids).await?;
    Ok(has.into_iter().map(u8::from).collect())
}

async fn delete_blocks(Extension(backend): Authorized, body: Bytes) -> ApiResult<StatusCode> {
    let ids = wire::decode_ids(&body)?;
    backend.delete_blocks(&ids).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct LeaseQuery {
    generation: Option<u64>,
    ttl_ms: u64,
}

async fn gc_lease(
    Extension(backend): Authorized,
    Query(query): Query<LeaseQuery>,
    holder: Bytes,
) -> ApiResult<String> {
    let holder = String::from_utf8_lossy(&holder).chars().take(200).collect();
    let lease = backend
        .gc_lease(pouch_backend::LeaseRequest {
            holder,
            generation: query.generation,
            ttl: Duration::from_millis(query.ttl_ms),
        })
        .await?;
    Ok(wire::encode_lease(&lease))
}

#[derive(Deserialize)]
struct ListQuery {
    after: Option<String>,
    limit: usize,
}

async fn gc_list(
    Extension(backend): Authorized,
    Query(query): Query<ListQuery>,
) -> ApiResult<Bytes> {
    let after = match query.after {
        Some(hex) => Some(
            hex.parse()
                .map_err(|_| ApiError(Error::InvalidInput("`after` is not a block id")))?,
        ),
        None => None,
    };
    let blocks = backend
        .gc_list(after, query.limit.min(wire::MAX_LIST))
        .await?;
    Ok(wire::encode_stored(&blocks))
}

#[derive(Deserialize)]
struct FencedQuery {
    generation: u64,
    marked_by_ms: Option<i64>,
}

async fn gc_mark(
    Extension(backend): Authorized,
    Query(query): Query<FencedQuery>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let ids = wire::decode_ids(&body)?;
    backend.gc_mark(query.generation, &ids, &[]).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn gc_unmark(
    Extension(backend): Authorized,
    Query(query): Query<FencedQuery>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let ids = wire::decode_ids(&body)?;
    backend.gc_mark(query.generation, &[], &ids).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn gc_sweep(
    Extension(backend): Authorized,
    Query(query): Query<FencedQuery>,
    body: Bytes,
) -> ApiResult<String> {
    let ids = wire::decode_ids(&body)?;
    let marked_by = query
        .marked_by_ms
        .ok_or(ApiError(Error::InvalidInput("`marked_by_ms` is missing")))?;
    let report = backend.gc_sweep(query.generation, &ids, marked_by).await?;
    Ok(format!("{} {}\n", report.blocks, report.bytes))
}

async fn append(
    State(server): Shared,
    Extension(backend): Authorized,
    Path((_, seq)): Path<(String, u64)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    backend.append(Seq(seq), body).await?;
    server.metrics.appended();
    Ok(StatusCode::CREATED)
}

#[derive(Deserialize)]
struct ReadQuery {
    after: u64,
    limit: Option<usize>,
}

async fn read_journal(
    Extension(backend): Authorized,
    Query(query): Query<ReadQuery>,
) -> ApiResult<Bytes> {
    let limit = query.limit.unwrap_or(MAX_ENTRIES).min(MAX_ENTRIES);
    let entries = backend.read_journal(Seq(query.after), limit).await?;
    Ok(wire::encode_entries(&entries))
}

#[derive(Deserialize)]
struct WaitQuery {
    after: u64,
    timeout_ms: u64,
}

async fn wait_journal(
    Extension(backend): Authorized,
    Query(query): Query<WaitQuery>,
) -> ApiResult<String> {
    let timeout = Duration::from_millis(query.timeout_ms).min(MAX_WAIT);
    let head = backend.wait_journal(Seq(query.after), timeout).await?;
    Ok(head.to_string())
}

async fn trim_journal(Extension(backend): Authorized, headers: HeaderMap) -> ApiResult<StatusCode> {
    backend.trim_journal(Seq(seq_header(&headers)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The `x-pouch-seq` header's number.
fn seq_header(headers: &HeaderMap) -> ApiResult<u64> {
    headers
        .get("x-pouch-seq")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or(ApiError(Error::InvalidInput("x-pouch-seq is missing")))
}

async fn put_snapshot(
    Extension(backend): Authorized,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let seq = seq_header(&headers)?;
    backend
        .put_snapshot(Snapshot {
            seq: Seq(seq),
            data: body,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_snapshot(Extension(backend): Authorized) -> ApiResult<Response> {
    Ok(match backend.get_snapshot().await? {
        Some(snapshot) => {
            ([("x-pouch-seq", snapshot.seq.to_string())], snapshot.data).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    })
}

async fn get_identity(Extension(backend): Authorized) -> ApiResult<Response> {
    Ok(match backend.identity().await? {
        Some(id) => id.to_string().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    })
}

async fn put_identity(Extension(backend): Authorized, body: Bytes) -> ApiResult<String> {
    let proposed: StoreId = std::str::from_utf8(&body)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or(ApiError(Error::InvalidInput(
            "a store identity is 32 hex digits",
        )))?;
    Ok(backend.init_identity(proposed).await?.to_string())
}
