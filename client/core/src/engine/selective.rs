//! Selective sync: folders this device does not keep.
//!
//! An excluded folder is left out of all three trees on this device, like
//! an ignored path: nothing in it is downloaded, and its absence here is
//! never read as a delete. Excluding a folder removes the local copy (only
//! when everything in it is synced, so nothing is lost); including it again
//! downloads it on the next sync.

use super::Engine;
use crate::commit::Change;
use crate::node::same;
use crate::path::RelPath;
use crate::report::SyncReport;
use crate::state::Tree;
use crate::{Error, Result};

impl Engine {
    /// This device's excluded folders.
    pub fn excluded(&self) -> Result<Vec<RelPath>> {
        self.db.excluded()
    }

    /// Stops syncing `path` on this device and removes its local copy.
    /// Refuses when anything under it has changes not synced yet.
    pub fn exclude(&mut self, path: &RelPath) -> Result<()> {
        let refuse = |reason: &str| Error::Refused {
            path: path.to_string(),
            reason: reason.to_owned(),
        };
        let mut report = SyncReport::default();
        let (local, _) = self.scan_local(&mut report)?;
        let synced = self.db.tree(Tree::Synced)?;
        let under = |p: &RelPath| p == path || p.ancestors().any(|a| &a == path);
        let unsynced = local
            .iter()
            .filter(|(p, _)| under(p))
            .any(|(p, (_, node))| !same(Some(node), synced.get(p)));
        if unsynced {
            return Err(refuse(
                "has changes that are not synced yet; run `pouch sync` first",
            ));
        }
        if let Some((_, node)) = local.get(path)
            && !node.is_dir()
        {
            return Err(refuse("is not a folder; only folders can be excluded"));
        }
        // Record the exclusion before touching the disk: a daemon planning
        // in between must see the folder as excluded, not as deleted.
        self.db.exclude(path)?;
        let full = path.to_fs(&self.root);
        match std::fs::remove_dir_all(&full) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&full)(e)),
        }
        Ok(())
    }

    /// Hands folder `path` over to a shared folder made of it (which
    /// another engine syncs from now on, in place): this engine leaves it
    /// out of its trees, without touching the disk, and appends its
    /// entries' deletion to the namespace's journal, so the home no longer
    /// holds (or counts against the quota) what the share now does. The
    /// home's other devices learn of the mount before they pull, and leave
    /// their copy where it is; the deleted versions stay in the home's
    /// history while its retention keeps them.
    pub async fn hand_over(&mut self, path: &RelPath) -> Result<()> {
        let under = |p: &RelPath| p == path || p.ancestors().any(|a| &a == path);
        let changes: Vec<Change> = self
            .db
            .tree(Tree::Remote)?
            .into_keys()
            .filter(under)
            .map(|p| Change {
                path: p.to_string(),
                node: None,
            })
            .collect();
        self.db.exclude(path)?;
        if !changes.is_empty() {
            self.append_namespace_entry(|commit| commit.changes = changes.clone())
                .await?;
        }
        Ok(())
    }

    /// Syncs `path` on this device again; the next sync downloads it.
    /// `false` if it was not excluded.
    pub fn include(&mut self, path: &RelPath) -> Result<bool> {
        self.db.include(path)
    }
}
