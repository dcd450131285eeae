//! The storage contract of Pouch.
//!
//! Every place Pouch can keep a user's data — Amazon S3, the in-house
//! `pouch-store` server, or the embedded store on a local folder — implements
//! one object-safe, async trait: [`Backend`]. The sync engine only ever sees an
//! `Arc<dyn Backend>`, so switching stores is a configuration change.
//!
//! A backend holds two things for one namespace (one user's synced folder):
//!
//! - **blocks**: immutable content-addressed chunks of files, named by the
//!   BLAKE3 hash of their raw bytes ([`BlockId`]), stored raw or
//!   zstd-compressed ([`Block`]);
//! - **the namespace journal**: a totally ordered, append-only log of commits
//!   ([`JournalEntry`], numbered by [`Seq`]) whose appends are create-only, so
//!   two devices can never both win the same slot; plus the latest snapshot of
//!   the folded journal ([`Snapshot`]).
//!
//! `conformance` (feature `conformance`) is the one test suite every
//! implementation must pass against a real instance of its store; `tls`
//! (feature `tls`) installs the one TLS crypto provider HTTPS clients use.

mod backend;
mod block;
mod block_id;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
pub mod gc;
mod identity;
mod journal;
#[cfg(feature = "tls")]
pub mod tls;

pub use backend::{Backend, BackendExt, end_after_fatal};
pub use block::{Block, Codec, MAX_BLOCK_SIZE};
pub use block_id::{BlockId, ParseBlockIdError};
pub use error::{Error, Result, error_chain};
pub use gc::{GcLease, LeaseRequest, ReclaimReport, StoredBlock, SweepReport};
pub use identity::{ParseStoreIdError, StoreId};
pub use journal::{JournalEntry, Seq, Snapshot};
