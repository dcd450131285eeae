//! [`S3Backend`]: the [`Backend`] contract on an S3 bucket.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use object_store::aws::AmazonS3Builder;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
};
use pouch_backend::{
    Backend, Block, BlockId, Error, GcLease, JournalEntry, LeaseRequest, ReclaimReport, Result,
    Seq, Snapshot, StoreId, StoredBlock, SweepReport,
};

use crate::errors::{is_taken, map};
use crate::index::{DiskCache, Index};
use crate::keys::Keys;
use crate::pack::PackName;
use crate::request::Requests;
use crate::{S3Config, credentials};

/// How stale the index may be before `has_blocks` lists the bucket again for
/// ids it does not know. A stale "no" costs only a duplicate upload.
pub(crate) const HAS_REFRESH: Duration = Duration::from_secs(10);

/// Cache folder kinds.
pub(crate) const PACKS: &str = "packs";
pub(crate) const TOMBS: &str = "tombs";
pub(crate) const MERGED: &str = "merged";
pub(crate) const CONDEMNED: &str = "condemned";

/// Packs this process uploads before it writes them a merged index.
pub(crate) const MERGE_EVERY: usize = 16;

/// A namespace in an S3 bucket. See the crate docs for the layout.
pub struct S3Backend {
    pub(crate) requests: Requests,
    pub(crate) keys: Keys,
    pub(crate) config: S3Config,
    pub(crate) description: String,
    pub(crate) index: Mutex<Index>,
    /// Serialises listings so that concurrent misses share one.
    pub(crate) refreshing: tokio::sync::Mutex<()>,
    /// Packs this process uploaded that no merged index names yet.
    pub(crate) unmerged: Mutex<Vec<(crate::pack::PackName, Vec<crate::pack::Entry>)>>,
    pub(crate) cache: DiskCache,
    /// The highest journal entry known to exist (or to have existed,
    /// before a trim).
    pub(crate) known_head: AtomicU64,
    /// The highest trim point seen.
    pub(crate) known_trim: AtomicU64,
    /// The store's identity once read (it never changes).
    pub(crate) identity: Mutex<Option<StoreId>>,
    /// A collector's listing of every stored block, kept between its pages.
    pub(crate) gc_listing: Mutex<Option<std::sync::Arc<Vec<StoredBlock>>>>,
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
        pouch_backend::tls::install_provider();
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
            requests: Requests { store },
            keys: key_layout,
            config,
            description,
            index: Mutex::new(Index::default()),
            refreshing: tokio::sync::Mutex::new(()),
            unmerged: Mutex::new(Vec::new()),
            cache: DiskCache::new(cache_dir),
            known_head: AtomicU64::new(0),
            known_trim: AtomicU64::new(0),
            identity: Mutex::new(None),
            gc_listing: Mutex::new(None),
        })
    }

    /// Refuses a store that ignores conditional writes: creates one probe
    /// key twice, and the second create must fail. Pouch never runs a
    /// journal on a store where two devices could both win one slot.
    pub async fn probe_conditional_writes(&self) -> Result<()> {
        let key = self.keys.probe(PackName::random());
        let create = |body: &'static [u8]| {
            self.requests.store.put_opts(
                &key,
                PutPayload::from_static(body),
                PutOptions::from(PutMode::Create),
            )
        };
        match create(b"first").await {
            Ok(_) => {}
            // The key is fresh and random: "already there" means an earlier
            // try of this very create landed and its answer was lost (and
            // object_store tried again).
            Err(e) if is_taken(&e) => {}
            Err(e) => return Err(map("creating the conditional-write probe", e)),
        }
        let second = create(b"second").await;
        // Best effort: a leftover probe key harms nothing.
        let _ = self.requests.store.delete(&key).await;
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
}

#[async_trait]
impl Backend for S3Backend {
    fn describe(&self) -> String {
        self.description.clone()
    }

    async fn put_blocks(&self, blocks: Vec<Block>) -> Result<()> {
        self.put_blocks_in(blocks).await
    }

    async fn get_block(&self, id: BlockId) -> Result<Bytes> {
        self.get_block_in(id).await
    }

    fn get_blocks(&self, ids: Vec<BlockId>) -> BoxStream<'_, Result<Bytes>> {
        self.get_blocks_in(ids)
    }

    async fn has_blocks(&self, ids: &[BlockId]) -> Result<Vec<bool>> {
        self.has_blocks_in(ids).await
    }

    async fn delete_blocks(&self, ids: &[BlockId]) -> Result<()> {
        self.delete_blocks_in(ids).await
    }

    async fn gc_lease(&self, request: LeaseRequest) -> Result<GcLease> {
        self.gc_lease_in(request).await
    }

    async fn gc_list(&self, after: Option<BlockId>, limit: usize) -> Result<Vec<StoredBlock>> {
        self.gc_list_in(after, limit).await
    }

    async fn gc_mark(&self, generation: u64, mark: &[BlockId], unmark: &[BlockId]) -> Result<()> {
        self.gc_mark_in(generation, mark, unmark).await
    }

    async fn gc_sweep(
        &self,
        generation: u64,
        ids: &[BlockId],
        marked_by_ms: i64,
    ) -> Result<SweepReport> {
        self.gc_sweep_in(generation, ids, marked_by_ms).await
    }

    async fn gc_reclaim(&self, generation: u64) -> Result<ReclaimReport> {
        self.gc_reclaim_in(generation).await
    }

    async fn append(&self, seq: Seq, data: Bytes) -> Result<()> {
        self.append_in(seq, data).await
    }

    async fn read_journal(&self, after: Seq, limit: usize) -> Result<Vec<JournalEntry>> {
        self.read_journal_in(after, limit).await
    }

    async fn wait_journal(&self, after: Seq, timeout: Duration) -> Result<Seq> {
        self.wait_journal_in(after, timeout).await
    }

    async fn trim_journal(&self, through: Seq) -> Result<()> {
        self.trim_journal_in(through).await
    }

    async fn put_snapshot(&self, snapshot: Snapshot) -> Result<()> {
        self.put_snapshot_in(snapshot).await
    }

    async fn get_snapshot(&self) -> Result<Option<Snapshot>> {
        self.get_snapshot_in().await
    }

    async fn identity(&self) -> Result<Option<StoreId>> {
        self.identity_in().await
    }

    async fn init_identity(&self, proposed: StoreId) -> Result<StoreId> {
        self.init_identity_in(proposed).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
