//! A storage node (`pouch-store node`): holds volume files on its disk and
//! serves byte ranges of them to the cell's front ends. It knows nothing of
//! blocks or namespaces: the database says what lives where, the front
//! ends verify every block they read, and the node only makes writes
//! durable before it answers.
//!
//! ```text
//! PUT    /node/v1/volumes/{volume}/{offset}                 bytes, written and fsynced   204
//! GET    /node/v1/volumes/{volume}/{offset}/{len}           exactly those bytes          200 / 404 / 409
//! DELETE /node/v1/volumes/{volume}                          the replica dropped          204
//! PUT    /node/v1/shards/{volume}/{index}/{offset}          (the same, for a shard of a coded volume)
//! GET    /node/v1/shards/{volume}/{index}/{offset}/{len}
//! DELETE /node/v1/shards/{volume}/{index}
//! GET    /node/v1/pieces                                    every replica and shard held, JSON
//! ```
//!
//! A `GET` with `X-Pouch-Check: hash` has the node check the range first
//! against the hash it wrote beside it, when a write wrote exactly that
//! range (a shard's window): 409 if it no longer matches. Whole blocks are
//! checked by the front ends that read them; a shard's window is not a
//! block, so without this a rebuild could copy damage nobody had seen yet.
//!
//! All of them need `Authorization: Bearer` with the cell's token. The node
//! registers itself in the database (its id is kept in its data folder, so
//! a restarted node is the same node) and beats its heart there.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use pouch_backend::Error;

use super::db;

/// How a node runs.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// The cell's database.
    pub db_url: String,
    /// The node's data folder (volume files, its id).
    pub data: PathBuf,
    /// The address it announces to front ends, e.g. `http://10.0.0.5:7900`
    /// (`None`: the address it listens on).
    pub advertise: Option<String>,
    /// The cell's shared secret between front ends and nodes.
    pub token: String,
    /// How often it beats its heart in the database.
    pub heartbeat: Duration,
    /// How its scrubber runs.
    pub scrub: super::scrub::ScrubOptions,
}

struct Node {
    volumes: PathBuf,
    shards: PathBuf,
    token: String,
}

/// A file a node holds: a volume's replica, or one shard of a coded
/// volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    /// A full copy of volume `.0`.
    Replica(i64),
    /// Shard `.1` of coded volume `.0`.
    Shard(i64, usize),
}

/// A volume id alone names its replica.
impl From<i64> for Piece {
    fn from(volume: i64) -> Self {
        Piece::Replica(volume)
    }
}

impl Piece {
    /// Its path in the node API, after `/node/v1/`.
    pub fn url_path(self) -> String {
        match self {
            Piece::Replica(volume) => format!("volumes/{volume}"),
            Piece::Shard(volume, index) => format!("shards/{volume}/{index}"),
        }
    }

    fn file(self, node: &Node) -> Option<PathBuf> {
        match self {
            Piece::Replica(volume) if volume > 0 => {
                Some(node.volumes.join(format!("{volume:016x}")))
            }
            Piece::Shard(volume, index) if volume > 0 && index < super::coding::SHARDS => {
                Some(node.shards.join(format!("{volume:016x}.{index}")))
            }
            _ => None,
        }
    }
}

