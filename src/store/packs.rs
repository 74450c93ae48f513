//! Message bodies outside sled's tree: append-only pack files (their index:
//! [`super::blobs`]).
//!
//! Bodies are 95% of a data dir's bytes and are written once, read rarely and never
//! changed, which is the opposite of what a B-tree's page cache is for: kept in sled they
//! made every append and every sync copy them through sled's log and cache. Here a body is
//! appended to the current pack file (`blobs/pack-<n>`, a new one past [`PACK_LIMIT`]) with
//! one `write` call, and its location goes into the index.
//!
//! Ordering ("blobs before claims"): the bytes are written to the file before the index
//! entry exists, and [`Packs::sync`] runs `fdatasync` on the pack before the caller flushes
//! sled, so an index entry — and the view row that needs it — never outlives its bytes on a
//! process crash, and is never made durable before them by an acknowledged write. A crash
//! can leave bytes no index entry names (harmless: space only). Every read checks the
//! sha256 of what it read, so a torn record reads as missing, never as a wrong body.
//!
//! Record format: `len: u32 BE`, `id: [u8; 32]`, then `len` bytes.

use super::StoreError;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A pack file is closed and a new one started past this size.
pub const PACK_LIMIT: u64 = 1 << 30;

const HEADER: u64 = 36;

/// Where a body is: pack number, offset of the bytes, length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Loc {
    pub pack: u32,
    pub offset: u64,
    pub len: u32,
}

impl Loc {
    pub fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&self.pack.to_be_bytes());
        b[4..12].copy_from_slice(&self.offset.to_be_bytes());
        b[12..].copy_from_slice(&self.len.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<Loc> {
        let b: &[u8; 16] = b.try_into().ok()?;
        Some(Loc {
            pack: u32::from_be_bytes(b[..4].try_into().ok()?),
            offset: u64::from_be_bytes(b[4..12].try_into().ok()?),
            len: u32::from_be_bytes(b[12..].try_into().ok()?),
        })
    }
}

struct Writer {
    pack: u32,
    file: File,
    len: u64,
    /// Written since the last `sync`.
    dirty: bool,
    /// The records of the last append, kept for the next one: a fresh buffer per batch
    /// grew through reallocations, each above malloc's mmap threshold a new mapping whose
    /// pages faulted in again (~1 page fault per 4 KiB copied in a sync).
    buf: Vec<u8>,
}

/// The most bytes [`Packs::read_many`] reads with one call, and the largest gap between two
/// bodies it reads over rather than reading them apart.
const SPAN: u64 = 1 << 20;
const GAP: u64 = 16 << 10;

/// The largest record buffer kept between appends.
const KEEP_BUF: usize = 16 << 20;

/// Whether `bytes` hash to `id`; a body that does not is treated as missing.
fn intact(id: &[u8; 32], bytes: &[u8]) -> bool {
    let sum: [u8; 32] = Sha256::digest(bytes).into();
    if &sum != id {
        tracing::warn!(blob = %hex::encode(id), "a stored body does not match its id: treated as missing");
        return false;
    }
    true
}

/// The pack files of a data dir.
pub struct Packs {
    dir: PathBuf,
    writer: Mutex<Writer>,
    readers: Mutex<HashMap<u32, std::sync::Arc<File>>>,
}

fn io(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Io(format!("{}: {e}", path.display()))
}

