//! The one retrying request layer over `object_store`: every call the
//! backend makes to the bucket goes through here, tried again with backoff
//! while it fails temporarily.
//!
//! object_store retries 5xx, throttling and timeouts itself; this layer adds
//! tries of a whole logical call for what it does not retry (a connection
//! dropped mid-body, a create-only put whose answer was lost).

use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use pouch_backend::Result;

use crate::errors::{is_not_found, is_taken, map};

/// Tries of one logical call on failures that object_store does not retry
/// itself.
const ATTEMPTS: u32 = 4;

/// What a create-only put found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Created {
    /// The object is ours.
    Yes,
    /// An object was there already (perhaps ours, from a try whose answer
    /// was lost: the caller compares).
    AlreadyThere,
}

/// The bucket, with retries.
pub(crate) struct Requests {
    pub(crate) store: AmazonS3,
}

impl Requests {
    /// Runs `call` up to [`ATTEMPTS`] times while it fails temporarily, with
    /// exponential backoff and jitter.
    pub(crate) async fn retrying<T, F, Fut>(&self, mut call: F) -> Result<T>
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

    /// The object at `path`; `None` when there is none.
    pub(crate) async fn get(&self, path: &Path, context: &'static str) -> Result<Option<Bytes>> {
        self.retrying(|| async {
            match self.store.get(path).await {
                Ok(result) => result.bytes().await.map(Some).map_err(|e| map(context, e)),
                Err(e) if is_not_found(&e) => Ok(None),
                Err(e) => Err(map(context, e)),
            }
        })
        .await
    }

    /// Bytes `range` of the object at `path`; `None` when there is none.
    pub(crate) async fn get_range(
        &self,
        path: &Path,
        range: std::ops::Range<u64>,
        context: &'static str,
    ) -> Result<Option<Bytes>> {
        self.retrying(|| async {
            match self.store.get_range(path, range.clone()).await {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if is_not_found(&e) => Ok(None),
                Err(e) => Err(map(context, e)),
            }
        })
        .await
    }

    /// Whether an object exists at `path`.
    pub(crate) async fn exists(&self, path: &Path, context: &'static str) -> Result<bool> {
        Ok(self.head(path, context).await?.is_some())
    }

    /// Every key under `dir`, after `offset` when given.
    pub(crate) async fn list(&self, dir: &Path, offset: Option<&Path>) -> Result<Vec<Path>> {
        Ok(self
            .list_meta(dir, offset)
            .await?
            .into_iter()
            .map(|meta| meta.location)
            .collect())
    }

    /// Every object under `dir` (after `offset` when given), with its size
    /// and `LastModified` (the store's clock).
    pub(crate) async fn list_meta(
        &self,
        dir: &Path,
        offset: Option<&Path>,
    ) -> Result<Vec<ObjectMeta>> {
        self.retrying(|| async {
            let listing = match offset {
                Some(offset) => self.store.list_with_offset(Some(dir), offset),
                None => self.store.list(Some(dir)),
            };
            listing
                .try_collect()
                .await
                .map_err(|e| map("listing the bucket", e))
        })
        .await
    }

    /// The object's size and `LastModified`; `None` when there is none.
    pub(crate) async fn head(
        &self,
        path: &Path,
        context: &'static str,
    ) -> Result<Option<ObjectMeta>> {
        self.retrying(|| async {
            match self.store.head(path).await {
                Ok(meta) => Ok(Some(meta)),
                Err(e) if is_not_found(&e) => Ok(None),
                Err(e) => Err(map(context, e)),
            }
        })
        .await
    }

    /// Deletes the object at `path`; one already gone is fine.
    pub(crate) async fn delete(&self, path: &Path, context: &'static str) -> Result<()> {
        self.retrying(|| async {
            match self.store.delete(path).await {
                Ok(()) => Ok(()),
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => Err(map(context, e)),
            }
        })
        .await
    }

    /// Writes `payload` at `path`, replacing what is there (one PUT
    /// replaces an object whole: readers see old or new).
    pub(crate) async fn put(
        &self,
        path: &Path,
        payload: PutPayload,
        context: &'static str,
    ) -> Result<()> {
        self.retrying(|| async {
            self.store
                .put(path, payload.clone())
                .await
                .map(drop)
                .map_err(|e| map(context, e))
        })
        .await
    }

    /// Creates the object at `path` with `data` unless one is there
    /// (`If-None-Match: *`).
    pub(crate) async fn create(
        &self,
        path: &Path,
        data: Bytes,
        context: &'static str,
    ) -> Result<Created> {
        self.retrying(|| async {
            let put = self
                .store
                .put_opts(
                    path,
                    PutPayload::from_bytes(data.clone()),
                    PutOptions::from(PutMode::Create),
                )
                .await;
            match put {
                Ok(_) => Ok(Created::Yes),
                Err(e) if is_taken(&e) => Ok(Created::AlreadyThere),
                Err(e) => Err(map(context, e)),
            }
        })
        .await
    }
}

/// Exponential backoff from 200 ms with full jitter, capped at 5 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let cap = (200u64 << attempt.min(5)).min(5000);
    let jitter = RandomState::new().hash_one(attempt) % cap.max(1);
    Duration::from_millis(cap / 2 + jitter / 2)
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
}
