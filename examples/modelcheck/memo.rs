//! Memoized kernel steps: the result of running one operation on one exact store.
//!
//! Almost all of a transition's cost is the real kernel (re-opening a replica, automerge
//! loading and applying documents, reading the view back). In an interleaving model the same
//! node-local step recurs in a great many global states: node A receiving the same message
//! from the same store happens whatever B and C did meanwhile. So a step's outcome is kept,
//! keyed by a SHA-256 of the *exact bytes* of the touched node's store, the operation and
//! (for a delivery) the exact bytes of the message. No abstraction is involved: the kernel
//! is a function of its store and its inputs, except for its random draws (GUIDs of appended
//! messages), and a cached outcome is one valid draw, as the unmemoized model already fixes
//! one draw per path. A side effect is that independent interleavings now produce identical
//! bytes downstream, so the cache keeps hitting.

use crate::model::MbView;
use crate::world::{ChangeInfo, Heads, Lbl, Payload, Snap};
use dovetail::model::Guid;
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// What one operation did to the node it touched, read back from its store.
pub struct Effect {
    pub snap: Arc<Snap>,
    pub heads: Arc<Heads>,
    pub docs: Arc<BTreeMap<String, BTreeSet<Lbl>>>,
    pub pending: Arc<BTreeSet<Lbl>>,
    pub applied: Arc<BTreeMap<String, Vec<u64>>>,
    pub homeless: Arc<BTreeMap<String, Vec<(Lbl, usize)>>>,
    pub view: Arc<Vec<MbView>>,
    /// Every change of the documents that moved, labelled: another path reaching the same
    /// store may not have labelled them yet.
    pub infos: Vec<(Digest, Arc<ChangeInfo>)>,
    /// The GUID an append drew, and its label.
    pub guids: Vec<(Guid, Lbl)>,
}

/// A cache of at most about `2 * cap` entries: two generations, the current one filled
/// until it holds `cap`, then made the old one (the old one dropped). A hit in the old
/// generation moves the entry to the current one, so what is used stays: a cheap
/// least-recently-used. Dropping entries is sound, it is a cache: a dropped step runs the
/// kernel again.
struct Gens<K, V> {
    cap: usize,
    cur: HashMap<K, Arc<V>>,
    old: HashMap<K, Arc<V>>,
}

impl<K: Hash + Eq, V> Gens<K, V> {
    fn new(cap: usize) -> Self {
        Gens {
            cap,
            cur: HashMap::new(),
            old: HashMap::new(),
        }
    }

    fn get(&mut self, key: K) -> Option<Arc<V>> {
        if let Some(v) = self.cur.get(&key) {
            return Some(Arc::clone(v));
        }
        let v = self.old.remove(&key)?;
        Some(self.insert(key, v))
    }

    /// Stores `v` under `key` unless an entry is there (a racing thread's), and returns
    /// the entry kept.
    fn insert(&mut self, key: K, v: Arc<V>) -> Arc<V> {
        if self.cap > 0 && self.cur.len() >= self.cap {
            self.old = std::mem::take(&mut self.cur);
        }
        Arc::clone(self.cur.entry(key).or_insert(v))
    }
}

/// The caches, shared by every checker thread.
pub struct Memo {
    pub on: bool,
    steps: Mutex<Gens<Digest, Result<Effect, String>>>,
    payloads: Mutex<Gens<(Digest, String), Payload>>,
    statuses: Mutex<Gens<Digest, Result<String, String>>>,
    /// Kernel steps taken from the cache, and run.
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    /// Store bytes the steps run wrote (not shared with the store they started from).
    pub fresh: AtomicU64,
}

impl Memo {
    /// Caches of at most about `2 * cap` entries each (0: unbounded).
    pub fn new(on: bool, cap: usize) -> Memo {
        Memo {
            on,
            steps: Mutex::new(Gens::new(cap)),
            payloads: Mutex::new(Gens::new(cap)),
            statuses: Mutex::new(Gens::new(cap)),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            fresh: AtomicU64::new(0),
        }
    }

    /// The outcome of `f`, computed once per key. Computed outside the lock (it is the
    /// slow part); if two threads race, the first stored outcome wins for both, so every
    /// state built from this key sees one outcome.
    fn get<K: Hash + Eq + Clone, V>(
        &self,
        map: &Mutex<Gens<K, V>>,
        key: K,
        f: impl FnOnce() -> V,
    ) -> (Arc<V>, bool) {
        if !self.on {
            return (Arc::new(f()), false);
        }
        if let Some(v) = map.lock().expect("memo lock").get(key.clone()) {
            return (v, true);
        }
        let v = Arc::new(f());
        (map.lock().expect("memo lock").insert(key, v), false)
    }

    /// Running operation `op` on node `node` whose store is `snap`.
    pub fn step(
        &self,
        snap: &Snap,
        node: usize,
        op: &str,
        f: impl FnOnce() -> Result<Effect, String>,
    ) -> Arc<Result<Effect, String>> {
        let key = digest(&[&snap.hash, &node.to_le_bytes(), op.as_bytes()]);
        let (v, hit) = self.get(&self.steps, key, f);
        if hit {
            self.hits.fetch_add(1, Ordering::Relaxed);
        } else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            if let Ok(e) = &*v {
                self.fresh.fetch_add(e.snap.fresh as u64, Ordering::Relaxed);
            }
        }
        v
    }

    /// Document `doc` of the store `snap`, as a message.
    pub fn payload(
        &self,
        snap: &Snap,
        doc: &str,
        f: impl FnOnce() -> Result<Payload, String>,
    ) -> Result<Arc<Payload>, String> {
        // Not through `get`: an error is not cached (it ends the path anyway).
        let key = (snap.hash, doc.to_string());
        if self.on {
            if let Some(v) = self.payloads.lock().expect("memo lock").get(key.clone()) {
                return Ok(v);
            }
        }
        let v = Arc::new(f()?);
        if !self.on {
            return Ok(v);
        }
        Ok(self.payloads.lock().expect("memo lock").insert(key, v))
    }

    /// The statuses of the store `snap`, as text (compared at quiescence).
    pub fn status(
        &self,
        snap: &Snap,
        f: impl FnOnce() -> Result<String, String>,
    ) -> Arc<Result<String, String>> {
        self.get(&self.statuses, snap.hash, f).0
    }
}

/// SHA-256 of length-prefixed parts.
pub fn digest(parts: &[&[u8]]) -> Digest {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().into()
}
