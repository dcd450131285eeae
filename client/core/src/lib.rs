//! Pouch's sync engine.
//!
//! Three trees live in the local state database ([`state::LocalState`],
//! SQLite): *Local* (what is on disk, from [`scan`]), *Remote* (the
//! namespace journal folded, from [`commit`] entries) and *Synced* (the
//! last state both sides agreed on). [`plan::plan`] is a pure function of
//! the three that returns operations; [`Engine`] pulls, plans, runs the
//! operations and pushes one commit, recording each finished step so a
//! crash resumes cleanly.
//!
//! The engine sees its store only as an `Arc<dyn pouch_backend::Backend>`.
//! Moving a namespace between stores ([`migrate`], [`dual`]) and the daemon
//! ([`daemon`], serving the protocol of `pouch-protocol`) live here too, so
//! the binaries only parse, wire a store, and print.

pub mod chunk;
mod clock;
pub mod daemon;
pub mod dual;
pub mod echoes;
pub mod engine;
mod error;
pub mod fsops;
pub mod ignore_rules;
pub mod limit;
pub mod local;
pub mod location;
pub mod migrate;
pub mod names;
pub mod own_files;
pub mod path;
pub mod plan;
mod progress;
mod report;
pub mod scan;
pub mod state;

pub use clock::{Clock, SystemClock, now_ns, unix_secs};
pub use engine::{
    Engine, HealReport, Kept, Left, MassDeleteGuard, PLAN_SLICE, Pending, Pick, Readback, Scope,
    SyncLock, SyncOptions,
};
pub use error::{Error, Result};
/// The journal's format, retention and the collector live in
/// `pouch-journal`, which a store server can use too; they read here as
/// this crate's own modules.
pub use pouch_journal::{commit, gc, node, retention, snapshot};
pub use progress::{CollectorProgress, NoProgress, Phase, Progress};
pub use report::{Action, Changed, MAX_CHANGED_LISTED, SyncReport};
