//! Visible rows read in place: each stored row block is decoded into borrowed rows
//! ([`RowRef`]) that point into the block's bytes, and handed to a callback one by one.
//!
//! `SELECT` and `UID FETCH 1:* (FLAGS)` of a large mailbox touch every row; decoding each
//! into an owned [`ViewRow`](crate::crdt::view::ViewRow) allocated a `BTreeSet` node and a
//! `String` per flag, and was most of what those commands cost. A [`RowRef`] allocates
//! nothing for up to [`INLINE_FLAGS`] flags; its layout is `ViewRow`'s field for field, so
//! the same bytes decode into either (a unit test holds them together).

use super::tables::{key_row_block, prefix_rows, ROWS_PER_BLOCK};
use super::{Kv, StoreError};
use crate::crdt::view::ViewRow;
use crate::model::{BlobId, Flag, FlagSet, Guid, MailboxId, ModSeq, Uid};
use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;

/// Flags held without allocating; a row with more spills into a `Vec`.
pub const INLINE_FLAGS: usize = 6;

/// A row's flags, borrowed from the stored block (already sorted: they were stored from a
/// `BTreeSet`).
#[derive(Debug, Default)]
pub struct FlagsRef<'a> {
    inline: [&'a str; INLINE_FLAGS],
    n: usize,
    more: Vec<&'a str>,
}

impl<'a> FlagsRef<'a> {
    /// The flags in stored (sorted) order.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + Clone + '_ {
        self.inline[..self.n.min(INLINE_FLAGS)]
            .iter()
            .chain(self.more.iter())
            .copied()
    }

    /// Whether the row has flag `f` (stored spelling).
    pub fn contains(&self, f: &str) -> bool {
        self.iter().any(|x| x == f)
    }

    /// The owned set.
    pub fn to_set(&self) -> FlagSet {
        self.iter().map(Flag::stored).collect()
    }

    fn push(&mut self, f: &'a str) {
        if self.n < INLINE_FLAGS {
            self.inline[self.n] = f;
        } else {
            self.more.push(f);
        }
        self.n += 1;
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for FlagsRef<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = FlagsRef<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a sequence of flags")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FlagsRef<'a>, A::Error> {
                let mut out = FlagsRef::default();
                while let Some(f) = seq.next_element::<&'de str>()? {
                    out.push(f);
                }
                Ok(out)
            }
        }
        d.deserialize_seq(V(std::marker::PhantomData))
    }
}

/// A visible row borrowed from its stored block: `ViewRow`'s fields, in its order.
#[derive(Debug, Deserialize)]
pub struct RowRef<'a> {
    pub guid: Guid,
    pub blob: BlobId,
    pub size: u64,
    pub internal_date: i64,
    #[serde(borrow)]
    pub flags: FlagsRef<'a>,
    pub modseq: ModSeq,
}

impl RowRef<'_> {
    /// The owned row.
    pub fn to_row(&self) -> ViewRow {
        ViewRow {
            guid: self.guid,
            blob: self.blob,
            size: self.size,
            internal_date: self.internal_date,
            flags: self.flags.to_set(),
            modseq: self.modseq,
        }
    }
}

fn corrupt(key: &[u8], why: impl fmt::Display) -> StoreError {
    StoreError::Corrupt {
        key: hex::encode(key),
        why: why.to_string(),
    }
}

