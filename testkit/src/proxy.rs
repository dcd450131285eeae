//! An HTTP proxy that misbehaves on purpose, in front of a real server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::Response;
use bytes::Bytes;

/// What the proxy does wrong.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Share of requests, in percent, that fail. A failing request gets
    /// one of three fates in turn: 503 without reaching the server; 500
    /// after the server applied it; or the server applies it and the
    /// connection drops before the answer.
    pub fail_percent: u64,
    /// Seed of the choice of failing requests.
    pub seed: u64,
    /// Removes `If-None-Match` from every request, as a store that ignores
    /// conditional writes would.
    pub strip_if_none_match: bool,
}

/// Counts of what the proxy did.
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests received.
    pub requests: AtomicU64,
    /// Requests failed on purpose.
    pub failed: AtomicU64,
}

struct Shared {
    upstream: String,
    faults: Faults,
    http: reqwest::Client,
    counters: Arc<Counters>,
}

/// A running proxy; it stops when dropped.
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`, to use instead of the upstream's address.
    pub url: String,
    /// What it has done so far.
    pub counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://HOST:PORT`) on a free port.
    pub async fn start(upstream: &str, faults: Faults) -> Self {
        pouch_backend::tls::install_provider();
        let counters = Arc::new(Counters::default());
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            faults,
            http: reqwest::Client::new(),
            counters: counters.clone(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr: SocketAddr = listener.local_addr().expect("proxy address");
        let app = axum::Router::new().fallback(forward).with_state(shared);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{addr}"),
            counters,
            task,
        }
    }
}

/// splitmix64: a good spread from a counter, no RNG crate needed.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

const HOP_BY_HOP: [&str; 5] = [
    "connection",
    "transfer-encoding",
    "content-length",
    "keep-alive",
    "host",
];

async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let n = shared.counters.requests.fetch_add(1, Ordering::Relaxed);
    let roll = mix(shared.faults.seed ^ mix(n));
    let fail = roll % 100 < shared.faults.fail_percent;
    let fate = (roll >> 32) % 3;
    if fail {
        shared.counters.failed.fetch_add(1, Ordering::Relaxed);
        if fate == 0 {
            return status(
                StatusCode::SERVICE_UNAVAILABLE,
                "<Error><Code>SlowDown</Code></Error>",
            );
        }
    }
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 1 << 30).await else {
        return status(StatusCode::BAD_REQUEST, "unreadable request body");
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut upstream = shared
        .http
        .request(parts.method.clone(), format!("{}{path}", shared.upstream))
        .body(body);
    for (name, value) in &parts.headers {
        let skip = HOP_BY_HOP.contains(&name.as_str())
            || (shared.faults.strip_if_none_match && name == "if-none-match");
        if !skip {
            upstream = upstream.header(name, value);
        }
    }
    let answer = match upstream.send().await {
        Ok(answer) => answer,
        Err(e) => return status(StatusCode::BAD_GATEWAY, &format!("upstream: {e}")),
    };
    let code = answer.status();
    let headers = answer.headers().clone();
    let body = answer.bytes().await.unwrap_or_default();
    if fail && fate == 1 {
        return status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "<Error><Code>InternalError</Code></Error>",
        );
    }
    let mut response = Response::builder().status(code);
    for (name, value) in &headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            response = response.header(name, value);
        }
    }
    if fail {
        // Promise the whole body, then break off: the client sees the
        // connection drop mid-answer.
        let broken = futures_util::stream::iter([
            Ok::<Bytes, std::io::Error>(body.slice(..body.len() / 2)),
            Err(std::io::Error::other("dropped on purpose")),
        ]);
        return response
            .header(HeaderName::from_static("content-length"), body.len().max(1))
            .body(Body::from_stream(broken))
            .expect("valid response");
    }
    response.body(Body::from(body)).expect("valid response")
}

fn status(code: StatusCode, body: &str) -> Response {
    Response::builder()
        .status(code)
        .body(Body::from(body.to_string()))
        .expect("valid response")
}
