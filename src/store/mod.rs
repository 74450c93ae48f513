//! Storage: a narrow key-value trait ([`Kv`]) with a sled implementation and an in-memory
//! twin, and typed tables on top of it ([`tables`]): automerge document chunks, the mailbox
//! view tables, blobs by sha256, node identity and per-peer sync state.
//!
//! Every write of one operation goes into one [`Tx`], applied as one atomic batch; a write is
//! acknowledged only after [`Kv::flush`]. Callers group many writes under one flush.

mod blobs;
#[cfg(test)]
mod blobs_tests;
pub mod changes;
mod keydir;
mod mem;
pub mod msg_blocks;
pub mod packs;
mod prefix_table;
pub mod rows_ref;
mod sled_kv;
pub mod tables;

pub use mem::MemKv;
pub use sled_kv::SledKv;
pub use tables::{DocMeta, Tx};

use std::path::Path;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage engine: {0}")]
    Sled(#[from] sled::Error),
    #[error("data dir {0} is in use by another dovetail process")]
    Locked(String),
    #[error("corrupt record under key {key}: {why}")]
    Corrupt { key: String, why: String },
    #[error("{0}")]
    Io(String),
    /// Only from [`MemKv`] simulating a crash: the process died during this write.
    #[error("the store crashed (simulated)")]
    Crashed,
    #[error("document {doc}: {source}")]
    Doc {
        doc: String,
        source: Box<automerge::AutomergeError>,
    },
}

/// What a garbage collection of bodies did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcStats {
    /// Bodies kept and dropped.
    pub kept: u64,
    pub dropped: u64,
    /// Pack files rewritten (their live bodies moved to the current pack) or deleted.
    pub packs_rewritten: u64,
    pub packs_deleted: u64,
    /// Bytes of pack files freed.
    pub bytes_freed: u64,
}

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Writes of one atomic batch: `None` deletes.
pub type Batch = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// The storage engine, reduced to what dovetail needs. Implementations must apply a batch
/// atomically and make everything applied so far durable in [`Kv::flush`].
pub trait Kv: Send + Sync {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Calls `f` for every key with `prefix`, in key order, until it returns false.
    fn scan(
        &self,
        prefix: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError>;
    /// Calls `f` for every key with `prefix` from `start` on (keys below `start` are
    /// skipped), in key order, until it returns false. The default scans from the prefix;
    /// ordered engines seek (what makes "changes since MODSEQ m" cost the changes, not the
    /// mailbox).
    fn scan_from(
        &self,
        prefix: &[u8],
        start: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.scan(prefix, &mut |k, v| k < start || f(k, v))
    }
    /// The last key with `prefix` and its value. The default scans; engines with ordered
    /// reverse iteration answer at once.
    fn last(&self, prefix: &[u8]) -> Result<Option<Entry>, StoreError> {
        let mut last = None;
        self.scan(prefix, &mut |k, v| {
            last = Some((k.to_vec(), v.to_vec()));
            true
        })?;
        Ok(last)
    }
    fn apply(&self, batch: Batch) -> Result<(), StoreError>;
    fn flush(&self) -> Result<(), StoreError>;
    /// Called when the store's owner has been idle for a while: housekeeping that would
    /// stall a write waits for this (sled's snapshot-writing reopen). Never fails: what
    /// it could not do is done later.
    fn idle(&self) {}
    fn blob_get(&self, id: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError>;
    fn blob_has(&self, id: &[u8; 32]) -> Result<bool, StoreError>;
    /// [`Kv::blob_has`] of each of `ids`, in order (the default asks one by one); an
    /// engine with a lock around its index takes it once, so that a thread checking many
    /// bodies does not contend with a thread storing them (the sync's two threads did,
    /// once per body each).
    fn blob_has_many(&self, ids: &[[u8; 32]]) -> Result<Vec<bool>, StoreError> {
        ids.iter().map(|id| self.blob_has(id)).collect()
    }
    /// Stores a blob (not yet durable: flushed with the next [`Kv::flush`]).
    fn blob_put(&self, id: &[u8; 32], bytes: &[u8]) -> Result<(), StoreError>;
    /// Stores several blobs, as [`Kv::blob_put`] does one by one (the default); an engine
    /// that can write them in one step (one pack write, one index batch) overrides it.
    fn blob_put_many(&self, blobs: &[([u8; 32], &[u8])]) -> Result<(), StoreError> {
        for (id, bytes) in blobs {
            self.blob_put(id, bytes)?;
        }
        Ok(())
    }
    /// Calls `f` with each of the bodies `ids` that is stored (checked against its id), in
    /// the order the engine reads fastest (the default: as given), until it returns false:
    /// what copies many bodies.
    fn blob_get_many(
        &self,
        ids: &[[u8; 32]],
        f: &mut dyn FnMut(&[u8; 32], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        for id in ids {
            if let Some(b) = self.blob_get(id)? {
                if !f(id, &b) {
                    break;
                }
            }
        }
        Ok(())
    }
    /// Drops every stored body for which `live` is false and reclaims its space (in the
    /// same durable step). The caller decides liveness from what references bodies.
    fn blob_gc(&self, live: &dyn Fn(&[u8; 32]) -> bool) -> Result<GcStats, StoreError>;
    /// Approximate bytes on disk.
    fn size_on_disk(&self) -> Result<u64, StoreError>;
}

/// Opens the sled store of a data dir.
pub fn open_sled(dir: &Path) -> Result<SledKv, StoreError> {
    SledKv::open(dir)
}
