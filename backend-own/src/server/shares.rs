//! Shared folders (Dropbox's model): a shared folder is a namespace of its
//! own, `share.` and 16 random hex digits, with members, each with a role.
//! Exactly one member is its owner (a unique index says so); editors write,
//! viewers only read. A member mounts it at a path of their home folder;
//! two mounts of one account never nest, so no shared folder is inside
//! another.
//!
//! Every decision is made here, on the server: the device only mirrors it
//! for its messages.

use pouch_backend::{Error, Result};
use rusqlite::{OptionalExtension, params};

use super::accounts::{Accounts, db_error, hex, home_namespace, now, random_bytes};

/// What a member may do in a namespace. Ordered: each role may do what
/// the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads only.
    Viewer,
    /// Reads and writes.
    Editor,
    /// Reads, writes and decides who else may.
    Owner,
}

impl Role {
    /// The role a name stands for.
    pub fn parse(name: &str) -> Option<Role> {
        match name {
            "viewer" => Some(Role::Viewer),
            "editor" => Some(Role::Editor),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Owner => "owner",
        }
    }
}

/// A shared folder as one of its members sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ShareInfo {
    /// Its namespace.
    pub namespace: String,
    /// The name its owner gave it.
    pub name: String,
    /// This member's role.
    pub role: Role,
    /// Where this member mounted it (`None`: an invitation not accepted).
    pub path: Option<String>,
    /// Every member and their role, owner first.
    pub members: Vec<(String, Role)>,
}

/// Whether `namespace` names a shared folder.
pub fn is_share(namespace: &str) -> bool {
    namespace.starts_with("share.")
}

/// `path` if it may be a mount point: relative, `/`-separated, no empty,
/// `.` or `..` component, no control character, at most 1024 bytes.
fn mount_path(path: &str) -> Result<&str> {
    let path = path.trim_matches('/');
    let ok = !path.is_empty()
        && path.len() <= 1024
        && !path.chars().any(char::is_control)
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if ok {
        Ok(path)
    } else {
        Err(Error::InvalidInput(
            "a mount point is a relative path in the home folder, without '..'",
        ))
    }
}

/// Whether one of two mount points is the other or inside it.
fn nested(a: &str, b: &str) -> bool {
    let inside = |x: &str, y: &str| x == y || x.starts_with(&format!("{y}/"));
    inside(a, b) || inside(b, a)
}

fn forbidden(reason: &str) -> Error {
    Error::Forbidden(reason.to_owned())
}

impl Accounts {
    /// What `user` may do in `namespace`: everything in its home, its role
    /// in a share it is a member of, nothing elsewhere.
    pub fn role(&self, user: &str, namespace: &str) -> Result<Option<Role>> {
        if namespace == home_namespace(user) {
            return Ok(Some(Role::Owner));
        }
        let role: Option<String> = self
            .conn()
            .query_row(
                "SELECT role FROM members WHERE share = ?1 AND user = ?2",
                [namespace, user],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_error("reading a membership"))?;
        Ok(role.as_deref().and_then(Role::parse))
    }

