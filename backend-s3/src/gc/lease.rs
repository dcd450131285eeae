//! The collector's lease on a bucket: one object per taking,
//! `gc/lease/{generation:020}`, created with `If-None-Match: *`, so of two
//! collectors taking generation g + 1 at once exactly one wins. The holder
//! renews by rewriting its own object (its `LastModified` is the store's
//! clock, returned as [`GcLease::now_ms`]); a release writes a zero time
//! to live.
//!
//! S3 cannot check a generation atomically with a write, so every mark,
//! sweep and reclaim first looks that its generation is still the newest
//! and unexpired ([`S3Backend::hold`]). A collector stalled between that
//! look and its write could still land one write after a takeover; that is
//! safe, because the collection protocol is safe for each run alone (see
//! `ARCHITECTURE.md`, "Garbage collection"): the lease only keeps
//! collectors from undoing each other's work.
//!
//! Expiry is judged by this machine's clock against the object's
//! `LastModified`: a badly skewed clock can only let a second collector in
//! early, which the same argument makes harmless.

use bytes::Bytes;
use pouch_backend::{Error, GcLease, LeaseRequest, Result};

use crate::S3Backend;
use crate::pack::PackName;
use crate::request::Created;

/// What a lease object says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LeaseBody {
    /// How long it lasts after its `LastModified`; 0: released.
    ttl_ms: i64,
    /// Tells a lost answer's own create from another collector's.
    nonce: u128,
    holder: String,
}

impl LeaseBody {
    fn encode(&self) -> Bytes {
        Bytes::from(format!(
            "pouch-gc-lease 1\nttl_ms {}\nnonce {:032x}\nholder {}\n",
            self.ttl_ms,
            self.nonce,
            self.holder.replace('\n', " ")
        ))
    }

    fn decode(data: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(data).ok()?;
        let mut lines = text.lines();
        if lines.next()? != "pouch-gc-lease 1" {
            return None;
        }
        let ttl_ms = lines.next()?.strip_prefix("ttl_ms ")?.parse().ok()?;
        let nonce = u128::from_str_radix(lines.next()?.strip_prefix("nonce ")?, 16).ok()?;
        let holder = lines.next()?.strip_prefix("holder ")?.to_owned();
        Some(Self {
            ttl_ms,
            nonce,
            holder,
        })
    }
}

/// The newest lease object.
struct Newest {
    generation: u64,
    modified_ms: i64,
    body: LeaseBody,
    /// Every generation listed, the newest included.
    listed: Vec<u64>,
}

impl Newest {
    fn expires_ms(&self) -> i64 {
        if self.body.ttl_ms <= 0 {
            0
        } else {
            self.modified_ms.saturating_add(self.body.ttl_ms)
        }
    }
}

impl S3Backend {
    /// See [`pouch_backend::Backend::gc_lease`].
    pub(crate) async fn gc_lease_in(&self, request: LeaseRequest) -> Result<GcLease> {
        let ttl_ms = i64::try_from(request.ttl.as_millis()).unwrap_or(i64::MAX / 4);
        let body = LeaseBody {
            ttl_ms,
            nonce: PackName::random().0,
            holder: request.holder.clone(),
        };
        let generation = match request.generation {
            None => self.take_lease(&body).await?,
            Some(generation) => {
                self.hold(generation).await?;
                let key = self.keys.lease(generation);
                self.requests
                    .put(&key, body.encode().into(), "renewing the collector's lease")
                    .await?;
                generation
            }
        };
        let now_ms = self.store_clock(generation).await?;
        Ok(GcLease {
            generation,
            expires_ms: if ttl_ms == 0 { 0 } else { now_ms + ttl_ms },
            now_ms,
        })
    }

