//! The body store: pack files ([`super::packs`]) and their index, a [`Keydir`] in memory
//! whose durable form is one append-only file of [`Rec`]s per pack (`pack-<n>.idx`), the
//! Bitcask design. A body costs one pack append and one 49-byte index record, no B-tree
//! insert, and lookups cost a hash probe.
//!
//! Crash safety without an extra fsync per flush:
//! - [`Blobs::sync`] makes the pack bytes durable (`fdatasync`) *before* it appends their
//!   index records, so an index record never names bytes that were not durable when it was
//!   written: after any crash, a record names intact bytes (or is torn, and refused by its
//!   check), and [`Blobs::has`] never answers yes for a body that is not there.
//! - The index files are not fsynced: records lost in a crash are found again at the next
//!   load, which reads every pack past the end of the last record its index names and
//!   takes each intact record there (its bytes hash to its id; the first one that does not
//!   ends the pack: the torn tail of a write, cut off so appends continue after whole
//!   records). The index is then as complete as the packs.
//! - Garbage collection appends tombstones (`Dead`) to the index of the pack holding the
//!   dropped body, fsynced before a pack file is deleted.
//!
//! The keydir is loaded on first use (a command that reads no body does not pay for it).

use super::keydir::{Keydir, Rec, REC};
use super::packs::{Loc, Packs};
use super::{GcStats, StoreError};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock, RwLock};

fn io(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Io(format!("{}: {e}", path.display()))
}

fn idx_path(dir: &Path, pack: u32) -> PathBuf {
    dir.join(format!("pack-{pack:06}.idx"))
}

/// The loaded store.
struct Loaded {
    packs: Packs,
    state: Mutex<State>,
    /// Held shared by puts and syncs, exclusively by gc: a body being appended or synced
    /// outside `state`'s lock is never in a pack gc rewrites or deletes meanwhile.
    gate: RwLock<()>,
    /// Syncs one at a time: index records reach the index files in the order their bodies
    /// were made durable (a later sync's records, covering more of a pack, never land
    /// before an earlier one's: the load's scan starts past the last covered byte).
    syncing: Mutex<()>,
}

struct State {
    keys: Keydir,
    /// Index records of bodies appended since the last [`Blobs::sync`], per pack.
    pending: BTreeMap<u32, Vec<u8>>,
}

/// Message bodies by sha256: packs and their index.
pub struct Blobs {
    dir: PathBuf,
    loaded: OnceLock<Loaded>,
    loading: Mutex<()>,
}

/// The records of an index file, up to the first torn one (the file is cut there, so
/// records appended later are read).
fn read_index(dir: &Path, pack: u32) -> Result<Vec<Rec>, StoreError> {
    let path = idx_path(dir, pack);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(&path, e)),
    };
    let mut recs = Vec::with_capacity(bytes.len() / REC);
    for chunk in bytes.chunks(REC) {
        match Rec::decode(chunk, pack) {
            Some(r) => recs.push(r),
            None => break,
        }
    }
    let whole = (recs.len() * REC) as u64;
    if whole < bytes.len() as u64 {
        tracing::warn!(file = %path.display(), "cutting a torn index record");
        let f = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        f.set_len(whole).map_err(|e| io(&path, e))?;
    }
    Ok(recs)
}