/// Runs a node on `listener` until `shutdown` completes.
pub async fn run(
    options: NodeOptions,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let local = listener.local_addr()?;
    if options.advertise.is_none() && local.ip().is_unspecified() {
        // "http://0.0.0.0:7900" in the nodes table would send every front
        // end to its own machine.
        anyhow::bail!(
            "listening on {local} (every interface): pass --advertise http://HOST:PORT, \
             the address front ends reach this node at"
        );
    }
    let pool = db::pool(&options.db_url)?;
    super::schema::check(&pool).await?;
    let volumes = options.data.join("volumes");
    std::fs::create_dir_all(&volumes)?;
    let shards = options.data.join("shards");
    std::fs::create_dir_all(&shards)?;
    let id = node_id(&options.data)?;
    let addr = match &options.advertise {
        Some(addr) => addr.clone(),
        None => format!("http://{local}"),
    };
    {
        let client = db::client(&pool).await?;
        client
            .execute(
                "INSERT INTO nodes (id, addr, heartbeat) VALUES ($1, $2, now()) \
                 ON CONFLICT (id) DO UPDATE SET addr = excluded.addr, heartbeat = now()",
                &[&id, &addr],
            )
            .await
            .map_err(db::error("registering the node"))?;
    }
    tracing::info!(id, %addr, data = %options.data.display(), "storage node up");
    let beat = tokio::spawn(heartbeat(pool.clone(), id, options.heartbeat));
    let scrubber = tokio::spawn(super::scrub::run(
        pool,
        id,
        options.data.clone(),
        options.scrub.clone(),
    ));
    let node = Arc::new(Node {
        volumes,
        shards,
        token: options.token,
    });
    let router = Router::new()
        .route("/node/v1/pieces", get(list))
        .route(
            "/node/v1/volumes/{volume}",
            axum::routing::delete(
                |node: State<Arc<Node>>, UrlPath(volume): UrlPath<i64>| async move {
                    remove(node, Piece::Replica(volume)).await
                },
            ),
        )
        .route(
            "/node/v1/volumes/{volume}/{offset}",
            axum::routing::put(
                |node: State<Arc<Node>>, UrlPath((volume, offset)): UrlPath<(i64, u64)>, body: Bytes| async move {
                    write(node, Piece::Replica(volume), offset, body).await
                },
            ),
        )
        .route(
            "/node/v1/volumes/{volume}/{offset}/{len}",
            get(
                |node: State<Arc<Node>>, UrlPath((volume, offset, len)): UrlPath<(i64, u64, usize)>, headers: HeaderMap| async move {
                    read(node, Piece::Replica(volume), offset, len, checked(&headers)).await
                },
            ),
        )
        .route(
            "/node/v1/shards/{volume}/{index}",
            axum::routing::delete(
                |node: State<Arc<Node>>, UrlPath((volume, index)): UrlPath<(i64, usize)>| async move {
                    remove(node, Piece::Shard(volume, index)).await
                },
            ),
        )
        .route(
            "/node/v1/shards/{volume}/{index}/{offset}",
            axum::routing::put(
                |node: State<Arc<Node>>,
                 UrlPath((volume, index, offset)): UrlPath<(i64, usize, u64)>,
                 body: Bytes| async move {
                    write(node, Piece::Shard(volume, index), offset, body).await
                },
            ),
        )
        .route(
            "/node/v1/shards/{volume}/{index}/{offset}/{len}",
            get(
                |node: State<Arc<Node>>,
                 UrlPath((volume, index, offset, len)): UrlPath<(i64, usize, u64, usize)>,
                 headers: HeaderMap| async move {
                    read(node, Piece::Shard(volume, index), offset, len, checked(&headers)).await
                },
            ),
        )
        .layer(middleware::from_fn_with_state(node.clone(), authorize))
        .layer(DefaultBodyLimit::max(crate::server::MAX_BODY + (1 << 20)))
        .with_state(node);
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await;
    beat.abort();
    scrubber.abort();
    served?;
    Ok(())
}

/// The node's id, made at its first start and kept in its data folder.
fn node_id(data: &Path) -> std::io::Result<i64> {
    let path = data.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} does not hold a node id", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Fifteen hex digits of a random id: positive, and unique
            // among a cell's nodes but by a 2^-60 chance.
            let id = i64::from_str_radix(&pouch_backend::StoreId::random().to_string()[..15], 16)
                .expect("hex digits");
            let temp = data.join("node-id.tmp");
            std::fs::write(&temp, format!("{id}\n"))?;
            std::fs::File::open(&temp)?.sync_all()?;
            std::fs::rename(&temp, &path)?;
            std::fs::File::open(data)?.sync_all()?;
            Ok(id)
        }
        Err(e) => Err(e),
    }
}

async fn heartbeat(pool: deadpool_postgres::Pool, id: i64, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let beat = async {
            let client = db::client(&pool).await?;
            client
                .execute("UPDATE nodes SET heartbeat = now() WHERE id = $1", &[&id])
                .await
                .map_err(db::error("beating the node's heart"))
        };
        if let Err(e) = beat.await {
            tracing::warn!("heartbeat: {e}");
        }
    }
}

async fn authorize(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match token {
        Some(token) if crate::server::constant_time_eq(token.as_bytes(), node.token.as_bytes()) => {
            next.run(request).await
        }
        _ => StatusCode::UNAUTHORIZED.into_response(),
    }
}

