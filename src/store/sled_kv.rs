//! The sled implementation of [`Kv`]: one tree for everything but blobs, so that one
//! operation's writes are one atomic `apply_batch`; message bodies in pack files beside it
//! with their own index ([`super::blobs`]), made durable before the batch that references
//! them (an orphan body after a crash is harmless). Data dirs of the first release kept
//! bodies in a `blobs` tree, and those of format 4 and before the index in a `blobidx`
//! tree: both move out of sled on the first open.

use super::blobs::Blobs;
use super::packs::Loc;
use super::{Batch, Entry, GcStats, Kv, StoreError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An open sled database.
struct Db {
    db: sled::Db,
}

pub struct SledKv {
    /// `store.lock` in the data dir, held (flock) while this store is open: sled's own lock
    /// is released while [`SledKv`] reopens the database, and no other process may take the
    /// data dir in that moment.
    _lock: std::fs::File,
    dir: PathBuf,
    cache: u64,
    /// The open database. sled 0.34 writes the snapshot of its page table only when it
    /// opens a database, and an open replays the whole log written since the last one: after
    /// a crash that followed gigabytes of writes, that took seconds. So once [`REOPEN_AFTER`]
    /// bytes were written, the database is closed and reopened (when no other handle on it
    /// is alive) at the next idle moment ([`Kv::idle`]), or at a flush once twice that was
    /// written without one, which bounds what a crash leaves to replay.
    db: Mutex<Option<Arc<Db>>>,
    /// Bytes written (keys and values) since the database was last opened.
    written: AtomicU64,
    blobs: Blobs,
}

/// sled's page cache when no budget is given.
pub const DEFAULT_CACHE: u64 = 64 * 1024 * 1024;

/// Bytes of writes after which an idle moment reopens the database (a flush: twice that;
/// see [`SledKv`]). sled's log
/// grows by ~3.5 times the bytes written (20k messages appended with a 4 MiB threshold left
/// 14 MB of log after the last snapshot, of 44 MB in all)
/// and a first open after a crash replays it at ~150-250 MB/s on the benchmark machine:
/// 16 MiB keeps that replay near 0.3 s. A reopen costs an open (the snapshot read, 35 ms
/// at 100k messages, 150-390 ms at 1M, plus that replay) once per ~7k appended messages.
pub const REOPEN_AFTER: u64 = 16 * 1024 * 1024;

/// [`REOPEN_AFTER`], or `$DOVETAIL_SLED_REOPEN_AFTER` bytes (a benchmark knob: `0` never
/// reopens, to measure the open after a crash without it).
fn reopen_after() -> u64 {
    static V: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *V.get_or_init(
        || match std::env::var("DOVETAIL_SLED_REOPEN_AFTER").map(|v| v.parse::<u64>()) {
            Ok(Ok(0)) => u64::MAX,
            Ok(Ok(n)) => n,
            _ => REOPEN_AFTER,
        },
    )
}

/// Takes the data dir's `store.lock` (see [`SledKv`]).
fn lock_dir(dir: &Path) -> Result<std::fs::File, StoreError> {
    use std::os::unix::io::AsRawFd;
    let path = dir.join("store.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::Io(format!("{}: {e}", path.display())))?;
    // SAFETY: flock on a descriptor this function owns; the lock lives as long as the file.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(StoreError::Locked(dir.display().to_string()));
    }
    Ok(f)
}

/// Removes the snapshot files sled 0.34 left half-written when a process was killed while
/// writing one. sled writes a snapshot to `snap.<lsn>.generating`, fsyncs it and renames it
/// to `snap.<lsn>`, removing older ones only after the rename; but its open takes the
/// newest `snap.*` file as the snapshot *including* a `.generating` one, and refuses to
/// open ("empty/corrupt snapshot file found", then "Read corrupted data") when a kill left
/// it empty or torn. Such a file was never renamed, so the previous snapshot is still
/// there and the log since it replays: dropping the unfinished file is what sled's own
/// recovery would do. Only called with `store.lock` held and before this process opens
/// sled, so nothing is writing one.
fn remove_unfinished_snapshots(db_dir: &Path) -> Result<(), StoreError> {
    let entries = match std::fs::read_dir(db_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::Io(format!("{}: {e}", db_dir.display()))),
    };
    for entry in entries {
        let path = entry
            .map_err(|e| StoreError::Io(format!("{}: {e}", db_dir.display())))?
            .path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if name.is_some_and(|n| n.starts_with("snap.") && n.ends_with(".generating")) {
            tracing::warn!(file = %path.display(), "removing a snapshot file a crash left unfinished");
            std::fs::remove_file(&path)
                .map_err(|e| StoreError::Io(format!("{}: {e}", path.display())))?;
        }
    }
    Ok(())
}