impl Packs {
    /// Opens (creating) `dir` and the newest pack for appending.
    pub fn open(dir: &Path) -> Result<Packs, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let newest = Self::numbers(dir, "")?.last().copied().unwrap_or(0);
        let writer = Self::open_writer(dir, newest)?;
        Ok(Packs {
            dir: dir.to_path_buf(),
            writer: Mutex::new(writer),
            readers: Mutex::new(HashMap::new()),
        })
    }

    /// The directory of the packs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn path(dir: &Path, pack: u32) -> PathBuf {
        dir.join(format!("pack-{pack:06}"))
    }

    fn open_writer(dir: &Path, pack: u32) -> Result<Writer, StoreError> {
        let path = Self::path(dir, pack);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        let len = file.metadata().map_err(|e| io(&path, e))?.len();
        Ok(Writer {
            pack,
            file,
            len,
            dirty: false,
            buf: Vec::new(),
        })
    }

    /// Appends a body; returns where it is. Not durable until [`Packs::sync`].
    pub fn append(&self, id: &[u8; 32], bytes: &[u8]) -> Result<Loc, StoreError> {
        let mut locs = self.append_many(&[(id, bytes)])?;
        Ok(locs.pop().expect("one location per body"))
    }

    /// Appends several bodies with as few `write` calls as the pack limit allows (one per
    /// pack file they go into); returns where each is. Not durable until [`Packs::sync`].
    pub fn append_many(&self, items: &[(&[u8; 32], &[u8])]) -> Result<Vec<Loc>, StoreError> {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut locs = Vec::with_capacity(items.len());
        let mut rec = std::mem::take(&mut w.buf);
        rec.clear();
        // Where the bytes gathered in `rec` start in the current pack.
        let mut start = w.len;
        for (id, bytes) in items {
            let len = u32::try_from(bytes.len())
                .map_err(|_| StoreError::Io(format!("a body of {} bytes", bytes.len())))?;
            let end = start + rec.len() as u64;
            if end > 0 && end + HEADER + u64::from(len) > PACK_LIMIT {
                self.write_rec(&mut w, &rec)?;
                rec.clear();
                if w.dirty {
                    w.file
                        .sync_data()
                        .map_err(|e| io(&Self::path(&self.dir, w.pack), e))?;
                }
                let next = w.pack + 1;
                *w = Self::open_writer(&self.dir, next)?;
                start = w.len;
            }
            let at = start + rec.len() as u64;
            rec.extend_from_slice(&len.to_be_bytes());
            rec.extend_from_slice(id.as_slice());
            rec.extend_from_slice(bytes);
            locs.push(Loc {
                pack: w.pack,
                offset: at + HEADER,
                len,
            });
        }
        self.write_rec(&mut w, &rec)?;
        if rec.capacity() <= KEEP_BUF {
            w.buf = rec;
        }
        Ok(locs)
    }

    /// Writes gathered records at the end of the current pack in one call: a process killed
    /// mid-way leaves a torn tail no index entry names.
    fn write_rec(&self, w: &mut Writer, rec: &[u8]) -> Result<(), StoreError> {
        if rec.is_empty() {
            return Ok(());
        }
        w.file
            .write_all(rec)
            .map_err(|e| io(&Self::path(&self.dir, w.pack), e))?;
        w.len += rec.len() as u64;
        w.dirty = true;
        Ok(())
    }

    /// Makes every body appended before the call durable. The `fdatasync` runs on a second
    /// handle, outside the writer's lock, so appends go on meanwhile. Callers run one sync
    /// at a time ([`super::blobs`]): a second one could otherwise return while the first
    /// one's `fdatasync` still runs.
    pub fn sync(&self) -> Result<(), StoreError> {
        let (file, pack) = {
            let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
            if !w.dirty {
                return Ok(());
            }
            let file = w
                .file
                .try_clone()
                .map_err(|e| io(&Self::path(&self.dir, w.pack), e))?;
            w.dirty = false;
            (file, w.pack)
        };
        if let Err(e) = file.sync_data() {
            let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
            if w.pack == pack {
                w.dirty = true;
            }
            return Err(io(&Self::path(&self.dir, pack), e));
        }
        Ok(())
    }

    /// An open handle on pack `pack` (`None` if there is no such file).
    fn reader(&self, pack: u32) -> Result<Option<std::sync::Arc<File>>, StoreError> {
        let mut r = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = r.get(&pack) {
            return Ok(Some(std::sync::Arc::clone(f)));
        }
        let path = Self::path(&self.dir, pack);
        let f = match File::open(&path) {
            Ok(f) => std::sync::Arc::new(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path, e)),
        };
        r.insert(pack, std::sync::Arc::clone(&f));
        Ok(Some(f))
    }

    /// Reads a body and checks it against its id: `None` if it is not intact.
    pub fn read(&self, id: &[u8; 32], loc: Loc) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(file) = self.reader(loc.pack)? else {
            return Ok(None);
        };
        let mut buf = vec![0u8; loc.len as usize];
        match file.read_exact_at(&mut buf, loc.offset) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(io(&Self::path(&self.dir, loc.pack), e)),
        }
        Ok(intact(id, &buf).then_some(buf))
    }

    /// Reads the bodies at `at` (sorted by pack and offset), checked against their ids as
    /// [`Packs::read`] does, and calls `f` with each intact one until it returns false.
    /// Bodies that lie close together are read with one `pread` of up to [`SPAN`] bytes: a
    /// sync into an empty dir read 1M bodies with 1M `pread`s, most of its system time.
    pub fn read_many(
        &self,
        at: &[(Loc, &[u8; 32])],
        f: &mut dyn FnMut(&[u8; 32], Vec<u8>) -> bool,
    ) -> Result<(), StoreError> {
        let mut buf = Vec::new();
        let mut i = 0;
        while i < at.len() {
            let (first, _) = at[i];
            let (start, mut end) = (first.offset, first.offset + u64::from(first.len));
            let mut j = i + 1;
            while let Some((l, _)) = at.get(j) {
                let l_end = l.offset + u64::from(l.len);
                let near = l.pack == first.pack && l.offset >= end && l.offset - end <= GAP;
                if !near || l_end - start > SPAN {
                    break;
                }
                end = l_end;
                j += 1;
            }
            let run = &at[i..j];
            i = j;
            let Some(file) = self.reader(first.pack)? else {
                continue;
            };
            buf.resize((end - start) as usize, 0);
            match file.read_exact_at(&mut buf, start) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    // The span runs past the end of the file: body by body.
                    for (loc, id) in run {
                        if let Some(b) = self.read(id, *loc)? {
                            if !f(id, b) {
                                return Ok(());
                            }
                        }
                    }
                    continue;
                }
                Err(e) => return Err(io(&Self::path(&self.dir, first.pack), e)),
            }
            for (loc, id) in run {
                let from = (loc.offset - start) as usize;
                let b = &buf[from..from + loc.len as usize];
                if !intact(id, b) {
                    continue;
                }
                if !f(id, b.to_vec()) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// The id written in front of the body at `loc` (`None` if unreadable).
    pub fn read_id(&self, loc: Loc) -> Result<Option<[u8; 32]>, StoreError> {
        let Some(file) = self.reader(loc.pack)? else {
            return Ok(None);
        };
        super::blobs::read_id_at(&file, loc).map_err(|e| io(&Self::path(&self.dir, loc.pack), e))
    }

    /// Closes the current pack (durably) and starts a new one, so the old one can be
    /// compacted like any other.
    pub fn roll(&self) -> Result<(), StoreError> {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        w.file
            .sync_data()
            .map_err(|e| io(&Self::path(&self.dir, w.pack), e))?;
        let next = w.pack + 1;
        *w = Self::open_writer(&self.dir, next)?;
        Ok(())
    }

    /// The current pack (the one appended to).
    pub fn current(&self) -> u32 {
        self.writer.lock().unwrap_or_else(|e| e.into_inner()).pack
    }

    /// Every pack file with its size.
    pub fn list(&self) -> Result<Vec<(u32, u64)>, StoreError> {
        Self::numbers(&self.dir, "")?
            .into_iter()
            .map(|n| {
                let path = Self::path(&self.dir, n);
                let len = std::fs::metadata(&path).map_err(|e| io(&path, e))?.len();
                Ok((n, len))
            })
            .collect()
    }

    /// The numbers of the files `pack-<n><suffix>` in `dir` (`""`: the packs, `".idx"`:
    /// their index files), in order; none if `dir` does not exist.
    pub(super) fn numbers(dir: &Path, suffix: &str) -> Result<Vec<u32>, StoreError> {
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io(dir, e)),
        };
        for e in rd {
            let e = e.map_err(|e| io(dir, e))?;
            let name = e.file_name();
            if let Some(n) = name
                .to_str()
                .and_then(|n| n.strip_prefix("pack-"))
                .and_then(|n| n.strip_suffix(suffix))
                .and_then(|n| n.parse::<u32>().ok())
            {
                out.push(n);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Deletes a pack file no index entry names any more.
    pub fn remove(&self, pack: u32) -> Result<(), StoreError> {
        self.readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&pack);
        let path = Self::path(&self.dir, pack);
        std::fs::remove_file(&path).map_err(|e| io(&path, e))
    }

    /// Bytes of a record of `len` body bytes.
    pub fn record_size(len: u32) -> u64 {
        HEADER + u64::from(len)
    }
}
