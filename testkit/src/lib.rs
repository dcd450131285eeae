//! Real servers for Pouch's integration tests.
//!
//! - [`s3`]: an S3-compatible server process (moto's) on 127.0.0.1, shared
//!   by the tests of one run, with a fresh bucket per test.
//! - [`cell`]: a `pouch-store` cell: PostgreSQL in a temp folder, storage
//!   nodes and front ends, each a real process.
//! - [`proxy`]: an HTTP proxy in front of any server that fails a share of
//!   requests (5xx, dropped connections) or strips a header, for fault
//!   injection and for imitating stores that ignore conditional writes.
//! - [`process`]: starting a server process and reading where it listens.
//! - [`pouch_store`]: a single-node `pouch-store` process and its
//!   accounts.

pub mod cell;
pub mod pouch_store;
pub mod process;
pub mod proxy;
pub mod s3;
