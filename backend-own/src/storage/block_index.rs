//! The block index and the volume table, as named queries: every SQL
//! statement the write path runs (group commit, delete, volume lifecycle,
//! crash recovery) is one function here, so the write path reads as steps
//! and the schema's users are in one place.

use bytes::Bytes;
use pouch_backend::{BlockId, Result, Seq};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::index::{bump, db_error};
use super::volume::{RECORD_HEADER_LEN, RecordHeader, RecordKind, split_meta};
use super::writer::Placed;

/// Whether block `id` is indexed.
pub(super) fn is_stored(conn: &Connection, id: &BlockId) -> Result<bool> {
    let context = "checking for stored blocks";
    conn.prepare_cached("SELECT 1 FROM blocks WHERE id = ?1")
        .map_err(db_error(context))?
        .exists([id.as_bytes()])
        .map_err(db_error(context))
}

/// The volume and payload length of block `id`, if indexed.
pub(super) fn volume_and_length(conn: &Connection, id: &BlockId) -> Result<Option<(u64, u64)>> {
    let context = "looking up blocks to delete";
    conn.prepare_cached("SELECT volume, length FROM blocks WHERE id = ?1")
        .map_err(db_error(context))?
        .query_row([id.as_bytes()], |row| {
            Ok((row.get::<_, i64>(0)? as u64, row.get::<_, i64>(1)? as u64))
        })
        .optional()
        .map_err(db_error(context))
}

fn immediate<'c>(conn: &'c mut Connection, context: &'static str) -> Result<Transaction<'c>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_error(context))
}

/// Indexes blocks appended to `volume` (`(id, record offset, payload
/// length)` each), whose length is now `new_len`, up from `old_len`.
pub(super) fn index_appended(
    conn: &mut Connection,
    volume: u64,
    old_len: u64,
    new_len: u64,
    locations: &[(BlockId, u64, u64)],
) -> Result<()> {
    let context = "indexing blocks";
    let tx = immediate(conn, context)?;
    {
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO blocks (id, volume, offset, length) VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(db_error(context))?;
        for (id, at, length) in locations {
            insert
                .execute(params![
                    id.as_bytes(),
                    volume as i64,
                    *at as i64,
                    *length as i64
                ])
                .map_err(db_error(context))?;
        }
    }
    {
        // A block sent again replaces its quarantined copy.
        let mut healed = tx
            .prepare_cached("DELETE FROM quarantine WHERE id = ?1")
            .map_err(db_error(context))?;
        for (id, _, _) in locations {
            healed.execute([id.as_bytes()]).map_err(db_error(context))?;
        }
    }
    tx.execute(
        "UPDATE volumes SET length = ?2 WHERE id = ?1",
        params![volume as i64, new_len as i64],
    )
    .map_err(db_error(context))?;
    bump(&tx, "blocks_written", locations.len() as u64).map_err(db_error(context))?;
    bump(&tx, "append_groups", 1).map_err(db_error(context))?;
    bump(&tx, "bytes_written", new_len - old_len).map_err(db_error(context))?;
    tx.commit().map_err(db_error(context))
}

/// Unindexes deleted blocks (`(id, volume, payload length)` each), whose
/// tombstones (`tombstone_bytes` of them) went to the end of `active`, now
/// `new_len` long; their records become garbage for compaction.
pub(super) fn index_deletes(
    conn: &mut Connection,
    active: u64,
    new_len: u64,
    tombstone_bytes: u64,
    doomed: &[(BlockId, u64, u64)],
) -> Result<()> {
    let context = "indexing deletes";
    let tx = immediate(conn, context)?;
    for (id, volume, length) in doomed {
        tx.execute("DELETE FROM blocks WHERE id = ?1", [id.as_bytes()])
            .map_err(db_error(context))?;
        tx.execute(
            "UPDATE volumes SET garbage = garbage + ?2 WHERE id = ?1",
            params![*volume as i64, (RECORD_HEADER_LEN + length) as i64],
        )
        .map_err(db_error(context))?;
    }
    tx.execute(
        "UPDATE volumes SET length = ?2, garbage = garbage + ?3 WHERE id = ?1",
        params![active as i64, new_len as i64, tombstone_bytes as i64],
    )
    .map_err(db_error(context))?;
    bump(&tx, "blocks_deleted", doomed.len() as u64).map_err(db_error(context))?;
    tx.commit().map_err(db_error(context))
}

