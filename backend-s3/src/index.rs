//! The local picture of where blocks live: every pack index and tombstone
//! file seen so far, applied, in memory and (as the files themselves) in a
//! cache folder so that a restart does not fetch them again.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pouch_backend::{BlockId, Codec};

use crate::pack::{Condemned, Entry, PackName};

/// A block's place: which pack, and where inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) pack: PackName,
    pub(crate) codec: Codec,
    pub(crate) offset: u64,
    pub(crate) len: u32,
}

/// Every applied index and tombstone file.
#[derive(Debug, Default)]
pub(crate) struct Index {
    locations: HashMap<BlockId, Vec<Location>>,
    packs: HashSet<PackName>,
    /// Tombstone objects applied, with the packs each names.
    tomb_files: HashMap<PackName, Vec<PackName>>,
    /// Merged index objects applied.
    merged_files: HashSet<PackName>,
    dead: HashSet<(BlockId, PackName)>,
    /// Every pack's entries and bytes, dead ones included: what the pack
    /// object holds.
    pack_sizes: HashMap<PackName, (u32, u64)>,
    /// Condemned-pairs objects applied, with their pairs (times resolved).
    condemned_files: HashMap<PackName, Vec<Condemned>>,
    /// Each condemned copy: the objects that name it, with their times.
    condemned: HashMap<(BlockId, PackName), Vec<(PackName, i64)>>,
    /// When the bucket was last listed.
    pub(crate) refreshed: Option<Instant>,
    /// The same moment on the clock that counts suspend
    /// ([`pouch_backend::gc::since_boot`]): how old the view of the
    /// condemned copies is.
    pub(crate) viewed_at: Option<Duration>,
}

impl Index {
    /// The live places of block `id`.
    pub(crate) fn find(&self, id: &BlockId) -> &[Location] {
        self.locations
            .get(id)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Whether block `id` is stored and some copy of it is not condemned:
    /// a condemned copy is still read, but never trusted as stored.
    pub(crate) fn has(&self, id: &BlockId) -> bool {
        self.find(id)
            .iter()
            .any(|p| !self.condemned.contains_key(&(*id, p.pack)))
    }

    /// Since when copy (`id`, `pack`) is condemned (store time, ms).
    pub(crate) fn condemned_since(&self, id: &BlockId, pack: PackName) -> Option<i64> {
        self.condemned
            .get(&(*id, pack))
            .and_then(|files| files.iter().map(|(_, since)| *since).min())
    }

    pub(crate) fn knows_condemned(&self, name: PackName) -> bool {
        self.condemned_files.contains_key(&name)
    }

    /// The condemned-pairs objects applied, with their pairs.
    pub(crate) fn condemned_files(&self) -> impl Iterator<Item = (PackName, &[Condemned])> + '_ {
        self.condemned_files.iter().map(|(n, p)| (*n, p.as_slice()))
    }

    /// Applies condemned-pairs object `name` (times resolved).
    pub(crate) fn add_condemned(&mut self, name: PackName, pairs: Vec<Condemned>) {
        if self.condemned_files.contains_key(&name) {
            return;
        }
        for (id, pack, since) in &pairs {
            self.condemned
                .entry((*id, *pack))
                .or_default()
                .push((name, *since));
        }
        self.condemned_files.insert(name, pairs);
    }

    /// Forgets condemned-pairs object `name` (unmarked, or gone).
    pub(crate) fn remove_condemned(&mut self, name: PackName) {
        let Some(pairs) = self.condemned_files.remove(&name) else {
            return;
        };
        for (id, pack, _) in pairs {
            if let Some(files) = self.condemned.get_mut(&(id, pack)) {
                files.retain(|(file, _)| *file != name);
                if files.is_empty() {
                    self.condemned.remove(&(id, pack));
                }
            }
        }
    }

