//! The cell: `pouch-store` past one machine, after Dropbox's Magic Pocket.
//!
//! PostgreSQL holds every piece of metadata (namespaces, journals,
//! snapshots, the block index, volumes and where their copies live, the
//! storage nodes and their heartbeats: [`schema`]); storage nodes hold
//! bytes in volume files ([`node`]); front ends ([`Cell`], one
//! [`CellBackend`] per namespace) verify every block and speak the same
//! API as the single-node server. The database is the source of truth; no
//! consensus of our own.

mod backend;
mod coder;
pub mod coding;
mod compact;
pub mod db;
mod findings;
mod gc;
mod news;
pub mod node;
mod reconcile;
mod repair;
pub mod schema;
pub mod scrub;
mod shards;
mod status;
mod verify;

pub use backend::{Cell, CellBackend, CellOptions};
pub use compact::CompactReport;
pub use findings::Findings;
pub use repair::RepairReport;
pub use status::{CellStatus, NodeStatus};
pub use verify::VerifyReport;
