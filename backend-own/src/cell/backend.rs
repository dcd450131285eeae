//! One namespace of the cell as a [`Backend`]: journal, snapshot, identity
//! and block index in PostgreSQL, block bytes in volumes replicated on
//! storage nodes.
//!
//! A put verifies its blocks, skips those the index has, reserves a range
//! of an open volume in the database (an `UPDATE ... RETURNING` on the
//! volume's size: front ends never overlap), writes the records there on
//! every replica (each node fsyncs before it answers), and only then
//! indexes the blocks: a block is named by the index only once it is
//! durable on all its replicas. A write a replica refuses leaves an unused
//! range; the put tries a new volume on other nodes.
//!
//! A volume record is a block as the wire carries it (`wire.rs`: id, codec,
//! length, payload), so volume files describe themselves. A read takes the
//! record from any replica that answers, checks the id in its header and
//! the block's hash, and tries the next replica on any doubt.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pouch_backend::gc::{GcLease, LeaseRequest, StoredBlock, SweepReport};
use pouch_backend::{Backend, Block, BlockId, Error, JournalEntry, Result, Seq, Snapshot, StoreId};

use super::db;
use super::news::{CHANNEL, News};
use super::node::{Piece, node_error};

/// How the cell places and keeps blocks.
#[derive(Debug, Clone)]
pub struct CellOptions {
    /// Full copies of every open volume, on distinct nodes.
    pub replicas: usize,
    /// A volume takes appends up to about this size.
    pub volume_size: u64,
    /// A node whose heartbeat is older than this is taken for dead: no new
    /// volume goes to it.
    pub dead_after: Duration,
    /// A repair pass stops coding sealed volumes once it has spent this
    /// long on them (after at least one), leaving the rest to the next
    /// pass: coding runs under the coordinator's lease, and a backlog of
    /// big volumes must not keep the next pass from repairing a dead
    /// node's copies for hours.
    pub coding_budget: Duration,
}

impl Default for CellOptions {
    fn default() -> Self {
        Self {
            replicas: 3,
            volume_size: 1 << 30,
            dead_after: Duration::from_secs(10),
            coding_budget: Duration::from_secs(60),
        }
    }
}

/// A front end's view of the cell: the database, the nodes, the news.
pub struct Cell {
    pub(super) pool: deadpool_postgres::Pool,
    http: reqwest::Client,
    token: String,
    pub(super) options: CellOptions,
    news: Arc<News>,
    /// What this process's repair and verification passes found.
    pub(super) findings: super::Findings,
    /// Sealed volumes whose coding failed, and when this process may try
    /// again (a volume with a block no replica holds intact would
    /// otherwise be read whole at every pass).
    pub(super) coding_failed:
        std::sync::Mutex<std::collections::HashMap<i64, tokio::time::Instant>>,
}

impl std::fmt::Debug for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token, nor the database URL (it may hold a password).
        f.debug_struct("Cell")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Where a range of a volume lives.
struct Placement {
    volume: i64,
    offset: i64,
    /// The volume's generation when the range was reserved.
    generation: i64,
    /// (node id, address) of each replica.
    replicas: Vec<(i64, String)>,
}

impl Cell {
    /// Connects to the cell's database at `url` (whose schema must be this
    /// build's) and starts listening for journal news. `token` is the
    /// secret the nodes ask for.
    pub async fn connect(url: &str, token: String, options: CellOptions) -> Result<Arc<Self>> {
        let config = db::config(url)?;
        let pool = db::pool_of(config.clone())?;
        super::schema::check(&pool).await?;
        pouch_backend::tls::install_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(Error::internal("making the nodes' HTTP client"))?;
        let news = Arc::new(News::default());
        news.listen(config);
        Ok(Arc::new(Self {
            pool,
            http,
            token,
            options,
            news,
            findings: super::Findings::default(),
            coding_failed: Default::default(),
        }))
    }

    /// Namespace `name` (made if new) as a backend.
    pub async fn namespace(self: &Arc<Self>, name: &str) -> Result<CellBackend> {
        let client = db::client(&self.pool).await?;
        client
            .execute(
                "INSERT INTO namespaces (name) VALUES ($1) ON CONFLICT DO NOTHING",
                &[&name],
            )
            .await
            .map_err(db::error("making the namespace"))?;
        Ok(self.existing_namespace(name))
    }

