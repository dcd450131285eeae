//! The store's half of garbage collection in the cell (see
//! `pouch_backend::gc`): a fenced lease per namespace, marks in the block
//! index (`blocks.marked_ms`), sweeps that delete index rows. Store time is
//! the database's clock, the one every front end shares.
//!
//! Reviving is PostgreSQL's row locking: `has_blocks` (and so every put)
//! first clears the marks of the blocks it names, an `UPDATE` that waits
//! for a sweep deleting the same rows and then finds them gone, and only
//! then, in a later statement, reads which rows exist. A sweep's `DELETE`
//! rechecks its condition on the row a concurrent revive left, so a block
//! answered "stored" after its mark is never swept.
//!
//! A swept block's bytes stay in its volume until compaction
//! (`compact.rs`) rewrites the volume's live blocks elsewhere.

use pouch_backend::gc::{GcLease, LeaseRequest, StoredBlock, SweepReport};
use pouch_backend::{BlockId, Error, Result};

use super::backend::CellBackend;
use super::db;

/// The database's clock in milliseconds since the Unix epoch.
const NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// The lease's holder, generation and expiry, share-locked (a lease taken
/// meanwhile waits for the caller's transaction).
async fn lease_row(
    tx: &impl deadpool_postgres::GenericClient,
    ns: &str,
) -> Result<Option<(String, i64, i64)>> {
    Ok(tx
        .query_opt(
            "SELECT holder, generation, expires_ms FROM gc_leases WHERE ns = $1 FOR SHARE",
            &[&ns],
        )
        .await
        .map_err(db::error("reading the collector's lease"))?
        .map(|r| (r.get(0), r.get(1), r.get(2))))
}

/// Refuses unless `generation` is the current, unexpired lease at `now`.
async fn check_lease(
    tx: &impl deadpool_postgres::GenericClient,
    ns: &str,
    generation: u64,
    now: i64,
) -> Result<()> {
    match lease_row(tx, ns).await? {
        Some((_, held, expires)) if held as u64 == generation && expires > now => Ok(()),
        Some((holder, held, _)) if held as u64 != generation => Err(Error::Fenced(format!(
            "the lease was taken by {holder} (generation {held}; this collector has {generation})"
        ))),
        _ => Err(Error::Fenced(format!(
            "lease generation {generation} expired; take the lease again"
        ))),
    }
}

async fn now_ms(client: &impl deadpool_postgres::GenericClient) -> Result<i64> {
    Ok(client
        .query_one(&format!("SELECT {NOW_MS}"), &[])
        .await
        .map_err(db::error("reading the database's clock"))?
        .get(0))
}

fn raw(ids: &[BlockId]) -> Vec<&[u8]> {
    ids.iter().map(|id| id.as_bytes().as_slice()).collect()
}

impl CellBackend {
    /// See [`pouch_backend::Backend::gc_lease`].
    pub(super) async fn lease(&self, request: LeaseRequest) -> Result<GcLease> {
        let mut client = self.client().await?;
        let context = "writing the collector's lease";
        let tx = client.transaction().await.map_err(db::error(context))?;
        // One lease change per namespace at a time.
        tx.execute(
            "SELECT 1 FROM namespaces WHERE name = $1 FOR UPDATE",
            &[&self.ns],
        )
        .await
        .map_err(db::error(context))?;
        let now = now_ms(&tx).await?;
        let ttl = i64::try_from(request.ttl.as_millis()).unwrap_or(i64::MAX / 2);
        let current = lease_row(&tx, &self.ns).await?;
        let generation = match (request.generation, &current) {
            (None, Some((holder, _, expires))) if *expires > now => {
                return Err(Error::Fenced(format!(
                    "{holder} holds the collector's lease for {} s more",
                    (expires - now + 999) / 1000
                )));
            }
            // Higher than any before, and than the clock.
            (None, current) => (current.as_ref().map_or(0, |(_, g, _)| *g) + 1).max(now),
            (Some(generation), _) => {
                check_lease(&tx, &self.ns, generation, now).await?;
                generation as i64
            }
        };
        let expires = if ttl == 0 { 0 } else { now.saturating_add(ttl) };
        tx.execute(
            "INSERT INTO gc_leases (ns, holder, generation, expires_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (ns) DO UPDATE SET holder = excluded.holder, \
                 generation = excluded.generation, expires_ms = excluded.expires_ms",
            &[&self.ns, &request.holder, &generation, &expires],
        )
        .await
        .map_err(db::error(context))?;
        tx.commit().await.map_err(db::error(context))?;
        Ok(GcLease {
            generation: generation as u64,
            expires_ms: expires,
            now_ms: now,
        })
    }