fn open_db(dir: &Path, cache: u64) -> Result<Db, StoreError> {
    let db = sled::Config::new()
        .path(dir.join("db"))
        // sled's default cache is 1 GiB; the view is read mostly sequentially.
        .cache_capacity(cache)
        // No background flushes: sled's log reaches disk at our flushes, right after
        // the pack files, so durable index entries never precede their bodies.
        .flush_every_ms(None)
        .open()
        .map_err(|e| match e {
            // sled reports a held file lock as an `Other` I/O error with this text.
            sled::Error::Io(io)
                if io.kind() == std::io::ErrorKind::WouldBlock
                    || io.to_string().contains("could not acquire lock") =>
            {
                StoreError::Locked(dir.display().to_string())
            }
            e => StoreError::Sled(e),
        })?;
    Ok(Db { db })
}

/// [`open_db`] with `store.lock` held: then only this process can hold sled's lock, by a
/// database it has just closed (a reopen, or a store dropped and opened again), and sled
/// releases its file lock once its last internal handle is gone, which may be a moment
/// after the drop; so a held lock is retried for up to 2 s.
fn open_db_settled(dir: &Path, cache: u64) -> Result<Db, StoreError> {
    let mut tries = 0;
    loop {
        match open_db(dir, cache) {
            Err(StoreError::Locked(_)) if tries < 400 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            r => return r,
        }
    }
}

impl SledKv {
    pub fn open(dir: &Path) -> Result<SledKv, StoreError> {
        SledKv::open_with_cache(dir, DEFAULT_CACHE)
    }

    /// Opens with sled's page cache limited to `cache` bytes.
    pub fn open_with_cache(dir: &Path, cache: u64) -> Result<SledKv, StoreError> {
        let lock = lock_dir(dir)?;
        // Only here, at a process's first open: a snapshot is left unfinished by a kill,
        // and this process's own reopens (`maybe_reopen`) follow a clean close.
        remove_unfinished_snapshots(&dir.join("db"))?;
        let db = open_db_settled(dir, cache)?;
        let kv = SledKv {
            _lock: lock,
            dir: dir.to_path_buf(),
            cache,
            db: Mutex::new(Some(Arc::new(db))),
            written: AtomicU64::new(0),
            blobs: Blobs::open(&dir.join("blobs")),
        };
        kv.migrate_blob_index()?;
        kv.migrate_blob_tree()?;
        Ok(kv)
    }

    /// The open database (a handle: a reopen waits until no handle is alive). Opens it
    /// again if a reopen could not.
    fn db(&self) -> Result<Arc<Db>, StoreError> {
        let mut g = self.db.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_none() {
            *g = Some(Arc::new(open_db_settled(&self.dir, self.cache)?));
        }
        Ok(Arc::clone(g.as_ref().expect("set above")))
    }

