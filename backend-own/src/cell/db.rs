//! The cell's connection to PostgreSQL: a pool, and database errors as
//! backend errors.

use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use pouch_backend::Error;
use tokio_postgres::NoTls;

/// Connections held open at most by one process.
const POOL_SIZE: usize = 16;

/// The connection settings of `url` (a libpq connection string or URL;
/// several hosts with `target_session_attrs=read-write` follow a failover
/// to the new primary). A password not in it comes from `PGPASSWORD`, as
/// for libpq: a password on a command line is readable by every user of
/// the machine in the process list.
pub fn config(url: &str) -> Result<tokio_postgres::Config, Error> {
    config_with(url, std::env::var("PGPASSWORD").ok())
}

fn config_with(url: &str, env_password: Option<String>) -> Result<tokio_postgres::Config, Error> {
    let mut config = tokio_postgres::Config::from_str(url)
        .map_err(|_| Error::InvalidInput("the database URL cannot be parsed"))?;
    if config.get_password().is_some() {
        tracing::warn!(
            "the database URL holds a password, which other users of this machine can read in the process list: set PGPASSWORD instead"
        );
    } else if let Some(password) = env_password {
        config.password(password);
    }
    Ok(config)
}

/// A pool of connections to the database at `url` (see [`config`]).
pub fn pool(url: &str) -> Result<Pool, Error> {
    pool_of(config(url)?)
}

/// A pool of connections to the database `config` names.
pub fn pool_of(config: tokio_postgres::Config) -> Result<Pool, Error> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            // Checks a pooled connection before lending it: after a
            // restart or failover the dead ones are dropped, not handed out.
            recycling_method: RecyclingMethod::Verified,
        },
    );
    Pool::builder(manager)
        .max_size(POOL_SIZE)
        .build()
        .map_err(|e| Error::internal("making the database pool")(e))
}

/// A connection from `pool`; none to be had is the database being
/// unavailable (a retry may find it back).
pub async fn client(pool: &Pool) -> Result<deadpool_postgres::Object, Error> {
    pool.get().await.map_err(|e| Error::Unavailable {
        source: format!("the cell's database: {e}").into(),
    })
}

/// A database error as a backend error: a lost connection is the database
/// being unavailable; anything else is the cell's own failure.
pub fn error(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Error {
    move |e| {
        if e.is_closed() || e.as_db_error().is_none() {
            Error::Unavailable {
                source: format!("{context}: {e}").into(),
            }
        } else {
            Error::Internal {
                context,
                source: Box::new(e),
            }
        }
    }
}

/// Whether `e` is a unique-key violation (a create-only insert that lost).
pub fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_comes_from_the_environment_unless_the_url_has_one() {
        let url = "postgres://pouch@db.lan/pouch";
        let config = config_with(url, Some("secret".into())).unwrap();
        assert_eq!(config.get_password(), Some(&b"secret"[..]));
        assert_eq!(config_with(url, None).unwrap().get_password(), None);
        let given =
            config_with("postgres://pouch:inline@db.lan/pouch", Some("env".into())).unwrap();
        assert_eq!(given.get_password(), Some(&b"inline"[..]));
        assert!(config_with("postgres://[", None).is_err());
    }
}
