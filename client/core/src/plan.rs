//! The planner: a pure function of the three trees.
//!
//! For each path, with L (local), R (remote) and S (synced):
//!
//! | case | operation |
//! |---|---|
//! | L = R | agree (record as synced if S differs) |
//! | L = S ≠ R | the remote changed: download R, or delete locally |
//! | R = S ≠ L | the local side changed: upload L, or delete remotely |
//! | L ≠ R, both ≠ S, one absent | a delete against an edit: the edit wins |
//! | L ≠ R, both ≠ S, both present | conflict: R takes the path, L moves to a conflicted copy |
//!
//! Then: a kept path keeps its ancestors (a remote delete of a folder
//! that gained a local file re-creates the folder, and vice versa), and a
//! remote delete paired with a remote add of the same content becomes a
//! local rename instead of a download.

use std::collections::{BTreeMap, HashMap};

use crate::node::{BlockRef, Node, same};
use crate::path::RelPath;

/// One step of a sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Both sides already hold this (`None`: both lack it); record it.
    Agree {
        /// The path.
        path: RelPath,
        /// What both hold.
        node: Option<Node>,
    },
    /// Bring the remote node to disk, creating or replacing.
    Download {
        /// The path.
        path: RelPath,
        /// The remote node.
        node: Node,
    },
    /// Remove the path from disk: the remote side deleted it.
    DeleteLocal {
        /// The path.
        path: RelPath,
    },
    /// The remote side renamed a file whose content is on disk at `from`.
    RenameLocal {
        /// The old path.
        from: RelPath,
        /// The new path.
        to: RelPath,
        /// The remote node at `to`.
        node: Node,
    },
    /// Both sides changed the path: move the local version to a conflicted
    /// copy (which later syncs as a new file), then download the remote one.
    Conflict {
        /// The path.
        path: RelPath,
        /// The remote node.
        node: Node,
    },
    /// Send the local node to the remote side.
    Upload {
        /// The path.
        path: RelPath,
        /// The local node.
        node: Node,
    },
    /// Delete the path remotely: the local side deleted it.
    DeleteRemote {
        /// The path.
        path: RelPath,
    },
}

impl Op {
    /// The path the operation is about (the target for renames).
    pub fn path(&self) -> &RelPath {
        match self {
            Op::Agree { path, .. }
            | Op::Download { path, .. }
            | Op::DeleteLocal { path }
            | Op::Conflict { path, .. }
            | Op::Upload { path, .. }
            | Op::DeleteRemote { path } => path,
            Op::RenameLocal { to, .. } => to,
        }
    }

    /// Whether it changes the remote side (and so goes into a commit).
    pub fn is_push(&self) -> bool {
        matches!(self, Op::Upload { .. } | Op::DeleteRemote { .. })
    }
}

/// Plans a sync of the three trees. Remote-side operations come first,
/// parents before children, then local deletes children first, then the
/// operations that push.
pub fn plan(
    local: &BTreeMap<RelPath, Node>,
    remote: &BTreeMap<RelPath, Node>,
    synced: &BTreeMap<RelPath, Node>,
) -> Vec<Op> {
    plan_with(local, remote, synced, None)
}

/// Renames paired over every slice of a plan, and where each is made.
pub type SlicedRenames<'a> = (&'a Renames, &'a dyn Fn(&RelPath, &RelPath) -> Site);

/// Plans like [`plan`] over part of the paths (a slice of a large plan),
/// with `renames` paired over all of them when given: a local delete and
/// a download of the same content that fall in different slices are
/// still one rename, made where its [`Site`] says.
pub fn plan_with(
    local: &BTreeMap<RelPath, Node>,
    remote: &BTreeMap<RelPath, Node>,
    synced: &BTreeMap<RelPath, Node>,
    renames: Option<SlicedRenames<'_>>,
) -> Vec<Op> {
    let mut paths: Vec<&RelPath> = local
        .keys()
        .chain(remote.keys())
        .chain(synced.keys())
        .collect();
    paths.sort();
    paths.dedup();

    let mut ops: BTreeMap<RelPath, Op> = BTreeMap::new();
    for path in paths {
        let (l, r, s) = (local.get(path), remote.get(path), synced.get(path));
        if let Some(op) = decide(path, l, r, s) {
            ops.insert(op.path().clone(), op);
        }
    }

    keep_ancestors(&mut ops);
    let ops = match renames {
        Some((renames, site)) => renames.apply(ops, site),
        None => pair_renames(ops, local),
    };
    order(ops)
}

