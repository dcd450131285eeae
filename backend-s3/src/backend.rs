//! [`S3Backend`]: the [`Backend`] contract on an S3 bucket.

use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
};
use pouch_backend::{Backend, Block, BlockId, Error, JournalEntry, Result, Seq, Snapshot};

use crate::errors::{is_not_found, is_taken, map};
use crate::index::{DiskCache, Index};
use crate::keys::Keys;
use crate::pack::{self, PackName};
use crate::{S3Config, credentials};

/// Tries of one logical call on failures that object_store does not retry
/// itself (a create-only put whose connection dropped, say).
const ATTEMPTS: u32 = 4;

/// How stale the index may be before `has_blocks` lists the bucket again for
/// ids it does not know. A stale "no" costs only a duplicate upload.
const HAS_REFRESH: Duration = Duration::from_secs(10);

/// Cache folder kinds.
const PACKS: &str = "packs";
const TOMBS: &str = "tombs";

/// A namespace in an S3 bucket. See the crate docs for the layout.
pub struct S3Backend {
    store: AmazonS3,
    keys: Keys,
    config: S3Config,
    description: String,
    index: Mutex<Index>,
    /// Serialises listings so that concurrent misses share one.
    refreshing: tokio::sync::Mutex<()>,
    cache: DiskCache,
    /// The highest journal entry known to exist.
    known_head: AtomicU64,
}

impl std::fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Backend")
            .field("store", &self.description)
            .finish_non_exhaustive()
    }
}

impl S3Backend {
    /// Connects to the bucket of `config`, keeping pack indexes under
    /// `cache_dir` (none: memory only). Sends no request: see
    /// [`S3Backend::probe_conditional_writes`] for the check `init` runs.
    pub fn connect(config: S3Config, cache_dir: Option<PathBuf>) -> Result<Self> {
        install_tls_provider();
        let invalid = |what: String| Error::Format { what };
        if config.bucket.is_empty() {
            return Err(invalid("an S3 backend needs a bucket name".into()));
        }
        let profile = credentials::profile_from_env();
        // from_env reads AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
        // AWS_SESSION_TOKEN, AWS_REGION and the container/instance settings.
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&config.bucket)
            .with_virtual_hosted_style_request(!config.path_style)
            .with_retry(RetryConfig {
                max_retries: 6,
                retry_timeout: Duration::from_secs(120),
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(Duration::from_secs(config.request_timeout_secs.max(1)))
                    .with_connect_timeout(Duration::from_secs(10))
                    .with_allow_http(
                        config
                            .endpoint
                            .as_deref()
                            .is_some_and(|e| e.starts_with("http://")),
                    ),
            );
        let region = config
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .or(profile.region)
            .unwrap_or_else(|| "us-east-1".into());
        builder = builder.with_region(region);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let keys = config.credentials.clone().or_else(|| {
            // The environment's keys are already in the builder.
            std::env::var_os("AWS_ACCESS_KEY_ID")
                .is_none()
                .then_some(profile.credentials)
                .flatten()
        });
        if let Some(keys) = keys {
            builder = builder
                .with_access_key_id(keys.access_key_id)
                .with_secret_access_key(keys.secret_access_key);
            if let Some(token) = keys.session_token {
                builder = builder.with_token(token);
            }
        }
        let store = builder
            .build()
            .map_err(|e| invalid(format!("the S3 settings are not usable: {e}")))?;
        let key_layout = Keys::new(&config.prefix);
        let mut description = key_layout.describe(&config.bucket);
        if let Some(endpoint) = &config.endpoint {
            description.push_str(&format!(" at {endpoint}"));
        }
        Ok(Self {
            store,
            keys: key_layout,
            config,
            description,
            index: Mutex::new(Index::default()),
            refreshing: tokio::sync::Mutex::new(()),
            cache: DiskCache::new(cache_dir),
            known_head: AtomicU64::new(0),
        })
    }