/// Whether no block is marked by the garbage collector: nearly always, and
/// one cheap read, so the write path skips its mark work.
pub(super) fn nothing_marked(conn: &Connection) -> Result<bool> {
    conn.query_row("SELECT NOT EXISTS (SELECT 1 FROM gc_marks)", [], |row| {
        row.get(0)
    })
    .map_err(db_error("checking for marked blocks"))
}

/// Takes the garbage collector's marks off `ids` (a put or an existence
/// check of a marked block revives it); a no-op read when nothing is
/// marked, as nearly always.
pub(super) fn revive(conn: &mut Connection, ids: &[BlockId]) -> Result<()> {
    let context = "reviving marked blocks";
    if ids.is_empty() || nothing_marked(conn)? {
        return Ok(());
    }
    let tx = immediate(conn, context)?;
    {
        let mut stmt = tx
            .prepare_cached("DELETE FROM gc_marks WHERE id = ?1")
            .map_err(db_error(context))?;
        for id in ids {
            stmt.execute([id.as_bytes()]).map_err(db_error(context))?;
        }
    }
    tx.commit().map_err(db_error(context))
}

/// The unsealed volume (id, indexed length), if there is one.
pub(super) fn active_volume(conn: &Connection) -> Result<Option<(u64, u64)>> {
    conn.query_row(
        "SELECT id, length FROM volumes WHERE sealed = 0 ORDER BY id DESC LIMIT 1",
        [],
        |row| Ok((row.get::<_, i64>(0)? as u64, row.get::<_, i64>(1)? as u64)),
    )
    .optional()
    .map_err(db_error("finding the active volume"))
}

/// The highest volume id ever used (0 when none).
pub(super) fn last_volume_id(conn: &Connection) -> Result<u64> {
    conn.query_row("SELECT COALESCE(MAX(id), 0) FROM volumes", [], |row| {
        row.get::<_, i64>(0)
    })
    .map(|id| id as u64)
    .map_err(db_error("finding the active volume"))
}

/// Whether the store has any volume yet.
pub(super) fn any_volume(conn: &Connection) -> Result<bool> {
    conn.query_row("SELECT EXISTS (SELECT 1 FROM volumes)", [], |row| {
        row.get::<_, bool>(0)
    })
    .map_err(db_error("opening the store"))
}

/// Adds volume `id` (just its header, `len` bytes), sealing `seal` first.
pub(super) fn add_volume(
    conn: &mut Connection,
    id: u64,
    len: u64,
    seal: Option<u64>,
) -> Result<()> {
    let context = "adding a volume";
    let tx = immediate(conn, context)?;
    if let Some(old) = seal {
        tx.execute("UPDATE volumes SET sealed = 1 WHERE id = ?1", [old as i64])
            .map_err(db_error("sealing a volume"))?;
    }
    tx.execute(
        "INSERT INTO volumes (id, length) VALUES (?1, ?2)",
        params![id as i64, len as i64],
    )
    .map_err(db_error(context))?;
    tx.commit().map_err(db_error(context))
}

