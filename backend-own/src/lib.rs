//! Pouch's own block store, in the spirit of Dropbox's Magic Pocket:
//! immutable content-addressed blocks appended to large volume files, an
//! index from block id to (volume, offset, length), every read verified.
//!
//! - [`engine::Store`] is the storage engine on a local folder;
//! - [`EmbeddedBackend`] serves it in-process as a [`pouch_backend::Backend`]:
//!   Pouch's default backend, with no server and no account;
//! - [`server`] serves stores over HTTP as the `pouch-store` binary, and
//!   [`RemoteBackend`] is the client that talks to it.

#[cfg(feature = "client")]
mod client;
mod embedded;
pub mod engine;
#[cfg(feature = "server")]
pub mod server;
pub mod wire;

#[cfg(feature = "client")]
pub use client::{RemoteBackend, install_tls_provider};
pub use embedded::EmbeddedBackend;
