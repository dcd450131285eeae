//! Space back from a bucket after sweeps: packs with nothing live are
//! deleted, packs mostly dead are rewritten, and the small objects that
//! only named gone packs (tombstones, condemned pairs, merged indexes) go.
//!
//! Every step keeps "a block exists exactly when an index naming it
//! exists" true for readers: a rewritten pack's live blocks are in a new
//! pack, index written, before the old copies are tombstoned; an index is
//! deleted before its pack. A reader whose cached index still points into
//! a deleted pack finds it gone and lists the bucket again (`blocks.rs`).
//! A crash anywhere leaves at worst a duplicate copy or a dead pack, which
//! the next reclaim takes.

use std::collections::{HashMap, HashSet};

use futures_util::{StreamExt, TryStreamExt, stream};
use pouch_backend::{Block, BlockId, Error, ReclaimReport, Result};

use crate::S3Backend;
use crate::backend::{MERGED, PACKS, TOMBS};
use crate::index::Location;
use crate::pack::{self, PackName};

/// A pack is rewritten once less than this share of its bytes is live.
const REWRITE_BELOW: f64 = 0.5;

/// What to do with one pack.
struct Rewrite {
    pack: PackName,
    live: Vec<(BlockId, Location)>,
    live_bytes: u64,
    total_bytes: u64,
}

impl S3Backend {
    /// See [`pouch_backend::Backend::gc_reclaim`].
    pub(crate) async fn gc_reclaim_in(&self, generation: u64) -> Result<ReclaimReport> {
        self.hold(generation).await?;
        self.refresh().await?;
        let (dead, rewrites) = self.plan_reclaim();
        let mut report = ReclaimReport::default();

        for rewrite in rewrites {
            self.hold(generation).await?;
            if self.rewrite_pack(&rewrite).await? {
                report.packs_rewritten += 1;
                report.packs_deleted += 1;
                report.bytes_rewritten += rewrite.live_bytes;
                report.bytes_freed += rewrite.total_bytes - rewrite.live_bytes;
            }
        }
        self.hold(generation).await?;
        let freed: Vec<u64> = stream::iter(
            dead.into_iter()
                .map(|(pack, bytes)| async move { self.delete_pack(pack).await.map(|()| bytes) }),
        )
        .buffer_unordered(self.config.parallel.max(1))
        .try_collect()
        .await?;
        report.packs_deleted += freed.len() as u64;
        report.bytes_freed += freed.iter().sum::<u64>();
        self.forget_bookkeeping().await?;
        *self.gc_listing.lock().unwrap() = None;
        tracing::info!(?report, "bucket space reclaimed");
        Ok(report)
    }

    /// Packs with no live copy (with their bytes), and packs to rewrite:
    /// mostly dead, and no copy in them waiting out a grace period (they
    /// are rewritten once those are swept or unmarked).
    fn plan_reclaim(&self) -> (Vec<(PackName, u64)>, Vec<Rewrite>) {
        let index = self.index.lock().unwrap();
        let mut live: HashMap<PackName, (Vec<(BlockId, Location)>, bool)> = HashMap::new();
        for (id, places) in index.blocks() {
            for place in places {
                let (copies, condemned) = live.entry(place.pack).or_default();
                copies.push((*id, *place));
                *condemned |= index.condemned_since(id, place.pack).is_some();
            }
        }
        let dead = index
            .packs()
            .filter(|p| !live.contains_key(p))
            .map(|p| (p, index.pack_size(p).map_or(0, |(_, bytes)| bytes)))
            .collect();
        let rewrites = live
            .into_iter()
            .filter(|(_, (_, condemned))| !condemned)
            .filter_map(|(pack, (copies, _))| {
                let total_bytes = index.pack_size(pack)?.1;
                let live_bytes: u64 = copies.iter().map(|(_, l)| u64::from(l.len)).sum();
                ((live_bytes as f64) < REWRITE_BELOW * total_bytes as f64).then_some(Rewrite {
                    pack,
                    live: copies,
                    live_bytes,
                    total_bytes,
                })
            })
            .collect();
        (dead, rewrites)
    }