    fn wrote(&self, bytes: usize) {
        self.written.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Closes and reopens the database once `threshold` bytes were written since it was
    /// opened, unless a handle on it is alive (a scan in progress): then a later call does
    /// it. Everything is durable already (called right after a flush), so a failed
    /// open does not fail the flush: it is logged, and the next use opens the database.
    fn maybe_reopen(&self, threshold: u64) {
        if self.written.load(Ordering::Relaxed) < threshold {
            return;
        }
        let mut g = self.db.lock().unwrap_or_else(|e| e.into_inner());
        match g.as_ref() {
            Some(db) if Arc::strong_count(db) == 1 => {}
            _ => return,
        }
        let t = Instant::now();
        drop(g.take());
        let written = self.written.swap(0, Ordering::Relaxed);
        match open_db_settled(&self.dir, self.cache) {
            Ok(db) => {
                *g = Some(Arc::new(db));
                tracing::debug!(
                    written,
                    ms = t.elapsed().as_millis() as u64,
                    "reopened sled to write its snapshot"
                );
            }
            Err(e) => tracing::warn!(error = %e, "reopening sled failed; retried on next use"),
        }
    }

    /// Moves the body index of formats up to 4 (the `blobidx` tree) into index files
    /// ([`Blobs::adopt_index`]), written and fsynced before the tree is dropped; a crash in
    /// between leaves the tree, and the next open does it again.
    fn migrate_blob_index(&self) -> Result<(), StoreError> {
        let h = self.db()?;
        if !h.db.tree_names().iter().any(|n| n.as_ref() == b"blobidx") {
            return Ok(());
        }
        let tree = h.db.open_tree("blobidx")?;
        let mut entries = Vec::with_capacity(tree.len());
        for kv in tree.iter() {
            let (k, v) = kv?;
            if let (Ok(id), Some(loc)) = (<[u8; 32]>::try_from(k.as_ref()), Loc::decode(&v)) {
                entries.push((id, loc));
            }
        }
        if !entries.is_empty() {
            tracing::warn!(
                bodies = entries.len(),
                "moving the body index out of sled into index files (once)"
            );
        }
        self.blobs.adopt_index(entries)?;
        drop(tree);
        h.db.drop_tree("blobidx")?;
        h.db.flush()?;
        Ok(())
    }

    /// Moves the bodies of the first release's `blobs` tree into packs, in batches, each
    /// made durable before the tree entries are removed (a crash in between only leaves a
    /// body in both places, and the next open finishes the move).
    fn migrate_blob_tree(&self) -> Result<(), StoreError> {
        let h = self.db()?;
        if !h.db.tree_names().iter().any(|n| n.as_ref() == b"blobs") {
            return Ok(());
        }
        let old = h.db.open_tree("blobs")?;
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
            self.blobs.sync()?;
            h.db.flush()?;
            let mut b = sled::Batch::default();
            for k in moved {
                b.remove(k);
            }
            old.apply_batch(b)?;
            h.db.flush()?;
        }
        drop(old);
        h.db.drop_tree("blobs")?;
        Ok(())
    }
}

