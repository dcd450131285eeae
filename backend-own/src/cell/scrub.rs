//! The node's own scrubber. A node knows nothing of blocks, so it checks
//! what it wrote: every range a `PUT` wrote is hashed (BLAKE3) as it is
//! written and the hash appended to a sidecar beside the file
//! (`FILE.sums`: offset, length, hash; 48 bytes each, fsynced with the
//! data). A volume offset always holds the same bytes (repair and the
//! verifier only ever write back what was there), so every hash stays true
//! for the life of the file; a later write of the same range replaces its
//! entry.
//!
//! The scrubber walks every file's ranges at a bounded rate and records a
//! range that no longer hashes right (a flipped bit, a bad sector, a
//! truncated file) in the database's `damage` table; the repair pass
//! (`repair.rs::mend_damage`) writes it again from the other copies or
//! shards.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::db;
use super::node::Piece;

/// One sidecar entry's size.
const ENTRY: usize = 48;

/// Bytes hashed between two looks at the pace.
const STEP: usize = 1 << 20;

/// The sidecar of `file`.
pub(super) fn sidecar(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".sums");
    PathBuf::from(name)
}

/// Appends the hash of `bytes`, written at `offset` of `file`, to its
/// sidecar, durably. One `write` of an `O_APPEND` file: concurrent writers
/// of other ranges never interleave within an entry.
pub(super) fn record(file: &Path, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
    let mut entry = [0u8; ENTRY];
    entry[..8].copy_from_slice(&offset.to_le_bytes());
    entry[8..16].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
    entry[16..].copy_from_slice(blake3::hash(bytes).as_bytes());
    let mut sums = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(sidecar(file))?;
    sums.write_all(&entry)?;
    sums.sync_data()
}

/// The ranges of `file` its sidecar names, the last entry of each range
/// winning: (offset, length) → hash.
fn ranges(file: &Path) -> std::io::Result<BTreeMap<(u64, u64), [u8; 32]>> {
    let bytes = std::fs::read(sidecar(file))?;
    let mut out = BTreeMap::new();
    // A torn last entry (a crash mid-append) is ignored.
    for entry in bytes.chunks_exact(ENTRY) {
        let offset = u64::from_le_bytes(entry[..8].try_into().expect("8 bytes"));
        let len = u64::from_le_bytes(entry[8..16].try_into().expect("8 bytes"));
        out.insert((offset, len), entry[16..].try_into().expect("32 bytes"));
    }
    Ok(out)
}

