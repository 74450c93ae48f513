//! The sled implementation of [`Kv`]: one tree for everything but blobs, so that one
//! operation's writes are one atomic `apply_batch`; blobs in their own tree, written before
//! the batch that references them (an orphan blob after a crash is harmless).

use super::{Batch, Kv, StoreError};
use std::path::Path;

pub struct SledKv {
    db: sled::Db,
    blobs: sled::Tree,
}

impl SledKv {
    pub fn open(dir: &Path) -> Result<SledKv, StoreError> {
        let db = sled::Config::new()
            .path(dir.join("db"))
            // sled's default cache is 1 GiB; the view is read mostly sequentially.
            .cache_capacity(64 * 1024 * 1024)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                    StoreError::Locked(dir.display().to_string())
                }
                e => StoreError::Sled(e),
            })?;
        let blobs = db.open_tree("blobs")?;
        Ok(SledKv { db, blobs })
    }
}

impl Kv for SledKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(key)?.map(|v| v.to_vec()))
    }

    fn scan(
        &self,
        prefix: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        for kv in self.db.scan_prefix(prefix) {
            let (k, v) = kv?;
            if !f(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        let mut b = sled::Batch::default();
        for (k, v) in batch {
            match v {
                Some(v) => b.insert(k, v),
                None => b.remove(k),
            }
        }
        self.db.apply_batch(b)?;
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    fn blob_get(&self, id: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.blobs.get(id)?.map(|v| v.to_vec()))
    }

    fn blob_has(&self, id: &[u8; 32]) -> Result<bool, StoreError> {
        Ok(self.blobs.contains_key(id)?)
    }

    fn blob_put(&self, id: &[u8; 32], bytes: &[u8]) -> Result<(), StoreError> {
        self.blobs.insert(id, bytes)?;
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }
}
