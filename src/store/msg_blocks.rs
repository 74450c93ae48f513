//! Message-record blocks (`N`): the records of the GUIDs minted in one window, stored in
//! parts of [`CHUNK_PART`] bytes like document chunks.
//!
//! | key                                  | value                                      |
//! |--------------------------------------|--------------------------------------------|
//! | `N`, mailbox id, window (be)         | the block's encoding, bytes 0..4096 (or all of it) |
//! | `N`, mailbox id, window (be), p (be) | bytes 4096·p..4096·(p+1), p from 1         |
//!
//! Why parts: a window holds every message minted in it, and a bulk append or a dataset
//! builder mints hundreds in one (~180 KB records at 1M messages). sled splits a leaf by
//! its number of values (16), not by bytes, and writes a page over 128 KiB to a file of
//! its own, from the thread that commits: a 1M-message sync created and deleted ~3,400
//! such files, and the file writes and ext4's inode allocation grew from 2 % of the
//! sync's own thread at 100k messages to 10 % at 1M. Parts of 4 KiB keep every page inline
//! in sled's log (written by its IO threads) and counted in its cache.
//!
//! A rewrite puts only the parts whose bytes changed (messages minted later sort last, so
//! an append to a window rewrites its last parts) and deletes the parts the block no longer
//! has. A block written whole by format 6 reads the same way (one value, longer than a
//! part); the format 7 upgrade splits such blocks ([`split_whole`]).

use super::tables::{decode, encode, part_key, CHUNK_PART};
use super::{Batch, Kv, StoreError};
use crate::crdt::view::MsgRec;
use crate::model::{Guid, MailboxId};
use std::collections::BTreeMap;

/// Microseconds of GUID minting time per `N` block: a bulk append at 20-30k messages a
/// second puts ~100 records in one (~20 KB), an interactive one a record each.
pub const MSG_WINDOW_US: u64 = 4096;

/// The message records of one GUID window.
pub type MsgBlock = BTreeMap<Guid, MsgRec>;

/// Length of a block's key (`N`, mailbox id, window); a part's key adds 4 bytes.
const KEY_LEN: usize = 1 + 16 + 8;

/// The window of a GUID: its first 8 bytes are its minting time in microseconds
/// ([`Guid::mint`]), so the messages appended together share a window and one block.
/// (Random GUIDs of older versions get a window each: one block per message.)
pub fn msg_window(g: &Guid) -> u64 {
    u64::from_be_bytes(g.as_bytes()[..8].try_into().expect("8 bytes")) / MSG_WINDOW_US
}

/// The key of the block of window `w` (and of its first part).
pub(crate) fn key_msg_block(mb: &MailboxId, w: u64) -> Vec<u8> {
    [b"N".as_slice(), mb.as_bytes(), &w.to_be_bytes()].concat()
}

/// Prefix of a mailbox's message records.
pub fn prefix_msgs(mb: &MailboxId) -> Vec<u8> {
    [b"N".as_slice(), mb.as_bytes()].concat()
}

/// A block's bytes as stored, to write back only what changed.
#[derive(Debug, Default)]
pub(crate) struct Stored {
    bytes: Vec<u8>,
    /// Values it was read from (0: no block).
    values: u32,
}

impl Stored {
    /// Whether it was stored in parts of [`CHUNK_PART`] (not whole, as format 6 wrote
    /// blocks), so that its parts can be compared with a new encoding's.
    fn in_parts(&self) -> bool {
        self.values as usize == self.bytes.len().div_ceil(CHUNK_PART)
    }
}

/// Reads the block at `key` (empty if there is none).
pub(crate) fn read(kv: &dyn Kv, key: &[u8]) -> Result<(MsgBlock, Stored), StoreError> {
    let mut stored = Stored::default();
    let mut bad = None;
    kv.scan(key, &mut |k, v| {
        let p = part_of(key, k);
        if p != Some(stored.values) {
            bad = Some(k.to_vec());
            return false;
        }
        stored.bytes.extend_from_slice(v);
        stored.values += 1;
        true
    })?;
    if let Some(k) = bad {
        return Err(missing_part(&k));
    }
    if stored.values == 0 {
        return Ok((MsgBlock::new(), stored));
    }
    Ok((decode(key, &stored.bytes)?, stored))
}

/// The part number of `k` in the block at `key`: 0 for the key itself.
fn part_of(key: &[u8], k: &[u8]) -> Option<u32> {
    if k == key {
        return Some(0);
    }
    let p = k.strip_prefix(key)?;
    Some(u32::from_be_bytes(p.try_into().ok()?)).filter(|p| *p > 0)
}

fn missing_part(k: &[u8]) -> StoreError {
    StoreError::Corrupt {
        key: hex::encode(k),
        why: "a part of a message block out of sequence (a part before it is missing)".into(),
    }
}

