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
//! Record format: `len: u32 BE`, `id: [u8; 32]`, then `len` bytes. Large appends are
//! written with `O_DIRECT` ([`DIRECT_MIN`]), starting on an [`ALIGN`] boundary: the gaps
//! around them are zeros, at least a record header long, which a record cannot start with
//! (an empty body's id is not zero), and which a scan of a pack skips.

use super::StoreError;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
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
    /// Opened for appending: small appends go through the page cache.
    file: File,
    /// The same file opened with `O_DIRECT`, for large appends; none once the file system
    /// refused it (the next pack does not try again).
    direct: Option<File>,
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

/// Appends of at least this many bytes (a sync's batches, a large APPEND) are written with
/// `O_DIRECT`, from the buffer to the disk. Through the page cache, a 1M-message sync spent
/// a third of its copier's time copying into cache pages and the kernel's writeback the
/// rest (`dd` on this kind of machine: 2.1 GB/s direct, 0.3 GB/s buffered + `fdatasync`);
/// small appends stay buffered, where padding to [`ALIGN`] would waste more than they
/// write.
const DIRECT_MIN: u64 = 128 << 10;

/// Direct writes start and end on this boundary (the largest logical block size of
/// common disks) from a buffer aligned to it; the zeros between the end of the last
/// record before one and the boundary (at least [`HEADER`] bytes: [`gap_up`]) are padding,
/// which readers of a pack skip.
pub(super) const ALIGN: u64 = 4096;

/// `n` rounded up to a multiple of [`ALIGN`].
pub(super) fn round_up(n: u64) -> u64 {
    n.div_ceil(ALIGN) * ALIGN
}

/// `n` rounded up to a multiple of [`ALIGN`] that leaves either no gap or one of at least a
/// record header: where a direct write starts after `n` bytes of pack, and how long a direct
/// write of `n` bytes is once padded. A scan takes [`HEADER`] zero bytes for a gap (no record
/// starts so: an empty body's id is not zero); a shorter gap would read as the start of a
/// record made of zeros and the next record's first bytes, and end the pack there.
fn gap_up(n: u64) -> u64 {
    let b = round_up(n);
    if b > n && b - n < HEADER {
        b + ALIGN
    } else {
        b
    }
}

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
        let writer = Self::open_writer(dir, newest, true)?;
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

    /// Opens pack `pack` for appending, and a second handle for direct writes if `direct`
    /// (none where the file system has no `O_DIRECT`).
    fn open_writer(dir: &Path, pack: u32, direct: bool) -> Result<Writer, StoreError> {
        let path = Self::path(dir, pack);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        let len = file.metadata().map_err(|e| io(&path, e))?.len();
        let direct = direct
            .then(|| {
                OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_DIRECT)
                    .open(&path)
                    .ok()
            })
            .flatten();
        Ok(Writer {
            pack,
            file,
            direct,
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
    /// Appends of [`DIRECT_MIN`] bytes or more bypass the page cache (see [`ALIGN`]).
    pub fn append_many(&self, items: &[(&[u8; 32], &[u8])]) -> Result<Vec<Loc>, StoreError> {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut total = 0u64;
        for (_, bytes) in items {
            if u32::try_from(bytes.len()).is_err() {
                return Err(StoreError::Io(format!("a body of {} bytes", bytes.len())));
            }
            total += HEADER + bytes.len() as u64;
        }
        let direct = total >= DIRECT_MIN;
        let mut locs: Vec<Loc> = Vec::with_capacity(items.len());
        let mut buf = std::mem::take(&mut w.buf);
        buf.clear();
        // Sized once, so that the records start at the same aligned address throughout.
        buf.reserve(total.min(PACK_LIMIT) as usize + 2 * ALIGN as usize);
        let lead = buf.as_ptr().align_offset(ALIGN as usize);
        buf.resize(lead, 0);
        // The locations of the records gathered in `buf`, from `seg` on, are relative to
        // the segment's start until it is written.
        let mut seg = 0;
        for (id, bytes) in items {
            let len = bytes.len() as u32;
            let gathered = (buf.len() - lead) as u64;
            let start = if direct { gap_up(w.len) } else { w.len };
            if start + gathered > 0 && start + gathered + HEADER + u64::from(len) > PACK_LIMIT {
                self.write_seg(&mut w, &mut buf, lead, direct, &mut locs[seg..])?;
                seg = locs.len();
                buf.truncate(lead);
                if w.dirty {
                    w.file
                        .sync_data()
                        .map_err(|e| io(&Self::path(&self.dir, w.pack), e))?;
                }
                let next = w.pack + 1;
                *w = Self::open_writer(&self.dir, next, w.direct.is_some())?;
            }
            let at = (buf.len() - lead) as u64;
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(id.as_slice());
            buf.extend_from_slice(bytes);
            locs.push(Loc {
                pack: w.pack,
                offset: at + HEADER,
                len,
            });
        }
        self.write_seg(&mut w, &mut buf, lead, direct, &mut locs[seg..])?;
        if buf.capacity() <= KEEP_BUF {
            w.buf = buf;
        }
        Ok(locs)
    }

    /// Writes the records gathered in `buf[lead..]` at the end of the current pack in one
    /// call (a process killed mid-way leaves a torn tail no index entry names), and moves
    /// their locations `locs` (relative to the start of `buf[lead..]`) to where they went.
    /// `direct`: with `O_DIRECT`, from the next [`ALIGN`] boundary and padded with zeros to
    /// one, unless the file system refuses it (then buffered, from then on).
    fn write_seg(
        &self,
        w: &mut Writer,
        buf: &mut Vec<u8>,
        lead: usize,
        direct: bool,
        locs: &mut [Loc],
    ) -> Result<(), StoreError> {
        let n = buf.len() - lead;
        if n == 0 {
            return Ok(());
        }
        let (dir, pack) = (&self.dir, w.pack);
        let path = || Self::path(dir, pack);
        let mut base = None;
        if let (true, Some(f)) = (direct, &w.direct) {
            let at = gap_up(w.len);
            buf.resize(lead + gap_up(n as u64) as usize, 0);
            match f.write_all_at(&buf[lead..], at) {
                Ok(()) => {
                    w.len = at + (buf.len() - lead) as u64;
                    base = Some(at);
                }
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    tracing::warn!(file = %path().display(), error = %e,
                        "direct writes refused: writing packs through the page cache");
                    w.direct = None;
                    buf.truncate(lead + n);
                    // A refused write may still have extended the file.
                    w.len = w.file.metadata().map_err(|e| io(&path(), e))?.len();
                }
                Err(e) => return Err(io(&path(), e)),
            }
        }
        let base = match base {
            Some(b) => b,
            None => {
                let b = w.len;
                w.file.write_all(&buf[lead..]).map_err(|e| io(&path(), e))?;
                w.len += n as u64;
                b
            }
        };
        w.dirty = true;
        for l in locs {
            l.offset += base;
        }
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
        f: &mut dyn FnMut(&[u8; 32], &[u8]) -> bool,
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
                            if !f(id, &b) {
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
                if !f(id, b) {
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
        *w = Self::open_writer(&self.dir, next, w.direct.is_some())?;
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
