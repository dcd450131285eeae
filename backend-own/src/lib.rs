//! Pouch's own block store, in the spirit of Dropbox's Magic Pocket:
//! immutable content-addressed blocks appended to large volume files, an
//! index from block id to (volume, offset, length), every read verified.
//!
//! - [`storage::Store`] is the store on a local folder (volumes, index, journal);
//! - [`EmbeddedBackend`] serves it in-process as a [`pouch_backend::Backend`]:
//!   Pouch's default backend, with no server and no account;
//! - [`server`] serves stores over HTTP as the `pouch-store` binary, and
//!   [`RemoteBackend`] is the client that talks to it.

#[cfg(feature = "client")]
pub mod account;
#[cfg(feature = "server")]
pub mod cell;
#[cfg(feature = "client")]
mod client;
mod embedded;
#[cfg(feature = "server")]
pub mod server;
pub mod storage;
pub mod wire;

#[cfg(feature = "client")]
pub use client::RemoteBackend;
pub use embedded::EmbeddedBackend;
