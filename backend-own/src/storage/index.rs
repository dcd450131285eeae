//! The store's SQLite database: the block index, the volume table, the
//! journal, the snapshot and the counters. Everything in it but the
//! counters is also in the volumes, so it can be rebuilt from them.
//!
//! SQLite in WAL mode is what lets several processes share one store folder:
//! readers never block, writers serialise on its lock, and a journal append
//! is a transaction whose primary key makes it create-only. `synchronous =
//! FULL` makes every commit durable before it returns.

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use pouch_backend::{Error, Result};
use rusqlite::{Connection, ErrorCode, TransactionBehavior};

/// The schema version this build writes; `MIGRATIONS[i]` takes version `i`
/// to `i + 1`.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

const MIGRATIONS: &[&str] = &[
    // 0 -> 1
    "CREATE TABLE volumes (
        id      INTEGER PRIMARY KEY,
        length  INTEGER NOT NULL,   -- bytes known good: every record below is indexed or dead
        sealed  INTEGER NOT NULL DEFAULT 0,
        garbage INTEGER NOT NULL DEFAULT 0  -- bytes of deleted or duplicate records
    );
    CREATE TABLE blocks (
        id      BLOB PRIMARY KEY,   -- BLAKE3 of the raw bytes
        volume  INTEGER NOT NULL,
        offset  INTEGER NOT NULL,   -- of the record header
        length  INTEGER NOT NULL    -- of the payload
    ) WITHOUT ROWID;
    CREATE TABLE journal (
        seq  INTEGER PRIMARY KEY,
        data BLOB NOT NULL
    );
    CREATE TABLE snapshot (
        id   INTEGER PRIMARY KEY CHECK (id = 1),
        seq  INTEGER NOT NULL,
        data BLOB NOT NULL
    );
    CREATE TABLE counters (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;",
    // 1 -> 2: where each journal entry's and the snapshot's record sits in
    // the volumes (NULL until an older store's rows are written there at
    // open), so that compaction carries them and a rebuild finds them.
    "ALTER TABLE journal ADD COLUMN volume INTEGER;
    ALTER TABLE journal ADD COLUMN offset INTEGER;
    CREATE INDEX journal_by_volume ON journal (volume);
    ALTER TABLE snapshot ADD COLUMN volume INTEGER;
    ALTER TABLE snapshot ADD COLUMN offset INTEGER;",
    // 2 -> 3: blocks found damaged on read, taken out of `blocks` (so
    // `has_blocks` says they are missing and devices send them again) but
    // kept where they are for inspection: compaction leaves their volumes.
    "CREATE TABLE quarantine (
        id      BLOB PRIMARY KEY,
        volume  INTEGER NOT NULL,
        offset  INTEGER NOT NULL,
        length  INTEGER NOT NULL,
        reason  TEXT NOT NULL,
        time    INTEGER NOT NULL
    ) WITHOUT ROWID;",
    // 3 -> 4: garbage collection (see `gc`): blocks marked as candidates,
    // and since when (store time, ms); the one collector's lease. A block
    // written or deleted loses its mark, whatever wrote or deleted it (a
    // put, a tail recovery, a sweep, a quarantine), so a mark never
    // outlives the copy it was made on.
    "CREATE TABLE gc_marks (
        id      BLOB PRIMARY KEY,
        time_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE gc_lease (
        id         INTEGER PRIMARY KEY CHECK (id = 1),
        holder     TEXT NOT NULL,
        generation INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL
    );
    CREATE TRIGGER blocks_insert_unmarks AFTER INSERT ON blocks BEGIN
        DELETE FROM gc_marks WHERE id = NEW.id; END;
    CREATE TRIGGER blocks_delete_unmarks AFTER DELETE ON blocks BEGIN
        DELETE FROM gc_marks WHERE id = OLD.id; END;",
    // 4 -> 5: the payload bytes of the indexed blocks, kept as they change
    // (an account's quota reads it on every put; summing the table each
    // time grew with the store). `INSERT OR IGNORE` of a block already
    // there fires no trigger, and nothing replaces a block row.
    "INSERT OR REPLACE INTO counters (name, value)
        SELECT 'payload_bytes', COALESCE(SUM(length), 0) FROM blocks;
    CREATE TRIGGER blocks_insert_counts AFTER INSERT ON blocks BEGIN
        UPDATE counters SET value = value + NEW.length WHERE name = 'payload_bytes'; END;
    CREATE TRIGGER blocks_delete_counts AFTER DELETE ON blocks BEGIN
        UPDATE counters SET value = value - OLD.length WHERE name = 'payload_bytes'; END;
    CREATE TRIGGER blocks_update_counts AFTER UPDATE OF length ON blocks BEGIN
        UPDATE counters SET value = value - OLD.length + NEW.length
        WHERE name = 'payload_bytes'; END;",
];

