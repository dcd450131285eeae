//! The one scan-and-plan path.
//!
//! A scan (of the whole root, or of the paths the watcher saw change)
//! writes what differs from the Local tree; the local state's triggers mark
//! those paths unsettled, as they mark every path a pull or an operation
//! writes (`state/unsettled.rs`). The plan then runs over the unsettled
//! paths only: outside them the three trees agree, so the planner would
//! find nothing there. After a sync succeeds, the paths whose trees now
//! agree are settled. A change thus costs work in proportion to the
//! change, whatever the size of the folder.

use std::collections::{BTreeMap, HashSet};

use super::Engine;
use crate::Result;
use crate::clock::now_ns;
use crate::ignore_rules::{IGNORE_FILE, IgnoreRules};
use crate::local::LocalEntry;
use crate::node::{Node, same};
use crate::path::RelPath;
use crate::report::SyncReport;
use crate::scan::{ScanOutcome, scan, scan_merged, scan_paths};
use crate::state::LocalChange;

/// Changes a whole scan writes to the Local tree in one transaction.
const SCAN_RECORD_BATCH: usize = 4096;
/// Unsettled paths read and settled at once after a sync.
const SETTLE_PAGE: usize = 4096;

/// What a sync scans.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Scope {
    /// The whole root: at start, on the periodic rescan, and whenever the
    /// watcher may have missed something.
    #[default]
    Everything,
    /// Only these paths, each with everything under it: what the watcher
    /// saw change. A path whose folder is new to the Local tree is scanned
    /// from that folder.
    Paths(Vec<RelPath>),
}

impl Engine {
    /// `.pouchignore`, the built-in ignores, and this device's excluded
    /// folders; with a fingerprint of everything they were made from.
    fn rules(&self) -> Result<(IgnoreRules, String)> {
        let excluded = self.db.excluded()?;
        let own = self.own.inside(&self.root);
        let mut hasher = blake3::Hasher::new();
        match std::fs::read(self.root.join(IGNORE_FILE)) {
            Ok(bytes) => {
                hasher.update(b"file\0");
                hasher.update(&bytes);
            }
            Err(_) => {
                hasher.update(b"none\0");
            }
        }
        for path in excluded.iter().chain(&own) {
            hasher.update(b"\0");
            hasher.update(path.as_str().as_bytes());
        }
        let rules = IgnoreRules::load(&self.root)
            .with_excluded(excluded)
            .with_excluded(own);
        Ok((rules, hasher.finalize().to_hex().to_string()))
    }

    /// Scans what `scope` names (everything when the ignore rules changed
    /// since the last scan) and records what changed, which marks those
    /// paths unsettled. Returns the rules it scanned with and how many
    /// Local entries changed.
    pub(super) fn scan_recorded(
        &mut self,
        report: &mut SyncReport,
        scope: &Scope,
    ) -> Result<(IgnoreRules, usize)> {
        let (mut rules, fingerprint) = self.rules()?;
        let rules_changed = self.db.rules_fingerprint()?.as_deref() != Some(&fingerprint);
        let scanned_changes = match scope {
            Scope::Paths(paths) if !rules_changed => {
                let paths: Vec<RelPath> = paths.iter().chain(&self.scan_next).cloned().collect();
                self.scan_some(&paths, &mut rules, report)?
            }
            _ => self.scan_all_recorded(&mut rules, report)?,
        };
        self.scan_next.clear();
        if rules_changed {
            // Recorded only now that the whole root was scanned with them.
            self.db.new_rules(&fingerprint)?;
        }
        // Paths whose three rows are identical need no plan.
        self.db.settle_identical()?;
        Ok((rules, scanned_changes))
    }

    /// Scans the whole root, adding each problem to `report` once, and
    /// records what changed in the Local tree. Returns every entry found.
    pub(super) fn scan_local(
        &mut self,
        report: &mut SyncReport,
    ) -> Result<(BTreeMap<RelPath, LocalEntry>, IgnoreRules)> {
        let (mut rules, _) = self.rules()?;
        let previous = self.db.local()?;
        let started = now_ns();
        let outcome = scan(&self.root, &previous, self.db.scan_started()?, &rules)?;
        note_problems(report, &outcome.problems, &mut rules);
        self.db
            .apply_local(&changes(&previous, &outcome), Some(started))?;
        Ok((outcome.entries, rules))
    }

