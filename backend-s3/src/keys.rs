//! Where everything lives in the bucket.
//!
//! ```text
//! {prefix}journal/{seq:020}    one journal entry, created with If-None-Match: *
//! {prefix}journal/trimmed-{seq:020}  entries up to seq were dropped (the highest counts)
//! {prefix}snapshot             the latest snapshot (8-byte seq, then its bytes)
//! {prefix}packs/{name}.pack    encoded blocks back to back
//! {prefix}packs/{name}.idx     where each block of that pack is (see `pack`)
//! {prefix}indexes/{name}       many packs' indexes merged (see `pack`)
//! {prefix}tombs/{name}         deleted (block, pack) pairs (see `pack`)
//! {prefix}condemned/{name}     (block, pack) pairs a collector marked (see `pack`)
//! {prefix}gc/lease/{gen:020}   one collector's lease, created with If-None-Match: *
//! {prefix}probe/{name}         the conditional-write probe, removed after use
//! ```
//!
//! A pack's index is written after the pack, so a block exists exactly when
//! an index naming it exists. Zero-padded sequence numbers make the journal
//! list in order.

use object_store::path::Path;
use pouch_backend::Seq;

use crate::pack::PackName;

/// Key builder for one namespace under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    /// Empty, or ends with `/`.
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        let trimmed = prefix.trim_matches('/');
        let prefix = if trimmed.is_empty() {
            String::new()
        } else {
            format!("{trimmed}/")
        };
        Self { prefix }
    }

    fn path(&self, rest: &str) -> Path {
        Path::from(format!("{}{rest}", self.prefix))
    }

    pub(crate) fn journal_dir(&self) -> Path {
        self.path("journal")
    }

    pub(crate) fn journal(&self, seq: Seq) -> Path {
        self.path(&format!("journal/{:020}", seq.0))
    }

    /// The marker of a trim through `seq`. It sorts after every entry's
    /// key, so a listing that reaches the end of the journal sees it.
    pub(crate) fn journal_trimmed(&self, seq: Seq) -> Path {
        self.path(&format!("journal/trimmed-{:020}", seq.0))
    }

    /// The trim point of a trim marker key, `None` for anything else.
    pub(crate) fn parse_journal_trimmed(&self, key: &Path) -> Option<Seq> {
        let digits = key.filename()?.strip_prefix("trimmed-")?;
        if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok().map(Seq)
    }

    /// The sequence number of a journal key, `None` for anything else.
    pub(crate) fn parse_journal(&self, key: &Path) -> Option<Seq> {
        let name = key.filename()?;
        if name.len() != 20 || !name.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        name.parse().ok().map(Seq)
    }

    pub(crate) fn snapshot(&self) -> Path {
        self.path("snapshot")
    }

    pub(crate) fn identity(&self) -> Path {
        self.path("identity")
    }

    pub(crate) fn packs_dir(&self) -> Path {
        self.path("packs")
    }

    pub(crate) fn pack(&self, name: PackName) -> Path {
        self.path(&format!("packs/{name}.pack"))
    }

    pub(crate) fn pack_index(&self, name: PackName) -> Path {
        self.path(&format!("packs/{name}.idx"))
    }

    /// The pack named by a pack key, `None` for anything else.
    pub(crate) fn parse_pack(&self, key: &Path) -> Option<PackName> {
        key.filename()?.strip_suffix(".pack")?.parse().ok()
    }

    /// The pack named by an index key, `None` for anything else.
    pub(crate) fn parse_pack_index(&self, key: &Path) -> Option<PackName> {
        key.filename()?.strip_suffix(".idx")?.parse().ok()
    }

    pub(crate) fn merged_dir(&self) -> Path {
        self.path("indexes")
    }

    pub(crate) fn merged(&self, name: PackName) -> Path {
        self.path(&format!("indexes/{name}"))
    }

    /// The name of a merged index key, `None` for anything else.
    pub(crate) fn parse_merged(&self, key: &Path) -> Option<PackName> {
        key.filename()?.parse().ok()
    }

    pub(crate) fn tombs_dir(&self) -> Path {
        self.path("tombs")
    }

    pub(crate) fn tomb(&self, name: PackName) -> Path {
        self.path(&format!("tombs/{name}"))
    }

    /// The name of a tombstone key, `None` for anything else.
    pub(crate) fn parse_tomb(&self, key: &Path) -> Option<PackName> {
        key.filename()?.parse().ok()
    }

    pub(crate) fn condemned_dir(&self) -> Path {
        self.path("condemned")
    }

    pub(crate) fn condemned(&self, name: PackName) -> Path {
        self.path(&format!("condemned/{name}"))
    }

    /// The name of a condemned-pairs key, `None` for anything else.
    pub(crate) fn parse_condemned(&self, key: &Path) -> Option<PackName> {
        key.filename()?.parse().ok()
    }

    pub(crate) fn lease_dir(&self) -> Path {
        self.path("gc/lease")
    }

    pub(crate) fn lease(&self, generation: u64) -> Path {
        self.path(&format!("gc/lease/{generation:020}"))
    }

    /// The generation of a lease key, `None` for anything else.
    pub(crate) fn parse_lease(&self, key: &Path) -> Option<u64> {
        let name = key.filename()?;
        if name.len() != 20 || !name.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        name.parse().ok()
    }

    pub(crate) fn probe(&self, name: PackName) -> Path {
        self.path(&format!("probe/{name}"))
    }

    /// `s3://bucket/prefix` for messages.
    pub(crate) fn describe(&self, bucket: &str) -> String {
        format!("s3://{bucket}/{}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_keys_sort_in_sequence_order_and_parse_back() {
        let keys = Keys::new("/team/pouch/");
        let nine = keys.journal(Seq(9));
        let ten = keys.journal(Seq(10));
        assert_eq!(nine.as_ref(), "team/pouch/journal/00000000000000000009");
        assert!(nine.as_ref() < ten.as_ref());
        assert_eq!(keys.parse_journal(&ten), Some(Seq(10)));
        assert_eq!(keys.parse_journal(&keys.snapshot()), None);
        let trimmed = keys.journal_trimmed(Seq(4));
        assert!(trimmed.as_ref() > keys.journal(Seq(u64::MAX)).as_ref());
        assert_eq!(keys.parse_journal(&trimmed), None);
        assert_eq!(keys.parse_journal_trimmed(&trimmed), Some(Seq(4)));
        assert_eq!(keys.parse_journal_trimmed(&ten), None);
    }

    #[test]
    fn an_empty_prefix_is_the_bucket_root() {
        let keys = Keys::new("");
        assert_eq!(keys.snapshot().as_ref(), "snapshot");
        let name = PackName::random();
        assert_eq!(keys.parse_pack_index(&keys.pack_index(name)), Some(name));
        assert_eq!(keys.parse_pack_index(&keys.pack(name)), None);
        assert_eq!(keys.parse_pack(&keys.pack(name)), Some(name));
        assert_eq!(keys.parse_pack(&keys.pack_index(name)), None);
        assert_eq!(keys.parse_tomb(&keys.tomb(name)), Some(name));
        assert_eq!(keys.parse_merged(&keys.merged(name)), Some(name));
        assert_eq!(keys.parse_condemned(&keys.condemned(name)), Some(name));
        assert_eq!(keys.lease(7).as_ref(), "gc/lease/00000000000000000007");
        assert_eq!(keys.parse_lease(&keys.lease(7)), Some(7));
        assert_eq!(keys.parse_lease(&keys.condemned(name)), None);
    }
}
