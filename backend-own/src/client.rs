//! [`RemoteBackend`]: the [`Backend`] of a `pouch-store` server, over HTTP.
//!
//! Temporary failures (connection errors, timeouts, 5xx) are retried with
//! exponential backoff and jitter; everything else is returned as the
//! server's error kind. Every block read is verified here too: a damaged
//! byte on the wire is caught like one on disk.

use std::time::Duration;

use std::collections::VecDeque;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::{self, BoxStream};
use futures_util::{Stream, StreamExt};
use pouch_backend::{
    Backend, Block, BlockId, Codec, Error, GcLease, JournalEntry, LeaseRequest, Result, Seq,
    Snapshot, StoreId, StoredBlock, SweepReport,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode};

use crate::wire;

/// Attempts per call for retryable failures.
const ATTEMPTS: u32 = 5;
/// Timeout of one ordinary request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Most ids sent in one request of ids (has, delete, mark, sweep).
const ID_BATCH: usize = 100_000;
/// Largest batch of payload bytes sent in one put request.
const PUT_BATCH_BYTES: usize = 32 << 20;

/// A namespace on a `pouch-store` server.
#[derive(Clone)]
pub struct RemoteBackend {
    http: reqwest::Client,
    base: String,
    token: String,
    attempts: u32,
}

impl std::fmt::Debug for RemoteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteBackend")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Transport(String);

fn unavailable(message: String) -> Error {
    Error::Unavailable {
        source: Box::new(Transport(message)),
    }
}

impl RemoteBackend {
    /// A client for namespace `namespace` at `url` (e.g.
    /// `http://127.0.0.1:7878`), presenting `token`.
    pub fn new(url: &str, namespace: &str, token: String) -> Result<Self> {
        pouch_backend::tls::install_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(Error::internal("building the HTTP client"))?;
        Ok(Self {
            http,
            base: format!("{}/v1/{namespace}", url.trim_end_matches('/')),
            token,
            attempts: ATTEMPTS,
        })
    }