/// One path's operation, from its three nodes alone (before a kept path
/// keeps its ancestors and renames are paired).
pub fn decide(path: &RelPath, l: Option<&Node>, r: Option<&Node>, s: Option<&Node>) -> Option<Op> {
    let path = path.clone();
    if same(l, r) {
        (!same(s, l)).then(|| Op::Agree {
            path,
            node: l.cloned(),
        })
    } else if same(l, s) {
        Some(match r {
            Some(r) => Op::Download {
                path,
                node: r.clone(),
            },
            None => Op::DeleteLocal { path },
        })
    } else if same(r, s) {
        Some(match l {
            Some(l) => Op::Upload {
                path,
                node: l.clone(),
            },
            None => Op::DeleteRemote { path },
        })
    } else {
        match (l, r) {
            (None, Some(r)) => Some(Op::Download {
                path,
                node: r.clone(),
            }),
            (Some(l), None) => Some(Op::Upload {
                path,
                node: l.clone(),
            }),
            (Some(_), Some(r)) => Some(Op::Conflict {
                path,
                node: r.clone(),
            }),
            (None, None) => unreachable!("absent on both sides is the same"),
        }
    }
}

/// Whether a plan made in slices may put what lies under a path in a
/// later slice than the path, given the path's own operation (from
/// [`decide`]): only when that leaves a folder on both sides, or changes
/// nothing. Nothing under such a path changes its operation
/// (`keep_ancestors`), and nothing under it needs its operation done
/// after theirs. A path that turns a folder into a file, is deleted, or
/// conflicts is planned with everything under it.
pub fn may_split_below(op: Option<&Op>) -> bool {
    matches!(
        op,
        None | Some(Op::Agree { .. })
            | Some(Op::Upload {
                node: Node::Dir,
                ..
            })
            | Some(Op::Download {
                node: Node::Dir,
                ..
            })
    )
}

/// A path that stays keeps its ancestors on both sides, as folders.
///
/// When one side turned an ancestor folder into a file while the other
/// side kept (or added) something inside it, the ancestor is a conflict:
/// the remote side takes the path and the local version moves to a
/// conflicted copy, so the kept content survives on both sides.
fn keep_ancestors(ops: &mut BTreeMap<RelPath, Op>) {
    // (path, kept on the remote side, kept on the local side)
    let kept: Vec<(RelPath, bool, bool)> = ops
        .values()
        .filter_map(|op| match op {
            Op::Upload { .. } => Some((op.path().clone(), false, true)),
            Op::Download { .. } => Some((op.path().clone(), true, false)),
            Op::Conflict { .. } | Op::Agree { node: Some(_), .. } => {
                Some((op.path().clone(), true, true))
            }
            _ => None,
        })
        .collect();
    for (path, remote_kept, local_kept) in kept {
        for ancestor in path.ancestors() {
            match ops.get(&ancestor) {
                Some(Op::Upload { node, .. }) if remote_kept && !node.is_dir() => {
                    ops.insert(
                        ancestor.clone(),
                        Op::Conflict {
                            path: ancestor,
                            node: Node::Dir,
                        },
                    );
                }
                Some(Op::Download { node, .. }) if local_kept && !node.is_dir() => {
                    let node = node.clone();
                    ops.insert(
                        ancestor.clone(),
                        Op::Conflict {
                            path: ancestor,
                            node,
                        },
                    );
                }
                Some(Op::DeleteLocal { .. }) => {
                    ops.insert(
                        ancestor.clone(),
                        Op::Upload {
                            path: ancestor,
                            node: Node::Dir,
                        },
                    );
                }
                Some(Op::DeleteRemote { .. }) => {
                    ops.insert(
                        ancestor.clone(),
                        Op::Download {
                            path: ancestor,
                            node: Node::Dir,
                        },
                    );
                }
                _ => {}
            }
        }
    }
}

