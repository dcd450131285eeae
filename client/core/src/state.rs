//! The local state database: the three trees, the remote cursor and the device
//! identity, in one SQLite file (WAL) per device.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use pouch_backend::Seq;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::local::{LocalEntry, Stat};
use crate::node::Node;
use crate::path::RelPath;
use crate::{Error, Result};

mod blocks;
mod unsettled;

pub use unsettled::{Candidate, LocalChange, Unsettled};

const MIGRATIONS: &[&str] = &[
    // 0 -> 1
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
     CREATE TABLE local (
         path TEXT PRIMARY KEY, node TEXT NOT NULL,
         size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ino INTEGER NOT NULL, ctime_ns INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE remote (path TEXT PRIMARY KEY, node TEXT NOT NULL) WITHOUT ROWID;
     CREATE TABLE synced (path TEXT PRIMARY KEY, node TEXT NOT NULL) WITHOUT ROWID;",
    // 1 -> 2: every folded change, for `pouch history` and `restore`; and
    // this device's excluded folders (selective sync).
    "CREATE TABLE history (
         path TEXT NOT NULL, seq INTEGER NOT NULL, node TEXT,
         device TEXT NOT NULL, time INTEGER,
         PRIMARY KEY (path, seq)
     ) WITHOUT ROWID;
     CREATE TABLE excluded (path TEXT PRIMARY KEY) WITHOUT ROWID;
     INSERT OR REPLACE INTO meta (key, value)
         SELECT 'history_from',
                CAST(COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'cursor'), 0) + 1 AS TEXT);",
    // 2 -> 3: the paths the three trees may disagree on (see `unsettled`),
    // kept by triggers so that no write can forget to mark one. Every path
    // is unsettled once, after the upgrade.
    "CREATE TABLE unsettled (path TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
     INSERT OR IGNORE INTO unsettled (path, n)
         SELECT path, 1 FROM local UNION SELECT path, 1 FROM remote UNION SELECT path, 1 FROM synced;
     CREATE TRIGGER local_insert AFTER INSERT ON local BEGIN
         INSERT INTO unsettled (path, n) VALUES (NEW.path, 1) ON CONFLICT (path) DO UPDATE SET n = n + 1; END;
     CREATE TRIGGER local_update AFTER UPDATE ON local WHEN OLD.node IS NOT NEW.node BEGIN
         INSERT INTO unsettled (path, n) VALUES (NEW.path, 1) ON CONFLICT (path) DO UPDATE SET n = n + 1; END;
     CREATE TRIGGER local_delete AFTER DELETE ON local BEGIN
         INSERT INTO unsettled (path, n) VALUES (OLD.path, 1) ON CONFLICT (path) DO UPDATE SET n = n + 1; END;
     CREATE TRIGGER remote_insert AFTER INSERT ON remote BEGIN
         INSERT INTO unsettled (path, n) VALUES (NEW.path, 1) ON CONFLICT (path) DO UPDATE SET n = n + 1; END;
     CREATE TRIGGER remote_update AFTER UPDATE ON remote BEGIN
         INSERT INTO unsettled (path, n) VALUES (NEW.path, 1) ON CONFLICT (path) DO UPDATE SET n = n + 1; END;
     CREATE TRIGGER remote_delete AFTER DELETE ON remote BEGIN
         INSERT INTO unsettled (path, n) VALUES (OLD.path, 1) ON CONFLICT (path) DO UPDATE SET n = n + 1; END;
     CREATE TRIGGER synced_insert AFTER INSERT ON synced BEGIN
         INSERT INTO unsettled (path, n) VALUES (NEW.path, 1) ON CONFLICT (path) DO UPDATE SET n = n + 1; END;
     CREATE TRIGGER synced_update AFTER UPDATE ON synced BEGIN
         INSERT INTO unsettled (path, n) VALUES (NEW.path, 1) ON CONFLICT (path) DO UPDATE SET n = n + 1; END;
     CREATE TRIGGER synced_delete AFTER DELETE ON synced BEGIN
         INSERT INTO unsettled (path, n) VALUES (OLD.path, 1) ON CONFLICT (path) DO UPDATE SET n = n + 1; END;",
    // 3 -> 4: when Pouch took a Local entry's stat data right after writing
    // the file itself (a download): the next whole scan trusts such an
    // entry by its mtime (the synced one, which any later write moves)
    // rather than reading every downloaded file again because its ctime is
    // newer than the scan before (`scan::Recorded`). NULL: a scan's entry.
    "ALTER TABLE local ADD COLUMN recorded_ns INTEGER;",
];