async fn write(State(node): State<Arc<Node>>, piece: Piece, offset: u64, body: Bytes) -> Response {
    let Some(path) = piece.file(&node) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let folder = path.parent().expect("a file in a folder").to_owned();
    let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let created = !path.exists();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)?;
        file.write_all_at(&body, offset)?;
        file.sync_data()?;
        // The range's hash, for the scrubber; made durable before the
        // write is acknowledged, like the bytes.
        super::scrub::record(&path, offset, &body)?;
        if created {
            std::fs::File::open(&folder)?.sync_all()?;
        }
        Ok(())
    })
    .await;
    match written {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(e)) => {
            tracing::error!(?piece, offset, "write failed: {e}");
            (StatusCode::INSUFFICIENT_STORAGE, e.to_string()).into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Whether a read asks for its range to be checked ([`CHECK_HEADER`]).
fn checked(headers: &HeaderMap) -> bool {
    headers.get(CHECK_HEADER).is_some_and(|v| v == "hash")
}

async fn read(
    State(node): State<Arc<Node>>,
    piece: Piece,
    offset: u64,
    len: usize,
    checked: bool,
) -> Response {
    let Some(path) = piece.file(&node) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    if len > crate::server::MAX_BODY {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let read = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        let file = std::fs::File::open(&path)?;
        let mut bytes = vec![0; len];
        file.read_exact_at(&mut bytes, offset)?;
        if checked
            && super::scrub::recorded(&path, offset, len as u64)?
                .is_some_and(|want| *blake3::hash(&bytes).as_bytes() != want)
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the range no longer matches the hash written with it",
            ));
        }
        Ok(bytes)
    })
    .await;
    match read {
        Ok(Ok(bytes)) => bytes.into_response(),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
            tracing::error!(?piece, offset, len, "refused to serve a damaged range");
            (StatusCode::CONFLICT, e.to_string()).into_response()
        }
        Ok(Err(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            StatusCode::NOT_FOUND.into_response()
        }
        Ok(Err(e)) => {
            tracing::error!(?piece, offset, "read failed: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The request header that asks a node to check a range it reads against
/// the hash written with it.
pub(super) const CHECK_HEADER: &str = "x-pouch-check";

/// One file a node holds, as it lists them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Held {
    /// The volume.
    pub volume: i64,
    /// The shard, or `None` for a full replica.
    pub shard: Option<usize>,
    /// Seconds since the file was last written.
    pub idle_secs: f64,
}

impl Held {
    /// The piece it is.
    pub fn piece(&self) -> Piece {
        match self.shard {
            Some(index) => Piece::Shard(self.volume, index),
            None => Piece::Replica(self.volume),
        }
    }
}

/// Every replica and shard file the node holds (for the cell's
/// reconciliation of what a node kept while it was away).
async fn list(State(node): State<Arc<Node>>) -> Response {
    let node = node.clone();
    let listed = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<Held>> {
        let mut held = Vec::new();
        for (folder, in_shards) in [(&node.volumes, false), (&node.shards, true)] {
            for entry in std::fs::read_dir(folder)? {
                let entry = entry?;
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                let Some(piece) = super::scrub::piece_of(&name, in_shards) else {
                    continue;
                };
                let idle_secs = entry
                    .metadata()?
                    .modified()?
                    .elapsed()
                    .map_or(0.0, |d| d.as_secs_f64());
                let (volume, shard) = match piece {
                    Piece::Replica(volume) => (volume, None),
                    Piece::Shard(volume, index) => (volume, Some(index)),
                };
                held.push(Held {
                    volume,
                    shard,
                    idle_secs,
                });
            }
        }
        Ok(held)
    })
    .await;
    match listed {
        Ok(Ok(held)) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            serde_json::to_vec(&held).expect("a list always serialises"),
        )
            .into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Drops a replica or shard the cell no longer names (coded, or moved).
/// Dropping one the node lacks is no error.
async fn remove(State(node): State<Arc<Node>>, piece: Piece) -> Response {
    let Some(path) = piece.file(&node) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let removed = tokio::task::spawn_blocking(move || {
        for file in [super::scrub::sidecar(&path), path.clone()] {
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        std::fs::File::open(path.parent().expect("a file in a folder"))?.sync_all()
    })
    .await;
    match removed {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(e)) => {
            tracing::error!(?piece, "remove failed: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Why a node's answer is no use.
pub fn node_error(e: impl std::fmt::Display) -> Error {
    Error::Unavailable {
        source: format!("a storage node: {e}").into(),
    }
}