/// Turns a local delete plus a download of the same file content into a
/// rename: the bytes are already here.
fn pair_renames(ops: BTreeMap<RelPath, Op>, local: &BTreeMap<RelPath, Node>) -> Vec<Op> {
    let renames = Renames::pair(
        ops.values().filter_map(|op| match op {
            Op::DeleteLocal { path } => local.get(path).map(|node| (path.clone(), node.clone())),
            _ => None,
        }),
        ops.values().filter_map(|op| match op {
            Op::Download { path, node } if !local.contains_key(path) => {
                Some((path.clone(), node.clone()))
            }
            _ => None,
        }),
    );
    renames.apply(ops, &|_, _| Site::To)
}

/// Local deletes paired with downloads of the same file content: each
/// becomes one rename, as the bytes are already here.
#[derive(Debug, Default)]
pub struct Renames {
    /// The path renamed to, with the path renamed from.
    from_of: HashMap<RelPath, RelPath>,
    /// The path renamed from, with the path renamed to and its node.
    to_of: HashMap<RelPath, (RelPath, Node)>,
}

/// Where a plan made in slices makes a paired rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    /// Where the download was planned; the delete is dropped.
    To,
    /// Where the delete was planned; the download is not made.
    From,
    /// Nowhere: the delete and the download are made.
    Neither,
}

impl Renames {
    /// Pairs `deletes` (paths deleted locally, with their Local nodes) with
    /// `downloads` (paths new to the disk, with their Remote nodes), each
    /// in path order.
    pub fn pair(
        deletes: impl IntoIterator<Item = (RelPath, Node)>,
        downloads: impl IntoIterator<Item = (RelPath, Node)>,
    ) -> Self {
        let mut pairing = Pairing::of(deletes);
        if !pairing.is_empty() {
            for (path, node) in downloads {
                pairing.offer(path, &node);
            }
        }
        pairing.renames
    }

    /// Whether nothing is renamed.
    pub fn is_empty(&self) -> bool {
        self.from_of.is_empty()
    }

    /// The path renamed from, if `to` is renamed to.
    pub fn from_of(&self, to: &RelPath) -> Option<&RelPath> {
        self.from_of.get(to)
    }

    /// The path renamed to, if `from` is renamed from.
    pub fn to_of(&self, from: &RelPath) -> Option<&RelPath> {
        self.to_of.get(from).map(|(to, _)| to)
    }

    /// `ops` (in path order) with each paired download and delete turned
    /// into their rename where `site` (of the pair's from and to paths)
    /// says.
    fn apply(
        &self,
        ops: BTreeMap<RelPath, Op>,
        site: &dyn Fn(&RelPath, &RelPath) -> Site,
    ) -> Vec<Op> {
        let mut out = Vec::with_capacity(ops.len());
        for op in ops.into_values() {
            match op {
                Op::Download {
                    path,
                    node: node @ Node::File { .. },
                } => match self.from_of.get(&path) {
                    Some(from) if site(from, &path) == Site::To => out.push(Op::RenameLocal {
                        from: from.clone(),
                        to: path,
                        node,
                    }),
                    Some(from) if site(from, &path) == Site::From => {}
                    _ => out.push(Op::Download { path, node }),
                },
                Op::DeleteLocal { path } => match self.to_of.get(&path) {
                    Some((to, _)) if site(&path, to) == Site::To => {}
                    Some((to, node)) if site(&path, to) == Site::From => {
                        out.push(Op::RenameLocal {
                            from: path,
                            to: to.clone(),
                            node: node.clone(),
                        });
                    }
                    _ => out.push(Op::DeleteLocal { path }),
                },
                other => out.push(other),
            }
        }
        out
    }
}