    /// The namespace `name`, known to exist (listed from the database).
    pub(super) fn existing_namespace(self: &Arc<Self>, name: &str) -> CellBackend {
        CellBackend {
            cell: self.clone(),
            ns: name.to_owned(),
        }
    }

    /// What this process's repair and verification passes found, counted
    /// since it started.
    pub fn findings(&self) -> &super::Findings {
        &self.findings
    }

    /// The nodes whose heartbeat is recent: (id, address).
    pub async fn live_nodes(&self) -> Result<Vec<(i64, String)>> {
        Ok(self
            .heard_from()
            .await?
            .into_iter()
            .map(|(id, addr, _)| (id, addr))
            .collect())
    }

    /// The live nodes that take new copies (not being drained), by id,
    /// with their addresses.
    pub async fn writable_nodes(&self) -> Result<Vec<(i64, String)>> {
        Ok(self
            .heard_from()
            .await?
            .into_iter()
            .filter(|(_, _, draining)| !draining)
            .map(|(id, addr, _)| (id, addr))
            .collect())
    }

    /// The nodes whose heartbeat is recent: (id, address, whether it is
    /// being drained).
    pub(super) async fn heard_from(&self) -> Result<Vec<(i64, String, bool)>> {
        let client = db::client(&self.pool).await?;
        let rows = client
            .query(
                "SELECT id, addr, draining FROM nodes \
                 WHERE heartbeat > now() - make_interval(secs => $1) ORDER BY id",
                &[&self.options.dead_after.as_secs_f64()],
            )
            .await
            .map_err(db::error("listing the nodes"))?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// Drains the node `id`: it takes no new copies, its open volumes are
    /// sealed, and repair moves its copies to other nodes (it still serves
    /// reads meanwhile). Returns how many volumes it holds a copy of (once
    /// none, it can be stopped), or `None` if no node has that id.
    pub async fn drain(&self, id: i64) -> Result<Option<u64>> {
        let client = db::client(&self.pool).await?;
        let found = client
            .execute("UPDATE nodes SET draining = true WHERE id = $1", &[&id])
            .await
            .map_err(db::error("draining a node"))?;
        if found == 0 {
            return Ok(None);
        }
        client
            .execute(
                "UPDATE volumes SET state = 'sealed' WHERE state = 'open' AND $1 = ANY(replicas)",
                &[&id],
            )
            .await
            .map_err(db::error("sealing a draining node's volumes"))?;
        let held: i64 = client
            .query_one(
                "SELECT count(*) FROM volumes WHERE $1 = ANY(replicas) OR $1 = ANY(shards)",
                &[&id],
            )
            .await
            .map_err(db::error("counting a node's volumes"))?
            .get(0);
        Ok(Some(held as u64))
    }

    /// A range of `len` bytes in an open volume none of whose replicas is
    /// in `avoid`, on a new volume if need be.
    async fn allocate(&self, len: i64, avoid: &[i64]) -> Result<Placement> {
        let client = db::client(&self.pool).await?;
        let cap = i64::try_from(self.options.volume_size).unwrap_or(i64::MAX);
        // The row lock lasts one statement: front ends take turns on a
        // volume, never overlap in it.
        let taken = client
            .query_opt(
                "UPDATE volumes SET size = size + $1 \
                 WHERE id = (SELECT id FROM volumes \
                             WHERE state = 'open' AND size + $1 <= $2 AND NOT (replicas && $3) \
                             ORDER BY id LIMIT 1) \
                 RETURNING id, size - $1, replicas, generation",
                &[&len, &cap, &avoid],
            )
            .await
            .map_err(db::error("reserving space in a volume"))?;
        let (volume, offset, replicas, generation): (i64, i64, Vec<i64>, i64) = match taken {
            Some(row) => (row.get(0), row.get(1), row.get(2), row.get(3)),
            None => {
                // Volumes too full for this put are sealed: the coder
                // codes them, and no later put looks at them again.
                client
                    .execute(
                        "UPDATE volumes SET state = 'sealed' WHERE state = 'open' AND size + $1 > $2",
                        &[&len, &cap],
                    )
                    .await
                    .map_err(db::error("sealing full volumes"))?;
                let live: Vec<i64> = self
                    .writable_nodes()
                    .await?
                    .into_iter()
                    .map(|(id, _)| id)
                    .filter(|id| !avoid.contains(id))
                    .collect();
                if live.len() < self.options.replicas {
                    return Err(Error::Unavailable {
                        source: format!(
                            "{} live storage node(s) can take writes, {} copies are needed",
                            live.len(),
                            self.options.replicas
                        )
                        .into(),
                    });
                }
                let chosen = choose(&live, self.options.replicas);
                let row = client
                    .query_one(
                        "INSERT INTO volumes (replicas, size) VALUES ($1, $2) RETURNING id, generation",
                        &[&chosen, &len],
                    )
                    .await
                    .map_err(db::error("making a volume"))?;
                (row.get(0), 0, chosen, row.get(1))
            }
        };
        let rows = client
            .query(
                "SELECT id, addr FROM nodes WHERE id = ANY($1)",
                &[&replicas],
            )
            .await
            .map_err(db::error("finding a volume's nodes"))?;
        let replicas = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        Ok(Placement {
            volume,
            offset,
            generation,
            replicas,
        })
    }

    /// Runs `pass` while this process holds PostgreSQL's advisory lock
    /// `key` (one holder at a time, cell-wide), for as long as one
    /// transaction lasts: a process that dies lets it go with its
    /// connection. `None` when another holds it.
    pub(super) async fn under_lock<T>(
        &self,
        key: i64,
        pass: impl std::future::Future<Output = Result<T>>,
    ) -> Result<Option<T>> {
        let mut client = db::client(&self.pool).await?;
        let lock = client
            .transaction()
            .await
            .map_err(db::error("taking a lease"))?;
        let held: bool = lock
            .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&key])
            .await
            .map_err(db::error("taking a lease"))?
            .get(0);
        if !held {
            return Ok(None);
        }
        let outcome = pass.await;
        // Ends the transaction, and with it the lease.
        let _ = lock.rollback().await;
        outcome.map(Some)
    }

    /// Runs `pass` every `period` on the current tokio runtime (the first
    /// after one period) for as long as the process lives, logging what a
    /// pass did (as `what`) unless it did nothing.
    pub(super) fn every<R, F, Fut>(self: &Arc<Self>, period: Duration, what: &'static str, pass: F)
    where
        R: std::fmt::Debug + Default + PartialEq,
        F: Fn(Arc<Cell>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<Option<R>>> + Send,
    {
        let cell = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                match pass(cell.clone()).await {
                    Ok(Some(report)) if report != R::default() => tracing::info!(?report, "{what}"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!("{what} failed: {e}"),
                }
            }
        });
    }

    /// Seals `volume`: it takes no more appends.
    pub(super) async fn seal(&self, volume: i64) -> Result<()> {
        let client = db::client(&self.pool).await?;
        client
            .execute(
                "UPDATE volumes SET state = 'sealed' WHERE id = $1",
                &[&volume],
            )
            .await
            .map_err(db::error("sealing a volume"))?;
        Ok(())
    }

    fn url(addr: &str, piece: Piece, offset: i64) -> String {
        format!("{addr}/node/v1/{}/{offset}", piece.url_path())
    }

    /// Sends `request` (to the node at `addr`) with the cell's token and
    /// returns the body of a successful answer.
    async fn node_call(&self, addr: &str, request: reqwest::RequestBuilder) -> Result<Bytes> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(node_error)?;
        if !response.status().is_success() {
            return Err(node_error(format!("{addr} answered {}", response.status())));
        }
        response.bytes().await.map_err(node_error)
    }

    /// Writes `bytes` at `offset` of `piece` on the node at `addr`.
    pub(super) async fn write_to(
        &self,
        addr: &str,
        piece: impl Into<Piece>,
        offset: i64,
        bytes: Bytes,
    ) -> Result<()> {
        let request = self
            .http
            .put(Self::url(addr, piece.into(), offset))
            .body(bytes);
        self.node_call(addr, request).await.map(drop)
    }

    /// Reads `len` bytes at `offset` of `piece` from the node at `addr`.
    pub(super) async fn read_from(
        &self,
        addr: &str,
        piece: impl Into<Piece>,
        offset: i64,
        len: i32,
    ) -> Result<Bytes> {
        self.read_range(addr, piece.into(), offset, len, false)
            .await
    }

    /// Reads `len` bytes at `offset` of `piece` from the node at `addr`;
    /// `checked`: the node first checks them against the hash it keeps
    /// when a write wrote exactly that range (a shard's window), the only
    /// check there is for bytes that are not whole blocks.
    pub(super) async fn read_range(
        &self,
        addr: &str,
        piece: Piece,
        offset: i64,
        len: i32,
        checked: bool,
    ) -> Result<Bytes> {
        let mut request = self
            .http
            .get(format!("{}/{len}", Self::url(addr, piece, offset)));
        if checked {
            request = request.header(super::node::CHECK_HEADER, "hash");
        }
        let bytes = self.node_call(addr, request).await?;
        if bytes.len() != len as usize {
            return Err(node_error(format!("{addr} sent a short range")));
        }
        Ok(bytes)
    }

    /// The replicas and shards the node at `addr` holds.
    pub(super) async fn held_by(&self, addr: &str) -> Result<Vec<super::node::Held>> {
        let request = self.http.get(format!("{addr}/node/v1/pieces"));
        let body = self.node_call(addr, request).await?;
        serde_json::from_slice(&body).map_err(node_error)
    }

    /// Has the node at `addr` drop `piece` (a replica or shard no longer
    /// named by the database).
    pub(super) async fn drop_from(&self, addr: &str, piece: Piece) -> Result<()> {
        let request = self
            .http
            .delete(format!("{addr}/node/v1/{}", piece.url_path()));
        self.node_call(addr, request).await.map(drop)
    }
}

