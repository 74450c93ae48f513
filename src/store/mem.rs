//! The in-memory twin of the sled store, for fast tests and simulations. "Durable" here
//! means "survives a simulated restart": the maps outlive the replica that used them.
//!
//! It can also simulate a crash the way sled loses data: writes applied but not yet
//! flushed (batches and blobs, in the order they were made) are held apart, and
//! [`MemKv::crash`] keeps a prefix of them (a batch stays atomic) and drops the rest.
//! [`MemKv::die_after`] makes the store fail at a later flush (the writes before it
//! applied, not yet durable) and from then on, so that a simulation can crash a node in
//! the middle of an operation.

use super::{Batch, Kv, StoreError};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// One write not yet flushed.
#[derive(Clone)]
enum Write {
    Batch(Batch),
    Blob(Vec<u8>, Vec<u8>),
}

#[derive(Default)]
struct Inner {
    /// What reads see: every write applied so far.
    main: Map,
    blobs: Map,
    /// What survives a crash: every write flushed so far.
    durable: Map,
    durable_blobs: Map,
    /// Writes since the last flush, oldest first.
    unflushed: Vec<Write>,
    /// Flushes still allowed before the store dies.
    fuse: Option<usize>,
    /// The store died: every write fails until [`MemKv::crash`].
    dead: bool,
}

/// An in-memory [`Kv`]; clones share the same data.
#[derive(Clone, Default)]
pub struct MemKv {
    inner: Arc<Mutex<Inner>>,
}

fn put_all(main: &mut Map, blobs: &mut Map, w: &Write) {
    match w {
        Write::Batch(b) => {
            for (k, v) in b {
                match v {
                    Some(v) => main.insert(k.clone(), v.clone()),
                    None => main.remove(k),
                };
            }
        }
        Write::Blob(id, bytes) => {
            blobs.insert(id.clone(), bytes.clone());
        }
    }
}