    /// Tombstone objects applied, with the packs each names.
    pub(crate) fn tomb_files(&self) -> impl Iterator<Item = (PackName, &[PackName])> + '_ {
        self.tomb_files.iter().map(|(n, p)| (*n, p.as_slice()))
    }

    /// Forgets tombstone object `name` (deleted once its packs were): the
    /// copies it killed stay dead.
    pub(crate) fn forget_tombs(&mut self, name: PackName) {
        self.tomb_files.remove(&name);
    }

    /// Every block with its live copies, for listing.
    pub(crate) fn blocks(&self) -> impl Iterator<Item = (&BlockId, &[Location])> + '_ {
        self.locations.iter().map(|(id, p)| (id, p.as_slice()))
    }

    /// Pack `pack`'s entries and bytes, dead ones included.
    pub(crate) fn pack_size(&self, pack: PackName) -> Option<(u32, u64)> {
        self.pack_sizes.get(&pack).copied()
    }

    /// Whether copy (`id`, `pack`) was tombstoned.
    pub(crate) fn is_dead(&self, id: &BlockId, pack: PackName) -> bool {
        self.dead.contains(&(*id, pack))
    }

    pub(crate) fn knows_pack(&self, pack: PackName) -> bool {
        self.packs.contains(&pack)
    }

    pub(crate) fn knows_tombs(&self, name: PackName) -> bool {
        self.tomb_files.contains_key(&name)
    }

    pub(crate) fn knows_merged(&self, name: PackName) -> bool {
        self.merged_files.contains(&name)
    }

    /// Notes a merged index as applied.
    pub(crate) fn add_merged(&mut self, name: PackName) {
        self.merged_files.insert(name);
    }

    pub(crate) fn packs(&self) -> impl Iterator<Item = PackName> + '_ {
        self.packs.iter().copied()
    }

    /// Adds the entries of pack `pack` (minus tombstoned ones).
    pub(crate) fn add_pack(&mut self, pack: PackName, entries: &[Entry]) {
        if !self.packs.insert(pack) {
            return;
        }
        let bytes = entries.iter().map(|e| u64::from(e.len)).sum();
        self.pack_sizes.insert(pack, (entries.len() as u32, bytes));
        for entry in entries {
            if self.dead.contains(&(entry.id, pack)) {
                continue;
            }
            self.locations.entry(entry.id).or_default().push(Location {
                pack,
                codec: entry.codec,
                offset: entry.offset,
                len: entry.len,
            });
        }
    }

    /// Forgets a pack that is gone from the bucket (collected).
    pub(crate) fn remove_pack(&mut self, pack: PackName) {
        if self.packs.remove(&pack) {
            self.pack_sizes.remove(&pack);
            self.locations.retain(|_, places| {
                places.retain(|p| p.pack != pack);
                !places.is_empty()
            });
        }
    }

    /// Applies tombstone file `name`.
    pub(crate) fn add_tombs(&mut self, name: PackName, tombs: &[(BlockId, PackName)]) {
        if self.tomb_files.contains_key(&name) {
            return;
        }
        let mut packs: Vec<PackName> = tombs.iter().map(|(_, pack)| *pack).collect();
        packs.sort_unstable();
        packs.dedup();
        self.tomb_files.insert(name, packs);
        for &(id, pack) in tombs {
            self.dead.insert((id, pack));
            if let Some(places) = self.locations.get_mut(&id) {
                places.retain(|p| p.pack != pack);
                if places.is_empty() {
                    self.locations.remove(&id);
                }
            }
        }
    }

    /// How many distinct blocks are live.
    pub(crate) fn number_of_blocks(&self) -> usize {
        self.locations.len()
    }
}

/// The cache folder: the index and tombstone files as fetched. A damaged
/// file fails its checksum when read and is fetched again, so writes need
/// no fsync.
#[derive(Debug, Clone)]
pub(crate) struct DiskCache {
    root: Option<PathBuf>,
}

impl DiskCache {
    pub(crate) fn new(root: Option<PathBuf>) -> Self {
        Self { root }
    }

    fn path(&self, kind: &str, name: PackName) -> Option<PathBuf> {
        self.root
            .as_ref()
            .map(|r| r.join(kind).join(name.to_string()))
    }

