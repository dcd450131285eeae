//! Where this device's files hold each block, for local block reuse
//! (`engine/reuse.rs`) by a large download: a temporary table of the
//! Local tree's blocks, made once per sync that needs it and looked up by
//! id, so that neither the Local tree nor its blocks are held in memory
//! (a device with a million files receiving a copied folder).

use pouch_backend::BlockId;
use rusqlite::{OptionalExtension, params};

use super::{LocalState, from_json, rel};
use crate::Result;
use crate::node::Node;
use crate::path::RelPath;

impl LocalState {
    /// Lists the blocks of every file of the Local tree (id, path, offset,
    /// length) in a temporary table, replacing what it held; how many.
    pub fn index_local_blocks(&self) -> Result<u64> {
        let conn = self.conn();
        conn.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS local_blocks
                 (id BLOB NOT NULL, path TEXT NOT NULL, offset INTEGER NOT NULL, len INTEGER NOT NULL);
             DROP INDEX IF EXISTS temp.local_blocks_id;
             DELETE FROM temp.local_blocks;",
        )?;
        let tx = conn.unchecked_transaction()?;
        let mut rows = 0u64;
        {
            let mut files = tx.prepare("SELECT path, node FROM local")?;
            let mut insert = tx.prepare(
                "INSERT INTO temp.local_blocks (id, path, offset, len) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut each = files.query([])?;
            while let Some(row) = each.next()? {
                let path: String = row.get(0)?;
                let node: String = row.get(1)?;
                let Node::File { blocks, .. } = from_json(&path, &node)? else {
                    continue;
                };
                let mut offset = 0i64;
                for block in blocks {
                    insert.execute(params![&block.id.as_bytes()[..], path, offset, block.len])?;
                    offset += i64::from(block.len);
                    rows += 1;
                }
            }
        }
        tx.commit()?;
        conn.execute_batch("CREATE INDEX temp.local_blocks_id ON local_blocks (id)")?;
        Ok(rows)
    }

    /// A file of the Local tree, as last indexed, that holds block `id`:
    /// its path, the block's offset and length.
    pub fn local_block(&self, id: &BlockId) -> Result<Option<(RelPath, u64, u32)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT path, offset, len FROM temp.local_blocks WHERE id = ?1 LIMIT 1",
        )?;
        Ok(stmt
            .query_row([&id.as_bytes()[..]], |row| {
                Ok((rel(row.get(0)?)?, row.get::<_, i64>(1)? as u64, row.get(2)?))
            })
            .optional()?)
    }
}