/// Calls `f` with each row of one stored block (`[(Uid, ViewRow)]` as postcard wrote it),
/// in stored order, until it returns false; returns whether it went through.
fn each_in_block(
    key: &[u8],
    v: &[u8],
    f: &mut dyn FnMut(Uid, &RowRef<'_>) -> bool,
) -> Result<bool, StoreError> {
    let (n, mut rest) = postcard::take_from_bytes::<u64>(v).map_err(|e| corrupt(key, e))?;
    for _ in 0..n {
        let ((uid, row), r) =
            postcard::take_from_bytes::<(Uid, RowRef<'_>)>(rest).map_err(|e| corrupt(key, e))?;
        rest = r;
        if !f(uid, &row) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Calls `f` for each visible row of a mailbox in UID order, until it returns false.
pub fn each_row_ref(
    kv: &dyn Kv,
    mb: &MailboxId,
    f: &mut dyn FnMut(Uid, &RowRef<'_>) -> bool,
) -> Result<(), StoreError> {
    let mut err = None;
    let mut last: Option<Uid> = None;
    kv.scan(&prefix_rows(mb), &mut |k, v| {
        let block = k[17..].try_into().ok().map(u32::from_be_bytes);
        let mut order_ok = true;
        let r = each_in_block(k, v, &mut |uid, row| {
            // Every row sits in its UID's block, in UID order, after the earlier blocks'.
            if Some(uid.get() / ROWS_PER_BLOCK) != block || last.is_some_and(|l| l >= uid) {
                order_ok = false;
                return false;
            }
            last = Some(uid);
            f(uid, row)
        });
        match r {
            Ok(go_on) if order_ok => go_on,
            Ok(_) => {
                err = Some(corrupt(k, "row block out of order"));
                false
            }
            Err(e) => {
                err = Some(e);
                false
            }
        }
    })?;
    err.map_or(Ok(()), Err)
}

/// Calls `f` for the visible rows at `uids` (ascending), in that order; missing UIDs are
/// left out. One read and one decode per row block the UIDs fall in.
pub fn rows_at_ref(
    kv: &dyn Kv,
    mb: &MailboxId,
    uids: &[Uid],
    f: &mut dyn FnMut(Uid, &RowRef<'_>),
) -> Result<(), StoreError> {
    let mut i = 0;
    while i < uids.len() {
        let b = uids[i].get() / ROWS_PER_BLOCK;
        let end = i + uids[i..].partition_point(|u| u.get() / ROWS_PER_BLOCK == b);
        let want = &uids[i..end];
        i = end.max(i + 1);
        let key = key_row_block(mb, b);
        let Some(v) = kv.get(&key)? else {
            continue;
        };
        let mut w = 0;
        each_in_block(&key, &v, &mut |uid, row| {
            while w < want.len() && want[w] < uid {
                w += 1;
            }
            if w < want.len() && want[w] == uid {
                f(uid, row);
                w += 1;
            }
            w < want.len()
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tables::{encode, rows, rows_at};
    use crate::store::MemKv;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const FLAGS: [&str; 9] = [
        "\\Seen",
        "\\Answered",
        "\\Flagged",
        "\\Deleted",
        "\\Draft",
        "$Work",
        "Junk",
        "$l1",
        "a",
    ];

    fn row(i: u32, flags: &[usize]) -> ViewRow {
        let flags: FlagSet = flags
            .iter()
            .map(|&f| Flag::try_from(FLAGS[f % FLAGS.len()]).unwrap())
            .collect();
        ViewRow {
            guid: Guid([i as u8; 16]),
            blob: BlobId([(i >> 8) as u8; 32]),
            size: u64::from(i) * 1000 + 7,
            internal_date: -i64::from(i),
            flags,
            modseq: ModSeq::new(u64::from(i) + 1).unwrap(),
        }
    }

    fn same(u: Uid, a: &RowRef<'_>, want: &(Uid, ViewRow)) -> bool {
        let w = &want.1;
        u == want.0
            && a.guid == w.guid
            && a.blob == w.blob
            && a.size == w.size
            && a.internal_date == w.internal_date
            && a.modseq == w.modseq
            && a.flags.iter().eq(w.flags.iter().map(|f| f.as_str()))
    }

    proptest! {
        /// Borrowed reads give exactly what the owned reads give, for a whole scan and for
        /// any ascending subset of UIDs (present or not).
        #[test]
        fn borrowed_rows_are_the_owned_rows(
            present in prop::collection::btree_map(1u32..400, prop::collection::vec(0usize..9, 0..9), 0..120),
            ask in prop::collection::btree_set(1u32..420, 0..80),
        ) {
            let kv = MemKv::new();
            let mb = MailboxId([3; 16]);
            let mut blocks: BTreeMap<u32, Vec<(Uid, ViewRow)>> = BTreeMap::new();
            for (&u, fl) in &present {
                blocks.entry(u / ROWS_PER_BLOCK).or_default().push((Uid::new(u).unwrap(), row(u, fl)));
            }
            let batch = blocks
                .iter()
                .map(|(b, rows)| (key_row_block(&mb, *b), Some(encode(rows))))
                .collect();
            kv.apply(batch).unwrap();
            let owned = rows(&kv, &mb).unwrap();
            let mut i = 0;
            each_row_ref(&kv, &mb, &mut |u, r| {
                assert!(same(u, r, &owned[i]), "scan row {i}");
                i += 1;
                true
            }).unwrap();
            prop_assert_eq!(i, owned.len());
            let ask: Vec<Uid> = ask.into_iter().map(|u| Uid::new(u).unwrap()).collect();
            let want = rows_at(&kv, &mb, &ask).unwrap();
            let mut j = 0;
            rows_at_ref(&kv, &mb, &ask, &mut |u, r| {
                assert!(same(u, r, &want[j]), "rows_at row {j}");
                j += 1;
            }).unwrap();
            prop_assert_eq!(j, want.len());
        }
    }
}
