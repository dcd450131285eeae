//! Blocks in packs: uploading packs and their indexes, ranged reads of
//! one block, existence from the cached index, tombstones for deletes, and
//! the listing that brings the index up to the bucket.

use std::time::Instant;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use object_store::PutPayload;
use object_store::path::Path;
use pouch_backend::{Block, BlockId, Error, Result};

use crate::backend::{CONDEMNED, HAS_REFRESH, MERGE_EVERY, MERGED, PACKS, S3Backend, TOMBS};
use crate::pack::{self, PackName};

impl S3Backend {
    /// Lists the bucket's pack indexes and tombstones and applies the ones
    /// not seen yet (from the disk cache when there, else fetched).
    pub(crate) async fn refresh(&self) -> Result<()> {
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
        let viewed_at = pouch_backend::gc::since_boot();
        let (packs_dir, tombs_dir) = (self.keys.packs_dir(), self.keys.tombs_dir());
        let condemned_dir = self.keys.condemned_dir();
        let (pack_keys, tomb_keys, condemned_listed) = tokio::try_join!(
            self.requests.list(&packs_dir, None),
            self.requests.list(&tombs_dir, None),
            self.requests.list_meta(&condemned_dir, None)
        )?;
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
        let condemned_times: std::collections::HashMap<PackName, i64> = condemned_listed
            .iter()
            .filter_map(|meta| {
                let name = self.keys.parse_condemned(&meta.location)?;
                Some((name, meta.last_modified.timestamp_millis()))
            })
            .collect();
        let (new_condemned, gone_condemned): (Vec<PackName>, Vec<PackName>) = {
            let index = self.index.lock().unwrap();
            (
                condemned_times
                    .keys()
                    .copied()
                    .filter(|n| !index.knows_condemned(*n))
                    .collect(),
                index
                    .condemned_files()
                    .map(|(n, _)| n)
                    .filter(|n| !condemned_times.contains_key(n))
                    .collect(),
            )
        };
        let fetched_condemned = self
            .fetch_all(
                new_condemned,
                CONDEMNED,
                |n| self.keys.condemned(n),
                pack::decode_condemned,
            )
            .await?;
        // Tombstones first, so that a pack's dead entries never show live.
        let fetched_tombs = self
            .fetch_all(new_tombs, TOMBS, |n| self.keys.tomb(n), pack::decode_tombs)
            .await?;
        // Many unknown packs (a new device): their indexes are read from
        // the merged ones first, a few objects instead of one per pack;
        // only for packs the bucket lists, which stays the authority.
        let mut merged_packs: Vec<(PackName, Vec<pack::Entry>)> = Vec::new();
        let mut merged_names = Vec::new();
        if new_packs.len() >= 2 {
            let keys = self.requests.list(&self.keys.merged_dir(), None).await?;
            let unseen: Vec<PackName> = {
                let index = self.index.lock().unwrap();
                keys.iter()
                    .filter_map(|k| self.keys.parse_merged(k))
                    .filter(|name| !index.knows_merged(*name))
                    .collect()
            };
            let wanted: std::collections::HashSet<PackName> = new_packs.iter().copied().collect();
            for (name, packs) in self
                .fetch_all(unseen, MERGED, |n| self.keys.merged(n), merged_or_nothing)
                .await?
            {
                merged_names.push(name);
                merged_packs.extend(packs.into_iter().filter(|(p, _)| wanted.contains(p)));
            }
        }
        let covered: std::collections::HashSet<PackName> =
            merged_packs.iter().map(|(p, _)| *p).collect();
        let fetched_packs = self
            .fetch_all(
                new_packs
                    .into_iter()
                    .filter(|p| !covered.contains(p))
                    .collect(),
                PACKS,
                |n| self.keys.pack_index(n),
                pack::decode_index,
            )
            .await?;
        let mut index = self.index.lock().unwrap();
        for (name, tombs) in &fetched_tombs {
            index.add_tombs(*name, tombs);
        }
        for (name, entries) in fetched_packs.iter().chain(&merged_packs) {
            index.add_pack(*name, entries);
        }
        for name in merged_names {
            index.add_merged(name);
        }
        for (name, pairs) in fetched_condemned {
            let own_time = condemned_times[&name];
            let resolved = pairs
                .into_iter()
                .map(|(id, pack, since)| (id, pack, if since == 0 { own_time } else { since }))
                .collect();
            index.add_condemned(name, resolved);
        }
        for name in gone_condemned {
            index.remove_condemned(name);
            self.cache.remove(CONDEMNED, name);
        }
        for name in gone {
            index.remove_pack(name);
            self.cache.remove(PACKS, name);
        }
        index.refreshed = Some(listed_at);
        index.viewed_at = Some(viewed_at);
        tracing::debug!(
            blocks = index.number_of_blocks(),
            new_packs = fetched_packs.len() + merged_packs.len(),
            new_tombstones = fetched_tombs.len(),
            "pack index refreshed"
        );
        Ok(())
    }