    /// Scans the whole root with `rules` and records what changed as it
    /// goes, in path-ordered batches, against the Local tree read in the
    /// same order (`scan::scan_merged`): memory is bounded by the folders
    /// being walked, not by the tree. How many entries changed.
    fn scan_all_recorded(
        &mut self,
        rules: &mut IgnoreRules,
        report: &mut SyncReport,
    ) -> Result<usize> {
        let started = now_ns();
        let previous_started = self.db.scan_started()?;
        let mut previous = self.db.local_in_order()?;
        let mut batch: Vec<LocalChange> = Vec::new();
        let db = &mut self.db;
        let outcome = scan_merged(
            &self.root,
            || previous.next_entry(),
            previous_started,
            rules,
            |change| {
                batch.push(change);
                if batch.len() >= SCAN_RECORD_BATCH {
                    db.apply_local(&std::mem::take(&mut batch), None)?;
                }
                Ok(())
            },
        )?;
        drop(previous);
        // Its start is recorded only now that all of it is.
        self.db.apply_local(&batch, Some(started))?;
        note_problems(report, &outcome.problems, rules);
        report.files_hashed += outcome.hashed;
        Ok(outcome.changes)
    }

    /// Scans `paths` only (see [`Scope::Paths`]) with `rules` and records
    /// what changed; how many entries.
    fn scan_some(
        &mut self,
        paths: &[RelPath],
        rules: &mut IgnoreRules,
        report: &mut SyncReport,
    ) -> Result<usize> {
        let roots = self.scan_roots(paths)?;
        let mut previous = BTreeMap::new();
        for root in &roots {
            previous.extend(self.db.local_under(root)?);
        }
        let outcome = scan_paths(
            &self.root,
            &roots,
            &previous,
            self.db.scan_started()?,
            rules,
        )?;
        note_problems(report, &outcome.problems, rules);
        report.files_hashed += outcome.hashed;
        let changes = changes(&previous, &outcome);
        self.db.apply_local(&changes, None)?;
        Ok(changes.len())
    }

    /// Where to scan for `paths`: each path, or its highest ancestor that
    /// is not a folder both on disk and in the Local tree (a folder made or
    /// moved in is scanned whole; a folder turned into a file, from there).
    /// No root lies inside another.
    fn scan_roots(&self, paths: &[RelPath]) -> Result<Vec<RelPath>> {
        let mut roots = Vec::new();
        for path in paths {
            let mut chosen = path.clone();
            let mut ancestors: Vec<RelPath> = path.ancestors().collect();
            ancestors.reverse();
            for ancestor in ancestors {
                let known = matches!(self.db.local_entry(&ancestor)?, Some((_, Node::Dir)));
                let on_disk = std::fs::symlink_metadata(ancestor.to_fs(&self.root))
                    .is_ok_and(|meta| meta.is_dir());
                if !(known && on_disk) {
                    chosen = ancestor;
                    break;
                }
            }
            roots.push(chosen);
        }
        roots.sort();
        roots.dedup();
        let all: HashSet<RelPath> = roots.iter().cloned().collect();
        roots.retain(|root| !root.ancestors().any(|a| all.contains(&a)));
        Ok(roots)
    }
    /// After a sync: settles every unsettled path whose three trees agree
    /// now (or which the rules leave out), a page at a time.
    pub(super) fn settle(&mut self, rules: &IgnoreRules) -> Result<()> {
        self.db.settle_identical()?;
        let mut after: Option<String> = None;
        loop {
            let page = self.db.candidates_after(after.as_deref(), SETTLE_PAGE)?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = Some(last.path.as_str().to_owned());
            let agreed: Vec<(RelPath, i64)> = page
                .into_iter()
                .filter(|c| {
                    let l = kept(rules, &c.path, c.local.as_ref().map(|(_, node)| node));
                    let r = kept(rules, &c.path, c.remote.as_ref());
                    let s = kept(rules, &c.path, c.synced.as_ref());
                    same(l, r) && same(l, s)
                })
                .map(|c| (c.path, c.marks))
                .collect();
            self.db.settle(&agreed)?;
        }
    }
}

/// The node, unless `rules` leave the path out.
pub(super) fn kept<'a>(
    rules: &IgnoreRules,
    path: &RelPath,
    node: Option<&'a Node>,
) -> Option<&'a Node> {
    node.filter(|node| !rules.is_ignored(path, node.is_dir()))
}

/// The Local tree's changes from `previous` to a scan's outcome (which
/// covers the same paths).
fn changes(previous: &BTreeMap<RelPath, LocalEntry>, outcome: &ScanOutcome) -> Vec<LocalChange> {
    let mut changes: Vec<LocalChange> = outcome
        .entries
        .iter()
        .filter(|(path, entry)| previous.get(*path) != Some(*entry))
        .map(|(path, entry)| (path.clone(), Some(entry.clone())))
        .collect();
    changes.extend(
        previous
            .keys()
            .filter(|path| !outcome.entries.contains_key(*path))
            .map(|path| (path.clone(), None)),
    );
    changes
}

/// Adds a scan's and the rules' problems to `report`, each once.
fn note_problems(report: &mut SyncReport, problems: &[String], rules: &mut IgnoreRules) {
    for problem in problems
        .iter()
        .cloned()
        .chain(std::mem::take(&mut rules.problems))
    {
        if !report.problems.contains(&problem) {
            report.problems.push(problem);
        }
    }
}