    /// Makes a shared folder named `name` owned by `owner`, mounted for
    /// it at `path` of its home. Returns its namespace. An account owns at
    /// most [`MAX_OWNED_SHARES`].
    pub fn create_share(&self, owner: &str, name: &str, path: &str) -> Result<String> {
        if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
            return Err(Error::InvalidInput(
                "a shared folder's name is 1 to 255 printable characters",
            ));
        }
        let path = mount_path(path)?;
        let namespace = format!("share.{}", hex(&random_bytes::<8>()?));
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(db_error("making a shared folder"))?;
        refuse_nesting(&tx, owner, path, None)?;
        refuse_over_owning(&tx, owner)?;
        tx.execute(
            "INSERT INTO shares (namespace, name, created) VALUES (?1, ?2, ?3)",
            params![namespace, name, now()],
        )
        .map_err(db_error("making a shared folder"))?;
        tx.execute(
            "INSERT INTO members (share, user, role, path) VALUES (?1, ?2, 'owner', ?3)",
            params![namespace, owner, path],
        )
        .map_err(db_error("making a shared folder"))?;
        tx.commit().map_err(db_error("making a shared folder"))?;
        Ok(namespace)
    }

    /// `by` (the owner) invites `user` as `role` (editor or viewer), or
    /// changes the role of a member.
    pub fn invite(&self, share: &str, by: &str, user: &str, role: Role) -> Result<()> {
        self.require_owner(share, by)?;
        if role == Role::Owner {
            return Err(Error::InvalidInput(
                "a shared folder has one owner: transfer the ownership instead",
            ));
        }
        if user == by {
            return Err(Error::InvalidInput("the owner is a member already"));
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_error("inviting a member"))?;
        let exists: bool = tx
            .query_row("SELECT 1 FROM users WHERE name = ?1", [user], |_| Ok(()))
            .optional()
            .map_err(db_error("reading an account"))?
            .is_some();
        if !exists {
            return Err(Error::InvalidInput("there is no account with that name"));
        }
        tx.execute(
            "INSERT INTO members (share, user, role) VALUES (?1, ?2, ?3) \
             ON CONFLICT (share, user) DO UPDATE SET role = excluded.role",
            params![share, user, role.name()],
        )
        .map_err(db_error("inviting a member"))?;
        if role == Role::Viewer {
            // A member made a viewer may no longer make links here; those
            // it made die now, and stay dead if it is an editor again.
            revoke_links_of(&tx, share, user)?;
        }
        tx.commit().map_err(db_error("inviting a member"))
    }

    /// Removes `user` from the share: by its owner, or by the member
    /// itself (leaving). The owner cannot leave: it transfers the
    /// ownership or removes the others. Its devices' next request there is
    /// refused.
    pub fn remove_member(&self, share: &str, by: &str, user: &str) -> Result<()> {
        if by != user {
            self.require_owner(share, by)?;
        }
        if self.role(user, share)? == Some(Role::Owner) {
            return Err(Error::InvalidInput(
                "the owner cannot leave its shared folder: transfer the ownership first",
            ));
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_error("removing a member"))?;
        let removed = tx
            .execute(
                "DELETE FROM members WHERE share = ?1 AND user = ?2",
                [share, user],
            )
            .map_err(db_error("removing a member"))?;
        if removed == 0 {
            return Err(Error::InvalidInput("that account is not a member"));
        }
        // Its links die with its membership, for good: invited again, it
        // does not bring them back.
        revoke_links_of(&tx, share, user)?;
        tx.commit().map_err(db_error("removing a member"))
    }

    /// Removes every member but the owner, and the links they made.
    pub fn unshare(&self, share: &str, by: &str) -> Result<u64> {
        self.require_owner(share, by)?;
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_error("removing members"))?;
        tx.execute(
            "UPDATE links SET revoked = ?2 WHERE namespace = ?1 AND revoked IS NULL \
             AND user IN (SELECT user FROM members WHERE share = ?1 AND role <> 'owner')",
            params![share, now()],
        )
        .map_err(db_error("revoking links"))?;
        let removed = tx
            .execute(
                "DELETE FROM members WHERE share = ?1 AND role <> 'owner'",
                [share],
            )
            .map_err(db_error("removing members"))?;
        tx.commit().map_err(db_error("removing members"))?;
        Ok(removed as u64)
    }

    /// `by` (the owner) makes member `to` the owner and becomes an editor,
    /// in one transaction: the share always has exactly one owner.
    pub fn transfer(&self, share: &str, by: &str, to: &str) -> Result<()> {
        self.require_owner(share, by)?;
        if self.role(to, share)?.is_none() {
            return Err(Error::InvalidInput(
                "the ownership goes to a member: invite that account first",
            ));
        }
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(db_error("transferring a share"))?;
        refuse_over_owning(&tx, to)?;
        tx.execute(
            "UPDATE members SET role = 'editor' WHERE share = ?1 AND user = ?2",
            [share, by],
        )
        .map_err(db_error("transferring a share"))?;
        tx.execute(
            "UPDATE members SET role = 'owner' WHERE share = ?1 AND user = ?2",
            [share, to],
        )
        .map_err(db_error("transferring a share"))?;
        tx.commit().map_err(db_error("transferring a share"))
    }

    /// Member `user` mounts the share at `path` of its home (`None`:
    /// unmounts it, staying a member). Refused where it would nest with
    /// another of its mounts.
    pub fn mount(&self, share: &str, user: &str, path: Option<&str>) -> Result<()> {
        if self.role(user, share)?.is_none() {
            return Err(forbidden("not a member of that shared folder"));
        }
        let path = path.map(mount_path).transpose()?;
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_error("mounting a share"))?;
        if let Some(path) = path {
            refuse_nesting(&tx, user, path, Some(share))?;
        }
        tx.execute(
            "UPDATE members SET path = ?3 WHERE share = ?1 AND user = ?2",
            params![share, user, path],
        )
        .map_err(db_error("mounting a share"))?;
        tx.commit().map_err(db_error("mounting a share"))
    }

    /// The shares `user` is a member of (invited or mounted).
    pub fn shares_of(&self, user: &str) -> Result<Vec<ShareInfo>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT s.namespace, s.name, m.role, m.path FROM members m \
                 JOIN shares s ON s.namespace = m.share WHERE m.user = ?1 ORDER BY s.name",
            )
            .map_err(db_error("listing shares"))?;
        let rows: Vec<(String, String, String, Option<String>)> = stmt
            .query_map([user], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .map_err(db_error("listing shares"))?
            .collect::<rusqlite::Result<_>>()
            .map_err(db_error("listing shares"))?;
        let mut members = conn
            .prepare(
                "SELECT user, role FROM members WHERE share = ?1 \
                 ORDER BY role = 'owner' DESC, user",
            )
            .map_err(db_error("listing members"))?;
        let mut shares = Vec::new();
        for (namespace, name, role, path) in rows {
            let list = members
                .query_map([&namespace], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(db_error("listing members"))?
                .filter_map(|row| match row {
                    Ok((user, role)) => Role::parse(&role).map(|role| Ok((user, role))),
                    Err(e) => Some(Err(e)),
                })
                .collect::<rusqlite::Result<_>>()
                .map_err(db_error("listing members"))?;
            shares.push(ShareInfo {
                namespace,
                name,
                role: Role::parse(&role).unwrap_or(Role::Viewer),
                path,
                members: list,
            });
        }
        Ok(shares)
    }

    /// The namespaces whose bytes count against `user`'s quota: its home
    /// and every share it mounted.
    pub fn counted_namespaces(&self, user: &str) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT share FROM members WHERE user = ?1 AND path IS NOT NULL")
            .map_err(db_error("listing mounts"))?;
        let mut namespaces: Vec<String> = stmt
            .query_map([user], |r| r.get(0))
            .map_err(db_error("listing mounts"))?
            .collect::<rusqlite::Result<_>>()
            .map_err(db_error("listing mounts"))?;
        namespaces.push(home_namespace(user));
        Ok(namespaces)
    }

    /// `user`'s quota in bytes, if it has one.
    pub fn quota(&self, user: &str) -> Result<Option<u64>> {
        let quota: Option<Option<i64>> = self
            .conn()
            .query_row("SELECT quota FROM users WHERE name = ?1", [user], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db_error("reading a quota"))?;
        Ok(quota.flatten().map(|q| q.max(0) as u64))
    }

    fn require_owner(&self, share: &str, by: &str) -> Result<()> {
        match self.role(by, share)? {
            Some(Role::Owner) => Ok(()),
            Some(_) => Err(forbidden("only the shared folder's owner may do that")),
            None => Err(forbidden("not a member of that shared folder")),
        }
    }
}

