//! Plans made a slice at a time: a sync reads the unsettled paths in path
//! order, some thousands at a time, and plans, applies and pushes each
//! slice before it reads the next, so its memory is that of a slice, not
//! of the change (a first sync of a million files, a new device).
//!
//! What one path's plan depends on beyond its own three rows is made to
//! hold across slices:
//! - A path whose operation does not leave a folder on both sides (a
//!   folder turned into a file, a delete, a conflict) is planned with
//!   everything under it (`plan::may_split_below`): `keep_ancestors`
//!   sees the whole subtree, local deletes go children first, and a file
//!   replacing a folder comes after the deletes that empty it.
//! - Renames are paired over all the unsettled paths first (only when the
//!   plan has local deletes: `Pairing`), so a file moved between folders
//!   that fall in different slices is still renamed, not fetched
//!   (`rename_sites` says in which slice).
//! - The push decides what it holds back (mass-delete guard, the
//!   daemon's new deletes) over all of it before it sends anything, and
//!   each slice's push is whole commits whose tree is whole (folders come
//!   in earlier or the same slices as what is in them).
//!
//! A plan of one slice (nearly every sync) is read and planned once, as
//! before slicing; a plan of several is planned once more for the push's
//! decisions.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use super::Engine;
use super::scan_plan::kept;
use crate::Result;
use crate::fsops::unchanged;
use crate::ignore_rules::IgnoreRules;
use crate::local::LocalEntry;
use crate::node::Node;
use crate::path::RelPath;
use crate::plan::{Op, Pairing, Renames, Site, decide, may_split_below, plan_with};
use crate::progress::Phase;
use crate::report::SyncReport;
use crate::state::{Candidate, LocalState, Unsettled};

/// Unsettled paths planned together, unless a subtree must stay whole.
pub const PLAN_SLICE: usize = 10_000;
/// Unsettled paths read from the local state at once.
const READ_PAGE: usize = 1024;

/// One slice's plan.
pub(super) struct Planned {
    /// The Local entries of its paths (and of the paths its renames move
    /// from).
    pub local: BTreeMap<RelPath, LocalEntry>,
    /// What to do.
    pub ops: Vec<Op>,
    /// Its paths the Remote tree lacks.
    pub new_paths: HashSet<RelPath>,
    /// In a folder this device may only read: what exists only here and
    /// stays here, not uploaded.
    pub kept: Vec<RelPath>,
}

/// Reads the unsettled paths a slice at a time, in path order.
pub(super) struct Slicer {
    size: usize,
    /// The last path handed on.
    after: Option<String>,
    done: bool,
}

impl Slicer {
    pub(super) fn new(size: usize) -> Self {
        Self {
            size: size.max(1),
            after: None,
            done: false,
        }
    }

    /// Whether every unsettled path was handed on.
    pub(super) fn done(&self) -> bool {
        self.done
    }

    /// The next slice: at least `size` paths unless the last, more when
    /// a path that may not be split from what is under it (see the
    /// module's doc) would be cut from it. `None` once all are handed on.
    pub(super) fn next(
        &mut self,
        db: &LocalState,
        rules: &IgnoreRules,
    ) -> Result<Option<Vec<Candidate>>> {
        if self.done {
            return Ok(None);
        }
        let mut slice: Vec<Candidate> = Vec::new();
        // Paths under a path of this slice that must stay with it sort
        // before this.
        let mut whole_until: Option<String> = None;
        loop {
            let page = db.candidates_after(self.after.as_deref(), READ_PAGE)?;
            let last_page = page.len() < READ_PAGE;
            for candidate in page {
                let path = candidate.path.as_str();
                if slice.len() >= self.size && whole_until.as_deref().is_none_or(|end| path >= end)
                {
                    return Ok(Some(slice));
                }
                let (l, r, s) = nodes(rules, &candidate);
                if !may_split_below(decide(&candidate.path, l, r, s).as_ref()) {
                    // Everything under `p/` sorts before "p0": '0' is the
                    // byte after '/'.
                    let end = format!("{path}0");
                    if whole_until.as_ref().is_none_or(|until| end > *until) {
                        whole_until = Some(end);
                    }
                }
                self.after = Some(path.to_owned());
                slice.push(candidate);
            }
            if last_page {
                self.done = true;
                return Ok((!slice.is_empty()).then_some(slice));
            }
        }
    }
}

/// A candidate's three nodes, each unless the rules leave it out.
fn nodes<'a>(
    rules: &IgnoreRules,
    c: &'a Candidate,
) -> (Option<&'a Node>, Option<&'a Node>, Option<&'a Node>) {
    (
        kept(rules, &c.path, c.local.as_ref().map(|(_, node)| node)),
        kept(rules, &c.path, c.remote.as_ref()),
        kept(rules, &c.path, c.synced.as_ref()),
    )
}