/// `count` of `ids`, picked at random (so that volumes spread over the
/// nodes and a lost node is rebuilt from many).
pub(super) fn choose(ids: &[i64], count: usize) -> Vec<i64> {
    let mut picked = Vec::with_capacity(count);
    let mut left: Vec<i64> = ids.to_vec();
    while picked.len() < count && !left.is_empty() {
        // A random id's first bytes as the random number.
        let random = StoreId::random().to_string();
        let n = usize::from_str_radix(&random[..8], 16).expect("hex digits");
        picked.push(left.swap_remove(n % left.len()));
    }
    picked
}

/// One namespace of a cell.
pub struct CellBackend {
    pub(super) cell: Arc<Cell>,
    pub(super) ns: String,
}

impl CellBackend {
    pub(super) async fn client(&self) -> Result<deadpool_postgres::Object> {
        db::client(&self.cell.pool).await
    }

    async fn trimmed_through(&self, client: &impl deadpool_postgres::GenericClient) -> Result<u64> {
        let row = client
            .query_one(
                "SELECT trimmed_through FROM namespaces WHERE name = $1",
                &[&self.ns],
            )
            .await
            .map_err(db::error("reading the trim point"))?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn head(&self, client: &impl deadpool_postgres::GenericClient) -> Result<u64> {
        let row = client
            .query_one(
                "SELECT GREATEST(\
                   COALESCE((SELECT max(seq) FROM journal WHERE ns = $1), 0), \
                   (SELECT trimmed_through FROM namespaces WHERE name = $1))",
                &[&self.ns],
            )
            .await
            .map_err(db::error("reading the journal's head"))?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    /// `put_blocks` for blocks already verified one by one.
    pub async fn put_verified_blocks(&self, blocks: Vec<Block>) -> Result<()> {
        let ids: Vec<BlockId> = blocks.iter().map(Block::id).collect();
        let present = self.has_blocks(&ids).await?;
        let mut seen = HashSet::new();
        let new: Vec<Block> = blocks
            .into_iter()
            .zip(present)
            .filter(|(block, present)| !present && seen.insert(block.id()))
            .map(|(block, _)| block)
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        self.write_and_index(&new, None).await
    }

    /// Writes `new` into an open volume on every replica and indexes them
    /// there; or, with `moving_from`, points their index rows (if still in
    /// that volume) at the new copies instead (compaction).
    pub(super) async fn write_and_index(
        &self,
        new: &[Block],
        moving_from: Option<i64>,
    ) -> Result<()> {
        let pieces = crate::wire::block_pieces(new);
        let records: Vec<(BlockId, i64, i32)> = {
            let mut at = 0i64;
            new.iter()
                .zip(pieces.chunks(2))
                .map(|(block, piece)| {
                    let len = (piece[0].len() + piece[1].len()) as i32;
                    let record = (block.id(), at, len);
                    at += i64::from(len);
                    record
                })
                .collect()
        };
        let bytes = Bytes::from(pieces.concat());
        let mut avoid: Vec<i64> = Vec::new();
        let mut moves = 0;
        loop {
            let placement = self.cell.allocate(bytes.len() as i64, &avoid).await?;
            let writes = placement.replicas.iter().map(|(_, addr)| {
                self.cell
                    .write_to(addr, placement.volume, placement.offset, bytes.clone())
            });
            let results = futures_util::future::join_all(writes).await;
            let failed: Vec<i64> = placement
                .replicas
                .iter()
                .zip(&results)
                .filter(|(_, result)| result.is_err())
                .map(|((id, _), _)| *id)
                .collect();
            if failed.is_empty() && placement.replicas.len() == self.cell.options.replicas {
                if self.index(&placement, &records, moving_from).await? {
                    return Ok(());
                }
                // Repair moved the volume meanwhile: a new replica may lack
                // these records. Written again elsewhere (the volume is
                // sealed now); the range left here is unused.
                tracing::info!(volume = placement.volume, "the volume moved during a put");
                moves += 1;
                if moves > self.cell.options.replicas {
                    return Err(Error::Unavailable {
                        source: "the cell's volumes kept moving during a put".into(),
                    });
                }
                continue;
            }
            // A replica that refused (or is gone from the node table): this
            // volume takes no more, and the put goes to other nodes.
            let e = results
                .into_iter()
                .find_map(Result::err)
                .unwrap_or_else(|| node_error("a volume's node is not registered"));
            tracing::warn!(volume = placement.volume, "a replica write failed: {e}");
            self.cell.seal(placement.volume).await?;
            if avoid.len() >= 2 * self.cell.options.replicas {
                return Err(e);
            }
            avoid.extend(failed);
        }
    }

    /// Indexes `records` (id, offset in the put, length) written at
    /// `placement`, if the volume still lives where it did when its range
    /// was reserved (`false`: it moved, nothing was indexed). The volume's
    /// row is share-locked meanwhile, so a repair that changes its
    /// replicas either waits for this and then finds these blocks when it
    /// lists the volume again, or comes first and this sees it.
    async fn index(
        &self,
        placement: &Placement,
        records: &[(BlockId, i64, i32)],
        moving_from: Option<i64>,
    ) -> Result<bool> {
        let ids: Vec<&[u8]> = records
            .iter()
            .map(|(id, _, _)| id.as_bytes().as_slice())
            .collect();
        let offsets: Vec<i64> = records
            .iter()
            .map(|(_, at, _)| placement.offset + at)
            .collect();
        let lengths: Vec<i32> = records.iter().map(|(_, _, len)| *len).collect();
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(db::error("indexing blocks"))?;
        let current: Option<i64> = tx
            .query_opt(
                "SELECT generation FROM volumes WHERE id = $1 FOR SHARE",
                &[&placement.volume],
            )
            .await
            .map_err(db::error("indexing blocks"))?
            .map(|row| row.get(0));
        if current != Some(placement.generation) {
            return Ok(false);
        }
        match moving_from {
            None => tx
                .execute(
                    "INSERT INTO blocks (ns, id, volume, \"offset\", length) \
                     SELECT $1, id, $2, o, l FROM unnest($3::bytea[], $4::bigint[], $5::int[]) AS t(id, o, l) \
                     ON CONFLICT DO NOTHING",
                    &[&self.ns, &placement.volume, &ids, &offsets, &lengths],
                )
                .await
                .map_err(db::error("indexing blocks"))?,
            // Only rows still in the old volume: one swept meanwhile stays
            // gone.
            Some(old) => tx
                .execute(
                    "UPDATE blocks b SET volume = $2, \"offset\" = t.o, length = t.l \
                     FROM unnest($3::bytea[], $4::bigint[], $5::int[]) AS t(id, o, l) \
                     WHERE b.ns = $1 AND b.id = t.id AND b.volume = $6",
                    &[&self.ns, &placement.volume, &ids, &offsets, &lengths, &old],
                )
                .await
                .map_err(db::error("moving blocks"))?,
        };
        tx.commit().await.map_err(db::error("indexing blocks"))?;
        Ok(true)
    }

    /// Block `id` as stored (its codec and payload), verified.
    pub async fn get_block_encoded(&self, id: BlockId) -> Result<Block> {
        match self.read_located(id).await {
            Ok(block) => Ok(block),
            // The volume may have been coded (its replicas dropped) or
            // moved between the look-up and the reads: once more, from
            // where it is now.
            Err(Error::BlockNotFound(id)) => Err(Error::BlockNotFound(id)),
            Err(e) => {
                tracing::debug!(%id, "a read failed, looking the block up again: {e}");
                self.read_located(id).await
            }
        }
    }

    async fn read_located(&self, id: BlockId) -> Result<Block> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT b.volume, b.\"offset\", b.length, v.state, v.shard_size, \
                        ARRAY(SELECT n.addr FROM nodes n WHERE n.id = ANY(v.replicas) ORDER BY n.heartbeat DESC), \
                        ARRAY(SELECT CASE WHEN n.heartbeat > now() - make_interval(secs => $3) THEN n.addr ELSE '' END \
                              FROM unnest(v.shards) WITH ORDINALITY AS s(node, i) \
                              LEFT JOIN nodes n ON n.id = s.node ORDER BY s.i) \
                 FROM blocks b JOIN volumes v ON v.id = b.volume \
                 WHERE b.ns = $1 AND b.id = $2",
                &[
                    &self.ns,
                    &id.as_bytes().as_slice(),
                    &self.cell.options.dead_after.as_secs_f64(),
                ],
            )
            .await
            .map_err(db::error("looking a block up"))?;
        drop(client);
        let Some(row) = row else {
            return Err(Error::BlockNotFound(id));
        };
        let (volume, offset, len, state, shard_size, addrs): (
            i64,
            i64,
            i32,
            String,
            i64,
            Vec<String>,
        ) = (
            row.get(0),
            row.get(1),
            row.get(2),
            row.get(3),
            row.get(4),
            row.get(5),
        );
        if state == "coded" {
            let shards: Vec<Option<String>> = row.get(6);
            let coded = super::shards::Coded {
                volume,
                shard_size: shard_size as u64,
                addrs: shards
                    .into_iter()
                    .map(|a| a.filter(|a| !a.is_empty()))
                    .collect(),
            };
            return self.cell.read_coded(&coded, id, offset, len).await;
        }
        let mut last = node_error("the block's volume has no registered node");
        for addr in &addrs {
            let record = match self.cell.read_from(addr, volume, offset, len).await {
                Ok(record) => record,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            match parse_record(id, record) {
                Ok(block) => return Ok(block),
                Err(e) => {
                    tracing::warn!(%id, volume, %addr, "a replica's copy is damaged: {e}");
                    last = e;
                }
            }
        }
        Err(last)
    }
}

/// The block in a volume record, which must be `id`'s and hash right.
pub(super) fn parse_record(id: BlockId, record: Bytes) -> Result<Block> {
    let corrupt = |reason| Error::Corrupt { id, reason };
    let block = crate::wire::decode_block(record).map_err(|e| corrupt(e.0))?;
    if block.id() != id {
        return Err(corrupt("its record names another block"));
    }
    block.verify()?;
    Ok(block)
}

#[async_trait]
impl Backend for CellBackend {
    fn describe(&self) -> String {
        format!("pouch-store cell, namespace {}", self.ns)
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
        self.put_verified_blocks(blocks).await
    }