/// Indexes the complete records found past `volume`'s indexed end (each
/// with its offset) and sets its length to `new_len`; `cut` says whether a
/// torn tail was cut off.
pub(super) fn index_recovered(
    conn: &mut Connection,
    volume: u64,
    new_len: u64,
    records: &[(RecordHeader, u64, Bytes)],
    cut: bool,
) -> Result<()> {
    let context = "recovering a volume's tail";
    let tx = immediate(conn, context)?;
    let mut garbage = 0u64;
    for (header, at, payload) in records {
        match header.kind {
            RecordKind::Journal | RecordKind::Snapshot => {
                let (seq, data) = split_meta(payload);
                if !index_recovered_meta(&tx, header.kind, seq, &data, volume, *at)
                    .map_err(db_error(context))?
                {
                    garbage += header.record_len();
                }
            }
            RecordKind::Block => {
                let added = tx
                    .execute(
                        "INSERT OR IGNORE INTO blocks (id, volume, offset, length) VALUES (?1, ?2, ?3, ?4)",
                        params![header.id.as_bytes(), volume as i64, *at as i64, header.payload_len as i64],
                    )
                    .map_err(db_error(context))?;
                if added == 0 {
                    garbage += header.record_len();
                }
            }
            RecordKind::Tombstone => {
                garbage += header.record_len();
                let old: Option<(i64, i64)> = tx
                    .query_row(
                        "DELETE FROM blocks WHERE id = ?1 RETURNING volume, length",
                        [header.id.as_bytes()],
                        |row| Ok((row.get(0)?, row.get(1)?)),
                    )
                    .optional()
                    .map_err(db_error(context))?;
                if let Some((old_volume, length)) = old {
                    tx.execute(
                        "UPDATE volumes SET garbage = garbage + ?2 WHERE id = ?1",
                        params![old_volume, RECORD_HEADER_LEN as i64 + length],
                    )
                    .map_err(db_error(context))?;
                }
            }
        }
    }
    tx.execute(
        "UPDATE volumes SET length = ?2, garbage = garbage + ?3 WHERE id = ?1",
        params![volume as i64, new_len as i64, garbage as i64],
    )
    .map_err(db_error(context))?;
    bump(&tx, "torn_tails_cut", u64::from(cut)).map_err(db_error(context))?;
    bump(&tx, "records_recovered", records.len() as u64).map_err(db_error(context))?;
    tx.commit().map_err(db_error(context))
}

/// Indexes a journal entry or snapshot found in a volume's tail: the
/// record an older store's row was being written to (the row gets its
/// place), or the next journal entry, whose writer died before its commit
/// (never acknowledged, so keeping it is as right as dropping it). Returns
/// false when the record is not needed.
fn index_recovered_meta(
    tx: &Transaction<'_>,
    kind: RecordKind,
    seq: u64,
    data: &[u8],
    volume: u64,
    at: u64,
) -> rusqlite::Result<bool> {
    let placed = match kind {
        RecordKind::Journal => tx.execute(
            "UPDATE journal SET volume = ?2, offset = ?3 WHERE seq = ?1 AND volume IS NULL AND data = ?4",
            params![seq as i64, volume as i64, at as i64, data],
        )?,
        _ => tx.execute(
            "UPDATE snapshot SET volume = ?2, offset = ?3 WHERE id = 1 AND seq = ?1 AND volume IS NULL AND data = ?4",
            params![seq as i64, volume as i64, at as i64, data],
        )?,
    };
    if placed > 0 {
        return Ok(true);
    }
    if kind != RecordKind::Journal {
        return Ok(false);
    }
    let added = tx.execute(
        "INSERT INTO journal (seq, data, volume, offset)
         SELECT ?1, ?2, ?3, ?4 WHERE ?1 = (SELECT COALESCE(MAX(seq), 0) + 1 FROM journal)",
        params![seq as i64, data, volume as i64, at as i64],
    )?;
    Ok(added > 0)
}

/// The journal's last entry, `Seq::ZERO` when empty.
/// A trimmed journal's row 0 holds its trim point, as decimal text (see
/// [`index_trim`]), which counts as the head when no entry is left.
pub(super) fn journal_head(conn: &Connection) -> Result<Seq> {
    conn.query_row(
        // Two primary-key lookups, not a scan: this runs on every append.
        "SELECT MAX(COALESCE((SELECT MAX(seq) FROM journal), 0),
                    COALESCE((SELECT CAST(data AS INTEGER) FROM journal WHERE seq = 0), 0))",
        [],
        |row| row.get::<_, i64>(0),
    )
    .map(|head| Seq(head as u64))
    .map_err(db_error("reading the journal head"))
}