/// Plans one slice, leaving ignored paths out of all three trees (an
/// ignored path is neither sent, nor fetched, nor deleted), with
/// `renames` paired over every slice when given.
pub(super) fn plan_slice(
    db: &LocalState,
    root: &Path,
    slice: Vec<Candidate>,
    rules: &IgnoreRules,
    renames: Option<&Renames>,
    read_only: bool,
) -> Result<Planned> {
    let sites = match renames {
        Some(renames) if !renames.is_empty() => rename_sites(db, root, &slice, rules, renames)?,
        _ => HashMap::new(),
    };
    let mut local = BTreeMap::new();
    let mut local_nodes = BTreeMap::new();
    let mut remote = BTreeMap::new();
    let mut synced = BTreeMap::new();
    let mut new_paths = HashSet::new();
    for candidate in slice {
        let path = candidate.path;
        if let Some(entry) = candidate.local
            && kept(rules, &path, Some(&entry.1)).is_some()
        {
            local_nodes.insert(path.clone(), entry.1.clone());
            local.insert(path.clone(), entry);
        }
        match candidate.remote {
            Some(node) if kept(rules, &path, Some(&node)).is_some() => {
                remote.insert(path.clone(), node);
            }
            _ => {
                new_paths.insert(path.clone());
            }
        }
        if let Some(node) = candidate.synced
            && kept(rules, &path, Some(&node)).is_some()
        {
            synced.insert(path, node);
        }
    }
    let site = |from: &RelPath, _: &RelPath| sites.get(from).copied().unwrap_or(Site::To);
    let ops = plan_with(
        &local_nodes,
        &remote,
        &synced,
        renames.map(|renames| (renames, &site as &dyn Fn(&RelPath, &RelPath) -> Site)),
    );
    let (ops, kept) = if read_only {
        crate::plan::read_only(ops, &remote)
    } else {
        (ops, Vec::new())
    };
    // A rename may move a file from a path of another slice: the apply
    // checks it against its Local entry.
    for op in &ops {
        if let Op::RenameLocal { from, .. } = op
            && !local.contains_key(from)
            && let Some(entry) = db.local_entry(from)?
        {
            local.insert(from.clone(), entry);
        }
    }
    Ok(Planned {
        local,
        ops,
        new_paths,
        kept,
    })
}

/// Where `slice` makes the renames one of whose paths it holds (see
/// [`Site`]), by the path renamed from. Within the slice, as an unsliced
/// plan does. Across slices, in the first slice reached, so that it comes
/// before the rest of that slice: from there to a path whose folders need
/// nothing but making (a folder download finds the folder the rename
/// made); otherwise where the file goes, if nothing in its slice moves
/// the folder it leaves; otherwise not at all (deleted and downloaded).
/// The later slice renames only if the file is still where it was, as
/// recorded (a conflict may have moved its folder aside meanwhile).
fn rename_sites(
    db: &LocalState,
    root: &Path,
    slice: &[Candidate],
    rules: &IgnoreRules,
    renames: &Renames,
) -> Result<HashMap<RelPath, Site>> {
    let here: HashSet<&RelPath> = slice.iter().map(|c| &c.path).collect();
    let split_here: HashSet<&RelPath> = slice
        .iter()
        .filter(|c| {
            let (l, r, s) = nodes(rules, c);
            !may_split_below(decide(&c.path, l, r, s).as_ref())
        })
        .map(|c| &c.path)
        .collect();
    let mut sites = HashMap::new();
    for path in &here {
        if let Some(from) = renames.from_of(path) {
            let still_there = || -> Result<bool> {
                Ok(match db.local_entry(from)? {
                    Some((stat, _)) => unchanged(&from.to_fs(root), Some(&stat))?,
                    None => false,
                })
            };
            let site = if here.contains(from) || from > path || still_there()? {
                Site::To
            } else {
                Site::Neither
            };
            sites.insert(from.clone(), site);
        }
        if let Some(to) = renames.to_of(path) {
            let site = if here.contains(to) || to < path {
                Site::To
            } else if folders_need_only_making(db, rules, to)? {
                Site::From
            } else if !path.ancestors().any(|a| split_here.contains(&a)) {
                Site::To
            } else {
                Site::Neither
            };
            sites.insert((*path).clone(), site);
        }
    }
    Ok(sites)
}

/// Whether every folder above `path` is a folder on disk or nothing, and
/// will be a folder, with nothing else planned there: making it is all a
/// file put inside needs (not replacing a file there first).
fn folders_need_only_making(db: &LocalState, rules: &IgnoreRules, path: &RelPath) -> Result<bool> {
    let above: Vec<RelPath> = path.ancestors().collect();
    Ok(db.candidates_of(&above)?.iter().all(|c| {
        let (l, r, s) = nodes(rules, c);
        l.is_none_or(Node::is_dir) && may_split_below(decide(&c.path, l, r, s).as_ref())
    }))
}

