//! The store's half of garbage collection on a bucket ([`pouch_backend::gc`]).
//!
//! S3 has no lock under which a put could revive a marked block atomically
//! with a sweep, so a bucket *hides* instead: a mark condemns copies, one
//! (block, pack) pair at a time (`condemned/{name}` objects, see `pack`).
//! A condemned copy is still read, but `has_blocks` and a put's dedup no
//! longer count it, deciding from a view of the condemned objects no older
//! than [`VIEW_WINDOW`](pouch_backend::gc::VIEW_WINDOW); a device that
//! needs the block puts a new copy, in a new pack that nothing condemns. A
//! sweep tombstones the pairs condemned since before its cutoff; reclaiming
//! ([`reclaim`]) deletes and rewrites packs. `ARCHITECTURE.md`, "Garbage
//! collection", has the argument why no device ends up naming a block a
//! sweep deleted.
//!
//! Marks are made and read by the store's clock: an object's
//! `LastModified`.

mod lease;
mod reclaim;

use std::collections::HashSet;

use bytes::Bytes;
use pouch_backend::{BlockId, Error, Result, StoredBlock, SweepReport};

use crate::S3Backend;
use crate::backend::CONDEMNED;
use crate::pack::{self, Condemned, PackName};

impl S3Backend {
    /// See [`pouch_backend::Backend::gc_list`]. The first page lists the
    /// bucket and keeps the whole listing, sorted; later pages are cut
    /// from it (a collector looks at each block once, so marks made since
    /// only touch blocks it has passed).
    pub(crate) async fn gc_list_in(
        &self,
        after: Option<BlockId>,
        limit: usize,
    ) -> Result<Vec<StoredBlock>> {
        let listing = self.gc_listing.lock().unwrap().clone();
        let listing = match listing {
            Some(listing) if after.is_some() => listing,
            _ => {
                self.refresh().await?;
                let listing = std::sync::Arc::new(self.stored_blocks());
                *self.gc_listing.lock().unwrap() = Some(listing.clone());
                listing
            }
        };
        let start = after.map_or(0, |a| listing.partition_point(|b| b.id <= a));
        Ok(listing[start..].iter().take(limit).copied().collect())
    }

    /// Every stored block in id order: its copies' bytes, and its oldest
    /// condemnation if a copy is condemned.
    fn stored_blocks(&self) -> Vec<StoredBlock> {
        let index = self.index.lock().unwrap();
        let mut blocks: Vec<StoredBlock> = index
            .blocks()
            .map(|(id, places)| StoredBlock {
                id: *id,
                stored_len: places.iter().map(|p| u64::from(p.len)).sum(),
                marked_ms: places
                    .iter()
                    .filter_map(|p| index.condemned_since(id, p.pack))
                    .min(),
            })
            .collect();
        blocks.sort_unstable_by_key(|b| b.id);
        blocks
    }

    /// See [`pouch_backend::Backend::gc_mark`]: condemns every copy of
    /// `mark` not condemned yet, and rewrites the condemned objects that
    /// name a copy of `unmark` without it.
    pub(crate) async fn gc_mark_in(
        &self,
        generation: u64,
        mark: &[BlockId],
        unmark: &[BlockId],
    ) -> Result<()> {
        self.hold(generation).await?;
        let fresh: Vec<Condemned> = {
            let index = self.index.lock().unwrap();
            mark.iter()
                .flat_map(|id| {
                    index
                        .find(id)
                        .iter()
                        .filter(|p| index.condemned_since(id, p.pack).is_none())
                        .map(|p| (*id, p.pack, 0))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        if !fresh.is_empty() {
            let name = PackName::random();
            let key = self.keys.condemned(name);
            let data = pack::encode_condemned(&fresh);
            self.requests
                .put(&key, data.clone().into(), "marking garbage")
                .await?;
            // The mark's time is the store's: the object's own.
            let at = self
                .requests
                .head(&key, "reading a mark's time")
                .await?
                .ok_or_else(|| Error::Unavailable {
                    source: format!("{key} was written but is gone").into(),
                })?
                .last_modified
                .timestamp_millis();
            self.cache.write(CONDEMNED, name, &data);
            let resolved = fresh.into_iter().map(|(id, p, _)| (id, p, at)).collect();
            self.index.lock().unwrap().add_condemned(name, resolved);
        }
        if !unmark.is_empty() {
            let pardoned: HashSet<BlockId> = unmark.iter().copied().collect();
            self.rewrite_condemned(|(id, _, _)| !pardoned.contains(id))
                .await?;
        }
        Ok(())
    }

    /// Rewrites every condemned object with a pair `keep` refuses: the
    /// pairs kept go into a new object (with their times) before the old
    /// one is deleted, so a kept pair stays condemned all along.
    pub(crate) async fn rewrite_condemned(&self, keep: impl Fn(&Condemned) -> bool) -> Result<()> {
        let affected: Vec<(PackName, Vec<Condemned>)> = {
            let index = self.index.lock().unwrap();
            index
                .condemned_files()
                .filter(|(_, pairs)| pairs.iter().any(|p| !keep(p)))
                .map(|(name, pairs)| (name, pairs.iter().copied().filter(|p| keep(p)).collect()))
                .collect()
        };
        for (old, kept) in affected {
            if !kept.is_empty() {
                let name = PackName::random();
                let data: Bytes = pack::encode_condemned(&kept);
                self.requests
                    .put(
                        &self.keys.condemned(name),
                        data.clone().into(),
                        "unmarking blocks",
                    )
                    .await?;
                self.cache.write(CONDEMNED, name, &data);
                self.index.lock().unwrap().add_condemned(name, kept);
            }
            self.drop_condemned(old, "unmarking blocks").await?;
        }
        Ok(())
    }

    /// Deletes condemned-pairs object `name` and forgets its pairs.
    pub(crate) async fn drop_condemned(&self, name: PackName, context: &'static str) -> Result<()> {
        self.requests
            .delete(&self.keys.condemned(name), context)
            .await?;
        self.cache.remove(CONDEMNED, name);
        self.index.lock().unwrap().remove_condemned(name);
        Ok(())
    }

    /// See [`pouch_backend::Backend::gc_sweep`]: tombstones the copies of
    /// `ids` condemned at or before `marked_by_ms`. A block is counted
    /// deleted when no copy of it is left; bytes count every copy gone.
    pub(crate) async fn gc_sweep_in(
        &self,
        generation: u64,
        ids: &[BlockId],
        marked_by_ms: i64,
    ) -> Result<SweepReport> {
        self.hold(generation).await?;
        // Copies devices put since the listing count for the report.
        self.refresh().await?;
        let mut report = SweepReport::default();
        let tombs: Vec<(BlockId, PackName)> = {
            let index = self.index.lock().unwrap();
            let mut tombs = Vec::new();
            for id in ids {
                let places = index.find(id);
                let doomed: Vec<_> = places
                    .iter()
                    .filter(|p| {
                        index
                            .condemned_since(id, p.pack)
                            .is_some_and(|since| since <= marked_by_ms)
                    })
                    .collect();
                if doomed.is_empty() {
                    continue;
                }
                if doomed.len() == places.len() {
                    report.blocks += 1;
                }
                report.bytes += doomed.iter().map(|p| u64::from(p.len)).sum::<u64>();
                tombs.extend(doomed.iter().map(|p| (*id, p.pack)));
            }
            tombs
        };
        self.write_tombs(tombs).await?;
        Ok(report)
    }
}
