//! The unsettled paths: where the three trees may disagree.
//!
//! Triggers on `local`, `remote` and `synced` mark every path whose row is
//! written (a Local entry only when its node changes), counting the marks.
//! Outside the marked paths the trees agree, so a sync plans over the
//! marked paths alone: a change costs work in proportion to the change,
//! not to the tree. A path is settled (unmarked) only when a plan found
//! nothing to do for it and no write marked it again since that plan read
//! it — the count says so.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{LocalState, Tree, from_json, local_row, rel, stat_of, write_local};
use crate::Result;
use crate::local::LocalEntry;
use crate::node::Node;
use crate::path::RelPath;

/// One path's new Local entry (`None`: gone from disk), from a scan.
pub type LocalChange = (RelPath, Option<LocalEntry>);

/// One unsettled path, as the three trees hold it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The path.
    pub path: RelPath,
    /// How many writes marked it: settling checks it is unchanged.
    pub marks: i64,
    /// Its Local entry.
    pub local: Option<LocalEntry>,
    /// Its Remote node.
    pub remote: Option<Node>,
    /// Its Synced node.
    pub synced: Option<Node>,
}

/// Which unsettled paths a query hands on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsettled {
    /// Those a plan may delete from the disk: in the Local and Synced
    /// trees, not in the Remote tree.
    GoneRemotely,
    /// Those a plan may download as new: in the Remote tree, not in the
    /// Local one.
    NewRemotely,
}

impl Unsettled {
    fn filter(self) -> &'static str {
        match self {
            Unsettled::GoneRemotely => {
                "r.node IS NULL AND l.node IS NOT NULL AND s.node IS NOT NULL"
            }
            Unsettled::NewRemotely => "l.node IS NULL AND r.node IS NOT NULL",
        }
    }
}

/// An unsettled path with its three rows; `candidate_row` reads it.
const CANDIDATES: &str =
    "SELECT u.path, u.n, l.node, l.size, l.mtime_ns, l.ino, l.ctime_ns, r.node, s.node
     FROM unsettled u
     LEFT JOIN local l ON l.path = u.path
     LEFT JOIN remote r ON r.path = u.path
     LEFT JOIN synced s ON s.path = u.path";

/// A [`Candidate`] from a row of [`CANDIDATES`].
fn candidate_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Candidate> {
    let path: String = row.get(0)?;
    let node = |i: usize| -> rusqlite::Result<Option<Node>> {
        row.get::<_, Option<String>>(i)?
            .map(|text| from_json(&path, &text))
            .transpose()
    };
    let local = match node(2)? {
        Some(node) => Some((stat_of(row, 3)?, node)),
        None => None,
    };
    Ok(Candidate {
        path: rel(path.clone())?,
        marks: row.get(1)?,
        local,
        remote: node(7)?,
        synced: node(8)?,
    })
}

/// The key of the ignore rules' fingerprint in `meta`.
const RULES_META: &str = "rules_fingerprint";