/// Reads pack `pack` from `from` to its end, record by record, giving the id and location
/// of each intact one to `f`. Stops at the first record that is short or does not hash to
/// its id, and returns where that is (the end of the last intact record). A record header's
/// worth of zeros where a record would start is padding (gaps around direct writes are
/// never shorter): skipped to the next [`super::packs::ALIGN`] boundary.
fn read_records(
    dir: &Path,
    pack: u32,
    from: u64,
    f: &mut dyn FnMut(&[u8; 32], Loc),
) -> Result<u64, StoreError> {
    let path = Packs::path(dir, pack);
    let file = File::open(&path).map_err(|e| io(&path, e))?;
    let end = file.metadata().map_err(|e| io(&path, e))?.len();
    let mut r = std::io::BufReader::with_capacity(8 << 20, &file);
    let mut at = from;
    if from > 0 {
        use std::io::Seek;
        r.seek(std::io::SeekFrom::Start(from))
            .map_err(|e| io(&path, e))?;
    }
    let mut body = Vec::new();
    while at < end {
        let mut head = [0u8; 36];
        let n = (end - at).min(head.len() as u64) as usize;
        r.read_exact(&mut head[..n]).map_err(|e| io(&path, e))?;
        if head[..n].iter().all(|&b| b == 0) {
            // Padding up to the next direct write ([`super::packs::ALIGN`]).
            let next = super::packs::round_up(at + 1).min(end);
            // Back, when the gap ends within the header just read.
            r.seek_relative(next as i64 - (at + n as u64) as i64)
                .map_err(|e| io(&path, e))?;
            at = next;
            continue;
        }
        if n < head.len() {
            break;
        }
        let len = u32::from_be_bytes(head[..4].try_into().expect("4 bytes"));
        let id: [u8; 32] = head[4..].try_into().expect("32 bytes");
        if at + Packs::record_size(len) > end {
            break;
        }
        body.resize(len as usize, 0);
        r.read_exact(&mut body).map_err(|e| io(&path, e))?;
        if <[u8; 32]>::from(Sha256::digest(&body)) != id {
            break;
        }
        let loc = Loc {
            pack,
            offset: at + Packs::record_size(0),
            len,
        };
        at += Packs::record_size(len);
        f(&id, loc);
    }
    Ok(at)
}