    async fn get_block(&self, id: BlockId) -> Result<Bytes> {
        let block = self.get_block_encoded(id).await?;
        tokio::task::spawn_blocking(move || block.decode())
            .await
            .map_err(Error::internal("decoding a block"))?
    }

    async fn has_blocks(&self, ids: &[BlockId]) -> Result<Vec<bool>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // A block a collector marked is revived by being asked about.
        self.revive_and_check(ids).await
    }

    async fn gc_lease(&self, request: LeaseRequest) -> Result<GcLease> {
        self.lease(request).await
    }

    async fn gc_list(&self, after: Option<BlockId>, limit: usize) -> Result<Vec<StoredBlock>> {
        self.list(after, limit).await
    }

    async fn gc_mark(&self, generation: u64, mark: &[BlockId], unmark: &[BlockId]) -> Result<()> {
        self.mark(generation, mark, unmark).await
    }

    async fn gc_sweep(
        &self,
        generation: u64,
        ids: &[BlockId],
        marked_by_ms: i64,
    ) -> Result<SweepReport> {
        self.sweep(generation, ids, marked_by_ms).await
    }

    async fn delete_blocks(&self, ids: &[BlockId]) -> Result<()> {
        let wanted: Vec<&[u8]> = ids.iter().map(|id| id.as_bytes().as_slice()).collect();
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM blocks WHERE ns = $1 AND id = ANY($2)",
                &[&self.ns, &wanted],
            )
            .await
            .map_err(db::error("deleting blocks"))?;
        Ok(())
    }

    async fn append(&self, seq: Seq, data: Bytes) -> Result<()> {
        if seq == Seq::ZERO {
            return Err(Error::InvalidInput("journal entries are numbered from 1"));
        }
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(db::error("appending to the journal"))?;
        let head = self.head(&tx).await?;
        if seq.0 <= head {
            return Err(Error::SlotTaken(seq));
        }
        if seq.0 > head + 1 {
            return Err(Error::Gap {
                seq,
                head: Seq(head),
            });
        }
        let seq_db = seq.0 as i64;
        match tx
            .execute(
                "INSERT INTO journal (ns, seq, data) VALUES ($1, $2, $3)",
                &[&self.ns, &seq_db, &data.as_ref()],
            )
            .await
        {
            Ok(_) => {}
            Err(e) if db::is_unique_violation(&e) => return Err(Error::SlotTaken(seq)),
            Err(e) => return Err(db::error("appending to the journal")(e)),
        }
        // Delivered to every listening front end when this commits.
        tx.execute(
            "SELECT pg_notify($1, $2)",
            &[&CHANNEL, &format!("{} {}", seq.0, self.ns)],
        )
        .await
        .map_err(db::error("announcing a journal entry"))?;
        match tx.commit().await {
            Ok(()) => Ok(()),
            Err(e) if db::is_unique_violation(&e) => Err(Error::SlotTaken(seq)),
            Err(e) => Err(db::error("appending to the journal")(e)),
        }
    }

    async fn read_journal(&self, after: Seq, limit: usize) -> Result<Vec<JournalEntry>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT seq, data FROM journal WHERE ns = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                &[&self.ns, &(after.0 as i64), &(limit as i64)],
            )
            .await
            .map_err(db::error("reading the journal"))?;
        // Read after the entries: a trim meanwhile is reported, not a
        // journal with a hole in it.
        let through = self.trimmed_through(&client).await?;
        if after.0 < through {
            return Err(Error::Trimmed {
                through: Seq(through),
            });
        }
        Ok(rows
            .iter()
            .map(|r| JournalEntry {
                seq: Seq(r.get::<_, i64>(0) as u64),
                data: Bytes::from(r.get::<_, Vec<u8>>(1)),
            })
            .collect())
    }

    async fn wait_journal(&self, after: Seq, timeout: Duration) -> Result<Seq> {
        // Subscribed before looking: an append between the look and the
        // wait still wakes it.
        let mut news = self.cell.news.subscribe(&self.ns);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let head = {
                let client = self.client().await?;
                self.head(&client).await?
            };
            if head > after.0 || tokio::time::Instant::now() >= deadline {
                return Ok(Seq(head));
            }
            // News, the deadline, or a look every few seconds in case the
            // listening connection missed something.
            let recheck = tokio::time::Instant::now() + Duration::from_secs(5);
            tokio::select! {
                _ = news.changed() => {}
                () = tokio::time::sleep_until(deadline.min(recheck)) => {}
            }
        }
    }

    async fn trim_journal(&self, through: Seq) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(db::error("trimming the journal"))?;
        let snapshot: Option<i64> = tx
            .query_opt(
                "SELECT seq FROM snapshots WHERE ns = $1 FOR UPDATE",
                &[&self.ns],
            )
            .await
            .map_err(db::error("trimming the journal"))?
            .map(|r| r.get(0));
        if snapshot.is_none_or(|seq| (seq as u64) < through.0) {
            return Err(Error::InvalidInput(
                "no snapshot folds the entries to be dropped",
            ));
        }
        let through = through.0 as i64;
        tx.execute(
            "UPDATE namespaces SET trimmed_through = GREATEST(trimmed_through, $2) WHERE name = $1",
            &[&self.ns, &through],
        )
        .await
        .map_err(db::error("trimming the journal"))?;
        tx.execute(
            "DELETE FROM journal WHERE ns = $1 AND seq <= $2",
            &[&self.ns, &through],
        )
        .await
        .map_err(db::error("trimming the journal"))?;
        tx.commit().await.map_err(db::error("trimming the journal"))
    }

    async fn put_snapshot(&self, snapshot: Snapshot) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(db::error("writing the snapshot"))?;
        let through: i64 = tx
            .query_one(
                "SELECT trimmed_through FROM namespaces WHERE name = $1 FOR UPDATE",
                &[&self.ns],
            )
            .await
            .map_err(db::error("writing the snapshot"))?
            .get(0);
        if (snapshot.seq.0 as i64) < through {
            return Err(Error::InvalidInput(
                "the snapshot is older than the journal's trim point",
            ));
        }
        tx.execute(
            "INSERT INTO snapshots (ns, seq, data) VALUES ($1, $2, $3) \
             ON CONFLICT (ns) DO UPDATE SET seq = excluded.seq, data = excluded.data",
            &[&self.ns, &(snapshot.seq.0 as i64), &snapshot.data.as_ref()],
        )
        .await
        .map_err(db::error("writing the snapshot"))?;
        tx.commit().await.map_err(db::error("writing the snapshot"))
    }

    async fn get_snapshot(&self) -> Result<Option<Snapshot>> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT seq, data FROM snapshots WHERE ns = $1", &[&self.ns])
            .await
            .map_err(db::error("reading the snapshot"))?;
        Ok(row.map(|r| Snapshot {
            seq: Seq(r.get::<_, i64>(0) as u64),
            data: Bytes::from(r.get::<_, Vec<u8>>(1)),
        }))
    }

    async fn identity(&self) -> Result<Option<StoreId>> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT identity FROM namespaces WHERE name = $1",
                &[&self.ns],
            )
            .await
            .map_err(db::error("reading the store identity"))?;
        parse_identity(row.get(0))
    }

    async fn init_identity(&self, proposed: StoreId) -> Result<StoreId> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "UPDATE namespaces SET identity = COALESCE(identity, $2) WHERE name = $1 RETURNING identity",
                &[&self.ns, &proposed.to_string()],
            )
            .await
            .map_err(db::error("making the store identity"))?;
        parse_identity(row.get(0))?.ok_or_else(|| Error::Format {
            what: "the cell lost the identity it just made".into(),
        })
    }
}