    /// Index or tombstone files `names`, decoded: from the disk cache when
    /// a cached copy decodes, else fetched (`parallel` at a time), decoded
    /// once, and cached.
    pub(crate) async fn fetch_all<T>(
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
                    .requests
                    .get(&key, "reading a pack index")
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
    pub(crate) async fn upload_pack(&self, pack: pack::Pack) -> Result<()> {
        let payload = PutPayload::from_iter(pack.parts);
        let pack_key = self.keys.pack(pack.name);
        self.requests
            .put(&pack_key, payload, "uploading a pack")
            .await?;
        let index = pack::encode_index(&pack.entries);
        let index_key = self.keys.pack_index(pack.name);
        self.requests
            .put(
                &index_key,
                PutPayload::from_bytes(index.clone()),
                "uploading a pack index",
            )
            .await?;
        self.cache.write(PACKS, pack.name, &index);
        self.index
            .lock()
            .unwrap()
            .add_pack(pack.name, &pack.entries);
        let merge = {
            let mut unmerged = self.unmerged.lock().unwrap();
            unmerged.push((pack.name, pack.entries));
            (unmerged.len() >= MERGE_EVERY).then(|| std::mem::take(&mut *unmerged))
        };
        if let Some(packs) = merge {
            self.write_merged(packs).await;
        }
        Ok(())
    }

    /// Writes one merged index of `packs`. Only a shortcut for readers
    /// (each pack's own index stays the authority), so a failure is
    /// logged, not returned.
    async fn write_merged(&self, packs: Vec<(PackName, Vec<pack::Entry>)>) {
        let name = PackName::random();
        let key = self.keys.merged(name);
        let data = pack::encode_merged(&packs);
        match self
            .requests
            .put(
                &key,
                PutPayload::from_bytes(data.clone()),
                "uploading a merged index",
            )
            .await
        {
            Ok(_) => {
                self.cache.write(MERGED, name, &data);
                self.index.lock().unwrap().add_merged(name);
            }
            Err(e) => {
                tracing::debug!("a merged index was not written (readers use each pack's): {e}")
            }
        }
    }

    pub(crate) async fn put_blocks_in(&self, blocks: Vec<Block>) -> Result<()> {
        let blocks = tokio::task::spawn_blocking(move || {
            for block in &blocks {
                block.verify()?;
            }
            Ok::<_, Error>(blocks)
        })
        .await
        .map_err(Error::internal("verifying blocks"))??;
        if self.view_is_stale() {
            // What counts as stored is decided from a recent view of the
            // condemned copies (see `pouch_backend::gc::VIEW_WINDOW`).
            self.refresh().await?;
        }
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

    pub(crate) async fn get_block_in(&self, id: BlockId) -> Result<Bytes> {
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
            let mut damaged = Vec::new();
            let mut moved = false;
            'places: for place in places {
                // A copy is damaged only if it reads wrong twice: one bad
                // read may be the network's.
                for attempt in 0..2 {
                    let Some(payload) = self.read_place(&place).await? else {
                        moved = true;
                        continue 'places;
                    };
                    let block = Block::from_parts(id, place.codec, payload);
                    match tokio::task::spawn_blocking(move || block.decode())
                        .await
                        .map_err(Error::internal("decoding a block"))?
                    {
                        Ok(raw) => return Ok(raw),
                        Err(e) => {
                            tracing::warn!(%id, pack = %place.pack, attempt, error = %e, "damaged block copy in the bucket");
                            damage = Some(e);
                        }
                    }
                }
                damaged.push((id, place.pack));
            }
            if let Some(e) = damage {
                // Quarantined: a tombstone takes the damaged copies out of
                // the index (so `has_blocks` says missing and devices send
                // the block again, into a new pack) while their bytes stay
                // in the pack.
                if !damaged.is_empty() {
                    if let Err(tomb) = self.write_tombs(damaged).await {
                        tracing::warn!(%id, error = %tomb, "could not quarantine a damaged block");
                    } else {
                        tracing::error!(%id, "quarantined a damaged block copy");
                    }
                }
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

    /// One copy's stored bytes; `None` if its pack is gone (moved).
    async fn read_place(&self, place: &crate::index::Location) -> Result<Option<Bytes>> {
        if place.len == 0 {
            // S3 has no empty range; an empty payload needs no read.
            return Ok(Some(Bytes::new()));
        }
        let key = self.keys.pack(place.pack);
        let range = place.offset..place.offset + u64::from(place.len);
        self.requests
            .get_range(&key, range, "reading a block")
            .await
    }

    pub(crate) async fn has_blocks_in(&self, ids: &[BlockId]) -> Result<Vec<bool>> {
        let stale = {
            let index = self.index.lock().unwrap();
            let missing = ids.iter().any(|id| !index.has(id));
            missing && index.refreshed.is_none_or(|at| at.elapsed() > HAS_REFRESH)
        };
        if stale || self.view_is_stale() {
            self.refresh().await?;
        }
        let index = self.index.lock().unwrap();
        Ok(ids.iter().map(|id| index.has(id)).collect())
    }

    /// Whether the view of the condemned copies is older than
    /// [`VIEW_WINDOW`](pouch_backend::gc::VIEW_WINDOW), suspend included.
    fn view_is_stale(&self) -> bool {
        let viewed_at = self.index.lock().unwrap().viewed_at;
        viewed_at.is_none_or(|at| {
            pouch_backend::gc::since_boot().saturating_sub(at) > pouch_backend::gc::VIEW_WINDOW
        })
    }

    pub(crate) async fn delete_blocks_in(&self, ids: &[BlockId]) -> Result<()> {
        self.refresh().await?;
        let tombs: Vec<(BlockId, PackName)> = {
            let index = self.index.lock().unwrap();
            ids.iter()
                .flat_map(|id| index.find(id).iter().map(move |p| (*id, p.pack)))
                .collect()
        };
        self.write_tombs(tombs).await
    }

    /// Writes tombstones for `tombs` (block, pack) copies and applies them.
    pub(crate) async fn write_tombs(&self, tombs: Vec<(BlockId, PackName)>) -> Result<()> {
        if tombs.is_empty() {
            return Ok(());
        }
        let name = PackName::random();
        let data = pack::encode_tombs(&tombs);
        let key = self.keys.tomb(name);
        self.requests
            .put(
                &key,
                PutPayload::from_bytes(data.clone()),
                "writing tombstones",
            )
            .await?;
        self.cache.write(TOMBS, name, &data);
        self.index.lock().unwrap().add_tombs(name, &tombs);
        Ok(())
    }
}

/// A merged index's packs; a damaged one is only a lost shortcut (each
/// pack's own index is read instead), so it yields none.
pub(crate) fn merged_or_nothing(
    data: &[u8],
) -> Result<Vec<(PackName, Vec<pack::Entry>)>, pack::FormatError> {
    Ok(pack::decode_merged(data).unwrap_or_else(|e| {
        tracing::warn!("a merged index is unreadable ({e}); reading each pack's index instead");
        Vec::new()
    }))
}

fn corrupt_meta(name: PackName, e: pack::FormatError) -> Error {
    Error::Format {
        what: format!("index file {name} in the bucket is unusable: {e}"),
    }
}
