//! The change index of a mailbox view: one entry per (MODSEQ, UID), in MODSEQ order, so
//! "what changed since MODSEQ m" is a seek and a scan of the changes, not of the mailbox.
//! Entries are packed in blocks of [`CHANGES_PER_BLOCK`] MODSEQs (format 4; format 3 kept
//! one `C` record per entry, one more sled record per message written):
//!
//! | prefix | key                                  | value                     |
//! |--------|--------------------------------------|---------------------------|
//! | `K`    | mailbox id, MODSEQ / 64 (be u64)     | [(MODSEQ, UID, 0: the row's current MODSEQ; 1: the UID vanished)], sorted |
//! | `C`    | mailbox id, MODSEQ (be), UID (be)    | format 3's entries (converted on open) |
//! | `F`    | mailbox id                           | the vanish floor (u64)    |
//!
//! A visible row has exactly one `Row` entry, at its current MODSEQ (the UID engine moves it
//! when the row changes, in the same batch). `Vanished` entries are never removed: they are
//! the node's expunge history, one small key per UID that stopped being visible (a UID
//! never shows again once it vanished, invariant 2). The *floor* is the MODSEQ from which
//! that history is complete: 0 for a mailbox whose view was built with the index, the
//! HIGHESTMODSEQ of the time for one indexed by the format-3 upgrade (its earlier expunges
//! were never recorded). Below the floor a caller must not trust the history.

use super::tables::{decode, encode, row_block};
use super::{Kv, StoreError};
use crate::crdt::view::{Change, ViewRow};
use crate::model::{MailboxId, ModSeq, Uid};
use std::collections::BTreeMap;

/// MODSEQs per change-index block.
pub const CHANGES_PER_BLOCK: u64 = 64;

/// One block of the change index: (MODSEQ, UID) → kind (0 row, 1 vanished), stored as
/// postcard encodes the map: a count, then each (MODSEQ, UID, kind) in order.
pub type ChangeBlock = BTreeMap<(u64, u32), u8>;

/// The key of the change-index block holding `modseq`.
pub fn key_change_block(mb: &MailboxId, modseq: u64) -> Vec<u8> {
    [
        b"K".as_slice(),
        mb.as_bytes(),
        &(modseq / CHANGES_PER_BLOCK).to_be_bytes(),
    ]
    .concat()
}

/// The stored kind of a change.
pub fn change_kind(c: Change) -> u8 {
    match c {
        Change::Row => 0,
        Change::Vanished => 1,
    }
}

/// The key of a format-3 change-index entry (read by the upgrade only).
pub fn key_change(mb: &MailboxId, modseq: ModSeq, uid: Uid) -> Vec<u8> {
    [
        b"C".as_slice(),
        mb.as_bytes(),
        &modseq.get().to_be_bytes(),
        &uid.get().to_be_bytes(),
    ]
    .concat()
}

/// The value of a format-3 change-index entry.
pub fn change_value(c: Change) -> Vec<u8> {
    vec![change_kind(c)]
}

fn prefix_change_blocks(mb: &MailboxId) -> Vec<u8> {
    [b"K".as_slice(), mb.as_bytes()].concat()
}

/// The key of a mailbox's vanish floor.
pub fn key_floor(mb: &MailboxId) -> Vec<u8> {
    [b"F".as_slice(), mb.as_bytes()].concat()
}

/// The encoded value of a vanish floor.
pub fn floor_value(modseq: u64) -> Vec<u8> {
    encode(&modseq)
}

/// The MODSEQ from which the mailbox's vanished entries are complete (0 if it has no floor
/// record: its index was built with its view).
pub fn floor(kv: &dyn Kv, mb: &MailboxId) -> Result<u64, StoreError> {
    let k = key_floor(mb);
    match kv.get(&k)? {
        Some(v) => decode(&k, &v),
        None => Ok(0),
    }
}

/// What changed in a mailbox after a MODSEQ.
#[derive(Debug, Default)]
pub struct Since {
    /// The visible rows whose MODSEQ is above it (new or changed), ascending by UID.
    pub rows: Vec<(Uid, ViewRow)>,
    /// The UIDs that vanished above it, ascending. Complete only if `complete`.
    pub vanished: Vec<Uid>,
    /// The vanish history covers everything above the MODSEQ (it is at or above the floor).
    pub complete: bool,
}