/// One version of one path, as the journal recorded it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Revision {
    /// The journal entry that made it.
    pub seq: u64,
    /// What the path held from then on; `None`: it was deleted.
    pub node: Option<Node>,
    /// The device that committed it.
    pub device: String,
    /// When, by that device's clock (seconds since the epoch), if known.
    pub time: Option<i64>,
}

/// One journal entry as the state folds it: its number, who made it, and
/// its (validated) changes.
pub type FoldedEntry = (Seq, Origin, Vec<(RelPath, Option<Node>)>);

/// Who made a journal entry, and when.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The committing device's name.
    pub device: String,
    /// Its commit time, if the entry has one.
    pub time: Option<i64>,
}

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// One of the two trees kept without stat data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tree {
    /// The journal folded.
    Remote,
    /// The last state both sides agreed on.
    Synced,
}

impl Tree {
    fn table(self) -> &'static str {
        match self {
            Tree::Remote => "remote",
            Tree::Synced => "synced",
        }
    }
}

/// The local state's key for the identity of the store it belongs to.
const BOUND_STORE: &str = "store_identity";
/// The local state's key for the identity of a store this device moves to.
const NEXT_STORE: &str = "next_store_identity";

/// The local state database of one device.
pub struct LocalState {
    // A mutex makes the database `Sync`, so the engine's futures are `Send`
    // and can run on any runtime thread; one sync uses it at a time anyway.
    conn: Mutex<Connection>,
    /// The database file, for a second connection's snapshot reads.
    path: std::path::PathBuf,
}

/// The Local tree in path order (see [`LocalState::local_in_order`]).
pub struct LocalInOrder {
    conn: Connection,
    /// The last path read; the next page starts after it.
    after: String,
    page: std::collections::VecDeque<(RelPath, LocalEntry, Option<i64>)>,
    done: bool,
}

impl LocalInOrder {
    /// Entries read from the database at a time.
    const PAGE: i64 = 4096;

    /// The next entry, in path order, with when Pouch took its stat data
    /// right after writing the file, if it did (see migration 3 -> 4);
    /// `None` after the last.
    pub fn next_entry(&mut self) -> Result<Option<(RelPath, LocalEntry, Option<i64>)>> {
        if self.page.is_empty() && !self.done {
            let mut stmt = self.conn.prepare_cached(
                "SELECT path, node, size, mtime_ns, ino, ctime_ns, recorded_ns FROM local
                 WHERE path > ?1 ORDER BY path LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![self.after, Self::PAGE], |row| {
                let (path, entry) = local_row(row)?;
                Ok((path, entry, row.get(6)?))
            })?;
            self.page = rows.collect::<rusqlite::Result<_>>()?;
            self.done = (self.page.len() as i64) < Self::PAGE;
            if let Some((last, _, _)) = self.page.back() {
                self.after = last.as_str().to_owned();
            }
        }
        Ok(self.page.pop_front())
    }
}

fn to_json(node: &Node) -> String {
    serde_json::to_string(node).expect("a node always serialises")
}

fn from_json(path: &str, text: &str) -> rusqlite::Result<Node> {
    serde_json::from_str(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            Box::new(PathError(path.to_owned(), e)),
        )
    })
}

#[derive(Debug, thiserror::Error)]
#[error("stored node of {0}: {1}")]
struct PathError(String, serde_json::Error);

