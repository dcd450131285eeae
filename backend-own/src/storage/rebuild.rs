//! Rebuilding the index from the volumes alone.
//!
//! Every change a store keeps is a record in its volumes: blocks,
//! tombstones, journal entries and snapshots (see `volume`). The index is
//! a faster copy of what the volumes say, so when it is lost (deleted,
//! restored from an old backup without the volumes, damaged beyond
//! SQLite's repair) it is rebuilt by reading every volume once:
//!
//! - a block is stored where its last intact record is, unless a later
//!   tombstone deleted it;
//! - journal entries are every entry record's number and bytes (copies made
//!   by compaction are the same bytes), but for those up to the furthest
//!   trim record (a journal record numbered 0), which were dropped;
//! - the snapshot is the one covering the most entries.
//!
//! Damaged records are left out and counted: a damaged block is then
//! missing, which devices that still hold it repair by uploading it again.
//! A record header damaged mid-volume is skipped by searching for the next
//! valid header. A journal with a hole (a volume file lost) is not
//! rebuilt: the store refuses to open and says which entries are missing,
//! because numbering new entries over lost ones would split the history.
//!
//! The new index is written beside the old one and renamed into place
//! under the writer lock, so a crash mid-rebuild leaves no half index.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use pouch_backend::{BlockId, Error, Result};
use rusqlite::params;

use super::fsync_dir;
use super::index::{Pool, bump, db_error};
use super::volume::{
    RECORD_HEADER_LEN, RecordHeader, RecordKind, VOLUME_HEADER_LEN, check_volume_header,
    payload_is_intact, read_record, split_meta,
};

/// The index's file name in a store folder.
pub(super) const INDEX_FILE: &str = "index.sqlite";

/// What a rebuild found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RebuildReport {
    /// Volume files read.
    pub volumes: u64,
    /// Blocks indexed.
    pub blocks: u64,
    /// Journal entries indexed.
    pub journal_entries: u64,
    /// The entry the snapshot covers up to, if there is one.
    pub snapshot_seq: Option<u64>,
    /// Records left out because they are damaged.
    pub damaged_records: u64,
    /// Bytes skipped because no record could be read there.
    pub unreadable_bytes: u64,
    /// Where the index that was replaced was moved, if there was one.
    pub old_index: Option<PathBuf>,
}

/// Whether `dir` holds any volume file.
pub(super) fn has_volumes(dir: &Path) -> Result<bool> {
    Ok(!volume_ids(dir)?.is_empty())
}