impl Kv for SledKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db()?.db.get(key)?.map(|v| v.to_vec()))
    }

    fn scan(
        &self,
        prefix: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        for kv in self.db()?.db.scan_prefix(prefix) {
            let (k, v) = kv?;
            if !f(&k, &v) {
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
        let from = start.max(prefix).to_vec();
        for kv in self.db()?.db.range(from..) {
            let (k, v) = kv?;
            if !k.starts_with(prefix) || !f(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    fn last(&self, prefix: &[u8]) -> Result<Option<Entry>, StoreError> {
        Ok(match self.db()?.db.scan_prefix(prefix).next_back() {
            Some(kv) => {
                let (k, v) = kv?;
                Some((k.to_vec(), v.to_vec()))
            }
            None => None,
        })
    }

    fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        let mut b = sled::Batch::default();
        let mut bytes = 0;
        for (k, v) in batch {
            bytes += k.len() + v.as_ref().map_or(0, Vec::len);
            match v {
                Some(v) => b.insert(k, v),
                None => b.remove(k),
            }
        }
        self.db()?.db.apply_batch(b)?;
        self.wrote(bytes);
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Bodies first: the index entries and view rows sled is about to make durable
        // must not outlive the bytes they name.
        self.blobs.sync()?;
        self.db()?.db.flush()?;
        // A reopen costs an ordinary open (0.1-0.3 s, more for a large store) on the
        // writer's thread: it waits for the owner to be idle ([`Kv::idle`]) unless twice
        // the threshold was written without a pause, which still bounds the replay.
        self.maybe_reopen(reopen_after().saturating_mul(2));
        Ok(())
    }

    fn idle(&self) {
        self.maybe_reopen(reopen_after());
    }

    fn blob_get(&self, id: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        self.blobs.get(id)
    }

    fn blob_has(&self, id: &[u8; 32]) -> Result<bool, StoreError> {
        self.blobs.has(id)
    }

    fn blob_has_many(&self, ids: &[[u8; 32]]) -> Result<Vec<bool>, StoreError> {
        self.blobs.has_many(ids)
    }

    fn blob_put(&self, id: &[u8; 32], bytes: &[u8]) -> Result<(), StoreError> {
        self.blob_put_many(&[(*id, bytes)])
    }

    fn blob_put_many(&self, blobs: &[([u8; 32], &[u8])]) -> Result<(), StoreError> {
        self.blobs.put_many(blobs)
    }

    fn blob_get_many(
        &self,
        ids: &[[u8; 32]],
        f: &mut dyn FnMut(&[u8; 32], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.blobs.get_many(ids, f)
    }

    fn blob_gc(&self, live: &dyn Fn(&[u8; 32]) -> bool) -> Result<GcStats, StoreError> {
        self.blobs.gc(live)
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db()?.db.size_on_disk()? + self.blobs.size()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(i: u32) -> (Vec<u8>, [u8; 32]) {
        use sha2::Digest;
        let b = format!("body {i}").into_bytes();
        let id: [u8; 32] = sha2::Sha256::digest(&b).into();
        (b, id)
    }

    fn value(i: u32) -> Vec<u8> {
        let mut v = vec![(i % 251) as u8; 256 * 1024];
        v[..4].copy_from_slice(&i.to_be_bytes());
        v
    }

    /// Writes past twice the reopen threshold reopen the database at a flush, and nothing
    /// written before or after is lost; a flush from inside a scan (a handle alive) does not
    /// reopen (and does not deadlock), the next flush outside does; past the threshold
    /// once, an idle moment reopens it and a flush does not.
    #[test]
    fn reopen_after_many_writes_keeps_everything() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kv = SledKv::open_with_cache(dir.path(), 8 << 20).expect("open");
        let n = (2 * REOPEN_AFTER / (256 * 1024)) as u32 + 8;
        let mut reopened = false;
        for i in 0..n {
            kv.apply(vec![(i.to_be_bytes().to_vec(), Some(value(i)))])
                .expect("apply");
            let (b, id) = body(i);
            kv.blob_put(&id, &b).expect("blob");
            let before = kv.written.load(Ordering::Relaxed);
            kv.flush().expect("flush");
            reopened |= kv.written.load(Ordering::Relaxed) < before;
        }
        assert!(
            reopened,
            "{n} writes of 256 KiB never reopened the database"
        );
        // Past the threshold once: a flush leaves it to an idle moment.
        kv.written.store(REOPEN_AFTER, Ordering::Relaxed);
        kv.flush().expect("flush");
        assert!(kv.written.load(Ordering::Relaxed) >= REOPEN_AFTER);
        kv.idle();
        assert!(
            kv.written.load(Ordering::Relaxed) < REOPEN_AFTER,
            "idle did not reopen"
        );
        // Past twice the threshold, then flush while a scan holds the database.
        kv.written.store(2 * REOPEN_AFTER, Ordering::Relaxed);
        let mut seen = 0;
        kv.scan(&[], &mut |_, _| {
            seen += 1;
            kv.flush().expect("flush inside a scan");
            false
        })
        .expect("scan");
        assert_eq!(seen, 1);
        assert!(
            kv.written.load(Ordering::Relaxed) >= REOPEN_AFTER,
            "reopened under a scan"
        );
        kv.flush().expect("flush");
        assert!(
            kv.written.load(Ordering::Relaxed) < REOPEN_AFTER,
            "did not reopen"
        );
        for i in 0..n {
            assert_eq!(kv.get(&i.to_be_bytes()).expect("get"), Some(value(i)));
            let (b, id) = body(i);
            assert_eq!(kv.blob_get(&id).expect("blob"), Some(b));
        }
        drop(kv);
        let kv = SledKv::open_with_cache(dir.path(), 8 << 20).expect("reopen");
        assert_eq!(
            kv.get(&(n - 1).to_be_bytes()).expect("get"),
            Some(value(n - 1))
        );
    }

    /// A kill while sled wrote a snapshot leaves `snap.<lsn>.generating` empty or torn;
    /// sled 0.34 alone then refuses to open the data dir, the store opens it with nothing
    /// lost (found by the SIGKILL loop of `tests/kill`: `mailbox delete` killed during open).
    #[test]
    fn unfinished_snapshot_left_by_a_kill_does_not_lose_the_data_dir() {
        for torn in [&b""[..], &[7u8; 40][..]] {
            let dir = tempfile::tempdir().expect("tempdir");
            let kv = SledKv::open_with_cache(dir.path(), 8 << 20).expect("open");
            for i in 0..20u32 {
                kv.apply(vec![(i.to_be_bytes().to_vec(), Some(vec![i as u8; 100]))])
                    .expect("apply");
            }
            kv.flush().expect("flush");
            drop(kv);
            let db = dir.path().join("db");
            let snap = db.join("snap.7FFFFFFFFFFFFFFF.generating");
            std::fs::write(&snap, torn).expect("write the torn snapshot");
            let raw = (0..400).find_map(|_| match sled::Config::new().path(&db).open() {
                Err(sled::Error::Io(e)) if e.to_string().contains("lock") => {
                    std::thread::sleep(Duration::from_millis(5));
                    None
                }
                r => Some(r.map(|_| ())),
            });
            assert!(
                matches!(raw, Some(Err(sled::Error::Corruption { .. }))),
                "sled itself opened the data dir: {raw:?} (this test no longer shows the bug)"
            );
            let kv = SledKv::open_with_cache(dir.path(), 8 << 20).expect("reopen");
            assert!(!snap.exists(), "the unfinished snapshot is still there");
            for i in 0..20u32 {
                assert_eq!(
                    kv.get(&i.to_be_bytes()).expect("get"),
                    Some(vec![i as u8; 100])
                );
            }
        }
    }

    /// `blob_put_many` stores what `blob_put` one by one stores: every body readable and
    /// intact, a body given twice or already stored written once, durable after a flush
    /// and a reopen, and later single puts land after the batch in the same pack.
    #[test]
    fn blob_put_many_stores_what_blob_put_does() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kv = SledKv::open_with_cache(dir.path(), 8 << 20).expect("open");
        let (b0, id0) = body(0);
        kv.blob_put(&id0, &b0).expect("put");
        let bodies: Vec<(Vec<u8>, [u8; 32])> = (0..50).map(body).collect();
        let mut items: Vec<([u8; 32], &[u8])> =
            bodies.iter().map(|(b, id)| (*id, b.as_slice())).collect();
        // The same body twice in one batch.
        items.push((bodies[7].1, bodies[7].0.as_slice()));
        // Index records are written at the flush: what grows here is the pack.
        let before = kv.blobs.size().expect("size");
        kv.blob_put_many(&items).expect("put many");
        let grown = kv.blobs.size().expect("size") - before;
        let want: u64 = bodies[1..]
            .iter()
            .map(|(b, _)| crate::store::packs::Packs::record_size(b.len() as u32))
            .sum();
        assert_eq!(
            grown, want,
            "each new body written once, the stored one not again"
        );
        let (b99, id99) = body(99);
        kv.blob_put(&id99, &b99).expect("put after");
        kv.flush().expect("flush");
        drop(kv);
        let kv = SledKv::open_with_cache(dir.path(), 8 << 20).expect("reopen");
        for (b, id) in bodies.iter().chain([&(b99, id99)]) {
            assert_eq!(kv.blob_get(id).expect("get").as_ref(), Some(b));
        }
    }
}
