//! The cell's tables in PostgreSQL, made and brought up to date by
//! versioned migrations (`pouch-store cell init`).
//!
//! Every table that grows with the data is keyed first by namespace or by
//! block id, so that it can be hash-partitioned on that key later without
//! changing a query.

use pouch_backend::Error;

use super::db;

/// The schema version this build reads and writes.
pub const VERSION: i32 = 5;

/// The migrations, in order; migration `i` brings version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: namespaces and their journals, storage nodes, volumes, the block
    // index.
    r#"
    CREATE TABLE namespaces (
        name            text PRIMARY KEY,
        -- The store identity (`StoreId`, 32 hex digits), once made.
        identity        text,
        -- Entries up to here were folded into the snapshot and dropped.
        trimmed_through bigint NOT NULL DEFAULT 0
    );
    CREATE TABLE journal (
        ns   text   NOT NULL REFERENCES namespaces (name),
        seq  bigint NOT NULL CHECK (seq > 0),
        data bytea  NOT NULL,
        PRIMARY KEY (ns, seq)
    );
    CREATE TABLE snapshots (
        ns   text   PRIMARY KEY REFERENCES namespaces (name),
        seq  bigint NOT NULL,
        data bytea  NOT NULL
    );
    CREATE TABLE nodes (
        id        bigint      PRIMARY KEY,
        -- Where front ends reach it: http://host:port
        addr      text        NOT NULL,
        heartbeat timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE volumes (
        id         bigserial PRIMARY KEY,
        -- open: takes appends; sealed: full.
        state      text      NOT NULL DEFAULT 'open',
        -- Bytes handed out so far (the next append's offset).
        size       bigint    NOT NULL DEFAULT 0,
        -- The nodes holding a full copy.
        replicas   bigint[]  NOT NULL,
        -- Grows with every change of where the volume lives.
        generation bigint    NOT NULL DEFAULT 1
    );
    CREATE INDEX volumes_open ON volumes (id) WHERE state = 'open';
    CREATE TABLE blocks (
        ns      text    NOT NULL REFERENCES namespaces (name),
        id      bytea   NOT NULL,
        volume  bigint  NOT NULL REFERENCES volumes (id),
        "offset" bigint NOT NULL,
        -- The record's length in the volume: header and payload.
        length  integer NOT NULL,
        PRIMARY KEY (ns, id)
    );
    "#,
    // 2: nodes being drained (`pouch-store cell drain`) take no new copies,
    // and repair moves theirs to other nodes.
    r#"
    ALTER TABLE nodes ADD COLUMN draining boolean NOT NULL DEFAULT false;
    "#,
    // 3: erasure-coded volumes. A sealed volume is coded into shards
    // (`cell/coding.rs`); once they are written and verified its state
    // becomes 'coded', `shards` names the node of each shard (data shards
    // first, then parity), and `replicas` is emptied.
    r#"
    ALTER TABLE volumes ADD COLUMN shards bigint[] NOT NULL DEFAULT '{}';
    ALTER TABLE volumes ADD COLUMN shard_size bigint NOT NULL DEFAULT 0;
    CREATE INDEX volumes_sealed ON volumes (id) WHERE state = 'sealed';
    "#,
    // 4: garbage collection (`cell/gc.rs`): a block marked as a candidate
    // (database time, ms), each namespace's collector lease; and the
    // blocks of a volume found without reading the whole index (repair,
    // coding, compaction).
    r#"
    ALTER TABLE blocks ADD COLUMN marked_ms bigint;
    CREATE TABLE gc_leases (
        ns         text   PRIMARY KEY REFERENCES namespaces (name),
        holder     text   NOT NULL,
        generation bigint NOT NULL,
        expires_ms bigint NOT NULL
    );
    CREATE INDEX blocks_volume ON blocks (volume, "offset");
    "#,
    // 5: ranges a node's scrubber found no longer hashing right
    // (`cell/scrub.rs`), for repair to write again (shard -1: a replica).
    // `harmless`: nothing indexed lies there, nothing to mend.
    r#"
    CREATE TABLE damage (
        node     bigint  NOT NULL,
        volume   bigint  NOT NULL,
        shard    integer NOT NULL,
        "offset" bigint  NOT NULL,
        length   bigint  NOT NULL,
        harmless boolean NOT NULL DEFAULT false,
        found    timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (node, volume, shard, "offset", length)
    );
    "#,
];

/// Makes the schema, or brings it up to [`VERSION`]; safe to run again and
/// from several processes at once (the migrations run one at a time, each
/// in a transaction).
pub async fn migrate(pool: &deadpool_postgres::Pool) -> Result<i32, Error> {
    let mut client = db::client(pool).await?;
    let tx = client
        .transaction()
        .await
        .map_err(db::error("starting the migration"))?;
    // One migrating process at a time, whatever the others do.
    tx.batch_execute(
        "SELECT pg_advisory_xact_lock(7021105); \
         CREATE TABLE IF NOT EXISTS cell_schema (version integer NOT NULL); \
         INSERT INTO cell_schema (version) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM cell_schema);",
    )
    .await
    .map_err(db::error("reading the schema version"))?;
    let found: i32 = tx
        .query_one("SELECT version FROM cell_schema", &[])
        .await
        .map_err(db::error("reading the schema version"))?
        .get(0);
    if found > VERSION {
        return Err(Error::Format {
            what: format!(
                "the cell's database has schema version {found}, newer than this build's {VERSION}: upgrade pouch-store"
            ),
        });
    }
    for (from, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(migration)
            .await
            .map_err(db::error("migrating the schema"))?;
        tracing::info!(to = from + 1, "cell schema migrated");
    }
    tx.execute("UPDATE cell_schema SET version = $1", &[&VERSION])
        .await
        .map_err(db::error("recording the schema version"))?;
    tx.commit()
        .await
        .map_err(db::error("committing the migration"))?;
    Ok(VERSION)
}

/// Checks that the database holds this build's schema (a front end or node
/// never migrates by itself: `pouch-store cell init` does).
pub async fn check(pool: &deadpool_postgres::Pool) -> Result<(), Error> {
    let client = db::client(pool).await?;
    let version: Option<i32> = match client
        .query_opt("SELECT version FROM cell_schema", &[])
        .await
    {
        Ok(row) => row.map(|r| r.get(0)),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => None,
        Err(e) => return Err(db::error("reading the schema version")(e)),
    };
    match version {
        Some(VERSION) => Ok(()),
        Some(other) => Err(Error::Format {
            what: format!(
                "the cell's database has schema version {other}, this build reads {VERSION}: run `pouch-store cell init` with this build"
            ),
        }),
        None => Err(Error::Format {
            what: "the database holds no cell: run `pouch-store cell init --db URL` first".into(),
        }),
    }
}