impl Loaded {
    /// Loads the index of every pack, finding what the index files lack in the packs.
    fn load(dir: &Path) -> Result<Loaded, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let packs = Packs::numbers(dir, "")?;
        for n in Packs::numbers(dir, ".idx")? {
            if packs.binary_search(&n).is_err() {
                let p = idx_path(dir, n);
                std::fs::remove_file(&p).map_err(|e| io(&p, e))?;
            }
        }
        let mut pending: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
        // Sized once: a map growing by doubling holds both tables while it rehashes.
        let mut total = 0u64;
        for &n in &packs {
            if let Ok(m) = std::fs::metadata(idx_path(dir, n)) {
                total += m.len() / REC as u64;
            }
        }
        let mut keys = Keydir::with_capacity(total as usize);
        // Reading an occupant's id at load (two ids sharing 8 bytes: rare) opens its pack.
        let id_at = |l: Loc| -> Result<Option<[u8; 32]>, StoreError> {
            let path = Packs::path(dir, l.pack);
            match File::open(&path) {
                Ok(f) => read_id_at(&f, l).map_err(|e| io(&path, e)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(io(&path, e)),
            }
        };
        for &n in &packs {
            let path = Packs::path(dir, n);
            let size = std::fs::metadata(&path).map_err(|e| io(&path, e))?.len();
            let mut recs = read_index(dir, n)?;
            recs.retain(|r| match r {
                Rec::Body(_, l) => l.offset + u64::from(l.len) <= size,
                Rec::Dead(_) => true,
            });
            let covered = recs
                .iter()
                .filter_map(|r| match r {
                    Rec::Body(_, l) => Some(l.offset + u64::from(l.len)),
                    Rec::Dead(_) => None,
                })
                .max()
                .unwrap_or(0);
            if covered < size {
                // Bodies written after the last index records reached the disk.
                let mut found = Vec::new();
                let good = read_records(dir, n, covered, &mut |id, loc| {
                    found.push(Rec::Body(*id, loc));
                })?;
                if good < size {
                    tracing::warn!(pack = n, at = good, size, "cutting a torn pack tail");
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(|e| io(&path, e))?;
                    f.set_len(good).map_err(|e| io(&path, e))?;
                }
                if !found.is_empty() {
                    tracing::info!(
                        pack = n,
                        bodies = found.len(),
                        "indexing bodies found past the pack's index"
                    );
                    let p = pending.entry(n).or_default();
                    for r in &found {
                        p.extend_from_slice(&r.encode(n));
                    }
                    recs.extend(found);
                }
            }
            for r in recs {
                match r {
                    Rec::Body(id, loc) => keys.insert(&id, loc, &id_at)?,
                    Rec::Dead(id) => keys.remove_in(&id, n, &id_at)?,
                }
            }
        }
        let packs = Packs::open(dir)?;
        let l = Loaded {
            packs,
            state: Mutex::new(State { keys, pending }),
            gate: RwLock::new(()),
            syncing: Mutex::new(()),
        };
        l.sync_locked(&mut l.lock(), false)?;
        Ok(l)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// [`Loaded::sync_locked`] without holding `state`'s lock during the `fdatasync`, so
    /// that puts (another thread copying bodies) and lookups go on meanwhile.
    fn sync_shared(&self) -> Result<(), StoreError> {
        let _one = self.syncing.lock().unwrap_or_else(|e| e.into_inner());
        let _g = self.gate.read().unwrap_or_else(|e| e.into_inner());
        // Bodies recorded here were appended before: the sync below covers them.
        let pending = std::mem::take(&mut self.lock().pending);
        let put_back = |pending: BTreeMap<u32, Vec<u8>>| {
            let mut st = self.lock();
            for (pack, mut recs) in pending {
                let later = st.pending.entry(pack).or_default();
                recs.append(later);
                *later = recs;
            }
        };
        if let Err(e) = self.packs.sync() {
            put_back(pending);
            return Err(e);
        }
        let mut pending = pending.into_iter();
        while let Some((pack, recs)) = pending.next() {
            if let Err(e) = append_index(self.packs.dir(), pack, &recs, false) {
                put_back(std::iter::once((pack, recs)).chain(pending).collect());
                return Err(e);
            }
        }
        Ok(())
    }

    /// Makes the packs durable, then appends the index records of what they gained (the
    /// index files fsynced too with `durable`: before a pack they replace is deleted).
    fn sync_locked(&self, st: &mut State, durable: bool) -> Result<(), StoreError> {
        self.packs.sync()?;
        for (pack, recs) in std::mem::take(&mut st.pending) {
            append_index(self.packs.dir(), pack, &recs, durable)?;
        }
        Ok(())
    }

    /// Records that `id` was just appended at `loc`: in the keydir now, in the index at
    /// the next sync.
    fn stored(&self, st: &mut State, id: &[u8; 32], loc: Loc) -> Result<(), StoreError> {
        st.keys.insert(id, loc, &|l| self.packs.read_id(l))?;
        st.pending
            .entry(loc.pack)
            .or_default()
            .extend_from_slice(&Rec::Body(*id, loc).encode(loc.pack));
        Ok(())
    }
}

/// Appends records to the index file of `pack` (fsynced with `durable`).
fn append_index(dir: &Path, pack: u32, recs: &[u8], durable: bool) -> Result<(), StoreError> {
    let path = idx_path(dir, pack);
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| io(&path, e))?;
    f.write_all(recs).map_err(|e| io(&path, e))?;
    if durable {
        f.sync_data().map_err(|e| io(&path, e))?;
    }
    Ok(())
}

impl Blobs {
    /// The body store in `dir` (read on first use).
    pub fn open(dir: &Path) -> Blobs {
        Blobs {
            dir: dir.to_path_buf(),
            loaded: OnceLock::new(),
            loading: Mutex::new(()),
        }
    }

    fn loaded(&self) -> Result<&Loaded, StoreError> {
        if let Some(l) = self.loaded.get() {
            return Ok(l);
        }
        let _g = self.loading.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = self.loaded.get() {
            return Ok(l);
        }
        let l = Loaded::load(&self.dir)?;
        Ok(self.loaded.get_or_init(|| l))
    }

    /// The body `id`, checked against its id (`None` if absent or not intact).
    pub fn get(&self, id: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        let l = self.loaded()?;
        let loc = l.lock().keys.candidate(id);
        match loc {
            Some(loc) => l.packs.read(id, loc),
            None => Ok(None),
        }
    }