    /// Refuses a store that ignores conditional writes: creates one probe
    /// key twice, and the second create must fail. Pouch never runs a
    /// journal on a store where two devices could both win one slot.
    pub async fn probe_conditional_writes(&self) -> Result<()> {
        let key = self.keys.probe(PackName::random());
        let create = |body: &'static [u8]| {
            self.store.put_opts(
                &key,
                PutPayload::from_static(body),
                PutOptions::from(PutMode::Create),
            )
        };
        create(b"first")
            .await
            .map_err(|e| map("creating the conditional-write probe", e))?;
        let second = create(b"second").await;
        // Best effort: a leftover probe key harms nothing.
        let _ = self.store.delete(&key).await;
        match second {
            Err(e) if is_taken(&e) => Ok(()),
            Ok(_) => Err(Error::Unsupported(format!(
                "{} ignores conditional writes (PutObject with If-None-Match: *): a second \
                 create of one key replaced the first, so two devices could both win one \
                 journal slot and a commit would be lost. Use a store that enforces them \
                 (AWS S3, MinIO, Ceph RGW, Cloudflare R2).",
                self.description
            ))),
            Err(e) => Err(map("probing conditional writes", e)),
        }
    }

    /// Runs `call` up to [`ATTEMPTS`] times while it fails temporarily, with
    /// exponential backoff and jitter.
    async fn retrying<T, F, Fut>(&self, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempt = 1;
        loop {
            match call().await {
                Err(e) if e.is_retryable() && attempt < ATTEMPTS => {
                    tracing::debug!(error = %e, attempt, "retrying an S3 call");
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn get_bytes(&self, path: &Path, context: &'static str) -> Result<Option<Bytes>> {
        self.retrying(|| async {
            match self.store.get(path).await {
                Ok(result) => result.bytes().await.map(Some).map_err(|e| map(context, e)),
                Err(e) if is_not_found(&e) => Ok(None),
                Err(e) => Err(map(context, e)),
            }
        })
        .await
    }

    async fn exists(&self, path: &Path) -> Result<bool> {
        self.retrying(|| async {
            match self.store.head(path).await {
                Ok(_) => Ok(true),
                Err(e) if is_not_found(&e) => Ok(false),
                Err(e) => Err(map("looking for a journal entry", e)),
            }
        })
        .await
    }

    async fn list(&self, dir: &Path, offset: Option<&Path>) -> Result<Vec<Path>> {
        self.retrying(|| async {
            let listing = match offset {
                Some(offset) => self.store.list_with_offset(Some(dir), offset),
                None => self.store.list(Some(dir)),
            };
            listing
                .map_ok(|meta| meta.location)
                .try_collect()
                .await
                .map_err(|e| map("listing the bucket", e))
        })
        .await
    }

    /// Lists the bucket's pack indexes and tombstones and applies the ones
    /// not seen yet (from the disk cache when there, else fetched).
    async fn refresh(&self) -> Result<()> {
        let started = Instant::now();
        let _one_at_a_time = self.refreshing.lock().await;
        if self
            .index
            .lock()
            .unwrap()
            .refreshed
            .is_some_and(|at| at >= started)
        {
            // Someone listed while we waited for the lock.
            return Ok(());
        }
        let listed_at = Instant::now();
        let (packs_dir, tombs_dir) = (self.keys.packs_dir(), self.keys.tombs_dir());
        let (pack_keys, tomb_keys) =
            tokio::try_join!(self.list(&packs_dir, None), self.list(&tombs_dir, None))?;
        let packs: Vec<PackName> = pack_keys
            .iter()
            .filter_map(|k| self.keys.parse_pack_index(k))
            .collect();
        let tombs: Vec<PackName> = tomb_keys
            .iter()
            .filter_map(|k| self.keys.parse_tomb(k))
            .collect();
        let (new_packs, gone): (Vec<PackName>, Vec<PackName>) = {
            let index = self.index.lock().unwrap();
            let listed: std::collections::HashSet<_> = packs.iter().copied().collect();
            (
                packs
                    .iter()
                    .copied()
                    .filter(|p| !index.knows_pack(*p))
                    .collect(),
                index.packs().filter(|p| !listed.contains(p)).collect(),
            )
        };
        let new_tombs: Vec<PackName> = {
            let index = self.index.lock().unwrap();
            tombs
                .into_iter()
                .filter(|t| !index.knows_tombs(*t))
                .collect()
        };
        // Tombstones first, so that a pack's dead entries never show live.
        let fetched_tombs = self
            .fetch_all(new_tombs, TOMBS, |n| self.keys.tomb(n), pack::decode_tombs)
            .await?;
        let fetched_packs = self
            .fetch_all(
                new_packs,
                PACKS,
                |n| self.keys.pack_index(n),
                pack::decode_index,
            )
            .await?;
        let mut index = self.index.lock().unwrap();
        for (name, tombs) in &fetched_tombs {
            index.add_tombs(*name, tombs);
        }
        for (name, entries) in &fetched_packs {
            index.add_pack(*name, entries);
        }
        for name in gone {
            index.remove_pack(name);
            self.cache.remove(PACKS, name);
        }
        index.refreshed = Some(listed_at);
        tracing::debug!(
            blocks = index.number_of_blocks(),
            new_packs = fetched_packs.len(),
            new_tombstones = fetched_tombs.len(),
            "pack index refreshed"
        );
        Ok(())
    }

    /// Index or tombstone files `names`, decoded: from the disk cache when
    /// a cached copy decodes, else fetched (`parallel` at a time), decoded
    /// once, and cached.
    async fn fetch_all<T>(
        &self,
        names: Vec<PackName>,
        kind: &'static str,
        key: impl Fn(PackName) -> Path,
        decode: fn(&[u8]) -> Result<T, pack::FormatError>,
    ) -> Result<Vec<(PackName, T)>> {
        stream::iter(names.into_iter().map(|name| {
            let key = key(name);
            async move {
                if let Some(decoded) = self.cache.read(kind, name).and_then(|d| decode(&d).ok()) {
                    return Ok((name, decoded));
                }
                let data = self
                    .get_bytes(&key, "reading a pack index")
                    .await?
                    .ok_or_else(|| Error::Unavailable {
                        source: format!("{key} was listed but is gone; a collection is running")
                            .into(),
                    })?;
                let decoded = decode(&data).map_err(|e| corrupt_meta(name, e))?;
                self.cache.write(kind, name, &data);
                Ok((name, decoded))
            }
        }))
        .buffer_unordered(self.config.parallel.max(1))
        .try_collect()
        .await
    }

    /// Uploads one pack, then its index: once the index exists, so does
    /// every byte it points at.
    async fn upload_pack(&self, pack: pack::Pack) -> Result<()> {
        let payload = PutPayload::from_iter(pack.parts);
        let pack_key = self.keys.pack(pack.name);
        self.retrying(|| async {
            self.store
                .put(&pack_key, payload.clone())
                .await
                .map(drop)
                .map_err(|e| map("uploading a pack", e))
        })
        .await?;
        let index = pack::encode_index(&pack.entries);
        let index_key = self.keys.pack_index(pack.name);
        self.retrying(|| async {
            self.store
                .put(&index_key, PutPayload::from_bytes(index.clone()))
                .await
                .map(drop)
                .map_err(|e| map("uploading a pack index", e))
        })
        .await?;
        self.cache.write(PACKS, pack.name, &index);
        self.index
            .lock()
            .unwrap()
            .add_pack(pack.name, &pack.entries);
        Ok(())
    }

    /// The last entry of the journal after `after`, listing from there.
    async fn head_after(&self, after: Seq) -> Result<Seq> {
        let keys = self
            .list(&self.keys.journal_dir(), Some(&self.keys.journal(after)))
            .await?;
        let head = keys
            .iter()
            .filter_map(|k| self.keys.parse_journal(k))
            .max()
            .unwrap_or(after)
            .max(after);
        self.known_head.fetch_max(head.0, Ordering::Relaxed);
        Ok(head)
    }

    /// The head when there is no news above `after`, without listing when
    /// `after` is known to exist.
    async fn quiet_head(&self, after: Seq) -> Result<Seq> {
        if after == Seq::ZERO || self.known_head.load(Ordering::Relaxed) >= after.0 {
            return Ok(after);
        }
        if self.exists(&self.keys.journal(after)).await? {
            self.known_head.fetch_max(after.0, Ordering::Relaxed);
            return Ok(after);
        }
        self.head_after(Seq::ZERO).await
    }
}

#[async_trait]
impl Backend for S3Backend {
    fn describe(&self) -> String {
        self.description.clone()
    }

    async fn put_blocks(&self, blocks: Vec<Block>) -> Result<()> {
        let blocks = tokio::task::spawn_blocking(move || {
            for block in &blocks {
                block.verify()?;
            }
            Ok::<_, Error>(blocks)
        })
        .await
        .map_err(Error::internal("verifying blocks"))??;
        let fresh: Vec<Block> = {
            let index = self.index.lock().unwrap();
            let mut seen = std::collections::HashSet::new();
            blocks
                .into_iter()
                .filter(|b| !index.has(&b.id()) && seen.insert(b.id()))
                .collect()
        };
        stream::iter(
            pack::build_packs(fresh, self.config.pack_size)
                .into_iter()
                .map(|p| self.upload_pack(p)),
        )
        .buffer_unordered(self.config.parallel.max(1))
        .try_collect::<Vec<()>>()
        .await?;
        Ok(())
    }

    async fn get_block(&self, id: BlockId) -> Result<Bytes> {
        let mut refreshed = false;
        loop {
            let places = self.index.lock().unwrap().find(&id).to_vec();
            if places.is_empty() {
                if refreshed {
                    return Err(Error::BlockNotFound(id));
                }
                self.refresh().await?;
                refreshed = true;
                continue;
            }
            let mut damage = None;
            let mut moved = false;
            for place in places {
                let key = self.keys.pack(place.pack);
                let range = place.offset..place.offset + u64::from(place.len);
                let got = if place.len == 0 {
                    // S3 has no empty range; an empty payload needs no read.
                    Some(Bytes::new())
                } else {
                    self.retrying(|| async {
                        match self.store.get_range(&key, range.clone()).await {
                            Ok(bytes) => Ok(Some(bytes)),
                            Err(e) if is_not_found(&e) => Ok(None),
                            Err(e) => Err(map("reading a block", e)),
                        }
                    })
                    .await?
                };
                let Some(payload) = got else {
                    moved = true;
                    continue;
                };
                let block = Block::from_parts(id, place.codec, payload);
                match tokio::task::spawn_blocking(move || block.decode())
                    .await
                    .map_err(Error::internal("decoding a block"))?
                {
                    Ok(raw) => return Ok(raw),
                    Err(e) => {
                        tracing::warn!(%id, pack = %place.pack, error = %e, "damaged block copy in the bucket");
                        damage = Some(e);
                    }
                }
            }
            if let Some(e) = damage {
                return Err(e);
            }
            if moved && !refreshed {
                // A collection moved it: learn where to.
                self.refresh().await?;
                refreshed = true;
                continue;
            }
            return Err(Error::BlockNotFound(id));
        }
    }

    async fn has_blocks(&self, ids: &[BlockId]) -> Result<Vec<bool>> {
        let stale = {
            let index = self.index.lock().unwrap();
            let missing = ids.iter().any(|id| !index.has(id));
            missing && index.refreshed.is_none_or(|at| at.elapsed() > HAS_REFRESH)
        };
        if stale {
            self.refresh().await?;
        }
        let index = self.index.lock().unwrap();
        Ok(ids.iter().map(|id| index.has(id)).collect())
    }

    async fn delete_blocks(&self, ids: &[BlockId]) -> Result<()> {
        self.refresh().await?;
        let tombs: Vec<(BlockId, PackName)> = {
            let index = self.index.lock().unwrap();
            ids.iter()
                .flat_map(|id| index.find(id).iter().map(move |p| (*id, p.pack)))
                .collect()
        };
        if tombs.is_empty() {
            return Ok(());
        }
        let name = PackName::random();
        let data = pack::encode_tombs(&tombs);
        let key = self.keys.tomb(name);
        self.retrying(|| async {
            self.store
                .put(&key, PutPayload::from_bytes(data.clone()))
                .await
                .map(drop)
                .map_err(|e| map("writing tombstones", e))
        })
        .await?;
        self.cache.write(TOMBS, name, &data);
        self.index.lock().unwrap().add_tombs(name, &tombs);
        Ok(())
    }

    async fn append(&self, seq: Seq, data: Bytes) -> Result<()> {
        if seq == Seq::ZERO {
            return Err(Error::InvalidInput("journal entry 0 does not exist"));
        }
        let previous = Seq(seq.0 - 1);
        if previous != Seq::ZERO
            && self.known_head.load(Ordering::Relaxed) < previous.0
            && !self.exists(&self.keys.journal(previous)).await?
        {
            let head = self.head_after(Seq::ZERO).await?;
            return Err(Error::Gap { seq, head });
        }
        let key = self.keys.journal(seq);
        let mut attempt = 1;
        loop {
            let put = self
                .store
                .put_opts(
                    &key,
                    PutPayload::from_bytes(data.clone()),
                    PutOptions::from(PutMode::Create),
                )
                .await;
            match put {
                Ok(_) => break,
                Err(e) if is_taken(&e) => {
                    // Ours, if an earlier try (ours or object_store's retry
                    // of a 5xx) landed and only its answer was lost.
                    let existing = self.get_bytes(&key, "reading a journal entry").await?;
                    if existing.as_ref() == Some(&data) {
                        break;
                    }
                    self.known_head.fetch_max(seq.0, Ordering::Relaxed);
                    return Err(Error::SlotTaken(seq));
                }
                Err(e) => {
                    let e = map("appending to the journal", e);
                    if !e.is_retryable() || attempt >= ATTEMPTS {
                        return Err(e);
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
            }
        }
        self.known_head.fetch_max(seq.0, Ordering::Relaxed);
        Ok(())
    }

    async fn read_journal(&self, after: Seq, limit: usize) -> Result<Vec<JournalEntry>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let offset = self.keys.journal(after);
        let dir = self.keys.journal_dir();
        let seqs: Vec<Seq> = self
            .retrying(|| async {
                let mut listing = self.store.list_with_offset(Some(&dir), &offset);
                let mut seqs = Vec::new();
                let mut expected = after.next();
                while seqs.len() < limit {
                    let Some(meta) = listing
                        .try_next()
                        .await
                        .map_err(|e| map("listing the journal", e))?
                    else {
                        break;
                    };
                    match self.keys.parse_journal(&meta.location) {
                        Some(seq) if seq == expected => {
                            seqs.push(seq);
                            expected = seq.next();
                        }
                        // An entry racing in behind a later one cannot be:
                        // appends are create-only after their predecessor.
                        Some(_) => break,
                        None => {}
                    }
                }
                Ok(seqs)
            })
            .await?;
        let entries: Vec<JournalEntry> = stream::iter(seqs.into_iter().map(|seq| async move {
            let data = self
                .get_bytes(&self.keys.journal(seq), "reading a journal entry")
                .await?
                .ok_or_else(|| Error::Unavailable {
                    source: format!("journal entry {seq} was listed but cannot be read").into(),
                })?;
            Ok::<_, Error>(JournalEntry { seq, data })
        }))
        .buffered(self.config.parallel.max(1))
        .try_collect()
        .await?;
        if let Some(last) = entries.last() {
            self.known_head.fetch_max(last.seq.0, Ordering::Relaxed);
        }
        Ok(entries)
    }

    async fn wait_journal(&self, after: Seq, timeout: Duration) -> Result<Seq> {
        let deadline = tokio::time::Instant::now() + timeout;
        let next = self.keys.journal(after.next());
        loop {
            if self.known_head.load(Ordering::Relaxed) > after.0 || self.exists(&next).await? {
                return self.head_after(after).await;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return self.quiet_head(after).await;
            }
            tokio::time::sleep_until(deadline.min(now + self.config.poll_interval())).await;
        }
    }

    async fn put_snapshot(&self, snapshot: Snapshot) -> Result<()> {
        let mut body = Vec::with_capacity(8 + snapshot.data.len());
        body.extend_from_slice(&snapshot.seq.0.to_le_bytes());
        body.extend_from_slice(&snapshot.data);
        let body = Bytes::from(body);
        let key = self.keys.snapshot();
        // One PUT replaces an object whole: readers see old or new.
        self.retrying(|| async {
            self.store
                .put(&key, PutPayload::from_bytes(body.clone()))
                .await
                .map(drop)
                .map_err(|e| map("writing the snapshot", e))
        })
        .await
    }

    async fn get_snapshot(&self) -> Result<Option<Snapshot>> {
        let Some(body) = self
            .get_bytes(&self.keys.snapshot(), "reading the snapshot")
            .await?
        else {
            return Ok(None);
        };
        if body.len() < 8 {
            return Err(Error::Format {
                what: format!("the snapshot in {} is truncated", self.description),
            });
        }
        let seq = Seq(u64::from_le_bytes(body[..8].try_into().expect("8 bytes")));
        Ok(Some(Snapshot {
            seq,
            data: body.slice(8..),
        }))
    }
}

fn corrupt_meta(name: PackName, e: pack::FormatError) -> Error {
    Error::Format {
        what: format!("index file {name} in the bucket is unusable: {e}"),
    }
}

/// Exponential backoff from 200 ms with full jitter, capped at 5 s.
fn backoff(attempt: u32) -> Duration {
    let cap = (200u64 << attempt.min(5)).min(5000);
    let jitter = RandomState::new().hash_one(attempt) % cap.max(1);
    Duration::from_millis(cap / 2 + jitter / 2)
}

/// Installs ring as rustls's process-wide crypto provider, which reqwest
/// (built without a bundled one) needs before it makes a client. Idempotent.
fn install_tls_provider() {
    // Err means one is installed already, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_capped() {
        for attempt in 1..10 {
            let d = backoff(attempt);
            assert!(d >= Duration::from_millis(100) && d <= Duration::from_millis(5000));
        }
        assert!(backoff(1) <= Duration::from_millis(400));
    }

    #[test]
    fn connect_needs_a_bucket_and_sends_nothing() {
        assert!(matches!(
            S3Backend::connect(S3Config::new(""), None),
            Err(Error::Format { .. })
        ));
        let mut config = S3Config::new("b");
        config.endpoint = Some("http://127.0.0.1:1".into());
        config.prefix = "p".into();
        let backend = S3Backend::connect(config, None).unwrap();
        assert_eq!(backend.describe(), "s3://b/p/ at http://127.0.0.1:1");
    }
}