    /// See [`pouch_backend::Backend::gc_list`].
    pub(super) async fn list(
        &self,
        after: Option<BlockId>,
        limit: usize,
    ) -> Result<Vec<StoredBlock>> {
        let after: Vec<u8> = after.map(|id| id.as_bytes().to_vec()).unwrap_or_default();
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, length, marked_ms FROM blocks WHERE ns = $1 AND id > $2 \
                 ORDER BY id LIMIT $3",
                &[&self.ns, &after, &(limit.min(i64::MAX as usize) as i64)],
            )
            .await
            .map_err(db::error("listing blocks"))?;
        rows.iter()
            .map(|r| {
                let id = BlockId::from_slice(&r.get::<_, Vec<u8>>(0)).ok_or(Error::Format {
                    what: "the cell's index holds an id that is not 32 bytes".into(),
                })?;
                Ok(StoredBlock {
                    id,
                    stored_len: r.get::<_, i32>(1) as u64,
                    marked_ms: r.get(2),
                })
            })
            .collect()
    }

    /// See [`pouch_backend::Backend::gc_mark`]: a block keeps the time of
    /// its first mark.
    pub(super) async fn mark(
        &self,
        generation: u64,
        mark: &[BlockId],
        unmark: &[BlockId],
    ) -> Result<()> {
        let mut client = self.client().await?;
        let context = "marking blocks";
        let tx = client.transaction().await.map_err(db::error(context))?;
        let now = now_ms(&tx).await?;
        check_lease(&tx, &self.ns, generation, now).await?;
        tx.execute(
            "UPDATE blocks SET marked_ms = $3 WHERE ns = $1 AND id = ANY($2) AND marked_ms IS NULL",
            &[&self.ns, &raw(mark), &now],
        )
        .await
        .map_err(db::error(context))?;
        tx.execute(
            "UPDATE blocks SET marked_ms = NULL WHERE ns = $1 AND id = ANY($2)",
            &[&self.ns, &raw(unmark)],
        )
        .await
        .map_err(db::error(context))?;
        tx.commit().await.map_err(db::error(context))
    }

    /// See [`pouch_backend::Backend::gc_sweep`].
    pub(super) async fn sweep(
        &self,
        generation: u64,
        ids: &[BlockId],
        marked_by_ms: i64,
    ) -> Result<SweepReport> {
        let mut client = self.client().await?;
        let context = "sweeping blocks";
        let tx = client.transaction().await.map_err(db::error(context))?;
        let now = now_ms(&tx).await?;
        check_lease(&tx, &self.ns, generation, now).await?;
        let rows = tx
            .query(
                "DELETE FROM blocks WHERE ns = $1 AND id = ANY($2) \
                 AND marked_ms IS NOT NULL AND marked_ms <= $3 RETURNING length",
                &[&self.ns, &raw(ids), &marked_by_ms],
            )
            .await
            .map_err(db::error(context))?;
        tx.commit().await.map_err(db::error(context))?;
        let report = SweepReport {
            blocks: rows.len() as u64,
            bytes: rows.iter().map(|r| r.get::<_, i32>(0) as u64).sum(),
        };
        if report.blocks > 0 {
            tracing::info!(namespace = %self.ns, blocks = report.blocks, bytes = report.bytes, "swept garbage blocks");
        }
        Ok(report)
    }

    /// Takes away the marks of those of `ids` that have one (waiting for a
    /// sweep of them in flight), then answers which are stored.
    pub(super) async fn revive_and_check(&self, ids: &[BlockId]) -> Result<Vec<bool>> {
        let wanted = raw(ids);
        let client = self.client().await?;
        client
            .execute(
                "UPDATE blocks SET marked_ms = NULL \
                 WHERE ns = $1 AND id = ANY($2) AND marked_ms IS NOT NULL",
                &[&self.ns, &wanted],
            )
            .await
            .map_err(db::error("reviving marked blocks"))?;
        // A statement of its own: its snapshot is taken after the revive,
        // so after any sweep that revive waited for.
        let rows = client
            .query(
                "SELECT id FROM blocks WHERE ns = $1 AND id = ANY($2)",
                &[&self.ns, &wanted],
            )
            .await
            .map_err(db::error("asking the index about blocks"))?;
        let stored: std::collections::HashSet<Vec<u8>> = rows.iter().map(|r| r.get(0)).collect();
        Ok(ids
            .iter()
            .map(|id| stored.contains(id.as_bytes().as_slice()))
            .collect())
    }
}