/// Renames paired over every unsettled path: the local deletes first
/// (SQLite hands on only paths the Remote tree lacks), then, if there are
/// any, the downloads of paths new to the disk.
fn renames_over_all(db: &LocalState, rules: &IgnoreRules) -> Result<Renames> {
    let mut deletes = Vec::new();
    db.each_candidate_where(Unsettled::GoneRemotely, |c| {
        let (l, r, s) = nodes(rules, &c);
        if let (Some(Op::DeleteLocal { .. }), Some(node)) = (decide(&c.path, l, r, s), l) {
            deletes.push((c.path.clone(), node.clone()));
        }
        Ok(())
    })?;
    let mut pairing = Pairing::of(deletes);
    if pairing.is_empty() {
        return Ok(Renames::default());
    }
    db.each_candidate_where(Unsettled::NewRemotely, |c| {
        let (l, r, s) = nodes(rules, &c);
        if let Some(Op::Download { path, node }) = decide(&c.path, l, r, s) {
            pairing.offer(path, &node);
        }
        Ok(())
    })?;
    Ok(pairing.done())
}

impl Engine {
    /// Plans the unsettled paths a slice at a time and runs each slice's
    /// operations that change the disk.
    pub(super) async fn apply_planned(
        &mut self,
        rules: &IgnoreRules,
        report: &mut SyncReport,
    ) -> Result<()> {
        if !self.read_only && !self.db.remote_changed()? {
            // A first sync's upload, a local edit: nothing to plan here
            // (where nothing is pushed, a local edit is undone here).
            return Ok(());
        }
        let mut slicer = Slicer::new(self.plan_slice);
        let mut next = slicer.next(&self.db, rules)?;
        let renames = if slicer.done() {
            None
        } else {
            let renames = renames_over_all(&self.db, rules)?;
            // One progress over every slice.
            let (mut files, mut bytes) = (0, 0);
            self.each_planned_slice(rules, Some(&renames), |planned| {
                let (f, b) = super::apply::download_totals(&planned.ops);
                (files, bytes) = (files + f, bytes + b);
                Ok(())
            })?;
            if bytes > 0 {
                self.progress.phase(Phase::Downloading, files, bytes);
            }
            Some(renames)
        };
        while let Some(slice) = next {
            let planned = plan_slice(
                &self.db,
                &self.root,
                slice,
                rules,
                renames.as_ref(),
                self.read_only,
            )?;
            for path in &planned.kept {
                report.problems.push(format!(
                    "{path}: kept on this device only: this account may only view this shared folder"
                ));
                report.kept_here.push(path.to_string());
            }
            self.apply(
                planned.ops.into_iter().filter(|op| !op.is_push()),
                &planned.local,
                report,
                renames.is_none(),
            )
            .await?;
            next = slicer.next(&self.db, rules)?;
        }
        Ok(())
    }

    /// Plans the unsettled paths a slice at a time, records each slice's
    /// agreements and pushes its changes, holding back what the push's
    /// rules say over all of them.
    pub(super) async fn push_planned(
        &mut self,
        rules: &IgnoreRules,
        options: &super::SyncOptions,
        report: &mut SyncReport,
    ) -> Result<()> {
        let mut slicer = Slicer::new(self.plan_slice);
        let first = slicer.next(&self.db, rules)?;
        let Some(first) = first else {
            let holds = self.holds(HashSet::new(), |_| Ok(HashSet::new()), options, report)?;
            return self.after_push(holds, report);
        };
        if slicer.done() {
            // One slice: planned once.
            let planned = plan_slice(&self.db, &self.root, first, rules, None, self.read_only)?;
            let deletes = planned
                .ops
                .iter()
                .filter_map(|op| match op {
                    Op::DeleteRemote { path } => Some(path.clone()),
                    _ => None,
                })
                .collect();
            let new_paths = |_: &Self| Ok(new_uploads(&planned));
            let holds = self.holds(deletes, new_paths, options, report)?;
            self.push_slice(planned, &holds, report, true).await?;
            return self.after_push(holds, report);
        }
        drop(first);
        // Several: what the push holds back is decided over all of it.
        let mut deletes = HashSet::new();
        let (mut files, mut bytes) = (0, 0);
        self.each_planned_slice(rules, None, |planned| {
            let (f, b) = super::push::upload_totals(&planned.ops);
            (files, bytes) = (files + f, bytes + b);
            deletes.extend(planned.ops.into_iter().filter_map(|op| match op {
                Op::DeleteRemote { path } => Some(path),
                _ => None,
            }));
            Ok(())
        })?;
        let new_paths = |engine: &Self| {
            let mut new_paths = HashSet::new();
            engine.each_planned_slice(rules, None, |planned| {
                new_paths.extend(new_uploads(&planned));
                Ok(())
            })?;
            Ok(new_paths)
        };
        let holds = self.holds(deletes, new_paths, options, report)?;
        if files > 0 {
            self.progress.phase(Phase::Uploading, files, bytes);
        }
        let mut slicer = Slicer::new(self.plan_slice);
        while let Some(slice) = slicer.next(&self.db, rules)? {
            let planned = plan_slice(&self.db, &self.root, slice, rules, None, self.read_only)?;
            self.push_slice(planned, &holds, report, false).await?;
        }
        self.after_push(holds, report)
    }