    pub fn has(&self, id: &[u8; 32]) -> Result<bool, StoreError> {
        let l = self.loaded()?;
        let st = l.lock();
        Ok(st.keys.get(id, &|loc| l.packs.read_id(loc))?.is_some())
    }

    /// [`Blobs::has`] of each of `ids`, under one hold of the keydir's lock.
    pub fn has_many(&self, ids: &[[u8; 32]]) -> Result<Vec<bool>, StoreError> {
        let l = self.loaded()?;
        let st = l.lock();
        ids.iter()
            .map(|id| Ok(st.keys.get(id, &|loc| l.packs.read_id(loc))?.is_some()))
            .collect()
    }

    /// Stores the bodies not stored yet, with one pack write (not durable before
    /// [`Blobs::sync`]).
    pub fn put_many(&self, blobs: &[([u8; 32], &[u8])]) -> Result<(), StoreError> {
        let l = self.loaded()?;
        let _g = l.gate.read().unwrap_or_else(|e| e.into_inner());
        let id_at = |loc: Loc| l.packs.read_id(loc);
        let mut seen = HashSet::with_capacity(blobs.len());
        let mut new = Vec::with_capacity(blobs.len());
        {
            let st = l.lock();
            for (id, bytes) in blobs {
                if seen.insert(*id) && st.keys.get(id, &id_at)?.is_none() {
                    new.push((id, *bytes));
                }
            }
        }
        if new.is_empty() {
            return Ok(());
        }
        // The write runs without the keydir's lock (lookups go on); a body another put
        // stores meanwhile is then in the pack twice, which costs space only.
        let locs = l.packs.append_many(&new)?;
        let mut st = l.lock();
        for ((id, _), loc) in new.iter().zip(&locs) {
            l.stored(&mut st, id, *loc)?;
        }
        Ok(())
    }

    /// Makes every stored body durable (and indexes it).
    pub fn sync(&self) -> Result<(), StoreError> {
        match self.loaded.get() {
            Some(l) => l.sync_shared(),
            None => Ok(()),
        }
    }