/// Renames being paired: the local deletes, then the downloads offered
/// one at a time, in path order (see [`Renames::pair`]).
#[derive(Debug, Default)]
pub struct Pairing {
    // Keyed by mode too: a rename keeps the file's mode, so the one moved
    // must have the mode the new path's version names.
    by_content: HashMap<(u32, Vec<BlockRef>), Vec<RelPath>>,
    renames: Renames,
}

impl Pairing {
    /// Starts from `deletes`: paths deleted locally, with their Local
    /// nodes, in path order.
    pub fn of(deletes: impl IntoIterator<Item = (RelPath, Node)>) -> Self {
        let mut pairing = Self::default();
        for (path, node) in deletes {
            if let Node::File { blocks, .. } = &node
                && !blocks.is_empty()
            {
                pairing
                    .by_content
                    .entry((node.file_mode(), blocks.clone()))
                    .or_default()
                    .push(path);
            }
        }
        pairing
    }

    /// Whether no delete is left to pair.
    pub fn is_empty(&self) -> bool {
        self.by_content.is_empty()
    }

    /// Pairs a download of `node` to `path` (new to the disk) with a
    /// delete of the same content, if one is left.
    pub fn offer(&mut self, path: RelPath, node: &Node) {
        let Node::File { blocks, .. } = node else {
            return;
        };
        if let Some(from) = self
            .by_content
            .get_mut(&(node.file_mode(), blocks.clone()))
            .and_then(Vec::pop)
        {
            self.renames
                .to_of
                .insert(from.clone(), (path.clone(), node.clone()));
            self.renames.from_of.insert(path, from);
        }
    }

    /// The renames paired.
    pub fn done(self) -> Renames {
        self.renames
    }
}

/// Folders and renames first (parents before children), so that renamed
/// files leave folders about to be deleted; then local deletes, children
/// first; then files and links, which may replace a folder that the deletes
/// just emptied; then the operations that push.
/// A plan for a folder this device may only read (a viewer's shared
/// folder): nothing is pushed. A local edit of what the remote holds
/// becomes a conflict (the edit moves to a conflicted copy, which stays on
/// this device; the remote version comes back); a local delete is undone
/// (downloaded again); what exists only here stays here, not uploaded,
/// and is returned so the device can say so.
pub fn read_only(ops: Vec<Op>, remote: &BTreeMap<RelPath, Node>) -> (Vec<Op>, Vec<RelPath>) {
    let mut kept = Vec::new();
    let ops = ops
        .into_iter()
        .filter_map(|op| match op {
            Op::Upload { path, .. } => match remote.get(&path) {
                Some(node) => Some(Op::Conflict {
                    path,
                    node: node.clone(),
                }),
                None => {
                    kept.push(path);
                    None
                }
            },
            Op::DeleteRemote { path } => remote.get(&path).map(|node| Op::Download {
                path,
                node: node.clone(),
            }),
            other => Some(other),
        })
        .collect();
    (order(ops), kept)
}

fn order(mut ops: Vec<Op>) -> Vec<Op> {
    fn rank(op: &Op) -> u8 {
        match op {
            Op::Agree { .. }
            | Op::Conflict { .. }
            | Op::Download {
                node: Node::Dir, ..
            }
            | Op::RenameLocal { .. } => 0,
            Op::DeleteLocal { .. } => 1,
            Op::Download { .. } => 2,
            Op::Upload { .. } | Op::DeleteRemote { .. } => 3,
        }
    }
    ops.sort_by(|a, b| {
        rank(a).cmp(&rank(b)).then_with(|| {
            if rank(a) == 1 {
                b.path().cmp(a.path())
            } else {
                a.path().cmp(b.path())
            }
        })
    });
    ops
}

#[cfg(test)]
mod tests;
