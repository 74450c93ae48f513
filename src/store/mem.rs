//! The in-memory twin of the sled store, for fast tests and simulations. "Durable" here
//! means "survives a simulated restart": the maps outlive the replica that used them.

use super::{Batch, Kv, StoreError};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Clone, Default)]
pub struct MemKv {
    main: Arc<Mutex<Map>>,
    blobs: Arc<Mutex<Map>>,
}

impl MemKv {
    pub fn new() -> MemKv {
        MemKv::default()
    }
}

fn lock(m: &Mutex<Map>) -> std::sync::MutexGuard<'_, Map> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Kv for MemKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(lock(&self.main).get(key).cloned())
    }

    fn scan(
        &self,
        prefix: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let m = lock(&self.main);
        for (k, v) in m.range(prefix.to_vec()..) {
            if !k.starts_with(prefix) || !f(k, v) {
                break;
            }
        }
        Ok(())
    }

    fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        let mut m = lock(&self.main);
        for (k, v) in batch {
            match v {
                Some(v) => m.insert(k, v),
                None => m.remove(&k),
            };
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn blob_get(&self, id: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(lock(&self.blobs).get(id.as_slice()).cloned())
    }

    fn blob_has(&self, id: &[u8; 32]) -> Result<bool, StoreError> {
        Ok(lock(&self.blobs).contains_key(id.as_slice()))
    }

    fn blob_put(&self, id: &[u8; 32], bytes: &[u8]) -> Result<(), StoreError> {
        lock(&self.blobs).insert(id.to_vec(), bytes.to_vec());
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        let m = lock(&self.main);
        let b = lock(&self.blobs);
        Ok(m.iter()
            .chain(b.iter())
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum())
    }
}
