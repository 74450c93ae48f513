//! Packed entries: a change's writes to a segment as binary records in a few automerge
//! values (`b/<tag>/<n>` = bytes) instead of one automerge map key per write.
//!
//! Why: every automerge operation costs ~15-20 µs to commit, more to load, sync and apply
//! remotely, and ~100 bytes of memory in a loaded document; a message took about three
//! (`m/`, `c/`, a flag). Packed, a batch of 100 appends is one or two operations, a 16k-message
//! segment loads from a few hundred operations, and a renumbering of tens of thousands of
//! UIDs is one value per 64 KiB. Facts stay a function of the change alone: a packed record
//! says exactly what the key it replaces said. The per-key format is still read (data dirs
//! and peers written before it).
//!
//! Layout of a value: a format byte ([`FORMAT`]), then records, each `kind: u8`,
//! `len: varint`, `payload[len]`. A record of a kind this version does not know is skipped
//! (its length says how far); a value of an unknown format is skipped whole (a newer
//! version's). A malformed record of a known kind makes the change malformed.
//!
//! | kind | payload | fact |
//! |---|---|---|
//! | 1 add | guid(16) blob(32) size:varint date:zigzag varint | `Message` |
//! | 2 claim | guid(16) uid:varint | `Claim`, op = (change's lamport, author) |
//! | 3 set flag | guid(16) flag bytes | `Flag` present, tag = the change's tag |
//! | 4 clear flag | guid(16) tag_len:varint tag flag bytes | `Flag` removed (tag "" = the older `f/` add) |
//! | 5 expunge | guid(16) | `Expunge` |

use super::meta::ChangeMeta;
use super::segment::{Fact, SegmentRef};
use super::CrdtError;
use crate::model::{BlobId, Flag, Guid, OpId, Uid};

/// The format byte of a packed value.
pub const FORMAT: u8 = 1;

/// Bytes of records per value at most (a value is split past this): small enough that no
/// single automerge value is large, big enough that a batch is a handful of operations.
pub const VALUE_BYTES: usize = 64 * 1024;

const ADD: u8 = 1;
const CLAIM: u8 = 2;
const SET_FLAG: u8 = 3;
const CLEAR_FLAG: u8 = 4;
const EXPUNGE: u8 = 5;

/// One write, as packed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rec<'a> {
    Add {
        guid: Guid,
        blob: BlobId,
        size: u64,
        internal_date: i64,
    },
    Claim {
        guid: Guid,
        uid: Uid,
    },
    SetFlag {
        guid: Guid,
        flag: &'a Flag,
    },
    ClearFlag {
        guid: Guid,
        flag: &'a Flag,
        tag: &'a str,
    },
    Expunge {
        guid: Guid,
    },
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Packs records into values of about [`VALUE_BYTES`] each.
#[derive(Default)]
pub struct Packer {
    values: Vec<Vec<u8>>,
    payload: Vec<u8>,
}

impl Packer {
    pub fn new() -> Packer {
        Packer::default()
    }

    /// Adds one record.
    pub fn push(&mut self, rec: &Rec<'_>) {
        let p = &mut self.payload;
        p.clear();
        let kind = match rec {
            Rec::Add {
                guid,
                blob,
                size,
                internal_date,
            } => {
                p.extend_from_slice(guid.as_bytes());
                p.extend_from_slice(blob.as_bytes());
                put_varint(p, *size);
                put_varint(p, zigzag(*internal_date));
                ADD
            }
            Rec::Claim { guid, uid } => {
                p.extend_from_slice(guid.as_bytes());
                put_varint(p, uid.get() as u64);
                CLAIM
            }
            Rec::SetFlag { guid, flag } => {
                p.extend_from_slice(guid.as_bytes());
                p.extend_from_slice(flag.as_str().as_bytes());
                SET_FLAG
            }
            Rec::ClearFlag { guid, flag, tag } => {
                p.extend_from_slice(guid.as_bytes());
                put_varint(p, tag.len() as u64);
                p.extend_from_slice(tag.as_bytes());
                p.extend_from_slice(flag.as_str().as_bytes());
                CLEAR_FLAG
            }
            Rec::Expunge { guid } => {
                p.extend_from_slice(guid.as_bytes());
                EXPUNGE
            }
        };
        let need = 1 + 10 + self.payload.len();
        let full = self
            .values
            .last()
            .is_none_or(|v| v.len() + need > VALUE_BYTES && v.len() > 1);
        if full {
            let mut v = Vec::with_capacity(VALUE_BYTES.min(4096));
            v.push(FORMAT);
            self.values.push(v);
        }
        let v = self.values.last_mut().expect("pushed above");
        v.push(kind);
        put_varint(v, self.payload.len() as u64);
        v.extend_from_slice(&self.payload);
    }

