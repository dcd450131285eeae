//! The routes of shared folders, for a device credential (JSON in and
//! out; every permission decided in `shares.rs`):
//!
//! ```text
//! GET    /v1/account/shares                          the account's shares   200
//! POST   /v1/account/shares          {name, path}    a new share, mounted   200 {namespace}
//! POST   /v1/account/shares/{ns}/members {user, role}  invite (owner)       204
//! DELETE /v1/account/shares/{ns}/members/{user}      remove (owner) / leave 204
//! POST   /v1/account/shares/{ns}/owner   {user}      transfer (owner)       204
//! PUT    /v1/account/shares/{ns}/mount   {path|null} mount / unmount        204
//! POST   /v1/account/shares/{ns}/unshare             all but owner out      204
//! POST   /v1/{ns}/blocks/adopt?from=NS   ids          blocks copied from NS  200 count
//! ```
//!
//! `adopt` lets a folder become a share without its blocks being sent
//! again: the server copies those of `from` (which the caller may read)
//! into `ns` (which it may write).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use pouch_backend::Error;
use serde::Deserialize;

use super::shares::Role;
use super::{ApiError, ApiResult, Authorized, Caller, Server, Shared, account_of};
use crate::wire;

/// The share routes (merged into the server's router).
pub(super) fn routes() -> Router<Arc<Server>> {
    Router::new()
        .route("/v1/account/shares", get(list).post(create))
        .route("/v1/account/shares/{ns}/members", post(invite))
        .route(
            "/v1/account/shares/{ns}/members/{user}",
            axum::routing::delete(remove),
        )
        .route("/v1/account/shares/{ns}/owner", post(transfer))
        .route("/v1/account/shares/{ns}/mount", put(mount))
        .route("/v1/account/shares/{ns}/unshare", post(unshare))
}

fn json<T: serde::de::DeserializeOwned>(body: &[u8], what: &'static str) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|_| ApiError(Error::InvalidInput(what)))
}

fn json_response(value: &impl serde::Serialize) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(value).expect("answers always serialise"),
    )
        .into_response()
}

async fn list(State(server): Shared, headers: HeaderMap) -> ApiResult<Response> {
    let (accounts, holder) = account_of(&server, &headers)?;
    Ok(json_response(&accounts.shares_of(&holder.user)?))
}

#[derive(Deserialize)]
struct CreateRequest {
    name: String,
    path: String,
}

async fn create(State(server): Shared, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    let (accounts, holder) = account_of(&server, &headers)?;
    let request: CreateRequest = json(&body, "a new share is JSON: name, path")?;
    let namespace = accounts.create_share(&holder.user, &request.name, &request.path)?;
    tracing::info!(user = %holder.user, %namespace, "a shared folder was made");
    Ok(json_response(
        &serde_json::json!({ "namespace": namespace }),
    ))
}

#[derive(Deserialize)]
struct InviteRequest {
    user: String,
    role: String,
}

async fn invite(
    State(server): Shared,
    Path(share): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let (accounts, holder) = account_of(&server, &headers)?;
    let request: InviteRequest = json(&body, "an invitation is JSON: user, role")?;
    let role = Role::parse(&request.role)
        .ok_or(ApiError(Error::InvalidInput("a role is editor or viewer")))?;
    accounts.invite(&share, &holder.user, &request.user, role)?;
    tracing::info!(%share, by = %holder.user, user = %request.user, role = role.name(), "a member was invited");
    Ok(StatusCode::NO_CONTENT)
}

async fn remove(
    State(server): Shared,
    Path((share, user)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let (accounts, holder) = account_of(&server, &headers)?;
    accounts.remove_member(&share, &holder.user, &user)?;
    tracing::info!(%share, by = %holder.user, %user, "a member was removed");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct TransferRequest {
    user: String,
}

async fn transfer(
    State(server): Shared,
    Path(share): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let (accounts, holder) = account_of(&server, &headers)?;
    let request: TransferRequest = json(&body, "a transfer is JSON: user")?;
    accounts.transfer(&share, &holder.user, &request.user)?;
    tracing::info!(%share, from = %holder.user, to = %request.user, "a share changed owner");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct MountRequest {
    path: Option<String>,
}

async fn mount(
    State(server): Shared,
    Path(share): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let (accounts, holder) = account_of(&server, &headers)?;
    let request: MountRequest = json(&body, "a mount is JSON: path (or null)")?;
    accounts.mount(&share, &holder.user, request.path.as_deref())?;
    Ok(StatusCode::NO_CONTENT)
}

async fn unshare(
    State(server): Shared,
    Path(share): Path<String>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let (accounts, holder) = account_of(&server, &headers)?;
    let removed = accounts.unshare(&share, &holder.user)?;
    tracing::info!(%share, by = %holder.user, removed, "a share was unshared");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub(super) struct AdoptQuery {
    from: String,
}

/// Blocks per copy batch (bounded memory).
const ADOPT_BATCH: usize = 64;

/// Copies the blocks named that `from` holds and this namespace lacks.
pub(super) async fn adopt_blocks(
    State(server): Shared,
    Extension(backend): Authorized,
    Extension(caller): Extension<Caller>,
    Query(query): Query<AdoptQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<String> {
    let ids = wire::decode_ids(&body)?;
    if ids.len() > wire::MAX_READ_IDS {
        return Err(ApiError(Error::InvalidInput(
            "an adoption names at most 4096 blocks",
        )));
    }
    // The same credential must be able to read the source.
    let source = server.authorize(&query.from, &headers)?.backend;
    let has = backend.has_blocks(&ids).await?;
    let wanted: Vec<_> = ids
        .into_iter()
        .zip(has)
        .filter_map(|(id, has)| (!has).then_some(id))
        .collect();
    let mut adopted = 0usize;
    for batch in wanted.chunks(ADOPT_BATCH) {
        let mut blocks = Vec::with_capacity(batch.len());
        for id in batch {
            match source.get_block_encoded(*id).await {
                Ok(block) => blocks.push(block),
                // Not there: the device sends it as usual.
                Err(Error::BlockNotFound(_)) => {}
                Err(e) => return Err(ApiError(e)),
            }
        }
        let bytes: u64 = blocks.iter().map(|b| b.payload().len() as u64).sum();
        server.within_quota(&caller, bytes).await?;
        adopted += blocks.len();
        // Verified by `get_block_encoded` as read.
        backend.put_verified_blocks(blocks).await?;
    }
    Ok(adopted.to_string())
}