fn rel(path: String) -> rusqlite::Result<RelPath> {
    RelPath::parse(&path).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

impl LocalState {
    /// Opens (creating and migrating) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
        }
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: u32 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(Error::NewerSchema {
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        for (from, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", from as u32 + 1)?;
        }
        // The device's identity: stable for the life of this database,
        // distinct across devices even when they share a name.
        let fresh_id = blake3::hash(
            format!(
                "{:?} {} {}",
                std::time::SystemTime::now(),
                std::process::id(),
                path.display()
            )
            .as_bytes(),
        );
        tx.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('device_id', ?1)",
            [&fresh_id.to_hex()[..16]],
        )?;
        tx.commit()?;
        Ok(Self {
            conn: Mutex::new(conn),
            path: path.to_owned(),
        })
    }

    /// SQLite's own check of the file (`PRAGMA integrity_check`): empty
    /// when it is sound, else what is wrong.
    pub fn integrity_check(&self) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("PRAGMA integrity_check")?;
        let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
        let found: Vec<String> = rows.collect::<rusqlite::Result<_>>()?;
        Ok(found.into_iter().filter(|line| line != "ok").collect())
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().expect("state lock")
    }

    /// This device's identity, made when the database was created.
    pub fn device_id(&self) -> Result<String> {
        Ok(self.meta("device_id")?.unwrap_or_default())
    }

    /// The identity of the store this device's cursor belongs to, once
    /// bound.
    pub fn bound_store(&self) -> Result<Option<String>> {
        self.meta(BOUND_STORE)
    }

    /// Binds this device's state to the store with identity `id` (at its
    /// first sync with it).
    pub fn bind_store(&self, id: &str) -> Result<()> {
        self.set_meta(BOUND_STORE, id)?;
        self.delete_meta(NEXT_STORE)
    }

    /// The store this device is moving to, if it is: accepted in place of
    /// the bound one (and then bound) at the next sync.
    pub fn next_store(&self) -> Result<Option<String>> {
        self.meta(NEXT_STORE)
    }

    /// Records that this device moves to the store with identity `id`:
    /// called before the config names it, so a crash between the two
    /// leaves a device that accepts either store, never neither.
    pub fn expect_store(&self, id: &str) -> Result<()> {
        self.set_meta(NEXT_STORE, id)
    }

    /// A metadata value.
    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()?)
    }

    /// Sets a metadata value.
    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.conn().execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
            params![key, value],
        )?;
        Ok(())
    }

    /// Removes a metadata value.
    pub fn delete_meta(&self, key: &str) -> Result<()> {
        self.conn()
            .execute("DELETE FROM meta WHERE key = ?1", [key])?;
        Ok(())
    }

    /// The last journal entry folded into the Remote tree.
    pub fn cursor(&self) -> Result<Seq> {
        Ok(Seq(self
            .meta("cursor")?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)))
    }

    /// Loads the Remote or Synced tree.
    pub fn tree(&self, tree: Tree) -> Result<BTreeMap<RelPath, Node>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("SELECT path, node FROM {}", tree.table()))?;
        let rows = stmt.query_map([], |row| {
            let path: String = row.get(0)?;
            let node: String = row.get(1)?;
            Ok((rel(path.clone())?, from_json(&path, &node)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// What one tree holds at one path.
    pub fn node(&self, tree: Tree, path: &RelPath) -> Result<Option<Node>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT node FROM {} WHERE path = ?1",
            tree.table()
        ))?;
        let node: Option<String> = stmt
            .query_row([path.as_str()], |row| row.get(0))
            .optional()?;
        Ok(node
            .map(|node| from_json(path.as_str(), &node))
            .transpose()?)
    }

    /// Loads the Local tree with its stat data.
    pub fn local(&self) -> Result<BTreeMap<RelPath, LocalEntry>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT path, node, size, mtime_ns, ino, ctime_ns FROM local")?;
        let rows = stmt.query_map([], local_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The Local tree in path order, read a page at a time from a snapshot
    /// (its own connection's read transaction, begun at the first read):
    /// what is written meanwhile, a scan's own changes, is not seen.
    pub fn local_in_order(&self) -> Result<LocalInOrder> {
        let conn = Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.execute_batch("BEGIN")?;
        Ok(LocalInOrder {
            conn,
            after: String::new(),
            page: std::collections::VecDeque::new(),
            done: false,
        })
    }

    /// When the scan that recorded the Local tree started (ns since the
    /// epoch), for telling racily clean entries; `None` before any scan.
    pub fn scan_started(&self) -> Result<Option<i64>> {
        Ok(self.meta("scan_started_ns")?.and_then(|v| v.parse().ok()))
    }

    /// Records one path's Local entry after Pouch itself changed the disk.
    pub fn set_local(&self, path: &RelPath, entry: Option<&LocalEntry>) -> Result<()> {
        write_local(&self.conn(), path, entry)
    }

    /// Records downloaded files (their stat data, taken after
    /// `stat_taken_from` (ns since the epoch), and their node as both the
    /// Local and the Synced entry) in one transaction: one commit, one
    /// fsync, for a whole batch of files.
    pub fn record_downloads(
        &self,
        done: &[(RelPath, LocalEntry)],
        stat_taken_from: i64,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (path, (stat, node)) in done {
            write_local_at(
                &tx,
                path,
                Some(&(*stat, node.clone())),
                Some(stat_taken_from),
            )?;
            set_node(&tx, Tree::Synced, path, Some(node))?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Records what both sides now agree `path` holds.
    pub fn set_synced(&self, path: &RelPath, node: Option<&Node>) -> Result<()> {
        set_node(&self.conn(), Tree::Synced, path, node)
    }

    /// Folds changes of journal entry `seq` into the Remote tree and moves
    /// the cursor, atomically. With `synced`, the same changes are recorded
    /// as agreed (our own commit).
    pub fn fold(
        &mut self,
        seq: Seq,
        origin: &Origin,
        changes: &[(RelPath, Option<Node>)],
        synced: bool,
    ) -> Result<()> {
        let tx = self
            .conn
            .get_mut()
            .expect("state lock")
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (path, node) in changes {
            set_node(&tx, Tree::Remote, path, node.as_ref())?;
            if synced {
                set_node(&tx, Tree::Synced, path, node.as_ref())?;
            }
            record_history(&tx, path, seq, node.as_ref(), origin)?;
        }
        set_cursor(&tx, seq)?;
        tx.commit()?;
        Ok(())
    }
}

impl LocalState {
    /// Replaces the Remote tree and the history with a journal snapshot's
    /// (`entries`: each entry's number, origin and retained changes) and
    /// moves the cursor to `seq`, atomically: for a device whose cursor
    /// the store trimmed past. Paths the snapshot lacks leave the Remote
    /// tree, which the planner then takes as remote deletes; the Local and
    /// Synced trees stay as they are.
    pub fn rebase(&mut self, seq: Seq, entries: &[FoldedEntry]) -> Result<()> {
        let tx = self
            .conn
            .get_mut()
            .expect("state lock")
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM remote", [])?;
        tx.execute("DELETE FROM history", [])?;
        for (entry, origin, changes) in entries {
            for (path, node) in changes {
                set_node(&tx, Tree::Remote, path, node.as_ref())?;
                record_history(&tx, path, *entry, node.as_ref(), origin)?;
            }
        }
        set_cursor(&tx, seq)?;
        tx.commit()?;
        Ok(())
    }
}

impl LocalState {
    /// Every recorded version of `path`, oldest first.
    pub fn history(&self, path: &RelPath) -> Result<Vec<Revision>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT seq, node, device, time FROM history WHERE path = ?1 ORDER BY seq")?;
        let rows = stmt.query_map([path.as_str()], |row| {
            let node: Option<String> = row.get(1)?;
            Ok(Revision {
                seq: row.get::<_, i64>(0)? as u64,
                node: node.map(|n| from_json(path.as_str(), &n)).transpose()?,
                device: row.get(2)?,
                time: row.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The paths whose last recorded change is a delete, at or under
    /// `folder` (all when `None`), in path order.
    pub fn deleted_paths(&self, folder: Option<&RelPath>) -> Result<Vec<RelPath>> {
        let conn = self.conn();
        let (exact, low, high) = match folder {
            // Everything under `p/` sorts from "p/" up to "p0" ('0' follows '/').
            Some(f) => (f.to_string(), format!("{f}/"), format!("{f}0")),
            None => (String::new(), String::new(), "\u{10FFFF}".to_owned()),
        };
        let mut stmt = conn.prepare(
            "SELECT h.path FROM history h
             WHERE h.node IS NULL
               AND h.seq = (SELECT MAX(seq) FROM history WHERE path = h.path)
               AND (h.path = ?1 OR (h.path >= ?2 AND h.path < ?3))
             ORDER BY h.path",
        )?;
        let rows = stmt.query_map(params![exact, low, high], |row| rel(row.get(0)?))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The first journal entry whose changes this device recorded in its
    /// history (journals made before history existed start later than 1).
    pub fn history_from(&self) -> Result<Seq> {
        Ok(Seq(self
            .meta("history_from")?
            .and_then(|v| v.parse().ok())
            .unwrap_or(1)))
    }

    /// This device's excluded folders (selective sync).
    pub fn excluded(&self) -> Result<Vec<RelPath>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT path FROM excluded ORDER BY path")?;
        let rows = stmt.query_map([], |row| rel(row.get(0)?))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Excludes `path` from sync on this device and forgets what was agreed
    /// and seen under it, so that including it again later downloads it
    /// rather than reading its absence as a delete. One transaction.
    pub fn exclude(&mut self, path: &RelPath) -> Result<()> {
        let tx = self
            .conn
            .get_mut()
            .expect("state lock")
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT OR IGNORE INTO excluded (path) VALUES (?1)",
            [path.as_str()],
        )?;
        // Everything under `p/` sorts from "p/" up to (not including) "p0":
        // '0' is the byte after '/'. (LIKE would ignore case.)
        let (low, high) = (format!("{path}/"), format!("{path}0"));
        for table in ["synced", "local"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE path = ?1 OR (path >= ?2 AND path < ?3)"),
                params![path.as_str(), low, high],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Syncs `path` on this device again; `false` if it was not excluded.
    pub fn include(&self, path: &RelPath) -> Result<bool> {
        Ok(self
            .conn()
            .execute("DELETE FROM excluded WHERE path = ?1", [path.as_str()])?
            > 0)
    }
}

/// Writes one Local entry as an update where the path exists, so that the
/// `unsettled` trigger sees whether its node changed (a REPLACE would be
/// a delete and an insert).
const UPSERT_LOCAL: &str =
    "INSERT INTO local (path, node, size, mtime_ns, ino, ctime_ns, recorded_ns)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
     ON CONFLICT (path) DO UPDATE SET node = excluded.node, size = excluded.size,
         mtime_ns = excluded.mtime_ns, ino = excluded.ino, ctime_ns = excluded.ctime_ns,
         recorded_ns = excluded.recorded_ns";

/// Writes (`Some`) or removes one path's Local entry.
fn write_local(conn: &Connection, path: &RelPath, entry: Option<&LocalEntry>) -> Result<()> {
    write_local_at(conn, path, entry, None)
}

/// Writes (`Some`) or removes one path's Local entry; `stat_taken_from`:
/// Pouch took its stat data after then, right after writing the file (see
/// migration 3 -> 4).
fn write_local_at(
    conn: &Connection,
    path: &RelPath,
    entry: Option<&LocalEntry>,
    stat_taken_from: Option<i64>,
) -> Result<()> {
    match entry {
        Some((stat, node)) => conn.prepare_cached(UPSERT_LOCAL)?.execute(params![
            path.as_str(),
            to_json(node),
            stat.size as i64,
            stat.mtime_ns,
            stat.ino as i64,
            stat.ctime_ns,
            stat_taken_from
        ])?,
        None => conn
            .prepare_cached("DELETE FROM local WHERE path = ?1")?
            .execute([path.as_str()])?,
    };
    Ok(())
}

/// A Local entry from a row that starts `path, node, size, mtime_ns, ino,
/// ctime_ns`.
fn local_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(RelPath, LocalEntry)> {
    let path: String = row.get(0)?;
    let node: String = row.get(1)?;
    Ok((
        rel(path.clone())?,
        (stat_of(row, 2)?, from_json(&path, &node)?),
    ))
}

/// The stat data in columns `first..first + 4` (size, mtime, inode, ctime).
fn stat_of(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Stat> {
    Ok(Stat {
        size: row.get::<_, i64>(first)? as u64,
        mtime_ns: row.get(first + 1)?,
        ino: row.get::<_, i64>(first + 2)? as u64,
        ctime_ns: row.get(first + 3)?,
    })
}

/// Records that entry `seq` (by `origin`) set `path` to `node`.
fn record_history(
    conn: &Connection,
    path: &RelPath,
    seq: Seq,
    node: Option<&Node>,
    origin: &Origin,
) -> Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO history (path, seq, node, device, time) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            path.as_str(),
            seq.0 as i64,
            node.map(to_json),
            origin.device,
            origin.time
        ],
    )?;
    Ok(())
}

/// Moves the cursor: every entry up to `seq` is folded.
fn set_cursor(conn: &Connection, seq: Seq) -> Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('cursor', ?1)",
        [seq.0.to_string()],
    )?;
    Ok(())
}

fn set_node(conn: &Connection, tree: Tree, path: &RelPath, node: Option<&Node>) -> Result<()> {
    match node {
        Some(node) => conn.execute(
            &format!(
                "INSERT OR REPLACE INTO {} (path, node) VALUES (?1, ?2)",
                tree.table()
            ),
            params![path.as_str(), to_json(node)],
        )?,
        None => conn.execute(
            &format!("DELETE FROM {} WHERE path = ?1", tree.table()),
            [path.as_str()],
        )?,
    };
    Ok(())
}
