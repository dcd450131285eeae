//! Pouch's sync engine.
//!
//! Three trees live in the local journal ([`db::LocalDb`], SQLite): *Local*
//! (what is on disk, from [`scan`]), *Remote* (the namespace journal folded,
//! from [`commit`] entries) and *Synced* (the last state both sides agreed
//! on). [`plan::plan`] is a pure function of the three that returns
//! operations; [`sync::Engine`] pulls, plans, runs the operations and pushes
//! one commit, recording each finished step so a crash resumes cleanly.
//!
//! The engine sees its store only as an `Arc<dyn pouch_backend::Backend>`.

pub mod chunk;
pub mod commit;
pub mod config;
pub mod daemon;
pub mod db;
pub mod dual;
mod error;
pub mod fsops;
pub mod ignore_rules;
pub mod migrate;
pub mod node;
pub mod path;
pub mod plan;
pub mod scan;
pub mod sync;

pub use error::{Error, Result};
