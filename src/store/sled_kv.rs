//! The sled implementation of [`Kv`]: one tree for everything but blobs, so that one
//! operation's writes are one atomic `apply_batch`; message bodies in pack files beside it
//! ([`super::packs`]) with their index in the `blobidx` tree, written before the batch that
//! references them (an orphan body after a crash is harmless). Data dirs of the first
//! release kept bodies in a `blobs` tree: they move into packs on the first open.

use super::packs::{Loc, Packs};
use super::{Batch, Entry, GcStats, Kv, StoreError};
use std::collections::HashMap;
use std::path::Path;

pub struct SledKv {
    db: sled::Db,
    index: sled::Tree,
    packs: Packs,
}

/// sled's page cache when no budget is given.
pub const DEFAULT_CACHE: u64 = 64 * 1024 * 1024;

impl SledKv {
    pub fn open(dir: &Path) -> Result<SledKv, StoreError> {
        SledKv::open_with_cache(dir, DEFAULT_CACHE)
    }

    /// Opens with sled's page cache limited to `cache` bytes.
    pub fn open_with_cache(dir: &Path, cache: u64) -> Result<SledKv, StoreError> {
        let db = sled::Config::new()
            .path(dir.join("db"))
            // sled's default cache is 1 GiB; the view is read mostly sequentially.
            .cache_capacity(cache)
            // No background flushes: sled's log reaches disk at our flushes, right after
            // the pack files, so durable index entries never precede their bodies.
            .flush_every_ms(None)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                    StoreError::Locked(dir.display().to_string())
                }
                e => StoreError::Sled(e),
            })?;
        let index = db.open_tree("blobidx")?;
        let packs = Packs::open(&dir.join("blobs"))?;
        let kv = SledKv { db, index, packs };
        kv.migrate_blob_tree()?;
        Ok(kv)
    }

    /// Moves the bodies of the first release's `blobs` tree into packs, in batches, each
    /// made durable before the tree entries are removed (a crash in between only leaves a
    /// body in both places, and the next open finishes the move).
    fn migrate_blob_tree(&self) -> Result<(), StoreError> {
        if !self.db.tree_names().iter().any(|n| n.as_ref() == b"blobs") {
            return Ok(());
        }
        let old = self.db.open_tree("blobs")?;
        if !old.is_empty() {
            tracing::warn!(
                blobs = old.len(),
                "moving message bodies into pack files (once)"
            );
        }
        loop {
            let mut moved = Vec::new();
            for kv in old.iter().take(10_000) {
                let (k, v) = kv?;
                if let Ok(id) = <[u8; 32]>::try_from(k.as_ref()) {
                    self.blob_put(&id, &v)?;
                }
                moved.push(k);
            }
            if moved.is_empty() {
                break;
            }
            self.flush()?;
            let mut b = sled::Batch::default();
            for k in moved {
                b.remove(k);
            }
            old.apply_batch(b)?;
            self.db.flush()?;
        }
        drop(old);
        self.db.drop_tree("blobs")?;
        Ok(())
    }

    fn loc(&self, id: &[u8; 32]) -> Result<Option<Loc>, StoreError> {
        Ok(self.index.get(id)?.and_then(|v| Loc::decode(&v)))
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

    fn last(&self, prefix: &[u8]) -> Result<Option<Entry>, StoreError> {
        Ok(match self.db.scan_prefix(prefix).next_back() {
            Some(kv) => {
                let (k, v) = kv?;
                Some((k.to_vec(), v.to_vec()))
            }
            None => None,
        })
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
        // Bodies first: the index entries and view rows sled is about to make durable
        // must not outlive the bytes they name.
        self.packs.sync()?;
        self.db.flush()?;
        Ok(())
    }

    fn blob_get(&self, id: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.loc(id)? {
            Some(loc) => self.packs.read(id, loc),
            None => Ok(None),
        }
    }

    fn blob_has(&self, id: &[u8; 32]) -> Result<bool, StoreError> {
        Ok(self.index.contains_key(id)?)
    }

    fn blob_put(&self, id: &[u8; 32], bytes: &[u8]) -> Result<(), StoreError> {
        if self.index.contains_key(id)? {
            return Ok(());
        }
        let loc = self.packs.append(id, bytes)?;
        self.index.insert(id, &loc.encode())?;
        Ok(())
    }

    fn blob_gc(&self, live: &dyn Fn(&[u8; 32]) -> bool) -> Result<GcStats, StoreError> {
        let mut stats = GcStats::default();
        // Sweep the index, counting the live bytes of every pack.
        let mut live_bytes: HashMap<u32, u64> = HashMap::new();
        let mut dead = sled::Batch::default();
        for kv in self.index.iter() {
            let (k, v) = kv?;
            let (Ok(id), Some(loc)) = (<[u8; 32]>::try_from(k.as_ref()), Loc::decode(&v)) else {
                dead.remove(k);
                continue;
            };
            if live(&id) {
                stats.kept += 1;
                *live_bytes.entry(loc.pack).or_default() += Packs::record_size(loc.len);
            } else {
                stats.dropped += 1;
                dead.remove(k);
            }
        }
        self.index.apply_batch(dead)?;
        self.flush()?;
        // Packs mostly garbage: move their live bodies into the current pack, then delete
        // them (only after the moved entries are durable).
        let mut current = self.packs.current();
        let packs = self.packs.list()?;
        if let Some(&(_, size)) = packs.iter().find(|(p, _)| *p == current) {
            let live = live_bytes.get(&current).copied().unwrap_or(0);
            // The current pack only fills up to its limit: compact it too when it is
            // mostly garbage, by starting a new one.
            if size > (1 << 20) && live * 2 < size {
                self.packs.roll()?;
                current = self.packs.current();
            }
        }
        for (pack, size) in packs {
            if pack == current {
                continue;
            }
            let live = live_bytes.get(&pack).copied().unwrap_or(0);
            if live > 0 && live * 2 >= size {
                continue;
            }
            if live > 0 {
                let mut moved = sled::Batch::default();
                for kv in self.index.iter() {
                    let (k, v) = kv?;
                    let (Ok(id), Some(loc)) = (<[u8; 32]>::try_from(k.as_ref()), Loc::decode(&v))
                    else {
                        continue;
                    };
                    if loc.pack != pack {
                        continue;
                    }
                    if let Some(bytes) = self.packs.read(&id, loc)? {
                        let new = self.packs.append(&id, &bytes)?;
                        moved.insert(k, new.encode().to_vec());
                    }
                }
                self.index.apply_batch(moved)?;
                self.flush()?;
                stats.packs_rewritten += 1;
            } else {
                stats.packs_deleted += 1;
            }
            self.packs.remove(pack)?;
            stats.bytes_freed += size - live;
        }
        Ok(stats)
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()? + self.packs.size()?)
    }
}