/// The changes of a mailbox with a MODSEQ above `after`: a seek into the index, then one
/// read per changed row block. Costs the changes, not the mailbox.
pub fn since(kv: &dyn Kv, mb: &MailboxId, after: u64) -> Result<Since, StoreError> {
    let prefix = prefix_change_blocks(mb);
    let start = key_change_block(mb, after.saturating_add(1));
    let mut rows: Vec<Uid> = Vec::new();
    let mut vanished: Vec<Uid> = Vec::new();
    let mut bad = None;
    kv.scan_from(&prefix, &start, &mut |k, v| {
        let block: ChangeBlock = match decode(k, v) {
            Ok(b) => b,
            Err(e) => {
                bad = Some(e);
                return false;
            }
        };
        for ((m, u), c) in block.range((after.saturating_add(1), 0)..) {
            match (Uid::new(*u), c) {
                (Some(u), 0) => rows.push(u),
                (Some(u), 1) => vanished.push(u),
                _ => {
                    bad = Some(StoreError::Corrupt {
                        key: hex::encode(k),
                        why: format!("change index entry ({m}, {u}, {c})"),
                    });
                    return false;
                }
            }
        }
        true
    })?;
    if let Some(e) = bad {
        return Err(e);
    }
    rows.sort();
    vanished.sort();
    vanished.dedup();
    // One read per row block holding changed rows.
    let mut blocks: BTreeMap<Vec<u8>, Vec<Uid>> = BTreeMap::new();
    for u in rows {
        blocks.entry(row_block(mb, u)).or_default().push(u);
    }
    let mut out = Vec::new();
    for (key, uids) in blocks {
        let Some(v) = kv.get(&key)? else { continue };
        let block: Vec<(Uid, ViewRow)> = decode(&key, &v)?;
        out.extend(
            block
                .into_iter()
                .filter(|(u, _)| uids.binary_search(u).is_ok()),
        );
    }
    Ok(Since {
        rows: out,
        vanished,
        complete: after >= floor(kv, mb)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdt::view::ViewTables;
    use crate::model::{BlobId, FlagSet, Guid};

    fn row(modseq: u64) -> ViewRow {
        ViewRow {
            guid: Guid::mint(),
            blob: BlobId::of(b"x"),
            size: 1,
            internal_date: 0,
            flags: FlagSet::new(),
            modseq: ModSeq::new(modseq).unwrap(),
        }
    }

    /// `n` rows at MODSEQ 1..=n, then row 7 changed at n+1 and row 9 vanished at n+2.
    fn fill(kv: &dyn Kv, mb: MailboxId, n: u32) {
        let u = |v: u32| Uid::new(v).unwrap();
        let mut tx = super::super::Tx::new(kv);
        for i in 1..=n {
            let mut v = tx.view(mb);
            v.put_row(u(i), Some(&row(u64::from(i))));
            v.put_change(ModSeq::new(u64::from(i)).unwrap(), u(i), Some(Change::Row));
        }
        tx.commit().unwrap();
        let m = |v: u64| ModSeq::new(v).unwrap();
        let n64 = u64::from(n);
        let mut tx = super::super::Tx::new(kv);
        let mut v = tx.view(mb);
        v.put_row(u(7), Some(&row(n64 + 1)));
        v.put_change(m(7), u(7), None);
        v.put_change(m(n64 + 1), u(7), Some(Change::Row));
        v.put_row(u(9), None);
        v.put_change(m(9), u(9), None);
        v.put_change(m(n64 + 2), u(9), Some(Change::Vanished));
        tx.commit().unwrap();
    }

    /// Blocks are stored as postcard encodes a map, the same bytes as the list of its
    /// entries in order (what the format-4 upgrade and earlier builds wrote).
    #[test]
    fn a_block_encodes_as_its_ordered_entries() {
        let b: ChangeBlock = [((9, 3), 1), ((2, 7), 0)].into_iter().collect();
        let list: Vec<(u64, u32, u8)> = vec![(2, 7, 0), (9, 3, 1)];
        assert_eq!(encode(&b), encode(&list));
        assert_eq!(decode::<ChangeBlock>(b"k", &encode(&list)).unwrap(), b);
    }

    #[test]
    fn since_reads_the_changes_and_the_floor() {
        let kv = crate::store::MemKv::new();
        let mb = MailboxId([3; 16]);
        fill(&kv, mb, 100);
        let s = since(&kv, &mb, 100).unwrap();
        assert_eq!(s.rows.len(), 1);
        assert_eq!(s.rows[0].0.get(), 7);
        assert_eq!(s.vanished, vec![Uid::new(9).unwrap()]);
        assert!(s.complete);
        assert_eq!(
            since(&kv, &mb, 95).unwrap().rows.len(),
            6,
            "96..=100, and 7"
        );
        kv.apply(vec![(key_floor(&mb), Some(floor_value(50)))])
            .unwrap();
        assert!(!since(&kv, &mb, 49).unwrap().complete);
        assert!(since(&kv, &mb, 50).unwrap().complete);
    }

    /// Ad-hoc timing (`cargo test --release --lib changes::tests::timing -- --ignored
    /// --nocapture`): what a session on a 100k-message mailbox pays per change, by a full
    /// reread of its rows (before) and by the change index (now), on sled.
    #[test]
    #[ignore]
    fn timing() {
        let dir = tempfile::tempdir().unwrap();
        let kv = crate::store::open_sled(dir.path()).unwrap();
        let mb = MailboxId([4; 16]);
        fill(&kv, mb, 100_000);
        let t = std::time::Instant::now();
        let mut n = 0;
        for _ in 0..10 {
            crate::store::tables::each_row(&kv, &mb, &mut |_, _| {
                n += 1;
                true
            })
            .unwrap();
        }
        let full = t.elapsed() / 10;
        let t = std::time::Instant::now();
        for _ in 0..1000 {
            let s = since(&kv, &mb, 100_000).unwrap();
            assert_eq!(s.rows.len() + s.vanished.len(), 2);
        }
        let inc = t.elapsed() / 1000;
        println!("100k rows: full reread {full:?} per change ({n} rows read); change index {inc:?} per change");
    }
}
