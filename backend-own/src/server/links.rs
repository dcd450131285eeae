//! Share links: a URL that gives anyone holding it read access to one path
//! of one namespace (its current version, nothing else), until it expires
//! or is revoked, optionally behind a password. The token is 32 random
//! bytes kept only as its BLAKE3 hash; the password only as an argon2id
//! hash. A link lives only while its maker may still edit the namespace:
//! a member removed from a shared folder takes its links with it.

use pouch_backend::{Error, Result};
use rusqlite::{OptionalExtension, params};

use super::accounts::{
    Accounts, Holder, credential_hash, db_error, hash_password, hex, now, password_matches,
    random_bytes,
};
use super::shares::Role;

/// A link as its maker lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LinkInfo {
    /// Its public id (for revoking; not the secret).
    pub id: String,
    /// The namespace it reads.
    pub namespace: String,
    /// The path in it (`""`: all of it).
    pub path: String,
    /// When it stops working (seconds since the epoch), if it does.
    pub expires: Option<i64>,
    /// Whether it asks for a password.
    pub password: bool,
}

/// What a token opens, once checked.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The link's id.
    pub id: String,
    /// The namespace.
    pub namespace: String,
    /// The path in it.
    pub path: String,
    /// Its password's hash, if it has one.
    pub password: Option<String>,
}

/// Why a token opens nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// No such link, revoked, or its maker may no longer edit there.
    Unknown,
    /// Past its expiry.
    Expired,
}

/// Whether `path` may name a link's target: `""` or `/`-separated
/// components, none empty, `.` or `..`.
pub fn valid_path(path: &str) -> bool {
    path.is_empty()
        || (path.len() <= 4096
            && !path.chars().any(char::is_control)
            && path
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != ".."))
}

impl Accounts {
    /// `maker` (an account's device) makes a link to `path` of
    /// `namespace` (where the account must be an editor or the owner),
    /// valid for `expires_in` seconds if given. Returns its id and its
    /// token (shown once, kept only hashed). Revoking the device revokes
    /// the link.
    pub fn create_link(
        &self,
        maker: &Holder,
        namespace: &str,
        path: &str,
        expires_in: Option<u64>,
        password: Option<&str>,
    ) -> Result<(String, String)> {
        let user = maker.user.as_str();
        if self.role(user, namespace)? < Some(Role::Editor) {
            return Err(Error::Forbidden(
                "links are made by the folder's editors and owner".into(),
            ));
        }
        if !valid_path(path) {
            return Err(Error::InvalidInput(
                "a link's path is relative, without '.' or '..'",
            ));
        }
        let password = match password {
            Some(p) if p.len() < 4 => {
                return Err(Error::InvalidInput(
                    "a link's password has at least 4 characters",
                ));
            }
            Some(p) => Some(hash_password(p)?),
            None => None,
        };
        let id = hex(&random_bytes::<6>()?);
        let token = hex(&random_bytes::<32>()?);
        let expires = expires_in.map(|secs| now().saturating_add(secs.min(i64::MAX as u64) as i64));
        self.conn()
            .execute(
                "INSERT INTO links (id, token, namespace, path, user, created, expires, password, device) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    id,
                    credential_hash(&token),
                    namespace,
                    path,
                    user,
                    now(),
                    expires,
                    password,
                    maker.device
                ],
            )
            .map_err(db_error("making a link"))?;
        Ok((id, token))
    }

    /// The links `user` made that were not revoked.
    pub fn links_of(&self, user: &str) -> Result<Vec<LinkInfo>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id, namespace, path, expires, password IS NOT NULL FROM links \
                 WHERE user = ?1 AND revoked IS NULL ORDER BY created",
            )
            .map_err(db_error("listing links"))?;
        stmt.query_map([user], |r| {
            Ok(LinkInfo {
                id: r.get(0)?,
                namespace: r.get(1)?,
                path: r.get(2)?,
                expires: r.get(3)?,
                password: r.get(4)?,
            })
        })
        .map_err(db_error("listing links"))?
        .collect::<rusqlite::Result<_>>()
        .map_err(db_error("listing links"))
    }

    /// Revokes link `id`: by its maker, or by the owner of its namespace.
    pub fn revoke_link(&self, user: &str, id: &str) -> Result<()> {
        let found: Option<(String, String)> = self
            .conn()
            .query_row(
                "SELECT user, namespace FROM links WHERE id = ?1 AND revoked IS NULL",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(db_error("reading a link"))?;
        let Some((maker, namespace)) = found else {
            return Err(Error::InvalidInput("there is no such link"));
        };
        if maker != user && self.role(user, &namespace)? != Some(Role::Owner) {
            return Err(Error::Forbidden(
                "a link is revoked by its maker or the folder's owner".into(),
            ));
        }
        self.conn()
            .execute(
                "UPDATE links SET revoked = ?2 WHERE id = ?1",
                params![id, now()],
            )
            .map_err(db_error("revoking a link"))?;
        Ok(())
    }

    /// What `token` opens now.
    pub fn open_link(&self, token: &str) -> Result<std::result::Result<Opened, Closed>> {
        let found: Option<(Opened, String, Option<i64>)> = self
            .conn()
            .query_row(
                "SELECT id, namespace, path, password, user, expires FROM links \
                 WHERE token = ?1 AND revoked IS NULL",
                [credential_hash(token)],
                |r| {
                    Ok((
                        Opened {
                            id: r.get(0)?,
                            namespace: r.get(1)?,
                            path: r.get(2)?,
                            password: r.get(3)?,
                        },
                        r.get(4)?,
                        r.get(5)?,
                    ))
                },
            )
            .optional()
            .map_err(db_error("reading a link"))?;
        let Some((opened, maker, expires)) = found else {
            return Ok(Err(Closed::Unknown));
        };
        if self.role(&maker, &opened.namespace)? < Some(Role::Editor) {
            return Ok(Err(Closed::Unknown));
        }
        if expires.is_some_and(|at| at <= now()) {
            return Ok(Err(Closed::Expired));
        }
        Ok(Ok(opened))
    }
}

