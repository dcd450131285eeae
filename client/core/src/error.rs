//! The sync engine's errors.

use std::path::PathBuf;

impl From<pouch_journal::Error> for Error {
    fn from(e: pouch_journal::Error) -> Self {
        match e {
            pouch_journal::Error::Backend(e) => Error::Backend(e),
            pouch_journal::Error::BadEntry { seq, reason } => Error::BadEntry { seq, reason },
            pouch_journal::Error::BadSnapshot { seq, reason } => Error::BadEntry {
                seq,
                reason: format!("in the journal snapshot: {reason}"),
            },
            pouch_journal::Error::Refused { store, reason } => Error::Refused {
                path: store,
                reason,
            },
        }
    }
}

/// A result with [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in the sync engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The backend failed; see its `is_retryable`.
    #[error(transparent)]
    Backend(#[from] pouch_backend::Error),

    /// A file-system operation on a path failed.
    #[error("{path}: {source}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },

    /// The local state database failed.
    #[error("{}", db_message(.0))]
    Db(#[from] rusqlite::Error),

    /// The local state was written by a newer Pouch.
    #[error(
        "the local state database has schema {found}; this Pouch knows up to {known}: upgrade Pouch"
    )]
    NewerSchema {
        /// The version on disk.
        found: u32,
        /// The newest this build knows.
        known: u32,
    },

    /// A path that must never touch the disk (from a corrupt or malicious
    /// journal, or a name Pouch cannot represent).
    #[error("unsafe path {path:?}: {reason}")]
    UnsafePath {
        /// The offending path, as received.
        path: String,
        /// Which rule it breaks.
        reason: &'static str,
    },

    /// A journal entry that does not parse.
    #[error("journal entry {seq} is malformed: {reason}")]
    BadEntry {
        /// Its position.
        seq: u64,
        /// What is wrong.
        reason: String,
    },

    /// The configuration is missing or wrong.
    #[error("configuration {path}: {reason}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },

    /// The sync root cannot be listed (an unmounted disk, a removed
    /// folder): nothing is synced, so its absence never looks like a delete.
    #[error("the folder {root} cannot be read ({source}); is its disk mounted? Nothing was synced")]
    RootUnavailable {
        /// The sync root.
        root: PathBuf,
        /// Why it cannot be listed.
        #[source]
        source: std::io::Error,
    },

    /// Deletes within a few minutes add up to a large share of the tree;
    /// they were not sent. Everything else of the sync still happened.
    #[error(
        "{deletes} of {total} synced paths were deleted here within minutes; not propagating \
         the deletes (everything else was synced). If it is intended, run \
         `pouch sync --allow-mass-delete` (or `pouch resume --allow-mass-delete`)"
    )]
    MassDelete {
        /// Deletes sent in the window and held back now.
        deletes: usize,
        /// Paths in the synced tree when the window began.
        total: usize,
    },

    /// The path changed on disk between planning and acting; it was left
    /// alone and the next sync picks it up.
    #[error("changed while syncing; will retry on the next sync")]
    ChangedDuringSync,

    /// A request about one path that cannot be done as asked (restore a
    /// version that does not exist, exclude a folder with unsynced changes).
    #[error("{path}: {reason}")]
    Refused {
        /// The path concerned.
        path: String,
        /// Why, and what to do.
        reason: String,
    },

    /// The namespace moved to another store (`pouch migrate switch` on some
    /// device); this device must follow before syncing again.
    #[error("this folder's data moved to another store at journal entry {seq}; syncing follows it")]
    Moved {
        /// The entry that announced the move.
        seq: u64,
        /// Where to.
        to: Box<crate::location::StoreLocation>,
    },

    /// A migration was announced (or stopped) that this device joins (or
    /// leaves) by itself: its stores change, then it syncs again.
    #[error(
        "journal entry {seq} announced a change of migration; this device's stores change before it syncs again"
    )]
    MigrationChanged {
        /// The entry that announced it.
        seq: u64,
    },

    /// The namespace moved to a store on another server (or bucket) than
    /// the configured one: this device waits for its user to follow or
    /// refuse the move, and meanwhile writes nothing and changes nothing.
    #[error(
        "this folder's data moved to {to} (journal entry {seq}), away from the server this device is configured for, so Pouch does not follow it by itself: a move entry can be written by anyone holding the folder's token. Nothing was synced; your files and config are safe and untouched. If you made this move, run `pouch migrate follow`; if not, run `pouch migrate refuse` to keep syncing with the configured store"
    )]
    MoveWaits {
        /// The entry that announced the move.
        seq: u64,
        /// Where to.
        to: Box<crate::location::StoreLocation>,
    },

    /// The store at the configured place is not the one this device's state
    /// belongs to (another store, an emptied one, one that lost its
    /// history): nothing was synced and nothing written to it.
    #[error(
        "{store} is not the store this folder synced with: {reason}. Nothing was synced and nothing \
         was written to it. Is the right disk mounted, the right bucket or server configured? If the \
         store was replaced on purpose, move this device's local state ({state}) aside and sync \
         again: the folder is then compared with the store afresh, and nothing is deleted"
    )]
    WrongStore {
        /// The store, as it describes itself.
        store: String,
        /// What differs.
        reason: String,
        /// This device's local state file.
        state: PathBuf,
    },

    /// Nothing at the configured place is a Pouch store: nothing was
    /// synced, and no store is created (only `pouch init` makes one).
    #[error(
        "{store}: there is no Pouch store there (is its disk mounted?); nothing was synced, and \
         no store was made. `pouch init` makes one"
    )]
    NoStore {
        /// The place, as the store describes itself.
        store: String,
    },

    /// Other devices kept committing first; the sync gave up for now.
    #[error("lost the race to commit {attempts} times in a row; try again")]
    Contended {
        /// How many commits were lost.
        attempts: u32,
    },
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }

    /// Whether this is the store being out of reach (no network, the
    /// server down) rather than something wrong.
    pub fn is_offline(&self) -> bool {
        matches!(
            self,
            Error::Backend(pouch_backend::Error::Unavailable { .. })
        )
    }

    /// Whether running the same sync again later may succeed unchanged.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Backend(e) => e.is_retryable(),
            Error::Contended { .. } | Error::ChangedDuringSync => true,
            Error::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut
            ),
            _ => false,
        }
    }
}

/// The local state's error, with the way out when the file is damaged:
/// everything in it can be rebuilt from the store.
fn db_message(err: &rusqlite::Error) -> String {
    use rusqlite::ErrorCode;
    match err.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => format!(
            "the local state database is damaged ({err}). It can be rebuilt from the store: move the file aside (the config's `state`) and run `pouch sync`; files that differ from the store are kept as conflicted copies, nothing is deleted"
        ),
        _ => format!("the local state database: {err}"),
    }
}
