//! The Pouch daemon's control protocol, spoken over its Unix socket (mode
//! 0600) by `pouch` and `pouch-tray`.
//!
//! Newline-delimited JSON. The client sends one [`Request`] per line; the
//! daemon answers each with one [`Response`] line, except `subscribe`,
//! after which it streams one [`Event`] per line until the client hangs up.
//!
//! ```text
//! > {"cmd":"status"}
//! < {"status":{"state":"idle","paused":false,...}}
//! > {"cmd":"pause"}
//! < {"ok":"paused"}
//! > {"cmd":"resume","allow_mass_delete":false}
//! < {"ok":"resumed"}
//! > {"cmd":"subscribe"}
//! < {"event":"syncing"}
//! < {"event":"synced","uploaded":1,...}
//! ```
//!
//! The message types are owned here, not borrowed from the engine, so the
//! wire format changes only when this crate does, and a client links
//! nothing of the engine. Additions are backward compatible
//! (`serde(default)`); a client ignores fields it does not know.

mod client;
pub mod display;
mod framing;
mod messages;
mod report;
mod status;

pub use client::{Subscription, request, subscribe};
pub use framing::{read_message, write_message};
pub use messages::{Event, Request, Response};
pub use report::{Action, Changed, SyncReport};
pub use status::{
    CopyPhase, CopyProgress, DaemonStatus, Limits, MigrationCounts, MigrationStatus, MountStatus,
    State, StoreMode, Transfer, TransferPhase,
};

use std::path::PathBuf;

/// A result with [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong talking to a daemon.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The socket failed.
    #[error("the daemon's socket {path}: {source}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// A line that is not a message of this protocol.
    #[error("the daemon's socket {path}: not a message of the protocol: {source}")]
    Malformed {
        /// The socket.
        path: PathBuf,
        /// Why it does not parse.
        #[source]
        source: serde_json::Error,
    },
}
