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

use crate::node::{Node, same};
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
        let path = path.clone();
        let op = if same(l, r) {
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
        };
        if let Some(op) = op {
            ops.insert(op.path().clone(), op);
        }
    }

    keep_ancestors(&mut ops);
    let ops = pair_renames(ops, local);
    order(ops)
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
    // Keyed by mode too: a rename keeps the file's mode, so the one moved
    // must have the mode the new path's version names.
    let mut sources: HashMap<(u32, Vec<crate::node::BlockRef>), Vec<RelPath>> = HashMap::new();
    for op in ops.values() {
        if let Op::DeleteLocal { path } = op
            && let Some(node @ Node::File { blocks, .. }) = local.get(path)
            && !blocks.is_empty()
        {
            sources
                .entry((node.file_mode(), blocks.clone()))
                .or_default()
                .push(path.clone());
        }
    }
    let mut renamed_from = Vec::new();
    let mut out = Vec::with_capacity(ops.len());
    for (_, op) in ops {
        match op {
            Op::Download {
                path,
                node: node @ Node::File { .. },
            } if !local.contains_key(&path) => {
                let Node::File { blocks, .. } = &node else {
                    unreachable!()
                };
                match sources
                    .get_mut(&(node.file_mode(), blocks.clone()))
                    .and_then(Vec::pop)
                {
                    Some(from) => {
                        renamed_from.push(from.clone());
                        out.push(Op::RenameLocal {
                            from,
                            to: path,
                            node,
                        });
                    }
                    None => out.push(Op::Download { path, node }),
                }
            }
            other => out.push(other),
        }
    }
    out.retain(|op| !matches!(op, Op::DeleteLocal { path } if renamed_from.contains(path)));
    out
}

/// Folders and renames first (parents before children), so that renamed
/// files leave folders about to be deleted; then local deletes, children
/// first; then files and links, which may replace a folder that the deletes
/// just emptied; then the operations that push.
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