    /// The cached file, if any.
    pub(crate) fn read(&self, kind: &str, name: PackName) -> Option<Vec<u8>> {
        std::fs::read(self.path(kind, name)?).ok()
    }

    /// Keeps a copy; failures only cost a later fetch, so they are logged.
    pub(crate) fn write(&self, kind: &str, name: PackName, data: &Bytes) {
        let Some(path) = self.path(kind, name) else {
            return;
        };
        if let Err(e) = write_atomically(&path, data) {
            tracing::debug!(path = %path.display(), error = %e, "could not cache an index file");
        }
    }

    pub(crate) fn remove(&self, kind: &str, name: PackName) {
        if let Some(path) = self.path(kind, name) {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("cache files live in a folder");
    std::fs::create_dir_all(dir)?;
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, data)?;
    std::fs::rename(&temp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8) -> Entry {
        Entry {
            id: BlockId::of(&[n]),
            codec: Codec::Raw,
            offset: u64::from(n) * 10,
            len: 10,
        }
    }

    #[test]
    fn tombstones_kill_one_pack_copy_and_a_later_copy_lives() {
        let (a, b) = (PackName(1), PackName(2));
        let mut index = Index::default();
        index.add_pack(a, &[entry(1), entry(2)]);
        assert!(index.has(&entry(1).id));
        index.add_tombs(PackName(9), &[(entry(1).id, a)]);
        assert!(!index.has(&entry(1).id));
        assert!(index.has(&entry(2).id));
        // Put again after the delete: a new pack, which no tombstone names.
        index.add_pack(b, &[entry(1)]);
        assert_eq!(index.find(&entry(1).id)[0].pack, b);
        // A tombstone seen before its pack still applies.
        index.add_tombs(PackName(10), &[(entry(3).id, PackName(3))]);
        index.add_pack(PackName(3), &[entry(3)]);
        assert!(!index.has(&entry(3).id));
        index.remove_pack(b);
        assert!(!index.has(&entry(1).id));
        assert_eq!(index.number_of_blocks(), 1);
    }

    #[test]
    fn a_condemned_copy_is_read_but_not_trusted_until_unmarked() {
        let (a, b) = (PackName(1), PackName(2));
        let mut index = Index::default();
        index.add_pack(a, &[entry(1), entry(2)]);
        assert_eq!(index.pack_size(a), Some((2, 20)));
        index.add_condemned(PackName(7), vec![(entry(1).id, a, 500)]);
        assert!(!index.has(&entry(1).id), "condemned: not trusted as stored");
        assert_eq!(index.find(&entry(1).id).len(), 1, "but still readable");
        assert_eq!(index.condemned_since(&entry(1).id, a), Some(500));
        // A rewrite keeps the older time while both objects are there.
        index.add_condemned(PackName(8), vec![(entry(1).id, a, 500)]);
        index.remove_condemned(PackName(7));
        assert_eq!(index.condemned_since(&entry(1).id, a), Some(500));
        // A new copy elsewhere is trusted.
        index.add_pack(b, &[entry(1)]);
        assert!(index.has(&entry(1).id));
        index.remove_condemned(PackName(8));
        assert_eq!(index.condemned_since(&entry(1).id, a), None);
        assert!(index.has(&entry(2).id));
    }

    #[test]
    fn the_disk_cache_keeps_files_by_kind_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(Some(dir.path().to_path_buf()));
        let name = PackName(42);
        assert!(cache.read("packs", name).is_none());
        cache.write("packs", name, &Bytes::from_static(b"idx"));
        assert_eq!(cache.read("packs", name).unwrap(), b"idx");
        assert!(cache.read("tombs", name).is_none());
        cache.remove("packs", name);
        assert!(cache.read("packs", name).is_none());
        let none = DiskCache::new(None);
        none.write("packs", name, &Bytes::from_static(b"idx"));
        assert!(none.read("packs", name).is_none());
    }
}