/// How long a writer waits for another process's transaction before giving
/// up with a retryable error.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// Maps a SQLite error: lock timeouts are retryable, a full disk is an I/O
/// error the user can act on, the rest is internal.
pub fn db_error(context: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    move |err| match err.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Error::Unavailable {
            source: Box::new(err),
        },
        Some(ErrorCode::DiskFull) => Error::Io {
            context,
            source: std::io::Error::from(std::io::ErrorKind::StorageFull),
        },
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => Error::Format {
            what: format!("the index database is damaged ({context}): {err}"),
        },
        _ => Error::Internal {
            context,
            source: Box::new(err),
        },
    }
}

/// A small pool of connections to the index: `rusqlite::Connection` is not
/// `Sync`, and one connection per concurrent call keeps readers parallel.
pub struct Pool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Pool {
    /// Opens (creating and migrating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let pool = Self {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
        };
        let mut conn = pool.connect()?;
        migrate(&mut conn)?;
        pool.idle.lock().expect("pool lock").push(conn);
        Ok(pool)
    }

    fn connect(&self) -> Result<Connection> {
        let conn = Connection::open(&self.path).map_err(db_error("opening the store index"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(db_error("configuring the store index"))?;
        set_wal(&conn)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db_error("configuring the store index"))?;
        Ok(conn)
    }

    /// A connection for the duration of one operation.
    pub fn get(&self) -> Result<Pooled<'_>> {
        let idle = self.idle.lock().expect("pool lock").pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.connect()?,
        };
        Ok(Pooled {
            pool: self,
            conn: Some(conn),
        })
    }
}

/// A pooled connection, returned to the pool when dropped.
pub struct Pooled<'a> {
    pool: &'a Pool,
    conn: Option<Connection>,
}

impl Deref for Pooled<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn.as_ref().expect("present until drop")
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn.as_mut().expect("present until drop")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let mut idle = self.pool.idle.lock().expect("pool lock");
            if idle.len() < 8 {
                idle.push(conn);
            }
        }
    }
}

/// Switches the database to WAL mode. SQLite answers `SQLITE_BUSY` at once,
/// without its busy handler, when another process is switching the same
/// new database at the same moment, so this retries for a while.
fn set_wal(conn: &Connection) -> Result<()> {
    let started = std::time::Instant::now();
    loop {
        let mode = conn.query_row("PRAGMA journal_mode = WAL", [], |row| {
            row.get::<_, String>(0)
        });
        match mode {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(mode) => {
                return Err(Error::Format {
                    what: format!("the store index cannot use WAL mode (it is in {mode} mode)"),
                });
            }
            Err(err)
                if err.sqlite_error_code() == Some(ErrorCode::DatabaseBusy)
                    && started.elapsed() < BUSY_TIMEOUT =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(err) => return Err(db_error("configuring the store index")(err)),
        }
    }
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_error("migrating the store index"))?;
    let version: u32 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(db_error("reading the store index version"))?;
    if version > SCHEMA_VERSION {
        return Err(Error::Format {
            what: format!(
                "the store index has schema {version}; this Pouch knows up to {SCHEMA_VERSION}: upgrade Pouch"
            ),
        });
    }
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql)
            .map_err(db_error("migrating the store index"))?;
        tx.pragma_update(None, "user_version", from as u32 + 1)
            .map_err(db_error("migrating the store index"))?;
    }
    tx.commit().map_err(db_error("migrating the store index"))
}

/// Adds `by` to counter `name` inside a transaction.
pub fn bump(conn: &Connection, name: &str, by: u64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO counters (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
        rusqlite::params![name, by as i64],
    )
    .map(drop)
}

/// Reads counter `name` (0 if never bumped).
pub fn counter(conn: &Connection, name: &str) -> rusqlite::Result<u64> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .query_row(
            "SELECT value FROM counters WHERE name = ?1",
            [name],
            |row| row.get::<_, i64>(0),
        )
        .optional()?
        .unwrap_or(0) as u64)
}