    /// Records a slice's agreements and pushes its changes but what
    /// `holds` keeps back.
    async fn push_slice(
        &mut self,
        planned: Planned,
        holds: &super::push::Holds,
        report: &mut SyncReport,
        announce: bool,
    ) -> Result<()> {
        let (mut push, rest): (Vec<Op>, Vec<Op>) = planned.ops.into_iter().partition(Op::is_push);
        // Only agreements are safe to act on without a fresh pull.
        let agreements = rest.into_iter().filter(|op| matches!(op, Op::Agree { .. }));
        self.apply(agreements, &planned.local, report, false)
            .await?;
        holds.filter(&mut push);
        self.push_ops(push, &planned.local, report, announce).await
    }

    /// Counts what the unsettled paths' plans would do, a slice at a time
    /// and with renames paired as the apply pairs them; changes nothing.
    pub(super) fn count_planned(&self, rules: &IgnoreRules) -> Result<Pending> {
        let mut pending = Pending::default();
        let mut slicer = Slicer::new(self.plan_slice);
        let Some(first) = slicer.next(&self.db, rules)? else {
            return Ok(pending);
        };
        if slicer.done() {
            let planned = plan_slice(&self.db, &self.root, first, rules, None, self.read_only)?;
            pending.count(&planned.ops, &mut HashSet::new());
            pending.kept_here = planned.kept;
            return Ok(pending);
        }
        drop(first);
        let renames = renames_over_all(&self.db, rules)?;
        // A rename the earlier slice would make (`Site::From`) the later
        // one finds made when applying; planned without applying, it
        // plans it again.
        let mut renamed = HashSet::new();
        self.each_planned_slice(rules, Some(&renames), |planned| {
            pending.count(&planned.ops, &mut renamed);
            pending.kept_here.extend(planned.kept);
            Ok(())
        })?;
        Ok(pending)
    }

    /// Plans every slice in turn, handing each plan to `each`; changes
    /// nothing.
    fn each_planned_slice(
        &self,
        rules: &IgnoreRules,
        renames: Option<&Renames>,
        mut each: impl FnMut(Planned) -> Result<()>,
    ) -> Result<()> {
        let mut slicer = Slicer::new(self.plan_slice);
        while let Some(slice) = slicer.next(&self.db, rules)? {
            each(plan_slice(
                &self.db,
                &self.root,
                slice,
                rules,
                renames,
                self.read_only,
            )?)?;
        }
        Ok(())
    }
}

/// What a sync would do, counted (`pouch status`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Files, folders and links to send.
    pub upload: usize,
    /// Deletes to send.
    pub delete_remote: usize,
    /// Paths to bring to the disk (renames among them).
    pub download: usize,
    /// Paths to delete from the disk.
    pub delete_local: usize,
    /// Paths changed on both sides.
    pub conflicts: usize,
    /// In a folder this device may only read: paths that exist only here
    /// and stay here (never uploaded).
    pub kept_here: Vec<RelPath>,
}

impl Pending {
    /// Counts `ops`, each rename once (`renamed`: the renames' targets
    /// counted so far).
    fn count(&mut self, ops: &[Op], renamed: &mut HashSet<RelPath>) {
        for op in ops {
            match op {
                Op::Upload { .. } => self.upload += 1,
                Op::DeleteRemote { .. } => self.delete_remote += 1,
                Op::Download { .. } => self.download += 1,
                Op::RenameLocal { to, .. } if renamed.insert(to.clone()) => self.download += 1,
                Op::DeleteLocal { .. } => self.delete_local += 1,
                Op::Conflict { .. } => self.conflicts += 1,
                _ => {}
            }
        }
    }
}

/// The paths a plan uploads that the Remote tree lacks.
fn new_uploads(planned: &Planned) -> HashSet<RelPath> {
    planned
        .ops
        .iter()
        .filter_map(|op| match op {
            Op::Upload { path, .. } if planned.new_paths.contains(path) => Some(path.clone()),
            _ => None,
        })
        .collect()
}
