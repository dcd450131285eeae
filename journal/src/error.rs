//! What can go wrong reading a journal or collecting over it.

/// An error of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed.
    #[error(transparent)]
    Backend(#[from] pouch_backend::Error),

    /// A journal entry does not parse, or is of a newer format.
    #[error("journal entry {seq} is malformed: {reason}")]
    BadEntry {
        /// The entry.
        seq: u64,
        /// What is wrong.
        reason: String,
    },

    /// The store's snapshot does not parse, or is of a newer format.
    #[error("the journal snapshot at entry {seq} is unusable: {reason}")]
    BadSnapshot {
        /// The entry it folds.
        seq: u64,
        /// What is wrong.
        reason: String,
    },

    /// The collector will not run here, and says why (an entry it cannot
    /// read, a store the namespace moved away from).
    #[error("{store}: {reason}")]
    Refused {
        /// The store concerned.
        store: String,
        /// Why, and what to do.
        reason: String,
    },
}

/// A result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