/// The journal's trim point: entries up to it were dropped (`Seq::ZERO`:
/// none).
pub(super) fn journal_trim(conn: &Connection) -> Result<Seq> {
    conn.query_row(
        "SELECT COALESCE((SELECT CAST(data AS INTEGER) FROM journal WHERE seq = 0), 0)",
        [],
        |row| row.get::<_, i64>(0),
    )
    .map(|trim| Seq(trim as u64))
    .map_err(db_error("reading the journal's trim point"))
}

/// Drops journal entries up to `through` from the index and records the
/// trim point, whose record (a journal record numbered 0, its bytes the
/// point as decimal text: no entry is ever numbered 0) landed at `placed`.
/// The dropped entries' records, and the older trim record, are garbage
/// that compaction reclaims; compaction carries row 0 like any entry.
pub(super) fn index_trim(conn: &mut Connection, through: Seq, placed: Placed) -> Result<()> {
    let context = "trimming the journal";
    let tx = immediate(conn, context)?;
    let dead: Vec<(i64, i64, i64)> = {
        let mut stmt = tx
            .prepare(
                "SELECT volume, COUNT(*), SUM(length(data)) FROM journal
                 WHERE seq <= ?1 AND volume IS NOT NULL GROUP BY volume",
            )
            .map_err(db_error(context))?;
        stmt.query_map([through.0 as i64], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<_>>())
        .map_err(db_error(context))?
    };
    for (volume, count, bytes) in dead {
        let garbage = count * meta_record_len(0) as i64 + bytes;
        tx.execute(
            "UPDATE volumes SET garbage = garbage + ?2 WHERE id = ?1",
            params![volume, garbage],
        )
        .map_err(db_error(context))?;
    }
    tx.execute("DELETE FROM journal WHERE seq <= ?1", [through.0 as i64])
        .map_err(db_error(context))?;
    tx.execute(
        "INSERT INTO journal (seq, data, volume, offset) VALUES (0, ?1, ?2, ?3)",
        params![
            through.0.to_string().into_bytes(),
            placed.volume as i64,
            placed.offset as i64
        ],
    )
    .map_err(db_error(context))?;
    grow_volume(&tx, placed).map_err(db_error(context))?;
    tx.commit().map_err(db_error(context))
}

/// Indexes journal entry `seq`, whose record landed at `placed`.
pub(super) fn index_journal_entry(
    conn: &mut Connection,
    seq: Seq,
    data: &[u8],
    placed: Placed,
) -> Result<()> {
    let context = "appending to the journal";
    let tx = immediate(conn, context)?;
    tx.execute(
        "INSERT INTO journal (seq, data, volume, offset) VALUES (?1, ?2, ?3, ?4)",
        params![
            seq.0 as i64,
            data,
            placed.volume as i64,
            placed.offset as i64
        ],
    )
    .map_err(db_error(context))?;
    grow_volume(&tx, placed).map_err(db_error(context))?;
    tx.commit().map_err(db_error(context))
}