    /// Creates the next generation's object unless an unexpired lease is
    /// held; returns the generation taken.
    async fn take_lease(&self, body: &LeaseBody) -> Result<u64> {
        let newest = self.newest_lease().await?;
        if let Some(held) = &newest {
            let left = held.expires_ms() - pouch_backend::gc::now_ms();
            if left > 0 {
                return Err(Error::Fenced(format!(
                    "{} holds the collector's lease for {} s more",
                    held.body.holder,
                    (left + 999) / 1000
                )));
            }
        }
        let generation = newest.as_ref().map_or(1, |n| n.generation + 1);
        let key = self.keys.lease(generation);
        let created = self
            .requests
            .create(&key, body.encode(), "taking the collector's lease")
            .await?;
        if created == Created::AlreadyThere {
            // Ours, from a try whose answer was lost, or another collector's.
            let there = self
                .requests
                .get(&key, "reading the collector's lease")
                .await?
                .and_then(|d| LeaseBody::decode(&d));
            if there.as_ref().map(|b| b.nonce) != Some(body.nonce) {
                return Err(Error::Fenced(format!(
                    "{} took the collector's lease at the same moment",
                    there.map_or_else(|| "another collector".into(), |b| b.holder)
                )));
            }
        }
        // Older generations are history; the newest stays listed.
        for old in newest.map(|n| n.listed).unwrap_or_default() {
            if let Err(e) = self
                .requests
                .delete(&self.keys.lease(old), "removing an old lease")
                .await
            {
                tracing::debug!("an old lease object stays: {e}");
            }
        }
        Ok(generation)
    }

    /// Refuses with [`Error::Fenced`] unless `generation` is the newest
    /// lease and unexpired: asked before every write a collector makes.
    pub(crate) async fn hold(&self, generation: u64) -> Result<()> {
        let newest = self.newest_lease().await?;
        let Some(newest) = newest else {
            return Err(Error::Fenced("no collector holds the lease".into()));
        };
        if newest.generation != generation {
            return Err(Error::Fenced(format!(
                "{} took the collector's lease over (generation {} after {generation})",
                newest.body.holder, newest.generation
            )));
        }
        if newest.body.ttl_ms <= 0 {
            return Err(Error::Fenced("the collector's lease was released".into()));
        }
        if newest.expires_ms() <= pouch_backend::gc::now_ms() {
            return Err(Error::Fenced("the collector's lease expired".into()));
        }
        Ok(())
    }

    /// The newest lease object, `None` if no collector ever ran here.
    async fn newest_lease(&self) -> Result<Option<Newest>> {
        // A taker deletes older generations, so the newest listed may be
        // gone by the time it is read: list again.
        for _ in 0..4 {
            let listed = self
                .requests
                .list_meta(&self.keys.lease_dir(), None)
                .await?;
            let mut generations: Vec<(u64, i64)> = listed
                .iter()
                .filter_map(|meta| {
                    let generation = self.keys.parse_lease(&meta.location)?;
                    Some((generation, meta.last_modified.timestamp_millis()))
                })
                .collect();
            generations.sort_unstable();
            let Some(&(generation, modified_ms)) = generations.last() else {
                return Ok(None);
            };
            let Some(data) = self
                .requests
                .get(
                    &self.keys.lease(generation),
                    "reading the collector's lease",
                )
                .await?
            else {
                continue;
            };
            let body = LeaseBody::decode(&data).ok_or_else(|| Error::Format {
                what: format!("the collector's lease object {generation} is unreadable"),
            })?;
            return Ok(Some(Newest {
                generation,
                modified_ms,
                body,
                listed: generations.iter().map(|(g, _)| *g).collect(),
            }));
        }
        Err(Error::Unavailable {
            source: "the collector's lease objects keep changing; try again".into(),
        })
    }

    /// The store's clock: the `LastModified` of lease `generation`, just
    /// written. Second-grained on S3, so it reads low, never high: a cutoff
    /// taken from it only leaves marks longer.
    async fn store_clock(&self, generation: u64) -> Result<i64> {
        let meta = self
            .requests
            .head(&self.keys.lease(generation), "reading the store's clock")
            .await?
            .ok_or_else(|| Error::Fenced("the collector's lease object is gone".into()))?;
        Ok(meta.last_modified.timestamp_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_body_round_trips_and_junk_is_refused() {
        let body = LeaseBody {
            ttl_ms: 60_000,
            nonce: 0xfeed,
            holder: "laptop,\npid 42".into(),
        };
        let decoded = LeaseBody::decode(&body.encode()).unwrap();
        assert_eq!(decoded.ttl_ms, 60_000);
        assert_eq!(decoded.nonce, 0xfeed);
        assert_eq!(decoded.holder, "laptop, pid 42");
        assert!(LeaseBody::decode(b"pouch-gc-lease 2\n").is_none());
        assert!(LeaseBody::decode(b"\xff").is_none());
    }
}
