//! A map from uniformly distributed 64-bit keys (the first 8 bytes of sha256 ids) to
//! values, in ~20 bytes per entry without a hash table's power-of-two slack.
//!
//! A hash map of a million keydir entries takes 2^21 slots of 25 bytes (52 MB); a sync of
//! a 1M-message mailbox holds two. Here the bulk of the entries is two sorted arrays (keys,
//! values), found through a directory of the keys' top bits (the keys are uniform, so each
//! directory bucket holds ~[`PER_BUCKET`] keys: a lookup reads one directory entry and one
//! or two cache lines of keys); recent inserts go to a small hash map that is merged into
//! the arrays, in place from the back, once it holds an eighth of them. Removed entries of
//! the arrays are marked and dropped at the next merge.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Keys per directory bucket, on average.
const PER_BUCKET: usize = 8;

/// Inserts held in the hash map before a merge: at least this many...
const MIN_DELTA: usize = if cfg!(test) { 64 } else { 4096 };
/// ...or this fraction of the arrays (1/8).
const DELTA_SHIFT: u32 = 3;

/// Passes a key through as its hash (keys are already uniform).
#[derive(Default)]
struct PassHasher(u64);

impl Hasher for PassHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// The hash map type for uniform 64-bit keys.
type PassMap<K, V> = HashMap<K, V, BuildHasherDefault<PassHasher>>;

/// A value with a spare bit pattern that marks a removed entry in the arrays (an
/// `Option` would add 4 bytes to a 12-byte location).
pub trait Tombstone: Copy {
    const DEAD: Self;
    fn is_dead(&self) -> bool;
}

/// Uniform `u64` → `V`.
pub struct PrefixTable<V> {
    keys: Vec<u64>,
    vals: Vec<V>,
    /// `dir[b]..dir[b + 1]`: where the keys whose top `bits` bits are `b` are in `keys`.
    dir: Vec<u32>,
    bits: u32,
    delta: PassMap<u64, V>,
}

impl<V: Tombstone> Default for PrefixTable<V> {
    fn default() -> Self {
        PrefixTable {
            keys: Vec::new(),
            vals: Vec::new(),
            dir: vec![0, 0],
            bits: 0,
            delta: PassMap::default(),
        }
    }
}

impl<V: Tombstone> PrefixTable<V> {
    /// An empty table that will hold about `n` entries.
    pub fn with_capacity(n: usize) -> PrefixTable<V> {
        let mut t = PrefixTable::default();
        t.keys.reserve_exact(n);
        t.vals.reserve_exact(n);
        t
    }

    /// Entries held (tests check the bookkeeping).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.vals.iter().filter(|v| !v.is_dead()).count() + self.delta.len()
    }

    /// Where `k` is in the arrays (live or removed).
    fn position(&self, k: u64) -> Option<usize> {
        let b = self.bucket(k);
        let (lo, hi) = (self.dir[b] as usize, self.dir[b + 1] as usize);
        let i = lo + self.keys[lo..hi].partition_point(|x| *x < k);
        (i < hi && self.keys[i] == k).then_some(i)
    }

    fn bucket(&self, k: u64) -> usize {
        if self.bits == 0 {
            0
        } else {
            (k >> (64 - self.bits)) as usize
        }
    }

    pub fn get(&self, k: u64) -> Option<V> {
        if let Some(v) = self.delta.get(&k) {
            return Some(*v);
        }
        self.position(k)
            .map(|i| self.vals[i])
            .filter(|v| !v.is_dead())
    }

    pub fn insert(&mut self, k: u64, v: V) {
        if let Some(i) = self.position(k) {
            self.vals[i] = v;
            return;
        }
        self.delta.insert(k, v);
        if self.delta.len() >= MIN_DELTA.max(self.keys.len() >> DELTA_SHIFT) {
            self.merge();
        }
    }

    pub fn remove(&mut self, k: u64) -> Option<V> {
        if let Some(v) = self.delta.remove(&k) {
            return Some(v);
        }
        let i = self.position(k)?;
        let v = std::mem::replace(&mut self.vals[i], V::DEAD);
        (!v.is_dead()).then_some(v)
    }

    /// Moves the hash map's entries into the arrays, dropping removed entries, in place:
    /// the arrays grow by the new entries and are filled from the back.
    fn merge(&mut self) {
        let mut new: Vec<(u64, V)> = self.delta.drain().collect();
        new.sort_unstable_by_key(|(k, _)| *k);
        // Compact the removed entries out first, so the merge below only moves live ones.
        let mut w = 0;
        for r in 0..self.keys.len() {
            if !self.vals[r].is_dead() {
                self.keys[w] = self.keys[r];
                self.vals[w] = self.vals[r];
                w += 1;
            }
        }
        let old = w;
        let total = old + new.len();
        self.keys.truncate(old);
        self.vals.truncate(old);
        self.keys.resize(total, 0);
        self.vals.resize(total, V::DEAD);
        // Merge from the back: slot `w` is always at or after the old entry it may take.
        let (mut i, mut j, mut w) = (old, new.len(), total);
        while j > 0 {
            w -= 1;
            if i > 0 && self.keys[i - 1] > new[j - 1].0 {
                i -= 1;
                self.keys[w] = self.keys[i];
                self.vals[w] = self.vals[i];
            } else {
                j -= 1;
                self.keys[w] = new[j].0;
                self.vals[w] = new[j].1;
            }
        }
        self.rebuild_dir();
    }

    fn rebuild_dir(&mut self) {
        let n = self.keys.len();
        self.bits = (n / PER_BUCKET).max(1).ilog2();
        let buckets = 1usize << self.bits;
        self.dir = Vec::with_capacity(buckets + 1);
        let mut i = 0;
        for b in 0..buckets {
            while i < n && self.bucket(self.keys[i]) < b {
                i += 1;
            }
            self.dir.push(i as u32);
        }
        self.dir.push(n as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    impl Tombstone for u32 {
        const DEAD: u32 = u32::MAX;
        fn is_dead(&self) -> bool {
            *self == u32::MAX
        }
    }

    proptest! {
        /// The table answers as a map does after any inserts and removals, across merges
        /// (keys from a small range, so that they repeat, and from everywhere).
        #[test]
        fn answers_as_a_map_does(ops in proptest::collection::vec(
            (0u8..3, prop_oneof![0u64..2_000, any::<u64>()], 0..u32::MAX), 0..3_000)
        ) {
            let mut t = PrefixTable::with_capacity(16);
            let mut m = BTreeMap::new();
            for (op, k, v) in &ops {
                match op {
                    0 | 1 => {
                        t.insert(*k, *v);
                        m.insert(*k, *v);
                    }
                    _ => prop_assert_eq!(t.remove(*k), m.remove(k)),
                }
                prop_assert_eq!(t.len(), m.len());
            }
            for (k, v) in &m {
                prop_assert_eq!(t.get(*k), Some(*v));
            }
            for (_, k, _) in &ops {
                prop_assert_eq!(t.get(*k), m.get(k).copied());
            }
        }
    }
}