/// Refuses a mount of `user` at `path` that would nest with another of
/// its mounts (`except`: the share being mounted, which may move).
fn refuse_nesting(
    conn: &rusqlite::Connection,
    user: &str,
    path: &str,
    except: Option<&str>,
) -> Result<()> {
    let mut stmt = conn
        .prepare("SELECT share, path FROM members WHERE user = ?1 AND path IS NOT NULL")
        .map_err(db_error("listing mounts"))?;
    let mounts: Vec<(String, String)> = stmt
        .query_map([user], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(db_error("listing mounts"))?
        .collect::<rusqlite::Result<_>>()
        .map_err(db_error("listing mounts"))?;
    for (share, other) in mounts {
        if Some(share.as_str()) != except && nested(path, &other) {
            return Err(forbidden(&format!(
                "{path} would be inside the shared folder at {other} or hold it: \
                 shared folders do not nest"
            )));
        }
    }
    Ok(())
}

/// Shared folders one account may own. Each is a store of its own on the
/// server (files, an index), which a quota of bytes does not count: this
/// keeps one account from filling the server's disk with empty ones.
pub const MAX_OWNED_SHARES: i64 = 1000;

/// Refuses when `user` owns [`MAX_OWNED_SHARES`] already.
fn refuse_over_owning(tx: &rusqlite::Transaction<'_>, user: &str) -> Result<()> {
    let owned: i64 = tx
        .query_row(
            "SELECT count(*) FROM members WHERE user = ?1 AND role = 'owner'",
            [user],
            |r| r.get(0),
        )
        .map_err(db_error("counting shared folders"))?;
    if owned >= MAX_OWNED_SHARES {
        return Err(Error::Forbidden(format!(
            "the account {user} owns {owned} shared folders, as many as one account may"
        )));
    }
    Ok(())
}

/// Revokes the links `user` made to `share` (inside the transaction that
/// takes away its right to make them).
fn revoke_links_of(tx: &rusqlite::Transaction<'_>, share: &str, user: &str) -> Result<()> {
    tx.execute(
        "UPDATE links SET revoked = ?3 WHERE namespace = ?1 AND user = ?2 AND revoked IS NULL",
        params![share, user, now()],
    )
    .map(drop)
    .map_err(db_error("revoking links"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_owns_a_bounded_number_of_shared_folders() {
        let dir = tempfile::tempdir().unwrap();
        let accounts = Accounts::open(dir.path()).unwrap();
        for user in ["alice", "bob"] {
            accounts.add_user(user, "correct horse", None).unwrap();
        }
        let last = accounts.create_share("alice", "Last", "last").unwrap();
        accounts
            .invite(&last, "alice", "bob", Role::Editor)
            .unwrap();
        // The rest, straight into the tables: the limit is what is tested.
        {
            let mut conn = accounts.conn();
            let tx = conn.transaction().unwrap();
            for i in 1..MAX_OWNED_SHARES {
                let namespace = format!("share.{i:016x}");
                tx.execute(
                    "INSERT INTO shares (namespace, name, created) VALUES (?1, 'x', 0)",
                    [&namespace],
                )
                .unwrap();
                tx.execute(
                    "INSERT INTO members (share, user, role, path) VALUES (?1, 'alice', 'owner', ?2)",
                    params![namespace, format!("s{i}")],
                )
                .unwrap();
            }
            tx.commit().unwrap();
        }
        match accounts.create_share("alice", "One more", "more") {
            Err(Error::Forbidden(message)) => assert!(message.contains("as many as"), "{message}"),
            other => panic!("{other:?}"),
        }
        // Nor can one more be handed to her.
        let bobs = accounts.create_share("bob", "Bob's", "bobs").unwrap();
        accounts
            .invite(&bobs, "bob", "alice", Role::Editor)
            .unwrap();
        assert!(matches!(
            accounts.transfer(&bobs, "bob", "alice"),
            Err(Error::Forbidden(_))
        ));
        assert_eq!(accounts.role("bob", &bobs).unwrap(), Some(Role::Owner));
        // Giving one away makes room again.
        accounts.transfer(&last, "alice", "bob").unwrap();
        accounts.create_share("alice", "One more", "more").unwrap();
    }

    #[test]
    fn a_share_has_one_owner_members_with_roles_and_no_nesting() {
        let dir = tempfile::tempdir().unwrap();
        let accounts = Accounts::open(dir.path()).unwrap();
        for user in ["alice", "bob", "carol"] {
            accounts.add_user(user, "correct horse", None).unwrap();
        }
        let share = accounts
            .create_share("alice", "Projects", "work/projects")
            .unwrap();
        assert!(is_share(&share));
        assert_eq!(accounts.role("alice", &share).unwrap(), Some(Role::Owner));
        assert_eq!(accounts.role("bob", &share).unwrap(), None);
        // Nesting is refused both ways, for the owner as for members.
        for path in ["work/projects/sub", "work", "work/projects"] {
            assert!(matches!(
                accounts.create_share("alice", "Other", path),
                Err(Error::Forbidden(_))
            ));
        }
        accounts
            .create_share("alice", "Other", "work/other")
            .unwrap();
        accounts
            .invite(&share, "alice", "bob", Role::Editor)
            .unwrap();
        accounts
            .invite(&share, "alice", "carol", Role::Viewer)
            .unwrap();
        assert!(matches!(
            accounts.invite(&share, "bob", "carol", Role::Editor),
            Err(Error::Forbidden(_))
        ));
        assert!(
            accounts
                .invite(&share, "alice", "nobody", Role::Editor)
                .is_err()
        );
        assert!(accounts.mount(&share, "bob", Some("../escape")).is_err());
        accounts.mount(&share, "bob", Some("Projects")).unwrap();
        assert_eq!(
            accounts.shares_of("bob").unwrap()[0].path.as_deref(),
            Some("Projects")
        );
        assert_eq!(accounts.counted_namespaces("bob").unwrap().len(), 2);

        // Ownership moves in one step: always exactly one owner.
        assert!(accounts.transfer(&share, "bob", "bob").is_err());
        accounts.transfer(&share, "alice", "bob").unwrap();
        let owners = |share: &str| {
            accounts
                .shares_of("carol")
                .unwrap()
                .iter()
                .find(|s| s.namespace == share)
                .unwrap()
                .members
                .iter()
                .filter(|(_, role)| *role == Role::Owner)
                .map(|(user, _)| user.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(owners(&share), ["bob"]);
        assert_eq!(accounts.role("alice", &share).unwrap(), Some(Role::Editor));
        assert!(accounts.remove_member(&share, "bob", "bob").is_err());

        // A member leaves by itself; the owner removes another.
        accounts.remove_member(&share, "alice", "alice").unwrap();
        accounts.remove_member(&share, "bob", "carol").unwrap();
        assert_eq!(accounts.role("carol", &share).unwrap(), None);
        assert!(accounts.shares_of("carol").unwrap().is_empty());

        // An owner's removal takes its shares with it.
        accounts.remove_user("bob").unwrap();
        assert!(
            accounts
                .shares_of("alice")
                .unwrap()
                .iter()
                .all(|s| s.namespace != share)
        );
    }
}