    /// The packed values, in order.
    pub fn finish(self) -> Vec<Vec<u8>> {
        self.values
    }
}

/// Reads a packed value.
struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let (&byte, rest) = self.b.split_first()?;
            self.b = rest;
            v |= ((byte & 0x7f) as u64).checked_shl(7 * i)?;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.b.len() < n {
            return None;
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Some(h)
    }
    fn guid(&mut self) -> Option<Guid> {
        Guid::from_slice(self.take(16)?)
    }
}

/// The facts of one packed value of a change (`key` names it in errors). A value of an
/// unknown format gives none.
pub fn facts_of_value(
    key: &str,
    value: &[u8],
    meta: &ChangeMeta,
    tag: &str,
    home: SegmentRef,
    facts: &mut Vec<Fact>,
) -> Result<(), CrdtError> {
    let bad = |why: &str| CrdtError::BadEntry {
        key: key.to_string(),
        why: why.to_string(),
    };
    let Some((&format, body)) = value.split_first() else {
        return Err(bad("empty packed value"));
    };
    if format != FORMAT {
        tracing::debug!(key, format, "skipping a packed value of an unknown format");
        return Ok(());
    }
    let mut r = Reader { b: body };
    while !r.b.is_empty() {
        let kind = r.take(1).ok_or_else(|| bad("truncated record"))?[0];
        let len = r.varint().ok_or_else(|| bad("bad record length"))?;
        let payload = r
            .take(usize::try_from(len).map_err(|_| bad("bad record length"))?)
            .ok_or_else(|| bad("truncated record"))?;
        let mut p = Reader { b: payload };
        let guid = match kind {
            ADD | CLAIM | SET_FLAG | CLEAR_FLAG | EXPUNGE => {
                p.guid().ok_or_else(|| bad("bad guid"))?
            }
            _ => {
                tracing::debug!(key, kind, "skipping a packed record of an unknown kind");
                continue;
            }
        };
        let flag = |b: &[u8]| -> Result<Flag, CrdtError> {
            let s = std::str::from_utf8(b).map_err(|_| bad("flag is not UTF-8"))?;
            Ok(Flag::try_from(s)?)
        };
        let fact = match kind {
            ADD => {
                let blob = p
                    .take(32)
                    .and_then(BlobId::from_slice)
                    .ok_or_else(|| bad("bad blob id"))?;
                let size = p.varint().ok_or_else(|| bad("bad size"))?;
                let date = p.varint().ok_or_else(|| bad("bad date"))?;
                Fact::Message {
                    guid,
                    blob,
                    size,
                    internal_date: unzigzag(date),
                    home,
                }
            }
            CLAIM => {
                let uid = p
                    .varint()
                    .and_then(|u| u32::try_from(u).ok())
                    .and_then(Uid::new)
                    .ok_or_else(|| bad("bad uid"))?;
                Fact::Claim {
                    guid,
                    uid,
                    op: OpId {
                        counter: meta.lamport,
                        node: meta.node,
                    },
                }
            }
            SET_FLAG => Fact::Flag {
                guid,
                flag: flag(std::mem::take(&mut p.b))?,
                tag: tag.to_string(),
                present: true,
            },
            CLEAR_FLAG => {
                let n = p.varint().ok_or_else(|| bad("bad tag length"))?;
                let t = usize::try_from(n)
                    .ok()
                    .and_then(|n| p.take(n))
                    .ok_or_else(|| bad("bad tag"))?;
                let t = std::str::from_utf8(t).map_err(|_| bad("tag is not UTF-8"))?;
                Fact::Flag {
                    guid,
                    flag: flag(std::mem::take(&mut p.b))?,
                    tag: t.to_string(),
                    present: false,
                }
            }
            _ => Fact::Expunge { guid },
        };
        if !p.b.is_empty() {
            return Err(bad("trailing bytes in a record"));
        }
        facts.push(fact);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NodeId;
    use proptest::prelude::*;

    fn meta() -> ChangeMeta {
        ChangeMeta {
            node: NodeId([3; 32]),
            clock: Default::default(),
            lamport: 42,
            blobs: vec![],
        }
    }

    fn home() -> SegmentRef {
        SegmentRef {
            node: NodeId([3; 32]),
            gen: 0,
        }
    }

    #[test]
    fn varints_and_zigzag_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(Reader { b: &b }.varint(), Some(v));
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX, 1_700_000_000] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }

    #[test]
    fn unknown_kinds_and_formats_are_skipped_and_truncation_is_refused() {
        let f = Flag::try_from("\\Seen").expect("flag");
        let mut p = Packer::new();
        p.push(&Rec::SetFlag {
            guid: Guid([1; 16]),
            flag: &f,
        });
        let mut v = p.finish().remove(0);
        // A record of kind 99 with 3 bytes, before the known one.
        v.splice(1..1, [99, 3, 0, 0, 0]);
        let mut facts = vec![];
        facts_of_value("b/x/0", &v, &meta(), "42.x", home(), &mut facts).expect("facts");
        assert_eq!(facts.len(), 1);
        let mut newer = v.clone();
        newer[0] = 2;
        let mut none = vec![];
        facts_of_value("b/x/0", &newer, &meta(), "42.x", home(), &mut none).expect("skip");
        assert!(none.is_empty());
        // Every cut after the skipped record leaves a truncated known record.
        for cut in 7..v.len() {
            let mut out = vec![];
            assert!(
                facts_of_value("b/x/0", &v[..cut], &meta(), "t", home(), &mut out).is_err(),
                "a value cut at {cut} is malformed"
            );
        }
    }

    proptest! {
        #[test]
        fn packed_records_read_back_as_their_facts(
            recs in proptest::collection::vec(
                (0u8..5, any::<[u8; 16]>(), any::<u64>(), any::<i64>(), 1u32.., 0usize..4, "[a-z0-9.]{0,20}"),
                0..300,
            )
        ) {
            let flags: Vec<Flag> = ["\\Seen", "\\Flagged", "$Work", "$x1"]
                .iter()
                .map(|f| Flag::try_from(*f).expect("flag"))
                .collect();
            let m = meta();
            let mut p = Packer::new();
            let mut want = vec![];
            for (kind, g, size, date, uid, fi, tag) in &recs {
                let guid = Guid(*g);
                let flag = &flags[*fi];
                let uid = Uid::new(*uid).expect("nonzero");
                let (rec, fact) = match kind {
                    0 => (
                        Rec::Add { guid, blob: BlobId([7; 32]), size: *size, internal_date: *date },
                        Fact::Message { guid, blob: BlobId([7; 32]), size: *size, internal_date: *date, home: home() },
                    ),
                    1 => (
                        Rec::Claim { guid, uid },
                        Fact::Claim { guid, uid, op: OpId { counter: m.lamport, node: m.node } },
                    ),
                    2 => (
                        Rec::SetFlag { guid, flag },
                        Fact::Flag { guid, flag: flag.clone(), tag: "42.t".into(), present: true },
                    ),
                    3 => (
                        Rec::ClearFlag { guid, flag, tag },
                        Fact::Flag { guid, flag: flag.clone(), tag: tag.clone(), present: false },
                    ),
                    _ => (Rec::Expunge { guid }, Fact::Expunge { guid }),
                };
                p.push(&rec);
                want.push(fact);
            }
            let values = p.finish();
            let mut got = vec![];
            for v in &values {
                prop_assert!(v.len() <= VALUE_BYTES);
                facts_of_value("b/t/0", v, &m, "42.t", home(), &mut got).expect("facts");
            }
            prop_assert_eq!(got, want);
        }
    }
}
