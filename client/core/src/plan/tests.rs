//! Table tests of the planner: one row per case.

use super::*;
use crate::node::BlockRef;
use pouch_backend::BlockId;

fn p(s: &str) -> RelPath {
    RelPath::parse(s).unwrap()
}

fn file(content: &str) -> Node {
    Node::File {
        size: content.len() as u64,
        mtime_ns: 0,
        exec: false,
        mode: None,
        blocks: vec![BlockRef {
            id: BlockId::of(content.as_bytes()),
            len: content.len() as u32,
        }],
    }
}

fn with(node: &Node, edit: impl FnOnce(&mut bool, &mut i64)) -> Node {
    let mut node = node.clone();
    if let Node::File { exec, mtime_ns, .. } = &mut node {
        edit(exec, mtime_ns);
    }
    node
}

type Entries = Vec<(&'static str, Node)>;

fn tree(entries: &Entries) -> BTreeMap<RelPath, Node> {
    entries.iter().map(|(k, v)| (p(k), v.clone())).collect()
}

fn up(path: &str, node: &Node) -> Op {
    Op::Upload {
        path: p(path),
        node: node.clone(),
    }
}
fn down(path: &str, node: &Node) -> Op {
    Op::Download {
        path: p(path),
        node: node.clone(),
    }
}
fn agree(path: &str, node: Option<&Node>) -> Op {
    Op::Agree {
        path: p(path),
        node: node.cloned(),
    }
}
fn conflict(path: &str, node: &Node) -> Op {
    Op::Conflict {
        path: p(path),
        node: node.clone(),
    }
}
fn del_local(path: &str) -> Op {
    Op::DeleteLocal { path: p(path) }
}
fn del_remote(path: &str) -> Op {
    Op::DeleteRemote { path: p(path) }
}

#[test]
fn planner_table() {
    let a = &file("a");
    let b = &file("b");
    let c = &file("c");
    let a_exec = &with(a, |exec, _| *exec = true);
    let a_touched = &with(a, |_, mtime| *mtime = 99);
    let link = &Node::Symlink { target: "a".into() };
    let dir = &Node::Dir;
    // (name, local, remote, synced, expected operations)
    let cases: Vec<(&str, Entries, Entries, Entries, Vec<Op>)> = vec![
        ("nothing anywhere", vec![], vec![], vec![], vec![]),
        (
            "all equal",
            vec![("f", a.clone())],
            vec![("f", a.clone())],
            vec![("f", a.clone())],
            vec![],
        ),
        (
            "local add",
            vec![("f", a.clone())],
            vec![],
            vec![],
            vec![up("f", a)],
        ),
        (
            "remote add",
            vec![],
            vec![("f", a.clone())],
            vec![],
            vec![down("f", a)],
        ),
        (
            "both add the same",
            vec![("f", a.clone())],
            vec![("f", a.clone())],
            vec![],
            vec![agree("f", Some(a))],
        ),
        (
            "both add different: conflict",
            vec![("f", a.clone())],
            vec![("f", b.clone())],
            vec![],
            vec![conflict("f", b)],
        ),
        (
            "local modify",
            vec![("f", b.clone())],
            vec![("f", a.clone())],
            vec![("f", a.clone())],
            vec![up("f", b)],
        ),
        (
            "remote modify",
            vec![("f", a.clone())],
            vec![("f", b.clone())],
            vec![("f", a.clone())],
            vec![down("f", b)],
        ),
        (
            "both modify alike",
            vec![("f", b.clone())],
            vec![("f", b.clone())],
            vec![("f", a.clone())],
            vec![agree("f", Some(b))],
        ),
        (
            "both modify differently: conflict",
            vec![("f", b.clone())],
            vec![("f", c.clone())],
            vec![("f", a.clone())],
            vec![conflict("f", c)],
        ),
        (
            "local delete",
            vec![],
            vec![("f", a.clone())],
            vec![("f", a.clone())],
            vec![del_remote("f")],
        ),
        (
            "remote delete",
            vec![("f", a.clone())],
            vec![],
            vec![("f", a.clone())],
            vec![del_local("f")],
        ),
        (
            "both delete",
            vec![],
            vec![],
            vec![("f", a.clone())],
            vec![agree("f", None)],
        ),
        (
            "local delete vs remote edit: edit wins",
            vec![],
            vec![("f", b.clone())],
            vec![("f", a.clone())],
            vec![down("f", b)],
        ),
        (
            "remote delete vs local edit: edit wins",
            vec![("f", b.clone())],
            vec![],
            vec![("f", a.clone())],
            vec![up("f", b)],
        ),
        (
            "mtime-only change is no change",
            vec![("f", a_touched.clone())],
            vec![("f", a.clone())],
            vec![("f", a.clone())],
            vec![],
        ),
        (
            "exec bit change uploads",
            vec![("f", a_exec.clone())],
            vec![("f", a.clone())],
            vec![("f", a.clone())],
            vec![up("f", a_exec)],
        ),
        (
            "local file becomes a folder",
            vec![("x", dir.clone()), ("x/f", a.clone())],
            vec![("x", a.clone())],
            vec![("x", a.clone())],
            vec![up("x", dir), up("x/f", a)],
        ),
        (
            "remote folder becomes a file",
            vec![("x", dir.clone())],
            vec![("x", b.clone())],
            vec![("x", dir.clone())],
            vec![down("x", b)],
        ),
        (
            "file vs folder: conflict",
            vec![("x", a.clone())],
            vec![("x", dir.clone())],
            vec![],
            vec![conflict("x", dir)],
        ),
        (
            "remote symlink",
            vec![],
            vec![("l", link.clone())],
            vec![],
            vec![down("l", link)],
        ),
        (
            "remote rename becomes a local rename",
            vec![("old", a.clone())],
            vec![("new", a.clone())],
            vec![("old", a.clone())],
            vec![Op::RenameLocal {
                from: p("old"),
                to: p("new"),
                node: a.clone(),
            }],
        ),
        (
            "local rename pushes an add and a delete",
            vec![("new", a.clone())],
            vec![("old", a.clone())],
            vec![("old", a.clone())],
            vec![up("new", a), del_remote("old")],
        ),
        (
            "remote folder delete: children first",
            vec![("d", dir.clone()), ("d/f", a.clone()), ("d/e", dir.clone())],
            vec![],
            vec![("d", dir.clone()), ("d/f", a.clone()), ("d/e", dir.clone())],
            vec![del_local("d/f"), del_local("d/e"), del_local("d")],
        ),
        (
            "remote folder delete keeps a folder with a new local file",
            vec![("d", dir.clone()), ("d/new", b.clone())],
            vec![],
            vec![("d", dir.clone())],
            vec![up("d", dir), up("d/new", b)],
        ),
        (
            "local folder delete keeps a folder with a new remote file",
            vec![],
            vec![("d", dir.clone()), ("d/new", b.clone())],
            vec![("d", dir.clone())],
            vec![down("d", dir), down("d/new", b)],
        ),
        (
            "local folder becomes a file while the remote side edits inside: conflict",
            vec![("d", b.clone())],
            vec![("d", dir.clone()), ("d/f", c.clone())],
            vec![("d", dir.clone()), ("d/f", a.clone())],
            vec![conflict("d", dir), down("d/f", c)],
        ),
        (
            "remote folder becomes a file while a local file is added inside: conflict",
            vec![("d", dir.clone()), ("d/new", c.clone())],
            vec![("d", b.clone())],
            vec![("d", dir.clone())],
            vec![conflict("d", b), up("d/new", c)],
        ),
        (
            "remote folder becomes a file: its children go before it arrives",
            vec![("d", dir.clone()), ("d/f", a.clone())],
            vec![("d", b.clone())],
            vec![("d", dir.clone()), ("d/f", a.clone())],
            vec![del_local("d/f"), down("d", b)],
        ),
        (
            "nested adds come parents first",
            vec![],
            vec![
                ("a", dir.clone()),
                ("a/b", dir.clone()),
                ("a/b/c", c.clone()),
            ],
            vec![],
            vec![down("a", dir), down("a/b", dir), down("a/b/c", c)],
        ),
    ];
    for (name, local, remote, synced, want) in cases {
        let got = plan(&tree(&local), &tree(&remote), &tree(&synced));
        assert_eq!(got, want, "case: {name}");
    }
}

#[test]
fn a_read_only_plan_pushes_nothing_and_loses_nothing() {
    // edited here; deleted here; new here; changed remotely.
    let local = BTreeMap::from([
        (p("edited"), file("two")),
        (p("new"), file("three")),
        (p("theirs"), file("four")),
    ]);
    let remote = BTreeMap::from([
        (p("edited"), file("one")),
        (p("gone"), file("one")),
        (p("theirs"), file("five")),
    ]);
    let synced = BTreeMap::from([
        (p("edited"), file("one")),
        (p("gone"), file("one")),
        (p("theirs"), file("four")),
    ]);
    let (ops, kept) = read_only(plan(&local, &remote, &synced), &remote);
    assert!(ops.iter().all(|op| !op.is_push()), "{ops:?}");
    assert_eq!(kept, [p("new")]);
    assert!(
        ops.contains(&Op::Conflict {
            path: p("edited"),
            node: file("one")
        }),
        "{ops:?}"
    );
    assert!(
        ops.contains(&Op::Download {
            path: p("gone"),
            node: file("one")
        }),
        "{ops:?}"
    );
    assert!(
        ops.contains(&Op::Download {
            path: p("theirs"),
            node: file("five")
        }),
        "{ops:?}"
    );
}