    /// Puts a pack's live blocks into new packs, tombstones the old copies
    /// and deletes the old pack. `false` (and nothing changed) if the pack
    /// is gone or a block in it does not verify: a damaged copy is left for
    /// the healing path to find, not copied.
    async fn rewrite_pack(&self, rewrite: &Rewrite) -> Result<bool> {
        let key = self.keys.pack(rewrite.pack);
        let Some(data) = self.requests.get(&key, "reading a pack to rewrite").await? else {
            return Ok(false);
        };
        let mut blocks = Vec::with_capacity(rewrite.live.len());
        for (id, place) in &rewrite.live {
            let range = place.offset as usize..place.offset as usize + place.len as usize;
            let Some(payload) = data.get(range) else {
                tracing::warn!(pack = %rewrite.pack, %id, "a pack is shorter than its index; left as it is");
                return Ok(false);
            };
            blocks.push(Block::from_parts(*id, place.codec, data.slice_ref(payload)));
        }
        let blocks = tokio::task::spawn_blocking(move || {
            let damaged = blocks.iter().find_map(|b| b.verify().err());
            (blocks, damaged)
        })
        .await
        .map_err(Error::internal("verifying blocks"))?;
        if let (_, Some(e)) = &blocks {
            tracing::warn!(pack = %rewrite.pack, error = %e, "a pack holds a damaged block; left as it is");
            return Ok(false);
        }
        for new in pack::build_packs(blocks.0, self.config.pack_size) {
            self.upload_pack(new).await?;
        }
        let tombs = rewrite
            .live
            .iter()
            .map(|(id, _)| (*id, rewrite.pack))
            .collect();
        self.write_tombs(tombs).await?;
        self.delete_pack(rewrite.pack).await?;
        Ok(true)
    }

    /// Deletes a pack: its index first, so no reader learns of it after its
    /// bytes are gone.
    async fn delete_pack(&self, pack: PackName) -> Result<()> {
        self.requests
            .delete(&self.keys.pack_index(pack), "deleting a pack index")
            .await?;
        self.requests
            .delete(&self.keys.pack(pack), "deleting a pack")
            .await?;
        self.cache.remove(PACKS, pack);
        self.index.lock().unwrap().remove_pack(pack);
        Ok(())
    }

    /// Deletes tombstone, condemned and merged-index objects that name only
    /// packs no longer there (or copies already tombstoned).
    async fn forget_bookkeeping(&self) -> Result<()> {
        let (tombs, condemned) = {
            let index = self.index.lock().unwrap();
            let tombs: Vec<PackName> = index
                .tomb_files()
                .filter(|(_, packs)| packs.iter().all(|p| !index.knows_pack(*p)))
                .map(|(name, _)| name)
                .collect();
            let condemned: Vec<PackName> = index
                .condemned_files()
                .filter(|(_, pairs)| {
                    pairs
                        .iter()
                        .all(|(id, p, _)| !index.knows_pack(*p) || index.is_dead(id, *p))
                })
                .map(|(name, _)| name)
                .collect();
            (tombs, condemned)
        };
        for name in condemned {
            self.drop_condemned(name, "deleting spent marks").await?;
        }
        for name in tombs {
            self.requests
                .delete(&self.keys.tomb(name), "deleting spent tombstones")
                .await?;
            self.cache.remove(TOMBS, name);
            self.index.lock().unwrap().forget_tombs(name);
        }
        let listed = self.requests.list(&self.keys.merged_dir(), None).await?;
        let names: Vec<PackName> = listed
            .iter()
            .filter_map(|k| self.keys.parse_merged(k))
            .collect();
        let merged = self
            .fetch_all(
                names,
                MERGED,
                |n| self.keys.merged(n),
                crate::blocks::merged_or_nothing,
            )
            .await?;
        let spent: Vec<PackName> = {
            let index = self.index.lock().unwrap();
            merged
                .iter()
                .filter(|(_, packs)| packs.iter().all(|(p, _)| !index.knows_pack(*p)))
                .map(|(name, _)| *name)
                .collect()
        };
        for name in spent {
            self.requests
                .delete(&self.keys.merged(name), "deleting a spent merged index")
                .await?;
            self.cache.remove(MERGED, name);
        }
        self.delete_orphan_packs().await
    }

    /// Deletes pack objects that never got an index (an upload that died
    /// between the two puts) once they are older than the default grace:
    /// an upload in progress writes its index seconds after its pack.
    async fn delete_orphan_packs(&self) -> Result<()> {
        let listed = self
            .requests
            .list_meta(&self.keys.packs_dir(), None)
            .await?;
        let indexed: HashSet<PackName> = listed
            .iter()
            .filter_map(|m| self.keys.parse_pack_index(&m.location))
            .collect();
        let old_enough =
            pouch_backend::gc::now_ms() - pouch_backend::gc::DEFAULT_GRACE.as_millis() as i64;
        for meta in &listed {
            let Some(name) = self.keys.parse_pack(&meta.location) else {
                continue;
            };
            if !indexed.contains(&name) && meta.last_modified.timestamp_millis() < old_enough {
                tracing::info!(pack = %name, "deleting a pack whose upload never finished");
                self.requests
                    .delete(&meta.location, "deleting an unfinished pack")
                    .await?;
            }
        }
        Ok(())
    }
}