/// Makes the snapshot whose record landed at `placed` the store's; the
/// previous one's record becomes garbage.
pub(super) fn index_snapshot(
    conn: &mut Connection,
    seq: Seq,
    data: &[u8],
    placed: Placed,
) -> Result<()> {
    let context = "storing the snapshot";
    let tx = immediate(conn, context)?;
    let old: Option<(Option<i64>, i64)> = tx
        .query_row(
            "SELECT volume, length(data) FROM snapshot WHERE id = 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .map_err(db_error(context))?;
    if let Some((Some(volume), len)) = old {
        tx.execute(
            "UPDATE volumes SET garbage = garbage + ?2 WHERE id = ?1",
            params![volume, meta_record_len(len as u64) as i64],
        )
        .map_err(db_error(context))?;
    }
    tx.execute(
        "INSERT OR REPLACE INTO snapshot (id, seq, data, volume, offset) VALUES (1, ?1, ?2, ?3, ?4)",
        params![
            seq.0 as i64,
            data,
            placed.volume as i64,
            placed.offset as i64
        ],
    )
    .map_err(db_error(context))?;
    grow_volume(&tx, placed).map_err(db_error(context))?;
    tx.commit().map_err(db_error(context))
}

/// Journal entries and the snapshot an older store kept only in its index,
/// as `(kind, seq, bytes)`, oldest first.
pub(super) fn unplaced_meta(conn: &Connection) -> Result<Vec<(RecordKind, u64, Vec<u8>)>> {
    let context = "finding journal entries to write into the volumes";
    let mut out = Vec::new();
    let mut stmt = conn
        .prepare("SELECT seq, data FROM journal WHERE volume IS NULL ORDER BY seq")
        .map_err(db_error(context))?;
    let rows = stmt
        .query_map([], |row| {
            Ok((
                RecordKind::Journal,
                row.get::<_, i64>(0)? as u64,
                row.get::<_, Vec<u8>>(1)?,
            ))
        })
        .map_err(db_error(context))?;
    for row in rows {
        out.push(row.map_err(db_error(context))?);
    }
    let snapshot = conn
        .query_row(
            "SELECT seq, data FROM snapshot WHERE id = 1 AND volume IS NULL",
            [],
            |row| {
                Ok((
                    RecordKind::Snapshot,
                    row.get::<_, i64>(0)? as u64,
                    row.get::<_, Vec<u8>>(1)?,
                ))
            },
        )
        .optional()
        .map_err(db_error(context))?;
    out.extend(snapshot);
    Ok(out)
}

/// Records where [`unplaced_meta`]'s records landed.
pub(super) fn place_meta(
    conn: &mut Connection,
    placed: &[(RecordKind, u64, Placed)],
) -> Result<()> {
    let context = "recording journal entries written into the volumes";
    let tx = immediate(conn, context)?;
    for (kind, seq, at) in placed {
        let sql = match kind {
            RecordKind::Journal => "UPDATE journal SET volume = ?2, offset = ?3 WHERE seq = ?1",
            _ => "UPDATE snapshot SET volume = ?2, offset = ?3 WHERE id = 1 AND seq = ?1",
        };
        tx.execute(
            sql,
            params![*seq as i64, at.volume as i64, at.offset as i64],
        )
        .map_err(db_error(context))?;
        grow_volume(&tx, *at).map_err(db_error(context))?;
    }
    tx.commit().map_err(db_error(context))
}

/// The length of a journal entry's or snapshot's record with `len` bytes.
pub(super) fn meta_record_len(len: u64) -> u64 {
    RECORD_HEADER_LEN + 8 + len
}

fn grow_volume(tx: &Transaction<'_>, placed: Placed) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE volumes SET length = MAX(length, ?2) WHERE id = ?1",
        params![placed.volume as i64, placed.end as i64],
    )
    .map(drop)
}

/// Takes block `id` out of the index into quarantine, if it is still
/// indexed at `(volume, offset)` (a compaction may have moved it since it
/// was read). Returns whether it was.
pub(super) fn quarantine(
    conn: &mut Connection,
    id: &BlockId,
    volume: u64,
    offset: u64,
    reason: &str,
) -> Result<bool> {
    let context = "quarantining a damaged block";
    let tx = immediate(conn, context)?;
    let length: Option<i64> = tx
        .query_row(
            "DELETE FROM blocks WHERE id = ?1 AND volume = ?2 AND offset = ?3 RETURNING length",
            params![id.as_bytes(), volume as i64, offset as i64],
            |row| row.get(0),
        )
        .optional()
        .map_err(db_error(context))?;
    let Some(length) = length else {
        return Ok(false);
    };
    tx.execute(
        "INSERT OR REPLACE INTO quarantine (id, volume, offset, length, reason, time)
         VALUES (?1, ?2, ?3, ?4, ?5, unixepoch())",
        params![id.as_bytes(), volume as i64, offset as i64, length, reason],
    )
    .map_err(db_error(context))?;
    bump(&tx, "blocks_quarantined", 1).map_err(db_error(context))?;
    tx.commit().map_err(db_error(context))?;
    Ok(true)
}

/// Whether any block of `volume` is in quarantine.
pub(super) fn has_quarantined(conn: &Connection, volume: u64) -> Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM quarantine WHERE volume = ?1)",
        [volume as i64],
        |row| row.get::<_, bool>(0),
    )
    .map_err(db_error("checking for quarantined blocks"))
}
