//! Accounts and their devices on a single-node `pouch-store`, in
//! `DATA/accounts.sqlite` (0600). A password is kept only as an argon2id
//! hash; logging in with it gives a device a credential of its own (32
//! random bytes), kept only as its BLAKE3 hash, revocable one device at a
//! time. Each account has a home namespace, opened on demand.
//!
//! The server's configured namespace tokens keep working beside accounts.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use pouch_backend::{Error, Result};
use rusqlite::{Connection, OptionalExtension, params};

/// The accounts file's schema version (2: shared folders and their
/// members; 3: share links).
const SCHEMA: i64 = 4;

/// What a device credential starts with, to tell it from a namespace token
/// at a glance (and in leak scanners).
const CREDENTIAL_PREFIX: &str = "pouchdev_";

/// An account, as `pouch-store user list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct User {
    /// Its name.
    pub name: String,
    /// Its storage quota in bytes, if it has one.
    pub quota: Option<u64>,
    /// Devices holding a credential that was not revoked.
    pub devices: u64,
}

/// A device of an account.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Device {
    /// The name it logged in with.
    pub name: String,
    /// When it logged in (seconds since the epoch).
    pub created: i64,
    /// When its credential was revoked, if it was.
    pub revoked: Option<i64>,
}

/// The account and device a credential belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The account.
    pub user: String,
    /// The device.
    pub device: String,
}

/// The accounts of one server.
pub struct Accounts {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts")
            .field("path", &self.path)
            .finish()
    }
}

pub(super) fn db_error(what: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    move |e| Error::internal(what)(e)
}

/// The home namespace of account `user`.
pub fn home_namespace(user: &str) -> String {
    format!("home.{user}")
}

/// Whether `name` may name an account: 1 to 64 of `a-z 0-9 . _ -`, not
/// starting with a dot or dash (it becomes part of a namespace and a
/// folder name).
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && !name.starts_with(['.', '-'])
}

pub(super) fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::getrandom(&mut bytes).map_err(|e| Error::Internal {
        context: "drawing random bytes",
        source: Box::new(std::io::Error::other(e.to_string())),
    })?;
    Ok(bytes)
}

pub(super) fn now() -> i64 {
    pouch_backend::gc::now_ms() / 1000
}

/// `password`'s argon2id hash, with a random salt.
pub(super) fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::encode_b64(&random_bytes::<16>()?)
        .map_err(|e| Error::internal("encoding a salt")(std::io::Error::other(e.to_string())))?;
    Ok(argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| Error::internal("hashing a password")(std::io::Error::other(e.to_string())))?
        .to_string())
}