/// The writes that replace the block at `key`, stored as `old`, by `block` (an empty block
/// is deleted).
pub(crate) fn write(
    key: &[u8],
    block: &MsgBlock,
    old: &Stored,
    put: &mut dyn FnMut(Vec<u8>, Option<Vec<u8>>),
) {
    let new = if block.is_empty() {
        Vec::new()
    } else {
        encode(block)
    };
    let comparable = old.in_parts();
    let mut n = 0u32;
    for (p, part) in new.chunks(CHUNK_PART).enumerate() {
        n += 1;
        let same = comparable
            && old
                .bytes
                .get(p * CHUNK_PART..)
                .is_some_and(|o| o[..o.len().min(CHUNK_PART)] == *part);
        if !same {
            put(part_key(key, p as u32), Some(part.to_vec()));
        }
    }
    for p in n..old.values {
        put(part_key(key, p), None);
    }
}

/// Calls `f` with every block under `prefix` (a prefix of block keys: `N`, or
/// [`prefix_msgs`]), its parts put together, in key order, until it returns false.
pub fn scan(
    kv: &dyn Kv,
    prefix: &[u8],
    f: &mut dyn FnMut(&MailboxId, MsgBlock) -> bool,
) -> Result<(), StoreError> {
    let mut cur: Option<(Vec<u8>, Vec<u8>, u32)> = None;
    let mut err = None;
    let mut go_on = true;
    let mut finish = |cur: Option<(Vec<u8>, Vec<u8>, u32)>, err: &mut Option<StoreError>| {
        let Some((key, bytes, _)) = cur else {
            return true;
        };
        let Some(mb) = key.get(1..17).and_then(MailboxId::from_slice) else {
            *err = Some(StoreError::Corrupt {
                key: hex::encode(&key),
                why: "a message block key without a mailbox".into(),
            });
            return false;
        };
        match decode::<MsgBlock>(&key, &bytes) {
            Ok(block) => f(&mb, block),
            Err(e) => {
                *err = Some(e);
                false
            }
        }
    };
    kv.scan(prefix, &mut |k, v| {
        if let Some((key, bytes, n)) = cur.as_mut() {
            if let Some(p) = part_of(key, k) {
                if p != *n {
                    err = Some(missing_part(k));
                    return false;
                }
                bytes.extend_from_slice(v);
                *n += 1;
                return true;
            }
        }
        if k.len() != KEY_LEN {
            err = Some(missing_part(k));
            return false;
        }
        go_on = finish(cur.replace((k.to_vec(), v.to_vec(), 1)), &mut err);
        go_on
    })?;
    if go_on && err.is_none() {
        finish(cur, &mut err);
    }
    match err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Splits every block stored whole (format 6 and its upgrades) into parts, in batches of
/// at most 256 blocks, each batch atomic (a crash between batches leaves blocks whole or
/// split, both readable). Returns the blocks split.
pub(crate) fn split_whole(kv: &dyn Kv) -> Result<usize, StoreError> {
    const ROUND: usize = 256;
    let mut start = b"N".to_vec();
    let mut split = 0;
    loop {
        let mut whole: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut last = None;
        kv.scan_from(b"N", &start, &mut |k, v| {
            last = Some(k.to_vec());
            if k.len() == KEY_LEN && v.len() > CHUNK_PART {
                whole.push((k.to_vec(), v.to_vec()));
            }
            whole.len() < ROUND
        })?;
        let Some(last) = last else {
            return Ok(split);
        };
        start = [last.as_slice(), &[0]].concat();
        let mut batch: Batch = Vec::new();
        for (key, bytes) in &whole {
            for (p, part) in bytes.chunks(CHUNK_PART).enumerate() {
                batch.push((part_key(key, p as u32), Some(part.to_vec())));
            }
        }
        split += whole.len();
        if !batch.is_empty() {
            kv.apply(batch)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdt::segment::SegmentRef;
    use crate::model::{BlobId, NodeId};
    use crate::store::{MemKv, Tx};

    fn guid(i: u64) -> Guid {
        let mut g = [0u8; 16];
        g[..8].copy_from_slice(&(7 * MSG_WINDOW_US).to_be_bytes());
        g[8..].copy_from_slice(&i.to_be_bytes());
        Guid(g)
    }

    fn rec(i: u64) -> MsgRec {
        MsgRec {
            blob: BlobId([i as u8; 32]),
            size: 1000 + i,
            internal_date: i as i64,
            claims: Vec::new(),
            flags: Default::default(),
            tags: Default::default(),
            expunged: false,
            home: SegmentRef {
                node: NodeId([1; 32]),
                gen: 1,
            },
            shown: None,
        }
    }

    fn block(n: u64) -> MsgBlock {
        (0..n).map(|i| (guid(i), rec(i))).collect()
    }

    /// Every value under `N`: (key, length).
    fn values(kv: &dyn Kv) -> Vec<(Vec<u8>, usize)> {
        let mut out = Vec::new();
        kv.scan(b"N", &mut |k, v| {
            out.push((k.to_vec(), v.len()));
            true
        })
        .expect("scan");
        out
    }

    /// Writes `b` over what the store holds at `key`; returns the writes made.
    fn replace(kv: &MemKv, key: &[u8], b: &MsgBlock) -> Batch {
        let (_, old) = read(kv, key).expect("read");
        let mut batch = Vec::new();
        write(key, b, &old, &mut |k, v| batch.push((k, v)));
        kv.apply(batch.clone()).expect("apply");
        batch
    }

    /// Blocks of every size read back as written, from values no longer than a part;
    /// growing rewrites only the parts that changed, shrinking deletes the parts left
    /// over, and an empty block leaves nothing.
    #[test]
    fn blocks_are_stored_in_parts_and_rewritten_by_part() {
        let kv = MemKv::new();
        let mb = MailboxId::from_slice(&[3; 16]).expect("id");
        let key = key_msg_block(&mb, 7);
        let mut sizes = Vec::new();
        for n in [1u64, 40, 400, 401, 1200, 30, 0] {
            let writes = replace(&kv, &key, &block(n));
            let (got, stored) = read(&kv, &key).expect("read");
            assert_eq!(got, block(n), "{n} records");
            let vals = values(&kv);
            assert!(vals.iter().all(|(_, l)| *l <= CHUNK_PART), "{vals:?}");
            assert_eq!(vals.len() as u32, stored.values);
            assert_eq!(
                vals.len(),
                stored.bytes.len().div_ceil(CHUNK_PART),
                "a part left over after {n} records"
            );
            sizes.push((n, vals.len(), writes.len()));
        }
        // 400 -> 401 records: one more record at the end of the block changes its last
        // part or two, not the parts before.
        let (_, parts_400, _) = sizes[2];
        let (_, parts_401, writes_401) = sizes[3];
        assert!(parts_400 > 8, "{sizes:?}");
        assert!(writes_401 <= 2 + parts_401 - parts_400, "{sizes:?}");
        assert!(values(&kv).is_empty(), "an empty block is deleted");
    }

    /// A block written whole (format 6) reads back, is split by [`split_whole`] into the
    /// same bytes in parts, and [`scan`] puts every block's parts together.
    #[test]
    fn whole_blocks_read_split_and_scan() {
        let kv = MemKv::new();
        let mb = MailboxId::from_slice(&[4; 16]).expect("id");
        let (k1, k2) = (key_msg_block(&mb, 7), key_msg_block(&mb, 9));
        let b = block(300);
        kv.apply(vec![(k1.clone(), Some(encode(&b)))])
            .expect("whole");
        replace(&kv, &k2, &block(20));
        assert_eq!(read(&kv, &k1).expect("read").0, b);
        let scanned = |kv: &MemKv| {
            let mut seen = Vec::new();
            scan(kv, b"N", &mut |m, blk| {
                seen.push((*m, blk));
                true
            })
            .expect("scan");
            seen
        };
        assert_eq!(scanned(&kv), vec![(mb, b.clone()), (mb, block(20))]);
        assert_eq!(split_whole(&kv).expect("split"), 1);
        assert!(values(&kv).iter().all(|(_, l)| *l <= CHUNK_PART));
        assert_eq!(read(&kv, &k1).expect("read").0, b);
        assert_eq!(scanned(&kv), vec![(mb, b.clone()), (mb, block(20))]);
        assert_eq!(split_whole(&kv).expect("again"), 0);
    }

    /// A transaction that adds a message to a block stored whole writes it back in parts,
    /// with nothing of the whole value left over.
    #[test]
    fn a_transaction_rewrites_a_whole_block_in_parts() {
        use crate::crdt::view::ViewTables;
        let kv = MemKv::new();
        let mb = MailboxId::from_slice(&[6; 16]).expect("id");
        let key = key_msg_block(&mb, 7);
        let b = block(300);
        kv.apply(vec![(key.clone(), Some(encode(&b)))])
            .expect("whole");
        let mut tx = Tx::new(&kv);
        let mut v = tx.view(mb);
        assert_eq!(v.msg(&guid(5)).expect("read"), Some(rec(5)));
        assert_eq!(v.msg(&guid(300)).expect("read"), None);
        v.put_msg(&guid(300), rec(300));
        tx.commit().expect("commit");
        let mut want = b;
        want.insert(guid(300), rec(300));
        assert_eq!(read(&kv, &key).expect("read").0, want);
        let vals = values(&kv);
        assert!(vals.iter().all(|(_, l)| *l <= CHUNK_PART), "{vals:?}");
        assert_eq!(vals.len(), encode(&want).len().div_ceil(CHUNK_PART));
    }

    /// A part missing in the middle of a block is reported, not read as a shorter block.
    #[test]
    fn a_missing_part_is_an_error() {
        let kv = MemKv::new();
        let mb = MailboxId::from_slice(&[5; 16]).expect("id");
        let key = key_msg_block(&mb, 1);
        replace(&kv, &key, &block(100));
        kv.apply(vec![(part_key(&key, 1), None)])
            .expect("drop a part");
        assert!(read(&kv, &key).is_err());
        assert!(scan(&kv, b"N", &mut |_, _| true).is_err());
    }
}
