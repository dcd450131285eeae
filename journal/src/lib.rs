//! What a namespace's journal says, for everyone who reads it: the sync
//! engine, the store server, and tools.
//!
//! - [`commit`]: the entry format (a [`commit::Commit`] of changes, JSON,
//!   versioned), with [`node`] (what a path holds) and [`location`] (the
//!   secret-free store a move names);
//! - [`retention`]: which versions a namespace keeps, by its policy;
//! - [`snapshot`]: the journal compacted to what retention keeps, which a
//!   new device reads instead of replaying every entry;
//! - [`gc`]: the garbage collector, which folds the journal into the set
//!   of blocks retained versions name and collects the rest through the
//!   store's half of the protocol ([`pouch_backend::gc`]).
//!
//! It depends on the storage contract only, so a store server can run the
//! collector without any client code.

pub mod commit;
mod error;
pub mod gc;
pub mod location;
pub mod node;
pub mod retention;
pub mod snapshot;

pub use error::{Error, Result};
