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
    /// The last entry of the journal after `after`, listing from there
    /// (a trim point counts: its entries were there).
    pub(crate) async fn head_after(&self, after: Seq) -> Result<Seq> {
        let keys = self
            .requests
            .list(&self.keys.journal_dir(), Some(&self.keys.journal(after)))
            .await?;
        let trim = self.note_trims(&keys);
        let head = keys
            .iter()
            .filter_map(|k| self.keys.parse_journal(k))
            .max()
            .unwrap_or(after)
            .max(after)
            .max(trim);
        self.known_head.fetch_max(head.0, Ordering::Relaxed);
        Ok(head)
    }

    /// The highest trim marker among `keys` (remembered), `Seq::ZERO` if
    /// none.
    fn note_trims(&self, keys: &[object_store::path::Path]) -> Seq {
        let trim = keys
            .iter()
            .filter_map(|k| self.keys.parse_journal_trimmed(k))
            .max()
            .unwrap_or(Seq::ZERO);
        self.known_trim.fetch_max(trim.0, Ordering::Relaxed);
        trim
    }

    /// The journal's trim point: the highest marker, `Seq::ZERO` if none.
    /// Markers sort after every entry, so this lists only them.
    async fn trim_point(&self) -> Result<Seq> {
        let keys = self
            .requests
            .list(
                &self.keys.journal_dir(),
                Some(&self.keys.journal_trimmed(Seq::ZERO)),
            )
            .await?;
        let listed = self.note_trims(&keys);
        Ok(listed.max(Seq(self.known_trim.load(Ordering::Relaxed))))
    }

    /// See [`pouch_backend::Backend::trim_journal`]: a create-only marker
    /// first (so the trim point only grows, whoever trims), then every
    /// entry up to it is replaced by an empty object. The keys stay, so a
    /// create of a trimmed slot still fails: a device that slept through
    /// the trim cannot win a slot another device already used.
    pub(crate) async fn trim_journal_in(&self, through: Seq) -> Result<()> {
        let folded = self
            .requests
            .get_range(&self.keys.snapshot(), 0..8, "reading the snapshot")
            .await?
            .map(|b| Seq(u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))));
        if folded.is_none_or(|s| s < through) {
            return Err(Error::InvalidInput(
                "a journal is trimmed only up to a snapshot that folds it",
            ));
        }
        let before = self.trim_point().await?;
        if before < through {
            self.requests
                .create(
                    &self.keys.journal_trimmed(through),
                    Bytes::new(),
                    "marking the journal trimmed",
                )
                .await?;
            self.known_trim.fetch_max(through.0, Ordering::Relaxed);
        }
        self.known_head.fetch_max(through.0, Ordering::Relaxed);
        // Entries up to the last trim are empty already.
        let listed = self
            .requests
            .list_meta(&self.keys.journal_dir(), Some(&self.keys.journal(before)))
            .await?;
        let emptied = listed.into_iter().filter(|meta| {
            meta.size > 0
                && self
                    .keys
                    .parse_journal(&meta.location)
                    .is_some_and(|s| s <= through)
        });
        let stale_markers = self
            .requests
            .list(
                &self.keys.journal_dir(),
                Some(&self.keys.journal_trimmed(Seq::ZERO)),
            )
            .await?
            .into_iter()
            .filter(|k| {
                self.keys
                    .parse_journal_trimmed(k)
                    .is_some_and(|s| s < through)
            })
            .collect::<Vec<_>>();
        stream::iter(emptied.map(|meta| async move {
            self.requests
                .put(
                    &meta.location,
                    PutPayload::default(),
                    "dropping a trimmed journal entry",
                )
                .await
        }))
        .buffer_unordered(self.config.parallel.max(1))
        .try_collect::<Vec<()>>()
        .await?;
        for key in stale_markers {
            self.requests
                .delete(&key, "removing an old trim marker")
                .await?;
        }
        Ok(())
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
            // Gone, or trimmed (the trim point is the head then).
            let head = self.head_after(Seq::ZERO).await?;
            if head < previous {
                return Err(Error::Gap { seq, head });
            }
        }
        // A trimmed slot is taken, though on a copy that started from a
        // snapshot it never had an object.
        let trim = if previous == Seq::ZERO {
            self.trim_point().await?
        } else {
            Seq(self.known_trim.load(Ordering::Relaxed))
        };
        if seq <= trim {
            return Err(Error::SlotTaken(seq));
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
        let trimmed = |through: Seq| Err(Error::Trimmed { through });
        let known_trim = Seq(self.known_trim.load(Ordering::Relaxed));
        if after < known_trim {
            return trimmed(known_trim);
        }
        if limit == 0 {
            return Ok(Vec::new());
        }
        let offset = self.keys.journal(after);
        let dir = self.keys.journal_dir();
        let (seqs, trim): (Vec<Seq>, Seq) = self
            .requests
            .retrying(|| async {
                let mut listing = self.requests.store.list_with_offset(Some(&dir), &offset);
                let mut seqs = Vec::new();
                let mut expected = after.next();
                let mut marker = Seq::ZERO;
                // Asked for once, at the first empty entry: an empty entry
                // up to the trim point is one the trim emptied.
                let mut trim = None;
                while seqs.len() < limit {
                    let Some(meta) = listing
                        .try_next()
                        .await
                        .map_err(|e| map("listing the journal", e))?
                    else {
                        break;
                    };
                    if let Some(at) = self.keys.parse_journal_trimmed(&meta.location) {
                        marker = marker.max(at);
                        continue;
                    }
                    match self.keys.parse_journal(&meta.location) {
                        Some(seq) if seq == expected => {
                            if meta.size == 0 {
                                let at = match trim {
                                    Some(at) => at,
                                    None => *trim.insert(self.trim_point().await?),
                                };
                                if seq <= at {
                                    return Ok((seqs, at));
                                }
                            }
                            seqs.push(seq);
                            expected = seq.next();
                        }
                        // An entry racing in behind a later one cannot be:
                        // appends are create-only after their predecessor.
                        // A copy that starts from a snapshot has no entries
                        // up to its trim point.
                        Some(_) => {
                            let at = match trim {
                                Some(at) => at,
                                None => self.trim_point().await?,
                            };
                            return Ok((seqs, at));
                        }
                        None => {}
                    }
                }
                Ok((seqs, trim.unwrap_or(marker)))
            })
            .await?;
        self.known_trim.fetch_max(trim.0, Ordering::Relaxed);
        if seqs.is_empty() && after < trim {
            return trimmed(trim);
        }
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
                || self.known_trim.load(Ordering::Relaxed) > after.0
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
        if snapshot.seq < self.trim_point().await? {
            return Err(Error::InvalidInput(
                "a snapshot must fold every entry the journal dropped",
            ));
        }
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
