//! The journal on S3: one object per entry, created with `If-None-Match: *`
//! after its predecessor; the snapshot, one object replaced whole; and
//! finding the head, by HEAD requests where a known entry allows and by
//! listing otherwise.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use object_store::{ObjectStore, PutPayload};
use pouch_backend::{Error, JournalEntry, Result, Seq, Snapshot, StoreId};

use crate::backend::S3Backend;
use crate::errors::map;
use crate::request::Created;

impl S3Backend {
    /// The last entry of the journal after `after`, listing from there.
    pub(crate) async fn head_after(&self, after: Seq) -> Result<Seq> {
        let keys = self
            .requests
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
        if self
            .requests
            .exists(&self.keys.journal(after), "looking for a journal entry")
            .await?
        {
            self.known_head.fetch_max(after.0, Ordering::Relaxed);
            return Ok(after);
        }
        self.head_after(Seq::ZERO).await
    }

    pub(crate) async fn append_in(&self, seq: Seq, data: Bytes) -> Result<()> {
        if seq == Seq::ZERO {
            return Err(Error::InvalidInput("journal entry 0 does not exist"));
        }
        let previous = Seq(seq.0 - 1);
        if previous != Seq::ZERO
            && self.known_head.load(Ordering::Relaxed) < previous.0
            && !self
                .requests
                .exists(&self.keys.journal(previous), "looking for a journal entry")
                .await?
        {
            let head = self.head_after(Seq::ZERO).await?;
            return Err(Error::Gap { seq, head });
        }
        let key = self.keys.journal(seq);
        let created = self
            .requests
            .create(&key, data.clone(), "appending to the journal")
            .await?;
        if created == Created::AlreadyThere {
            // Ours, if an earlier try (ours or object_store's retry of a
            // 5xx) landed and only its answer was lost.
            let existing = self.requests.get(&key, "reading a journal entry").await?;
            if existing.as_ref() != Some(&data) {
                self.known_head.fetch_max(seq.0, Ordering::Relaxed);
                return Err(Error::SlotTaken(seq));
            }
        }
        self.known_head.fetch_max(seq.0, Ordering::Relaxed);
        Ok(())
    }

    pub(crate) async fn read_journal_in(
        &self,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<JournalEntry>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let offset = self.keys.journal(after);
        let dir = self.keys.journal_dir();
        let seqs: Vec<Seq> = self
            .requests
            .retrying(|| async {
                let mut listing = self.requests.store.list_with_offset(Some(&dir), &offset);
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
                .requests
                .get(&self.keys.journal(seq), "reading a journal entry")
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

    pub(crate) async fn wait_journal_in(&self, after: Seq, timeout: Duration) -> Result<Seq> {
        let deadline = tokio::time::Instant::now() + timeout;
        let next = self.keys.journal(after.next());
        loop {
            if self.known_head.load(Ordering::Relaxed) > after.0
                || self
                    .requests
                    .exists(&next, "looking for a journal entry")
                    .await?
            {
                return self.head_after(after).await;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return self.quiet_head(after).await;
            }
            tokio::time::sleep_until(deadline.min(now + self.config.poll_interval())).await;
        }
    }

    pub(crate) async fn put_snapshot_in(&self, snapshot: Snapshot) -> Result<()> {
        let mut body = Vec::with_capacity(8 + snapshot.data.len());
        body.extend_from_slice(&snapshot.seq.0.to_le_bytes());
        body.extend_from_slice(&snapshot.data);
        let body = Bytes::from(body);
        let key = self.keys.snapshot();
        // One PUT replaces an object whole: readers see old or new.
        self.requests
            .put(&key, PutPayload::from_bytes(body), "writing the snapshot")
            .await
    }

    pub(crate) async fn get_snapshot_in(&self) -> Result<Option<Snapshot>> {
        let Some(body) = self
            .requests
            .get(&self.keys.snapshot(), "reading the snapshot")
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

    /// The identity object, read once and then remembered.
    pub(crate) async fn identity_in(&self) -> Result<Option<StoreId>> {
        if let Some(id) = *self.identity.lock().unwrap() {
            return Ok(Some(id));
        }
        let Some(body) = self
            .requests
            .get(&self.keys.identity(), "reading the store's identity")
            .await?
        else {
            return Ok(None);
        };
        let id = parse_identity(&body, &self.description)?;
        *self.identity.lock().unwrap() = Some(id);
        Ok(Some(id))
    }

    /// Creates the identity object with `If-None-Match: *`; a loser of the
    /// race reads the winner's.
    pub(crate) async fn init_identity_in(&self, proposed: StoreId) -> Result<StoreId> {
        if let Some(id) = self.identity_in().await? {
            return Ok(id);
        }
        let key = self.keys.identity();
        let created = self
            .requests
            .create(
                &key,
                Bytes::from(proposed.to_string()),
                "writing the store's identity",
            )
            .await?;
        let id = match created {
            Created::Yes => proposed,
            Created::AlreadyThere => {
                let body = self
                    .requests
                    .get(&key, "reading the store's identity")
                    .await?
                    .ok_or_else(|| Error::Unavailable {
                        source: "the store's identity was created and is gone".into(),
                    })?;
                parse_identity(&body, &self.description)?
            }
        };
        *self.identity.lock().unwrap() = Some(id);
        Ok(id)
    }
}

fn parse_identity(body: &[u8], store: &str) -> Result<StoreId> {
    std::str::from_utf8(body)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| Error::Format {
            what: format!("the identity object of {store} is not a store identity"),
        })
}
