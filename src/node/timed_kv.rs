//! A store wrapper that times every flush (the fsync that makes writes durable) into the
//! node's [`Metrics`]: flushes are where a slow disk shows in delivery latency.

use super::metrics::Metrics;
use crate::store::{Batch, Entry, GcStats, Kv, StoreError};
use std::sync::Arc;
use std::time::Instant;

/// `inner`, with [`Kv::flush`] timed.
pub(crate) struct TimedKv {
    pub(crate) inner: Arc<dyn Kv>,
    pub(crate) metrics: Arc<Metrics>,
}

impl Kv for TimedKv {
    fn idle(&self) {
        self.inner.idle()
    }
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }
    fn scan(
        &self,
        prefix: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.inner.scan(prefix, f)
    }
    fn last(&self, prefix: &[u8]) -> Result<Option<Entry>, StoreError> {
        self.inner.last(prefix)
    }
    fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        self.inner.apply(batch)
    }
    fn flush(&self) -> Result<(), StoreError> {
        let t = Instant::now();
        let r = self.inner.flush();
        self.metrics
            .fsync_seconds
            .observe(t.elapsed().as_secs_f64());
        r
    }
    fn blob_get(&self, id: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.blob_get(id)
    }
    fn blob_has(&self, id: &[u8; 32]) -> Result<bool, StoreError> {
        self.inner.blob_has(id)
    }
    fn blob_has_many(&self, ids: &[[u8; 32]]) -> Result<Vec<bool>, StoreError> {
        self.inner.blob_has_many(ids)
    }
    fn blob_put(&self, id: &[u8; 32], bytes: &[u8]) -> Result<(), StoreError> {
        self.inner.blob_put(id, bytes)
    }
    fn blob_put_many(&self, blobs: &[([u8; 32], &[u8])]) -> Result<(), StoreError> {
        self.inner.blob_put_many(blobs)
    }
    fn blob_get_many(
        &self,
        ids: &[[u8; 32]],
        f: &mut dyn FnMut(&[u8; 32], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.inner.blob_get_many(ids, f)
    }
    fn blob_gc(&self, live: &dyn Fn(&[u8; 32]) -> bool) -> Result<GcStats, StoreError> {
        self.inner.blob_gc(live)
    }
    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.inner.size_on_disk()
    }
}
