//! The store's identity, in the file `identity` of its folder: written
//! once (temp file, fsync, then a hard link, which fails if the name
//! exists, so creation is atomic and create-only), read on every check.
//! A file beside the index rather than a row in it: a lost index must not
//! take the identity with it, nor a restored one bring a stale one back.

use std::io::Write;
use std::path::{Path, PathBuf};

use pouch_backend::{Error, Result, StoreId};

use super::{Store, fsync_dir};

const IDENTITY_FILE: &str = "identity";

/// The identity file of the store in `dir`.
pub(crate) fn identity_path(dir: &Path) -> PathBuf {
    dir.join(IDENTITY_FILE)
}

/// The identity recorded in `dir`, if any.
pub(crate) fn read_identity(dir: &Path) -> Result<Option<StoreId>> {
    match std::fs::read_to_string(identity_path(dir)) {
        Ok(text) => text.parse().map(Some).map_err(|_| Error::Format {
            what: format!("{} is not a store identity", identity_path(dir).display()),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("reading the store's identity")(e)),
    }
}

impl Store {
    /// The store's identity; see [`pouch_backend::Backend::identity`].
    pub fn identity(&self) -> Result<Option<StoreId>> {
        read_identity(self.dir())
    }

    /// See [`pouch_backend::Backend::init_identity`].
    pub fn init_identity(&self, proposed: StoreId) -> Result<StoreId> {
        if let Some(id) = self.identity()? {
            return Ok(id);
        }
        let temp = self
            .dir()
            .join(format!(".identity-{}-{proposed}", std::process::id()));
        let written = (|| {
            let mut file = std::fs::File::create(&temp)?;
            writeln!(file, "{proposed}")?;
            file.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(Error::io("writing the store's identity")(e));
        }
        let linked = std::fs::hard_link(&temp, identity_path(self.dir()));
        let _ = std::fs::remove_file(&temp);
        match linked {
            Ok(()) => {
                fsync_dir(self.dir())?;
                Ok(proposed)
            }
            // Another writer won the race: its identity is the store's.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => self
                .identity()?
                .ok_or_else(|| Error::io("reading the store's identity")(e)),
            Err(e) => Err(Error::io("writing the store's identity")(e)),
        }
    }
}