/// Whether `password` matches argon2id hash `hash`.
pub(super) fn password_matches(password: &str, hash: &str) -> Result<bool> {
    let parsed = PasswordHash::new(hash).map_err(|e| {
        Error::internal("reading a password hash")(std::io::Error::other(e.to_string()))
    })?;
    Ok(argon2::Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

/// `bytes` as lowercase hex digits.
pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hash a credential is kept as.
pub(super) fn credential_hash(credential: &str) -> Vec<u8> {
    blake3::hash(credential.as_bytes()).as_bytes().to_vec()
}

impl Accounts {
    /// Opens (making it if need be) the accounts file in `data`.
    pub fn open(data: &Path) -> Result<Self> {
        std::fs::create_dir_all(data).map_err(|e| Error::internal("making the data folder")(e))?;
        let path = data.join("accounts.sqlite");
        let conn = Connection::open(&path).map_err(db_error("opening the accounts"))?;
        // Password hashes and credential hashes: for the server's user only.
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(|e| Error::internal("protecting the accounts file")(e))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db_error("opening the accounts"))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS schema (version INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS users (
                 name     TEXT PRIMARY KEY,
                 password TEXT NOT NULL,
                 quota    INTEGER,
                 created  INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS devices (
                 user       TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
                 name       TEXT NOT NULL,
                 credential BLOB NOT NULL UNIQUE,
                 created    INTEGER NOT NULL,
                 revoked    INTEGER,
                 PRIMARY KEY (user, name)
             );
             CREATE TABLE IF NOT EXISTS shares (
                 namespace TEXT PRIMARY KEY,
                 name      TEXT NOT NULL,
                 created   INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS members (
                 share TEXT NOT NULL REFERENCES shares (namespace) ON DELETE CASCADE,
                 user  TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
                 role  TEXT NOT NULL CHECK (role IN ('owner', 'editor', 'viewer')),
                 path  TEXT,
                 PRIMARY KEY (share, user)
             );
             CREATE UNIQUE INDEX IF NOT EXISTS one_owner ON members (share) WHERE role = 'owner';
             CREATE INDEX IF NOT EXISTS members_user ON members (user);
             CREATE TABLE IF NOT EXISTS links (
                 id        TEXT PRIMARY KEY,
                 token     BLOB NOT NULL UNIQUE,
                 namespace TEXT NOT NULL,
                 path      TEXT NOT NULL,
                 user      TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
                 created   INTEGER NOT NULL,
                 expires   INTEGER,
                 password  TEXT,
                 revoked   INTEGER,
                 device    TEXT
             );
             PRAGMA foreign_keys = ON;",
        )
        .map_err(db_error("making the accounts schema"))?;
        let version: Option<i64> = conn
            .query_row("SELECT version FROM schema", [], |r| r.get(0))
            .optional()
            .map_err(db_error("reading the accounts schema"))?;
        match version {
            None => {
                conn.execute("INSERT INTO schema (version) VALUES (?1)", [SCHEMA])
                    .map_err(db_error("recording the accounts schema"))?;
            }
            Some(SCHEMA) => {}
            // Version 3's links lacked the device that made them (its
            // links stay, made by no device in particular).
            Some(3) => {
                conn.execute_batch("ALTER TABLE links ADD COLUMN device TEXT")
                    .map_err(db_error("adding the links' devices"))?;
                conn.execute("UPDATE schema SET version = ?1", [SCHEMA])
                    .map_err(db_error("recording the accounts schema"))?;
            }
            // Versions 1 and 2 lacked the shares or the links, made above.
            Some(1 | 2) => {
                conn.execute("UPDATE schema SET version = ?1", [SCHEMA])
                    .map_err(db_error("recording the accounts schema"))?;
            }
            Some(other) => {
                return Err(Error::Format {
                    what: format!(
                        "{} has schema version {other}, this build reads {SCHEMA}",
                        path.display()
                    ),
                });
            }
        }
        Ok(Self {
            conn: Mutex::new(conn),
            path,
        })
    }

    pub(super) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().expect("the accounts connection")
    }

    /// Makes account `name` with `password` (argon2id, a random salt).
    pub fn add_user(&self, name: &str, password: &str, quota: Option<u64>) -> Result<()> {
        if !valid_name(name) {
            return Err(Error::InvalidInput(
                "an account name is 1 to 64 of a-z, 0-9, '.', '_' and '-', not starting with '.' or '-'",
            ));
        }
        if password.len() < 8 {
            return Err(Error::InvalidInput("a password has at least 8 characters"));
        }
        let hash = hash_password(password)?;
        let quota = quota.map(|q| q.min(i64::MAX as u64) as i64);
        match self.conn().execute(
            "INSERT INTO users (name, password, quota, created) VALUES (?1, ?2, ?3, ?4)",
            params![name, hash, quota, now()],
        ) {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(Error::InvalidInput("an account with that name exists"))
            }
            Err(e) => Err(db_error("adding an account")(e)),
        }
    }

    /// Every account.
    pub fn users(&self) -> Result<Vec<User>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT u.name, u.quota, \
                        (SELECT count(*) FROM devices d WHERE d.user = u.name AND d.revoked IS NULL) \
                 FROM users u ORDER BY u.name",
            )
            .map_err(db_error("listing accounts"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(User {
                    name: r.get(0)?,
                    quota: r.get::<_, Option<i64>>(1)?.map(|q| q as u64),
                    devices: r.get::<_, i64>(2)? as u64,
                })
            })
            .map_err(db_error("listing accounts"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(db_error("listing accounts"))
    }

    /// Removes account `name` and every credential of its devices (its
    /// home namespace's data stays on disk, for the operator to keep or
    /// delete). `false` if there is no such account.
    pub fn remove_user(&self, name: &str) -> Result<bool> {
        let conn = self.conn();
        // Shares it owns go with it (their members lose access); it leaves
        // the others.
        conn.execute(
            "DELETE FROM shares WHERE namespace IN \
             (SELECT share FROM members WHERE user = ?1 AND role = 'owner')",
            [name],
        )
        .map_err(db_error("removing an account"))?;
        conn.execute("DELETE FROM members WHERE user = ?1", [name])
            .map_err(db_error("removing an account"))?;
        conn.execute("DELETE FROM devices WHERE user = ?1", [name])
            .map_err(db_error("removing an account"))?;
        let removed = conn
            .execute("DELETE FROM users WHERE name = ?1", [name])
            .map_err(db_error("removing an account"))?;
        Ok(removed > 0)
    }

    /// Checks `password` for account `user` and, if right, gives device
    /// `device` a new credential (a device logging in again gets a new one;
    /// the old stops working). `None` for a wrong name or password (which
    /// look the same).
    pub fn login(&self, user: &str, password: &str, device: &str) -> Result<Option<String>> {
        if device.is_empty() || device.len() > 128 || device.chars().any(char::is_control) {
            return Err(Error::InvalidInput(
                "a device name is 1 to 128 printable characters",
            ));
        }
        let stored: Option<String> = self
            .conn()
            .query_row("SELECT password FROM users WHERE name = ?1", [user], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db_error("reading an account"))?;
        // The hash is checked even for an unknown name, against a fixed
        // one, so that timing does not tell which names exist.
        const ABSENT: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3CKD0cJvvrX5Hm5ZMsFe+zD6YGxDBRnyaqGlMYGyO7g";
        let hash = stored.as_deref().unwrap_or(ABSENT);
        let right = password_matches(password, hash)?;
        if !right || stored.is_none() {
            return Ok(None);
        }
        let credential = format!(
            "{CREDENTIAL_PREFIX}{}",
            blake3::Hash::from(random_bytes::<32>()?).to_hex()
        );
        self.conn()
            .execute(
                "INSERT INTO devices (user, name, credential, created) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (user, name) DO UPDATE SET credential = excluded.credential, \
                     created = excluded.created, revoked = NULL",
                params![user, device, credential_hash(&credential), now()],
            )
            .map_err(db_error("recording a device"))?;
        Ok(Some(credential))
    }

    /// Whose `credential` is, if it is a device credential not revoked of
    /// an account that exists.
    pub fn holder(&self, credential: &str) -> Result<Option<Holder>> {
        if !credential.starts_with(CREDENTIAL_PREFIX) {
            return Ok(None);
        }
        self.conn()
            .query_row(
                "SELECT d.user, d.name FROM devices d JOIN users u ON u.name = d.user \
                 WHERE d.credential = ?1 AND d.revoked IS NULL",
                [credential_hash(credential)],
                |r| {
                    Ok(Holder {
                        user: r.get(0)?,
                        device: r.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(db_error("checking a credential"))
    }

    /// The devices of account `user`.
    pub fn devices(&self, user: &str) -> Result<Vec<Device>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT name, created, revoked FROM devices WHERE user = ?1 ORDER BY name")
            .map_err(db_error("listing devices"))?;
        let rows = stmt
            .query_map([user], |r| {
                Ok(Device {
                    name: r.get(0)?,
                    created: r.get(1)?,
                    revoked: r.get(2)?,
                })
            })
            .map_err(db_error("listing devices"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(db_error("listing devices"))
    }

    /// Revokes the credential of `user`'s device `device` at once, and
    /// every share link it made (a stolen device's links go with it, even
    /// if the name logs in again). `false` if it has no such device (or it
    /// was revoked already).
    pub fn revoke(&self, user: &str, device: &str) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_error("revoking a device"))?;
        let revoked = tx
            .execute(
                "UPDATE devices SET revoked = ?3 WHERE user = ?1 AND name = ?2 AND revoked IS NULL",
                params![user, device, now()],
            )
            .map_err(db_error("revoking a device"))?;
        tx.execute(
            "UPDATE links SET revoked = ?3 WHERE user = ?1 AND device = ?2 AND revoked IS NULL",
            params![user, device, now()],
        )
        .map_err(db_error("revoking a device's links"))?;
        tx.commit().map_err(db_error("revoking a device"))?;
        Ok(revoked > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_gives_a_credential_that_revoking_ends_and_passwords_are_never_stored() {
        let dir = tempfile::tempdir().unwrap();
        let accounts = Accounts::open(dir.path()).unwrap();
        accounts
            .add_user("alice", "correct horse", Some(1 << 30))
            .unwrap();
        assert!(accounts.add_user("alice", "another one", None).is_err());
        assert!(accounts.add_user("../x", "correct horse", None).is_err());
        assert!(accounts.add_user("bob", "short", None).is_err());

        assert_eq!(
            accounts.login("alice", "wrong horse", "laptop").unwrap(),
            None
        );
        assert_eq!(
            accounts.login("nobody", "correct horse", "laptop").unwrap(),
            None
        );
        let laptop = accounts
            .login("alice", "correct horse", "laptop")
            .unwrap()
            .unwrap();
        let phone = accounts
            .login("alice", "correct horse", "phone")
            .unwrap()
            .unwrap();
        assert_ne!(laptop, phone);
        assert_eq!(accounts.holder(&laptop).unwrap().unwrap().device, "laptop");
        assert_eq!(accounts.holder("pouchdev_0000").unwrap(), None);
        assert_eq!(accounts.users().unwrap()[0].devices, 2);

        assert!(accounts.revoke("alice", "laptop").unwrap());
        assert_eq!(accounts.holder(&laptop).unwrap(), None);
        assert!(accounts.holder(&phone).unwrap().is_some());
        for file in std::fs::read_dir(dir.path()).unwrap() {
            let bytes = std::fs::read(file.unwrap().path()).unwrap();
            for secret in [&b"correct horse"[..], laptop.as_bytes(), phone.as_bytes()] {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret),
                    "a secret is stored in clear"
                );
            }
        }
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("accounts.sqlite"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);

        assert!(accounts.remove_user("alice").unwrap());
        assert_eq!(accounts.holder(&phone).unwrap(), None);
    }
}
