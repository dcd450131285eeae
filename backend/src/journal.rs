//! The namespace journal's types: sequence numbers, entries, snapshots.

use std::fmt;

use bytes::Bytes;

/// The position of an entry in a namespace journal.
///
/// Entries are numbered from 1 without gaps. `Seq::ZERO` names the position
/// before the first entry, so a cursor "after `Seq::ZERO`" reads everything.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Seq(pub u64);

impl Seq {
    /// Before the first entry.
    pub const ZERO: Seq = Seq(0);

    /// The entry after this one.
    pub const fn next(self) -> Seq {
        Seq(self.0 + 1)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One committed entry of the journal. The bytes are opaque to backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// Its position.
    pub seq: Seq,
    /// Its contents, as appended.
    pub data: Bytes,
}

/// The journal folded up to and including `seq`, so that a new device can
/// start there instead of replaying every entry. Opaque to backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The last entry folded into it.
    pub seq: Seq,
    /// The folded state.
    pub data: Bytes,
}