/// The hash `file`'s sidecar keeps for exactly `len` bytes at `offset`, if
/// a write wrote exactly that range (the last such write's).
pub(super) fn recorded(file: &Path, offset: u64, len: u64) -> std::io::Result<Option<[u8; 32]>> {
    match ranges(file) {
        Ok(ranges) => Ok(ranges.get(&(offset, len)).copied()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// How the scrubber runs.
#[derive(Debug, Clone)]
pub struct ScrubOptions {
    /// Bytes read per second at most (0: no scrubbing).
    pub bytes_per_sec: u64,
    /// Time between the starts of two passes over the node's files (the
    /// first starts one period after the node).
    pub every: Duration,
}

/// The piece a file of the node's folders holds, from its name.
pub(super) fn piece_of(name: &str, in_shards: bool) -> Option<Piece> {
    if in_shards {
        let (volume, index) = name.split_once('.')?;
        Some(Piece::Shard(
            i64::from_str_radix(volume, 16).ok()?,
            index.parse().ok()?,
        ))
    } else {
        Some(Piece::Replica(i64::from_str_radix(name, 16).ok()?))
    }
}

/// What a pass found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScrubPass {
    /// Bytes read and hashed.
    pub bytes: u64,
    /// Ranges that no longer hash right.
    pub damaged: u64,
}

/// Scrubs the node's files (under `data`'s `volumes` and `shards`) every
/// `options.every`, recording damage for node `id` in the database.
pub(super) async fn run(
    pool: deadpool_postgres::Pool,
    id: i64,
    data: PathBuf,
    options: ScrubOptions,
) {
    if options.bytes_per_sec == 0 {
        return;
    }
    let mut tick = tokio::time::interval(options.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        match pass(&pool, id, &data, options.bytes_per_sec).await {
            Ok(found) if found.damaged > 0 => {
                tracing::error!(
                    bytes = found.bytes,
                    damaged = found.damaged,
                    "scrub pass found damage"
                );
            }
            Ok(found) => tracing::debug!(bytes = found.bytes, "scrub pass clean"),
            Err(e) => tracing::warn!("scrub pass failed: {e}"),
        }
    }
}

/// One pass over every file, at most `rate` bytes a second.
async fn pass(
    pool: &deadpool_postgres::Pool,
    id: i64,
    data: &Path,
    rate: u64,
) -> Result<ScrubPass, pouch_backend::Error> {
    let mut found = ScrubPass::default();
    for (folder, in_shards) in [("volumes", false), ("shards", true)] {
        let Ok(entries) = std::fs::read_dir(data.join(folder)) else {
            continue;
        };
        let mut files: Vec<(PathBuf, Piece)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let piece = piece_of(&name, in_shards)?;
                Some((e.path(), piece))
            })
            .collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        for (file, piece) in files {
            let Ok(ranges) = ranges(&file) else { continue };
            for ((offset, len), want) in ranges {
                let check = {
                    let file = file.clone();
                    tokio::task::spawn_blocking(move || hash_range(&file, offset, len))
                };
                let started = tokio::time::Instant::now();
                let got = check
                    .await
                    .map_err(pouch_backend::Error::internal("scrubbing"))?;
                found.bytes += len;
                let intact = match got {
                    Ok(hash) => hash == want,
                    // Deleted meanwhile (dropped, compacted): not damage.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound && !file.exists() => true,
                    Err(_) => false,
                };
                if !intact {
                    found.damaged += 1;
                    tracing::error!(?piece, offset, len, "a range no longer hashes right");
                    report(pool, id, piece, offset, len).await?;
                }
                // The pace: this range's share of a second at `rate`.
                let due = Duration::from_secs_f64(len as f64 / rate as f64);
                tokio::time::sleep_until(started + due).await;
            }
        }
    }
    Ok(found)
}

/// The hash of `len` bytes at `offset` of `file` (a short file is damage).
fn hash_range(file: &Path, offset: u64, len: u64) -> std::io::Result<[u8; 32]> {
    let mut f = std::fs::File::open(file)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut hasher = blake3::Hasher::new();
    let mut left = len;
    let mut buf = vec![0u8; STEP];
    while left > 0 {
        let take = left.min(STEP as u64) as usize;
        f.read_exact(&mut buf[..take])?;
        hasher.update(&buf[..take]);
        left -= take as u64;
    }
    Ok(*hasher.finalize().as_bytes())
}

async fn report(
    pool: &deadpool_postgres::Pool,
    node: i64,
    piece: Piece,
    offset: u64,
    len: u64,
) -> Result<(), pouch_backend::Error> {
    let (volume, shard) = match piece {
        Piece::Replica(volume) => (volume, -1i32),
        Piece::Shard(volume, index) => (volume, index as i32),
    };
    let client = db::client(pool).await?;
    client
        .execute(
            "INSERT INTO damage (node, volume, shard, \"offset\", length) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT DO NOTHING",
            &[&node, &volume, &shard, &(offset as i64), &(len as i64)],
        )
        .await
        .map_err(db::error("recording damage"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_rewritten_keeps_one_entry_and_a_torn_entry_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("0000000000000001");
        record(&file, 0, b"first").unwrap();
        record(&file, 5, b"second").unwrap();
        record(&file, 0, b"again").unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(sidecar(&file))
            .unwrap()
            .write_all(&[1, 2, 3])
            .unwrap();
        let found = ranges(&file).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[&(0, 5)], *blake3::hash(b"again").as_bytes());
        assert_eq!(
            piece_of("00000000000000ff.4", true),
            Some(Piece::Shard(255, 4))
        );
        assert_eq!(piece_of("00000000000000ff.sums", false), None);
    }
}