impl MemKv {
    pub fn new() -> MemKv {
        MemKv::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes (batches and blobs) applied since the last flush.
    pub fn unflushed(&self) -> usize {
        self.lock().unflushed.len()
    }

    /// Makes the store die: the next `n` flushes go ahead, the one after fails with
    /// [`StoreError::Crashed`], as if the process had been killed before its fsync, and so
    /// does every later write. [`MemKv::crash`] brings it back.
    pub fn die_after(&self, n: usize) {
        self.lock().fuse = Some(n);
    }

    /// Whether the store died (see [`MemKv::die_after`]).
    pub fn is_dead(&self) -> bool {
        self.lock().dead
    }

    /// Simulates a crash and restart of the process: of the writes not yet flushed, the
    /// first `keep` survive (each batch whole) and the others are lost. Returns how many
    /// were lost. The store works again afterwards.
    pub fn crash(&self, keep: usize) -> usize {
        let mut g = self.lock();
        let inner = &mut *g;
        let unflushed = std::mem::take(&mut inner.unflushed);
        let lost = unflushed.len().saturating_sub(keep);
        for w in unflushed.iter().take(keep) {
            put_all(&mut inner.durable, &mut inner.durable_blobs, w);
        }
        inner.main = inner.durable.clone();
        inner.blobs = inner.durable_blobs.clone();
        inner.fuse = None;
        inner.dead = false;
        lost
    }

    fn write(&self, w: Write) -> Result<(), StoreError> {
        let mut g = self.lock();
        let inner = &mut *g;
        if inner.dead {
            return Err(StoreError::Crashed);
        }
        put_all(&mut inner.main, &mut inner.blobs, &w);
        inner.unflushed.push(w);
        Ok(())
    }
}

impl Kv for MemKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().main.get(key).cloned())
    }

    fn scan(
        &self,
        prefix: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let g = self.lock();
        for (k, v) in g.main.range(prefix.to_vec()..) {
            if !k.starts_with(prefix) || !f(k, v) {
                break;
            }
        }
        Ok(())
    }

    fn scan_from(
        &self,
        prefix: &[u8],
        start: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let g = self.lock();
        for (k, v) in g.main.range(start.max(prefix).to_vec()..) {
            if !k.starts_with(prefix) || !f(k, v) {
                break;
            }
        }
        Ok(())
    }

    fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        self.write(Write::Batch(batch))
    }

    fn flush(&self) -> Result<(), StoreError> {
        let mut g = self.lock();
        let inner = &mut *g;
        match &mut inner.fuse {
            _ if inner.dead => return Err(StoreError::Crashed),
            Some(0) => {
                inner.dead = true;
                return Err(StoreError::Crashed);
            }
            Some(n) => *n -= 1,
            None => {}
        }
        for w in std::mem::take(&mut inner.unflushed) {
            put_all(&mut inner.durable, &mut inner.durable_blobs, &w);
        }
        Ok(())
    }

    fn blob_get(&self, id: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().blobs.get(id.as_slice()).cloned())
    }

    fn blob_has(&self, id: &[u8; 32]) -> Result<bool, StoreError> {
        Ok(self.lock().blobs.contains_key(id.as_slice()))
    }

    fn blob_put(&self, id: &[u8; 32], bytes: &[u8]) -> Result<(), StoreError> {
        self.write(Write::Blob(id.to_vec(), bytes.to_vec()))
    }

    fn blob_gc(&self, live: &dyn Fn(&[u8; 32]) -> bool) -> Result<super::GcStats, StoreError> {
        let mut g = self.lock();
        let inner = &mut *g;
        if inner.dead {
            return Err(StoreError::Crashed);
        }
        let mut stats = super::GcStats::default();
        let keep = |k: &Vec<u8>| <[u8; 32]>::try_from(k.as_slice()).is_ok_and(|id| live(&id));
        for m in [&mut inner.blobs, &mut inner.durable_blobs] {
            let before = m.len() as u64;
            m.retain(|k, _| keep(k));
            stats.dropped = stats.dropped.max(before - m.len() as u64);
        }
        stats.kept = inner.blobs.len() as u64;
        Ok(stats)
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        let g = self.lock();
        Ok(g.main
            .iter()
            .chain(g.blobs.iter())
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str) -> Batch {
        vec![(k.as_bytes().to_vec(), Some(b"v".to_vec()))]
    }

    fn has(kv: &MemKv, k: &str) -> bool {
        kv.get(k.as_bytes()).expect("get").is_some()
    }

    #[test]
    fn a_crash_keeps_what_was_flushed_and_a_prefix_of_the_rest() {
        let kv = MemKv::new();
        kv.apply(put("a")).expect("apply");
        kv.flush().expect("flush");
        kv.apply(put("b")).expect("apply");
        kv.blob_put(&[1; 32], b"blob").expect("blob");
        kv.apply(vec![
            (b"c".to_vec(), Some(b"v".to_vec())),
            (b"a".to_vec(), None),
        ])
        .expect("apply");
        assert!(
            has(&kv, "c") && !has(&kv, "a"),
            "reads see unflushed writes"
        );
        assert_eq!(kv.unflushed(), 3);
        assert_eq!(kv.crash(2), 1);
        assert!(has(&kv, "a") && has(&kv, "b") && !has(&kv, "c"));
        assert!(kv.blob_has(&[1; 32]).expect("has"));
        kv.apply(put("d")).expect("apply");
        assert_eq!(kv.crash(0), 1);
        assert!(!has(&kv, "d") && has(&kv, "b"));
    }

    #[test]
    fn a_dead_store_refuses_writes_until_the_crash() {
        let kv = MemKv::new();
        kv.die_after(1);
        kv.apply(put("a")).expect("write");
        kv.flush().expect("the first flush goes ahead");
        kv.apply(put("b")).expect("write");
        assert!(!kv.is_dead());
        assert!(matches!(kv.flush(), Err(StoreError::Crashed)));
        assert!(kv.is_dead());
        assert!(matches!(kv.apply(put("c")), Err(StoreError::Crashed)));
        assert!(has(&kv, "b") && !has(&kv, "c"));
        assert_eq!(kv.crash(0), 1);
        assert!(has(&kv, "a") && !has(&kv, "b") && !kv.is_dead());
        kv.apply(put("d")).expect("alive again");
    }
}
