//! Helpers shared by the store's test binaries.

use std::path::Path;

/// Bytes of every file under `dir`, recursively (what the store takes on
/// disk, apparent size).
pub fn folder_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                folder_size(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}