    /// Posts `ids` to `path` (under the namespace) in requests of at most
    /// [`ID_BATCH`] ids each, and returns each answer's body with the ids it
    /// answers for.
    async fn post_ids<'a>(
        &self,
        path: &str,
        ids: &'a [BlockId],
    ) -> Result<Vec<(&'a [BlockId], Bytes)>> {
        let url = self.url(path);
        let mut answers = Vec::new();
        for chunk in ids.chunks(ID_BATCH) {
            let payload = wire::encode_ids(chunk);
            let response = self
                .call(|http| {
                    http.post(&url)
                        .timeout(REQUEST_TIMEOUT)
                        .body(payload.clone())
                })
                .await?;
            answers.push((chunk, body(response).await?));
        }
        Ok(answers)
    }

    /// Sets how many times a call is tried when it fails temporarily (at
    /// least once).
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// Sends a request built by `build`, retrying temporary failures. A
    /// success or a 404 is the caller's to read.
    async fn call(&self, build: impl Fn(&reqwest::Client) -> RequestBuilder) -> Result<Response> {
        self.call_answering(build, &[StatusCode::NOT_FOUND]).await
    }

    /// [`RemoteBackend::call`], handing back `answers` statuses too.
    async fn call_answering(
        &self,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
        answers: &[StatusCode],
    ) -> Result<Response> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = build(&self.http).bearer_auth(&self.token).send().await;
            let outcome = match result {
                Ok(response)
                    if response.status().is_success() || answers.contains(&response.status()) =>
                {
                    return Ok(response);
                }
                Ok(response) => Err(error_of(response).await),
                Err(e) => Err(unavailable(format!("request to the store failed: {e}"))),
            };
            match outcome {
                Err(e) if e.is_retryable() && attempt < self.attempts => {
                    let backoff = Duration::from_millis(100 << attempt);
                    let jitter =
                        Duration::from_millis(u64::from(std::process::id() ^ attempt) % 100);
                    tracing::debug!(attempt, "retrying after: {e}");
                    tokio::time::sleep(backoff + jitter).await;
                }
                Err(e) => return Err(e),
                Ok(()) => unreachable!(),
            }
        }
    }

    /// One batched read (`POST /blocks/read`): its answers as they stream
    /// in, one item per id. A server from before batched reads (it answers
    /// 405, the path being a block's, or 404) is asked block by block.
    fn read_batch(&self, ids: Vec<BlockId>) -> impl Stream<Item = Result<Bytes>> + Send + '_ {
        let url = self.url("/blocks/read");
        let body = wire::encode_ids(&ids);
        let older = [StatusCode::NOT_FOUND, StatusCode::METHOD_NOT_ALLOWED];
        stream::once(async move {
            self.call_answering(
                |http| http.post(&url).timeout(REQUEST_TIMEOUT).body(body.clone()),
                &older,
            )
            .await
        })
        .flat_map(move |response| match response {
            Ok(response) if older.contains(&response.status()) => stream::iter(ids.clone())
                .then(move |id| self.get_block(id))
                .boxed(),
            Ok(response) => answers(response, ids.clone()).boxed(),
            Err(e) => stream::once(async { Err(e) }).boxed(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// Maps an error response back to the backend error it stands for.
async fn error_of(response: Response) -> Error {
    let status = response.status();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let kind = header("x-pouch-error").unwrap_or_default();
    let block: Option<BlockId> = header("x-pouch-block").and_then(|v| v.parse().ok());
    let head = header("x-pouch-head").and_then(|v| v.parse().ok()).map(Seq);
    let message = response.text().await.unwrap_or_default();
    match (status, kind.as_str()) {
        (StatusCode::UNAUTHORIZED, _) => Error::Unauthorized,
        (StatusCode::FORBIDDEN, _) => Error::Forbidden(message.trim().to_owned()),
        (_, "corrupt") => Error::Corrupt {
            id: block.unwrap_or(BlockId::from_bytes([0; 32])),
            reason: "the store refused the block: it is corrupt",
        },
        (_, "slot-taken") => Error::SlotTaken(Seq::ZERO),
        (_, "trimmed") => Error::Trimmed {
            through: head.unwrap_or(Seq::ZERO),
        },
        (_, "gap") => Error::Gap {
            seq: Seq(0),
            head: head.unwrap_or(Seq::ZERO),
        },
        (_, "invalid") => Error::InvalidInput("the store refused the request as malformed"),
        (_, "fenced") => Error::Fenced(message.trim().to_owned()),
        (_, "unsupported") => Error::Unsupported(message.trim().to_owned()),
        (s, _) if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
            unavailable(format!("the store answered {s}: {}", message.trim()))
        }
        (s, _) => Error::Internal {
            context: "talking to the store",
            source: Box::new(Transport(format!(
                "unexpected answer {s}: {}",
                message.trim()
            ))),
        },
    }
}

async fn body(response: Response) -> Result<Bytes> {
    response
        .bytes()
        .await
        .map_err(|e| unavailable(format!("reading the store's answer failed: {e}")))
}

#[async_trait]
impl Backend for RemoteBackend {
    fn describe(&self) -> String {
        format!("pouch-store at {}", self.base)
    }

    async fn put_blocks(&self, blocks: Vec<Block>) -> Result<()> {
        let mut start = 0;
        while start < blocks.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < blocks.len()
                && (end == start || bytes + blocks[end].payload().len() <= PUT_BATCH_BYTES)
            {
                bytes += blocks[end].payload().len();
                end += 1;
            }
            // Streamed: headers and the blocks' own payloads, no copy.
            let pieces = wire::block_pieces(&blocks[start..end]);
            // Declared, so the server reserves just this much of its
            // budget for bodies in flight.
            let length: usize = pieces.iter().map(|p| p.len()).sum();
            let url = self.url("/blocks");
            self.call(|http| {
                let stream = futures_util::stream::iter(
                    pieces.clone().into_iter().map(Ok::<_, std::io::Error>),
                );
                http.post(&url)
                    .timeout(REQUEST_TIMEOUT)
                    .header(reqwest::header::CONTENT_LENGTH, length)
                    .body(reqwest::Body::wrap_stream(stream))
            })
            .await?;
            start = end;
        }
        Ok(())
    }

    async fn get_block(&self, id: BlockId) -> Result<Bytes> {
        let url = self.url(&format!("/blocks/{id}"));
        let response = self
            .call(|http| http.get(&url).timeout(REQUEST_TIMEOUT))
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(Error::BlockNotFound(id));
        }
        let codec = match response
            .headers()
            .get("x-pouch-codec")
            .and_then(|v| v.to_str().ok())
        {
            Some("raw") => Codec::Raw,
            Some("zstd") => Codec::Zstd,
            _ => return Err(Error::InvalidInput("the store's answer names no codec")),
        };
        Block::from_parts(id, codec, body(response).await?).decode()
    }

    fn get_blocks(&self, ids: Vec<BlockId>) -> BoxStream<'_, Result<Bytes>> {
        let batches: Vec<Vec<BlockId>> = ids
            .chunks(wire::MAX_READ_IDS)
            .map(<[BlockId]>::to_vec)
            .collect();
        let answers = stream::iter(batches).flat_map(move |batch| self.read_batch(batch));
        pouch_backend::end_after_fatal(answers).boxed()
    }

    async fn has_blocks(&self, ids: &[BlockId]) -> Result<Vec<bool>> {
        let mut out = Vec::with_capacity(ids.len());
        for (chunk, answer) in self.post_ids("/blocks/has", ids).await? {
            if answer.len() != chunk.len() {
                return Err(Error::InvalidInput(
                    "the store answered for a different number of ids",
                ));
            }
            out.extend(answer.iter().map(|&b| b == 1));
        }
        Ok(out)
    }

    async fn delete_blocks(&self, ids: &[BlockId]) -> Result<()> {
        self.post_ids("/blocks/delete", ids).await.map(drop)
    }

    async fn gc_lease(&self, request: LeaseRequest) -> Result<GcLease> {
        let mut url = self.url(&format!("/gc/lease?ttl_ms={}", request.ttl.as_millis()));
        if let Some(generation) = request.generation {
            url.push_str(&format!("&generation={generation}"));
        }
        let holder = Bytes::from(request.holder.clone());
        let response = self
            .call(|http| {
                http.post(&url)
                    .timeout(REQUEST_TIMEOUT)
                    .body(holder.clone())
            })
            .await?;
        let text = body(response).await?;
        wire::decode_lease(&String::from_utf8_lossy(&text)).map_err(|e| Error::InvalidInput(e.0))
    }

    async fn gc_list(&self, after: Option<BlockId>, limit: usize) -> Result<Vec<StoredBlock>> {
        let mut out = Vec::new();
        let mut after = after;
        while out.len() < limit {
            let want = (limit - out.len()).min(wire::MAX_LIST);
            let mut url = self.url(&format!("/gc/list?limit={want}"));
            if let Some(id) = after {
                url.push_str(&format!("&after={id}"));
            }
            let response = self
                .call(|http| http.get(&url).timeout(REQUEST_TIMEOUT))
                .await?;
            let page = wire::decode_stored(&body(response).await?)
                .map_err(|e| Error::InvalidInput(e.0))?;
            let done = page.len() < want;
            after = page.last().map(|b| b.id);
            out.extend(page);
            if done {
                break;
            }
        }
        Ok(out)
    }

    async fn gc_mark(&self, generation: u64, mark: &[BlockId], unmark: &[BlockId]) -> Result<()> {
        for (route, ids) in [("/gc/mark", mark), ("/gc/unmark", unmark)] {
            self.post_ids(&format!("{route}?generation={generation}"), ids)
                .await?;
        }
        Ok(())
    }

    async fn gc_sweep(
        &self,
        generation: u64,
        ids: &[BlockId],
        marked_by_ms: i64,
    ) -> Result<SweepReport> {
        let path = format!("/gc/sweep?generation={generation}&marked_by_ms={marked_by_ms}");
        let mut report = SweepReport::default();
        for (_, answer) in self.post_ids(&path, ids).await? {
            let text = String::from_utf8_lossy(&answer);
            let mut fields = text.split_whitespace().map(str::parse::<u64>);
            match (fields.next(), fields.next()) {
                (Some(Ok(blocks)), Some(Ok(bytes))) => report += SweepReport { blocks, bytes },
                _ => return Err(Error::InvalidInput("the store's sweep answer is malformed")),
            }
        }
        Ok(report)
    }

    async fn append(&self, seq: Seq, data: Bytes) -> Result<()> {
        let url = self.url(&format!("/journal/{seq}"));
        let result = self
            .call(|http| {
                http.request(Method::PUT, &url)
                    .timeout(REQUEST_TIMEOUT)
                    .body(data.clone())
            })
            .await;
        // The answer does not repeat the slot; this call knows it.
        match result {
            Ok(_) => Ok(()),
            Err(Error::SlotTaken(_)) => Err(Error::SlotTaken(seq)),
            Err(Error::Gap { head, .. }) => Err(Error::Gap { seq, head }),
            Err(other) => Err(other),
        }
    }

    async fn read_journal(&self, after: Seq, limit: usize) -> Result<Vec<JournalEntry>> {
        let url = self.url(&format!("/journal?after={after}&limit={limit}"));
        let response = self
            .call(|http| http.get(&url).timeout(REQUEST_TIMEOUT))
            .await?;
        wire::decode_entries(body(response).await?).map_err(|e| Error::InvalidInput(e.0))
    }

    async fn wait_journal(&self, after: Seq, timeout: Duration) -> Result<Seq> {
        let ms = timeout.as_millis().min(60_000);
        let url = self.url(&format!("/journal/wait?after={after}&timeout_ms={ms}"));
        let response = self
            .call(|http| http.get(&url).timeout(timeout + Duration::from_secs(30)))
            .await?;
        let text = body(response).await?;
        std::str::from_utf8(&text)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .map(Seq)
            .ok_or(Error::InvalidInput("the store's head is not a number"))
    }

    async fn trim_journal(&self, through: Seq) -> Result<()> {
        let url = self.url("/journal/trim");
        let seq = through.to_string();
        self.call(|http| {
            http.post(&url)
                .timeout(REQUEST_TIMEOUT)
                .header("x-pouch-seq", &seq)
        })
        .await
        .map(drop)
    }

    async fn put_snapshot(&self, snapshot: Snapshot) -> Result<()> {
        let url = self.url("/snapshot");
        let seq = snapshot.seq.to_string();
        self.call(|http| {
            http.request(Method::PUT, &url)
                .timeout(REQUEST_TIMEOUT)
                .header("x-pouch-seq", &seq)
                .body(snapshot.data.clone())
        })
        .await
        .map(drop)
    }

    async fn identity(&self) -> Result<Option<StoreId>> {
        let url = self.url("/identity");
        let response = self
            .call(|http| http.get(&url).timeout(REQUEST_TIMEOUT))
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        parse_identity(&body(response).await?).map(Some)
    }

    async fn init_identity(&self, proposed: StoreId) -> Result<StoreId> {
        let url = self.url("/identity");
        let response = self
            .call(|http| {
                http.put(&url)
                    .timeout(REQUEST_TIMEOUT)
                    .body(proposed.to_string())
            })
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(Error::Unsupported(format!(
                "{} is a pouch-store too old to keep a store identity; upgrade it",
                self.base
            )));
        }
        parse_identity(&body(response).await?)
    }

    async fn get_snapshot(&self) -> Result<Option<Snapshot>> {
        let url = self.url("/snapshot");
        let response = self
            .call(|http| http.get(&url).timeout(REQUEST_TIMEOUT))
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let seq = response
            .headers()
            .get("x-pouch-seq")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .map(Seq)
            .ok_or(Error::InvalidInput(
                "the store's snapshot has no sequence number",
            ))?;
        Ok(Some(Snapshot {
            seq,
            data: body(response).await?,
        }))
    }
}