    /// Calls `f` with each of the bodies `ids` that is stored (checked), read in the order
    /// they lie in the packs, until it returns false.
    pub fn get_many(
        &self,
        ids: &[[u8; 32]],
        f: &mut dyn FnMut(&[u8; 32], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let l = self.loaded()?;
        let mut at: Vec<(Loc, &[u8; 32])> = {
            let st = l.lock();
            ids.iter()
                .filter_map(|id| st.keys.candidate(id).map(|loc| (loc, id)))
                .collect()
        };
        at.sort_unstable_by_key(|(loc, _)| (loc.pack, loc.offset));
        l.packs.read_many(&at, f)
    }

    /// Drops every body for which `live` is false; packs mostly garbage are rewritten.
    pub fn gc(&self, live: &dyn Fn(&[u8; 32]) -> bool) -> Result<GcStats, StoreError> {
        let l = self.loaded()?;
        let _g = l.gate.write().unwrap_or_else(|e| e.into_inner());
        let mut st = l.lock();
        l.sync_locked(&mut st, false)?;
        let mut stats = GcStats::default();
        // Sweep the index files (they name every body, with its id), counting the live
        // bytes of every pack and remembering where its live bodies are.
        let mut live_in: HashMap<u32, Vec<([u8; 32], Loc)>> = HashMap::new();
        let packs = l.packs.list()?;
        for &(pack, _) in &packs {
            let mut dead = Vec::new();
            for r in read_index(&self.dir, pack)? {
                let Rec::Body(id, loc) = r else { continue };
                if !st.keys.is_at(&id, loc) {
                    continue;
                }
                if live(&id) {
                    stats.kept += 1;
                    live_in.entry(pack).or_default().push((id, loc));
                } else {
                    stats.dropped += 1;
                    st.keys.remove_at(&id, loc);
                    dead.extend_from_slice(&Rec::Dead(id).encode(pack));
                }
            }
            if !dead.is_empty() {
                append_index(&self.dir, pack, &dead, true)?;
            }
        }
        let live_bytes: HashMap<u32, u64> = live_in
            .iter()
            .map(|(p, v)| (*p, v.iter().map(|(_, l)| Packs::record_size(l.len)).sum()))
            .collect();
        let live_bytes = |p: u32| live_bytes.get(&p).copied().unwrap_or(0);
        // Packs mostly garbage: move their live bodies into the current pack, then delete
        // them (only after the moved bodies are durable and indexed).
        let mut current = l.packs.current();
        if let Some(&(_, size)) = packs.iter().find(|(p, _)| *p == current) {
            // The current pack only fills up to its limit: compact it too when it is
            // mostly garbage, by starting a new one.
            if size > (1 << 20) && live_bytes(current) * 2 < size {
                l.packs.roll()?;
                current = l.packs.current();
            }
        }
        for (pack, size) in packs {
            if pack == current {
                continue;
            }
            let live = live_bytes(pack);
            if live > 0 && live * 2 >= size {
                continue;
            }
            if live > 0 {
                for (id, loc) in live_in.remove(&pack).unwrap_or_default() {
                    if let Some(bytes) = l.packs.read(&id, loc)? {
                        let new = l.packs.append(&id, &bytes)?;
                        l.stored(&mut st, &id, new)?;
                    }
                }
                l.sync_locked(&mut st, true)?;
                stats.packs_rewritten += 1;
            } else {
                stats.packs_deleted += 1;
            }
            l.packs.remove(pack)?;
            let idx = idx_path(&self.dir, pack);
            match std::fs::remove_file(&idx) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&idx, e)),
            }
            stats.bytes_freed += size - live;
        }
        Ok(stats)
    }

    /// Replaces the index files with `entries` (id, location), from an index kept
    /// elsewhere by an earlier version: written and fsynced before that one is dropped.
    pub fn adopt_index(&self, entries: Vec<([u8; 32], Loc)>) -> Result<(), StoreError> {
        assert!(
            self.loaded.get().is_none(),
            "adopt an index before first use"
        );
        std::fs::create_dir_all(&self.dir).map_err(|e| io(&self.dir, e))?;
        let mut per_pack: BTreeMap<u32, Vec<([u8; 32], Loc)>> = BTreeMap::new();
        for (id, loc) in entries {
            per_pack.entry(loc.pack).or_default().push((id, loc));
        }
        for n in Packs::numbers(&self.dir, ".idx")? {
            let p = idx_path(&self.dir, n);
            std::fs::remove_file(&p).map_err(|e| io(&p, e))?;
        }
        for (pack, mut v) in per_pack {
            v.sort_by_key(|(_, l)| l.offset);
            let mut recs = Vec::with_capacity(v.len() * REC);
            for (id, loc) in v {
                recs.extend_from_slice(&Rec::Body(id, loc).encode(pack));
            }
            append_index(&self.dir, pack, &recs, true)?;
        }
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(&self.dir, e))?;
        Ok(())
    }

    /// Bodies indexed (loads the index).
    #[cfg(test)]
    pub fn count(&self) -> Result<usize, StoreError> {
        Ok(self.loaded()?.lock().keys.len())
    }

    /// Bytes in pack and index files.
    pub fn size(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io(&self.dir, e)),
        };
        for e in rd {
            let e = e.map_err(|e| io(&self.dir, e))?;
            total += e.metadata().map_err(|e| io(&self.dir, e))?.len();
        }
        Ok(total)
    }
}

/// Reads the 32-byte id in front of `loc`'s bytes.
pub(super) fn read_id_at(file: &File, loc: Loc) -> std::io::Result<Option<[u8; 32]>> {
    let Some(at) = loc.offset.checked_sub(32) else {
        return Ok(None);
    };
    let mut id = [0u8; 32];
    match file.read_exact_at(&mut id, at) {
        Ok(()) => Ok(Some(id)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}