impl LocalState {
    /// Writes a scan's changes to the Local tree in one transaction; a full
    /// scan (`full_scan_started`: when it started) also records its start,
    /// for telling racily clean entries. A scan of some paths does not: its
    /// entries are judged by the older full scan's start, which is safe.
    pub fn apply_local(
        &mut self,
        changes: &[LocalChange],
        full_scan_started: Option<i64>,
    ) -> Result<()> {
        let tx = self
            .conn
            .get_mut()
            .expect("state lock")
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (path, entry) in changes {
            write_local(&tx, path, entry.as_ref())?;
        }
        if let Some(started) = full_scan_started {
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('scan_started_ns', ?1)",
                [started.to_string()],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The Local entries of `path` and of everything under it.
    pub fn local_under(&self, path: &RelPath) -> Result<BTreeMap<RelPath, LocalEntry>> {
        let conn = self.conn();
        // Everything under `p/` sorts from "p/" up to (not including) "p0":
        // '0' is the byte after '/'.
        let mut stmt = conn.prepare_cached(
            "SELECT path, node, size, mtime_ns, ino, ctime_ns FROM local
             WHERE path = ?1 OR (path >= ?2 AND path < ?3)",
        )?;
        let rows = stmt.query_map(
            params![path.as_str(), format!("{path}/"), format!("{path}0")],
            local_row,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// One path's Local entry.
    pub fn local_entry(&self, path: &RelPath) -> Result<Option<LocalEntry>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT node, size, mtime_ns, ino, ctime_ns FROM local WHERE path = ?1",
        )?;
        Ok(stmt
            .query_row([path.as_str()], |row| {
                let node: String = row.get(0)?;
                Ok((stat_of(row, 1)?, from_json(path.as_str(), &node)?))
            })
            .optional()?)
    }

    /// Hands the unsettled paths `which` names (SQLite filters: most rows
    /// never leave it) with their three rows to `each`, in path order, one
    /// at a time (none is held here): `each` must not use the local state.
    pub fn each_candidate_where(
        &self,
        which: Unsettled,
        mut each: impl FnMut(Candidate) -> Result<()>,
    ) -> Result<()> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "{CANDIDATES} WHERE {} ORDER BY u.path",
            which.filter()
        ))?;
        let rows = stmt.query_map([], candidate_row)?;
        for candidate in rows {
            each(candidate?)?;
        }
        Ok(())
    }

    /// Up to `limit` unsettled paths after `after` (from the first when
    /// `None`), in path order, with their three rows: a page of a plan
    /// made in slices.
    pub fn candidates_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<Candidate>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "{CANDIDATES} WHERE u.path > ?1 ORDER BY u.path LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![after.unwrap_or(""), limit as i64], candidate_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The unsettled paths among `paths`, in path order, with their three
    /// rows.
    pub fn candidates_of(&self, paths: &[RelPath]) -> Result<Vec<Candidate>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!("{CANDIDATES} WHERE u.path = ?1"))?;
        let mut sorted: Vec<&RelPath> = paths.iter().collect();
        sorted.sort();
        sorted.dedup();
        let mut out = Vec::new();
        for path in sorted {
            if let Some(candidate) = stmt.query_row([path.as_str()], candidate_row).optional()? {
                out.push(candidate);
            }
        }
        Ok(out)
    }

    /// Unmarks every path whose three rows are identical (the same node
    /// text, or absent, in each tree): nothing to do there, whatever the
    /// rules. One statement in SQLite, without reading the nodes out: after
    /// a large download or upload almost every marked path is one of them.
    pub fn settle_identical(&self) -> Result<()> {
        self.conn().execute(
            "DELETE FROM unsettled WHERE path IN (
                 SELECT u.path FROM unsettled u
                 LEFT JOIN local l ON l.path = u.path
                 LEFT JOIN remote r ON r.path = u.path
                 LEFT JOIN synced s ON s.path = u.path
                 WHERE l.node IS s.node AND r.node IS s.node)",
            [],
        )?;
        Ok(())
    }

    /// Unmarks paths a plan found nothing to do for, each only if no write
    /// marked it again since the plan read it (`marks` unchanged).
    pub fn settle(&mut self, settled: &[(RelPath, i64)]) -> Result<()> {
        let tx = self
            .conn
            .get_mut()
            .expect("state lock")
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut delete =
                tx.prepare_cached("DELETE FROM unsettled WHERE path = ?1 AND n = ?2")?;
            for (path, marks) in settled {
                delete.execute(params![path.as_str(), marks])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The fingerprint of the ignore rules the root was last scanned with.
    pub fn rules_fingerprint(&self) -> Result<Option<String>> {
        self.meta(RULES_META)
    }

    /// Records new ignore rules' fingerprint and marks every path of the
    /// three trees, in one transaction: paths the old rules left out of
    /// plans may need work now.
    pub fn new_rules(&mut self, fingerprint: &str) -> Result<()> {
        let tx = self
            .conn
            .get_mut()
            .expect("state lock")
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // `WHERE true` tells SQLite's parser the ON CONFLICT is the upsert's.
        tx.execute_batch(
            "INSERT INTO unsettled (path, n)
                 SELECT path, 1 FROM (SELECT path FROM local UNION SELECT path FROM remote UNION SELECT path FROM synced)
                 WHERE true
             ON CONFLICT (path) DO UPDATE SET n = n + 1",
        )?;
        tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
            params![RULES_META, fingerprint],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Whether the Remote tree differs from the Synced tree at some
    /// unsettled path: if not, the remote side changed nothing, and a
    /// plan has nothing to do on this device's disk (every operation
    /// there, even one a kept path adds above it, needs such a path).
    pub fn remote_changed(&self) -> Result<bool> {
        Ok(self.conn().query_row(
            "SELECT EXISTS (SELECT 1 FROM unsettled u
                 LEFT JOIN remote r ON r.path = u.path
                 LEFT JOIN synced s ON s.path = u.path
                 WHERE r.node IS NOT s.node)",
            [],
            |row| row.get(0),
        )?)
    }

    /// How many unsettled paths there are.
    pub fn unsettled_count(&self) -> Result<u64> {
        let n: i64 = self
            .conn()
            .query_row("SELECT COUNT(*) FROM unsettled", [], |row| row.get(0))?;
        Ok(n as u64)
    }

    /// How many paths a tree holds.
    pub fn count(&self, tree: Tree) -> Result<usize> {
        let n: i64 = self.conn().query_row(
            &format!("SELECT COUNT(*) FROM {}", tree.table()),
            [],
            |row| row.get(0),
        )?;
        Ok(n as usize)
    }
}