fn parse_identity(body: &[u8]) -> Result<StoreId> {
    std::str::from_utf8(body)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| Error::Format {
            what: "the store answered with something that is not a store identity".into(),
        })
}

/// A batched read's answers, decoded and verified as the body arrives: one
/// item per id of `ids`, in order.
fn answers(response: Response, ids: Vec<BlockId>) -> impl Stream<Item = Result<Bytes>> + Send {
    struct Reading {
        body: BoxStream<'static, reqwest::Result<Bytes>>,
        decoder: wire::AnswerStream,
        ids: std::vec::IntoIter<BlockId>,
        ready: VecDeque<wire::Answer>,
        ended: bool,
    }
    let reading = Reading {
        body: response.bytes_stream().boxed(),
        decoder: wire::AnswerStream::default(),
        ids: ids.into_iter(),
        ready: VecDeque::new(),
        ended: false,
    };
    stream::unfold(reading, |mut r| async move {
        loop {
            if let Some(answer) = r.ready.pop_front() {
                let id = r.ids.next()?;
                let item = match answer {
                    wire::Answer::Block(block) if block.id() == id => block.decode(),
                    wire::Answer::Block(_) => {
                        Err(Error::InvalidInput("the store answered with another block"))
                    }
                    wire::Answer::NotFound => Err(Error::BlockNotFound(id)),
                    wire::Answer::Corrupt => Err(Error::Corrupt {
                        id,
                        reason: "the store refused the block: it is corrupt",
                    }),
                };
                return Some((item, r));
            }
            if r.ended {
                // Fewer answers than ids: the answer was cut short.
                r.ids.next()?;
                r.ids = Vec::new().into_iter();
                return Some((
                    Err(unavailable("the store's answer ended early".to_owned())),
                    r,
                ));
            }
            match r.body.next().await {
                Some(Ok(chunk)) => match r.decoder.push(&chunk) {
                    Ok(answers) => r.ready.extend(answers),
                    Err(e) => {
                        r.ids = Vec::new().into_iter();
                        return Some((Err(Error::InvalidInput(e.0)), r));
                    }
                },
                Some(Err(e)) => {
                    r.ids = Vec::new().into_iter();
                    return Some((
                        Err(unavailable(format!(
                            "reading the store's answer failed: {e}"
                        ))),
                        r,
                    ));
                }
                None => r.ended = true,
            }
        }
    })
}