fn parse_identity(text: Option<String>) -> Result<Option<StoreId>> {
    text.map(|t| {
        t.parse().map_err(|_| Error::Format {
            what: "the cell's database holds a malformed store identity".into(),
        })
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A put whose volume moved (repair changed its replicas) between the
    /// range's reservation and the indexing indexes nothing there: the new
    /// replica may lack its records. One whose volume stayed indexes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_put_indexes_nothing_in_a_volume_that_moved_since_it_reserved_its_range() {
        let pg = pouch_testkit::cell::Postgres::start();
        let pool = db::pool(&pg.url()).unwrap();
        super::super::schema::migrate(&pool).await.unwrap();
        let client = db::client(&pool).await.unwrap();
        client
            .batch_execute(
                "INSERT INTO nodes (id, addr) VALUES \
                 (1, 'http://127.0.0.1:9'), (2, 'http://127.0.0.1:9'), (3, 'http://127.0.0.1:9')",
            )
            .await
            .unwrap();
        let cell = Cell::connect(&pg.url(), String::new(), CellOptions::default())
            .await
            .unwrap();
        let ns = cell.namespace("t").await.unwrap();
        let id = Block::encode(Bytes::from_static(b"a block")).id();
        let count = || async {
            let row = client
                .query_one("SELECT count(*) FROM blocks", &[])
                .await
                .unwrap();
            row.get::<_, i64>(0)
        };

        let placement = cell.allocate(100, &[]).await.unwrap();
        client
            .execute(
                "UPDATE volumes SET generation = generation + 1 WHERE id = $1",
                &[&placement.volume],
            )
            .await
            .unwrap();
        assert!(!ns.index(&placement, &[(id, 0, 100)], None).await.unwrap());
        assert_eq!(count().await, 0);

        let placement = cell.allocate(100, &[]).await.unwrap();
        assert!(ns.index(&placement, &[(id, 0, 100)], None).await.unwrap());
        assert_eq!(count().await, 1);
    }
}