/// The ids of the volume files in `dir`, in order.
pub(super) fn volume_ids(dir: &Path) -> Result<Vec<u64>> {
    let listing = match std::fs::read_dir(dir.join("volumes")) {
        Ok(listing) => listing,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("listing volumes")(e)),
    };
    let mut ids = Vec::new();
    for entry in listing {
        let name = entry.map_err(Error::io("listing volumes"))?.file_name();
        if let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".vol"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Where a record sits.
#[derive(Debug, Clone, Copy)]
struct At {
    volume: u64,
    offset: u64,
    len: u64,
}

/// Everything the volumes say, as it is being read.
#[derive(Default)]
struct Found {
    /// Each block's newest record, `None` once a later tombstone deleted it.
    blocks: HashMap<BlockId, Option<(At, u64)>>,
    journal: BTreeMap<u64, (Bytes, At)>,
    snapshot: Option<(u64, Bytes, At)>,
    /// The furthest trim (a journal record numbered 0): its point, bytes,
    /// place.
    trim: Option<(u64, Bytes, At)>,
    /// Each volume's length up to its last readable record.
    volumes: Vec<(u64, u64)>,
    report: RebuildReport,
}

impl Found {
    fn record(&mut self, header: &RecordHeader, payload: Bytes, at: At) {
        match header.kind {
            RecordKind::Block => {
                self.blocks
                    .insert(header.id, Some((at, u64::from(header.payload_len))));
            }
            RecordKind::Tombstone => {
                self.blocks.insert(header.id, None);
            }
            RecordKind::Journal => {
                let (seq, data) = split_meta(&payload);
                if seq == 0 {
                    let point = std::str::from_utf8(&data)
                        .ok()
                        .and_then(|t| t.parse::<u64>().ok());
                    match point {
                        Some(point) if self.trim.as_ref().is_none_or(|(t, _, _)| point > *t) => {
                            self.trim = Some((point, data, at));
                        }
                        Some(_) => {}
                        None => self.report.damaged_records += 1,
                    }
                    return;
                }
                self.journal.insert(seq, (data, at));
            }
            RecordKind::Snapshot => {
                let (seq, data) = split_meta(&payload);
                if self
                    .snapshot
                    .as_ref()
                    .is_none_or(|(known, _, _)| seq >= *known)
                {
                    self.snapshot = Some((seq, data, at));
                }
            }
        }
    }
}

/// Moves the index of the store in `dir` aside (if there is one) and
/// builds a new one from the volumes. The caller holds the writer lock and
/// no one has the index open.
pub(super) fn rebuild_index(dir: &Path) -> Result<RebuildReport> {
    let mut found = Found::default();
    for volume in volume_ids(dir)? {
        read_volume(dir, volume, &mut found)?;
    }
    // Entries up to the trim point were dropped; copies of them found in
    // volumes not yet compacted stay dropped.
    let trimmed = found.trim.as_ref().map_or(0, |(t, _, _)| *t);
    found.journal.retain(|seq, _| *seq > trimmed);
    if let Some((&last, _)) = found.journal.last_key_value() {
        let missing: Vec<u64> = (trimmed + 1..=last)
            .filter(|seq| !found.journal.contains_key(seq))
            .take(5)
            .collect();
        if !missing.is_empty() {
            return Err(Error::Format {
                what: format!(
                    "cannot rebuild the index of {}: journal entries {missing:?} (and maybe more) are missing from its volumes; a volume file may have been lost. Restore the missing volume files from a backup",
                    dir.display()
                ),
            });
        }
    }

    let index = dir.join(INDEX_FILE);
    let fresh = dir.join(format!("{INDEX_FILE}.rebuilding"));
    remove_database(&fresh)?;
    {
        let pool = Pool::open(&fresh)?;
        let mut conn = pool.get()?;
        write_index(&mut conn, &mut found)?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(db_error("writing the rebuilt index"))?;
    }
    if index.exists() {
        let aside = dir.join(format!(
            "{INDEX_FILE}.damaged-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        ));
        for suffix in ["", "-wal", "-shm"] {
            rename_if_present(&with_suffix(&index, suffix), &with_suffix(&aside, suffix))?;
        }
        found.report.old_index = Some(aside);
    } else {
        // A write-ahead log without its database belongs to the lost one;
        // SQLite would replay it into the new database.
        remove_database(&index)?;
    }
    std::fs::rename(&fresh, &index).map_err(Error::io("putting the rebuilt index in place"))?;
    remove_database(&fresh)?;
    fsync_dir(dir)?;
    Ok(found.report)
}

fn read_volume(dir: &Path, volume: u64, found: &mut Found) -> Result<()> {
    let path = super::volume_path(dir, volume);
    let file = File::open(&path).map_err(Error::io("opening a volume to rebuild the index"))?;
    check_volume_header(&file, volume).map_err(|what| Error::Format {
        what: format!("cannot rebuild the index: {what}"),
    })?;
    let file_len = file
        .metadata()
        .map_err(Error::io("reading a volume's length"))?
        .len();
    let mut offset = VOLUME_HEADER_LEN;
    let mut end = VOLUME_HEADER_LEN;
    while offset < file_len {
        match read_record(&file, offset, file_len).map_err(Error::io("reading a volume"))? {
            Some((header, payload)) => {
                let len = header.record_len();
                if payload_is_intact(&header, &payload) {
                    let at = At {
                        volume,
                        offset,
                        len,
                    };
                    found.record(&header, payload, at);
                } else {
                    tracing::warn!(volume, offset, "a damaged record is left out of the index");
                    found.report.damaged_records += 1;
                }
                offset += len;
                end = offset;
            }
            None => {
                let next = next_header(&file, offset + 1, file_len)?;
                if next < file_len {
                    tracing::warn!(
                        volume,
                        offset,
                        skipped = next - offset,
                        "skipped unreadable bytes"
                    );
                    found.report.unreadable_bytes += next - offset;
                }
                offset = next;
            }
        }
    }
    found.volumes.push((volume, end));
    found.report.volumes += 1;
    Ok(())
}

/// The offset of the next valid record header at or after `from`, or
/// `file_len` if there is none.
fn next_header(file: &File, from: u64, file_len: u64) -> Result<u64> {
    const WINDOW: u64 = 1 << 20;
    let header_len = RECORD_HEADER_LEN as usize;
    let mut start = from;
    while start + RECORD_HEADER_LEN <= file_len {
        let len = WINDOW.min(file_len - start);
        let mut buf = vec![0u8; len as usize];
        file.read_exact_at(&mut buf, start)
            .map_err(Error::io("reading a volume"))?;
        for i in 0..=buf.len() - header_len {
            if &buf[i..i + 4] != b"PREC" {
                continue;
            }
            let raw: &[u8; RECORD_HEADER_LEN as usize] =
                buf[i..i + header_len].try_into().expect("48 bytes");
            let at = start + i as u64;
            if let Some(header) = RecordHeader::decode(raw)
                && at + header.record_len() <= file_len
            {
                return Ok(at);
            }
        }
        if start + len >= file_len {
            break;
        }
        // Windows overlap by a header's length less one, so none is missed.
        start += len - (RECORD_HEADER_LEN - 1);
    }
    Ok(file_len)
}

fn write_index(conn: &mut rusqlite::Connection, found: &mut Found) -> Result<()> {
    let context = "writing the rebuilt index";
    let tx = conn.transaction().map_err(db_error(context))?;
    let mut live: HashMap<u64, u64> = HashMap::new();
    {
        let mut insert = tx
            .prepare("INSERT INTO blocks (id, volume, offset, length) VALUES (?1, ?2, ?3, ?4)")
            .map_err(db_error(context))?;
        for (id, place) in &found.blocks {
            let Some((at, payload_len)) = place else {
                continue;
            };
            insert
                .execute(params![
                    id.as_bytes(),
                    at.volume as i64,
                    at.offset as i64,
                    *payload_len as i64
                ])
                .map_err(db_error(context))?;
            *live.entry(at.volume).or_default() += at.len;
            found.report.blocks += 1;
        }
        let mut insert = tx
            .prepare("INSERT INTO journal (seq, data, volume, offset) VALUES (?1, ?2, ?3, ?4)")
            .map_err(db_error(context))?;
        for (seq, (data, at)) in &found.journal {
            insert
                .execute(params![
                    *seq as i64,
                    &data[..],
                    at.volume as i64,
                    at.offset as i64
                ])
                .map_err(db_error(context))?;
            *live.entry(at.volume).or_default() += at.len;
            found.report.journal_entries += 1;
        }
        if let Some((_, data, at)) = &found.trim {
            insert
                .execute(params![0i64, &data[..], at.volume as i64, at.offset as i64])
                .map_err(db_error(context))?;
            *live.entry(at.volume).or_default() += at.len;
        }
    }
    if let Some((seq, data, at)) = &found.snapshot {
        tx.execute(
            "INSERT INTO snapshot (id, seq, data, volume, offset) VALUES (1, ?1, ?2, ?3, ?4)",
            params![*seq as i64, &data[..], at.volume as i64, at.offset as i64],
        )
        .map_err(db_error(context))?;
        *live.entry(at.volume).or_default() += at.len;
        found.report.snapshot_seq = Some(*seq);
    }
    let newest = found.volumes.last().map(|(id, _)| *id);
    for (volume, end) in &found.volumes {
        let used = live.get(volume).copied().unwrap_or(0);
        tx.execute(
            "INSERT INTO volumes (id, length, sealed, garbage) VALUES (?1, ?2, ?3, ?4)",
            params![
                *volume as i64,
                *end as i64,
                Some(*volume) != newest,
                end.saturating_sub(VOLUME_HEADER_LEN + used) as i64
            ],
        )
        .map_err(db_error(context))?;
    }
    bump(&tx, "index_rebuilds", 1).map_err(db_error(context))?;
    tx.commit().map_err(db_error(context))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn rename_if_present(from: &Path, to: &Path) -> Result<()> {
    match std::fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("moving the old index aside")(e)),
    }
}

/// Removes a database and its write-ahead log files, if present.
fn remove_database(path: &Path) -> Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        match std::fs::remove_file(with_suffix(path, suffix)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("removing an old index file")(e)),
        }
    }
    Ok(())
}