/// Whether `password` is the one `opened` asks for.
pub fn password_ok(opened: &Opened, password: &str) -> Result<bool> {
    match &opened.password {
        Some(hash) => password_matches(password, hash),
        None => Ok(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `user`'s device `device`.
    fn device(user: &str, device: &str) -> Holder {
        Holder {
            user: user.into(),
            device: device.into(),
        }
    }

    #[test]
    fn a_link_opens_its_path_until_revoked_expired_or_its_maker_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let accounts = Accounts::open(dir.path()).unwrap();
        for user in ["alice", "bob", "carol"] {
            accounts.add_user(user, "correct horse", None).unwrap();
        }
        let share = accounts.create_share("alice", "Team", "Team").unwrap();
        accounts
            .invite(&share, "alice", "bob", Role::Editor)
            .unwrap();
        accounts
            .invite(&share, "alice", "carol", Role::Viewer)
            .unwrap();
        assert!(matches!(
            accounts.create_link(&device("carol", "c1"), &share, "", None, None),
            Err(Error::Forbidden(_))
        ));
        assert!(
            accounts
                .create_link(&device("bob", "b1"), &share, "../x", None, None)
                .is_err()
        );
        let (id, token) = accounts
            .create_link(&device("bob", "b1"), &share, "docs", None, Some("sesame"))
            .unwrap();
        let opened = accounts.open_link(&token).unwrap().unwrap();
        assert_eq!(
            (opened.namespace.as_str(), opened.path.as_str()),
            (share.as_str(), "docs")
        );
        assert!(password_ok(&opened, "sesame").unwrap());
        assert!(!password_ok(&opened, "sesame?").unwrap());
        assert_eq!(
            accounts.open_link("0000").unwrap().unwrap_err(),
            Closed::Unknown
        );

        let (_, expired) = accounts
            .create_link(&device("alice", "a1"), &share, "", Some(0), None)
            .unwrap();
        assert_eq!(
            accounts.open_link(&expired).unwrap().unwrap_err(),
            Closed::Expired
        );

        // Carol may not revoke Bob's link; the owner may.
        assert!(accounts.revoke_link("carol", &id).is_err());
        let (other, other_token) = accounts
            .create_link(&device("bob", "b1"), &share, "", None, None)
            .unwrap();
        accounts.revoke_link("alice", &id).unwrap();
        assert_eq!(
            accounts.open_link(&token).unwrap().unwrap_err(),
            Closed::Unknown
        );
        // Bob removed: his links die with his membership.
        assert!(accounts.open_link(&other_token).unwrap().is_ok());
        accounts.remove_member(&share, "alice", "bob").unwrap();
        assert_eq!(
            accounts.open_link(&other_token).unwrap().unwrap_err(),
            Closed::Unknown
        );
        assert!(
            !accounts
                .links_of("bob")
                .unwrap()
                .iter()
                .any(|l| l.id == other),
            "a dead link is not listed as if it worked"
        );
        // Invited again, he does not get his old links back.
        accounts
            .invite(&share, "alice", "bob", Role::Editor)
            .unwrap();
        assert_eq!(
            accounts.open_link(&other_token).unwrap().unwrap_err(),
            Closed::Unknown
        );
        // Nor does an editor made a viewer, then an editor again; the
        // owner's links are untouched by all of it.
        let (_, bobs) = accounts
            .create_link(&device("bob", "b1"), &share, "", None, None)
            .unwrap();
        let (_, alices) = accounts
            .create_link(&device("alice", "a1"), &share, "", None, None)
            .unwrap();
        accounts
            .invite(&share, "alice", "bob", Role::Viewer)
            .unwrap();
        accounts
            .invite(&share, "alice", "bob", Role::Editor)
            .unwrap();
        assert_eq!(
            accounts.open_link(&bobs).unwrap().unwrap_err(),
            Closed::Unknown
        );
        assert!(accounts.links_of("bob").unwrap().is_empty());
        // Unsharing takes the members' links with them.
        let (_, again) = accounts
            .create_link(&device("bob", "b1"), &share, "", None, None)
            .unwrap();
        assert_eq!(accounts.unshare(&share, "alice").unwrap(), 2);
        accounts
            .invite(&share, "alice", "bob", Role::Editor)
            .unwrap();
        assert_eq!(
            accounts.open_link(&again).unwrap().unwrap_err(),
            Closed::Unknown
        );
        assert!(accounts.open_link(&alices).unwrap().is_ok());
    }

    #[test]
    fn revoking_a_device_revokes_the_links_it_made_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let accounts = Accounts::open(dir.path()).unwrap();
        accounts.add_user("alice", "correct horse", None).unwrap();
        for name in ["laptop", "phone"] {
            accounts
                .login("alice", "correct horse", name)
                .unwrap()
                .unwrap();
        }
        let share = accounts.create_share("alice", "Team", "Team").unwrap();
        let (_, stolen) = accounts
            .create_link(&device("alice", "phone"), &share, "", None, None)
            .unwrap();
        let (_, kept) = accounts
            .create_link(&device("alice", "laptop"), &share, "", None, None)
            .unwrap();
        assert!(accounts.revoke("alice", "phone").unwrap());
        assert_eq!(
            accounts.open_link(&stolen).unwrap().unwrap_err(),
            Closed::Unknown
        );
        assert!(accounts.open_link(&kept).unwrap().is_ok());
        // The name logging in again does not bring its links back.
        accounts
            .login("alice", "correct horse", "phone")
            .unwrap()
            .unwrap();
        assert_eq!(
            accounts.open_link(&stolen).unwrap().unwrap_err(),
            Closed::Unknown
        );
        assert_eq!(accounts.links_of("alice").unwrap().len(), 1);
    }

    #[test]
    fn a_version_3_accounts_file_keeps_its_links() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = rusqlite::Connection::open(dir.path().join("accounts.sqlite")).unwrap();
            conn.execute_batch(
                "CREATE TABLE schema (version INTEGER NOT NULL);
                 INSERT INTO schema VALUES (3);
                 CREATE TABLE users (name TEXT PRIMARY KEY, password TEXT NOT NULL,
                     quota INTEGER, created INTEGER NOT NULL);
                 CREATE TABLE links (id TEXT PRIMARY KEY, token BLOB NOT NULL UNIQUE,
                     namespace TEXT NOT NULL, path TEXT NOT NULL,
                     user TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
                     created INTEGER NOT NULL, expires INTEGER, password TEXT, revoked INTEGER);",
            )
            .unwrap();
        }
        let accounts = Accounts::open(dir.path()).unwrap();
        accounts.add_user("alice", "correct horse", None).unwrap();
        let share = accounts.create_share("alice", "Team", "Team").unwrap();
        let (_, token) = accounts
            .create_link(&device("alice", "laptop"), &share, "", None, None)
            .unwrap();
        assert!(accounts.open_link(&token).unwrap().is_ok());
        drop(accounts);
        // Opened again: version 4 now, nothing to add.
        let accounts = Accounts::open(dir.path()).unwrap();
        assert!(accounts.open_link(&token).unwrap().is_ok());
    }
}
