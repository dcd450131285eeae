//! The cell's connection to PostgreSQL: a pool, and database errors as
//! backend errors.

use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use pouch_backend::Error;
use tokio_postgres::NoTls;

/// Connections held open at most by one process.
const POOL_SIZE: usize = 16;

/// A pool of connections to the database at `url` (a libpq connection
/// string or URL; several hosts with `target_session_attrs=read-write`
/// follow a failover to the new primary).
pub fn pool(url: &str) -> Result<Pool, Error> {
    let config = tokio_postgres::Config::from_str(url)
        .map_err(|_| Error::InvalidInput("the database URL cannot be parsed"))?;
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
