//! The store's format version, and the one-time rebuild that opens a data dir written by an
//! earlier version. The documents are the data; the view tables (mailbox records, message
//! records, claims, rows, the pending table) are derived from them. So an older data dir is
//! upgraded by dropping its view tables and applying every change of every document again,
//! in mailbox-causal order, exactly as if a peer had sent them. MODSEQ values start again
//! (they are node-local, and no front end that caches them existed before format 2).

use super::doc_id::{parse_doc_id, DocKind};
use super::{NodeError, Replica};
use crate::crdt::meta::ChangeMeta;
use crate::crdt::segment::{facts_of_change, Fact, SegmentRef};
use crate::store::{msg_blocks, tables, Kv, Tx};
use std::collections::BTreeMap;

/// The format this version writes. 1: the first release (no `V` key). 2: flag tags, per
/// message homeless times, the writer record, the name history of account documents.
/// 3: the change index of every mailbox view (QRESYNC; `store::changes`). 4: segment
/// changes written as packed records (`crdt::bulk`), which a version before 4 would skip as
/// entries of an unknown kind: it must not open such a store; claims in blocks of 64 UIDs
/// (`Q`) instead of a record per UID (`U`), and the change index in blocks of 64 MODSEQs
/// (`K`) instead of a record per entry (`C`). 5: the body index in index files beside the
/// packs (`store::blobs`) instead of sled's `blobidx` tree, where a version before 5 would
/// find no body: the store layer moves it when it opens the data dir, before this runs.
/// 6: message records in blocks per GUID window (`N`) instead of a record per message
/// (`G`). 7: those blocks in parts of 4 KiB (`store::msg_blocks`), which a version before 7
/// would read as truncated blocks.
pub const FORMAT: u32 = 7;

/// Prefixes of the derived view tables (`U`, `C`: the per-UID claims and per-entry change
/// index of formats before 4; `G`: the per-message records of formats before 6).
const VIEW_PREFIXES: [&[u8]; 10] = [b"M", b"G", b"N", b"U", b"Q", b"R", b"P", b"C", b"K", b"F"];

/// The format of a store: `None` for an empty one.
fn stored_format(kv: &dyn Kv) -> Result<Option<u32>, NodeError> {
    if let Some(v) = kv.get(tables::KEY_FORMAT)? {
        return Ok(Some(tables::decode(tables::KEY_FORMAT, &v)?));
    }
    let mut any_doc = false;
    kv.scan(b"H", &mut |_, _| {
        any_doc = true;
        false
    })?;
    Ok(any_doc.then_some(1))
}

impl Replica {
    /// Brings the store to [`FORMAT`], rebuilding the view of an older one; refuses a newer.
    pub(crate) fn upgrade(&mut self, now: i64) -> Result<(), NodeError> {
        match stored_format(self.kv.as_ref())? {
            Some(FORMAT) => return Ok(()),
            Some(f) if f > FORMAT => {
                return Err(NodeError::Io(format!(
                    "this data dir has format {f}, written by a newer dovetail (this one reads up to {FORMAT})"
                )))
            }
            Some(6) => {
                tracing::warn!(from = 6, to = FORMAT, "upgrading the data dir: message blocks in parts");
                msg_blocks::split_whole(self.kv.as_ref())?;
            }
            // Message records into blocks (format 4: the body index was moved by the store
            // layer as it opened the data dir).
            Some(4 | 5) => {
                tracing::warn!(from = 5, to = FORMAT, "upgrading the data dir: message blocks");
                block_msgs(self.kv.as_ref())?;
            }
            // Format 3 documents are read as they are (the per-key entries); the claims go
            // into blocks, and the number changes so that no older version opens the packed
            // changes written from now.
            Some(3) => {
                tracing::warn!(from = 3, to = FORMAT, "upgrading the data dir: index blocks");
                block_msgs(self.kv.as_ref())?;
                block_claims(self.kv.as_ref())?;
                block_changes(self.kv.as_ref())?;
            }
            // Format 2 served CONDSTORE clients: its MODSEQs are kept (a rebuild would
            // start them again and a cached value could then read as "nothing changed"),
            // and only the change index (and the claim blocks) are added.
            Some(2) => {
                tracing::warn!(from = 2, to = FORMAT, "upgrading the data dir: indexing changes");
                block_msgs(self.kv.as_ref())?;
                index_changes(self.kv.as_ref())?;
                block_claims(self.kv.as_ref())?;
            }
            Some(f) => {
                tracing::warn!(
                    from = f,
                    to = FORMAT,
                    "upgrading the data dir: rebuilding the view from the documents"
                );
                self.rebuild_view(now)?;
            }
            None => {}
        }
        self.kv.apply(vec![(
            tables::KEY_FORMAT.to_vec(),
            Some(tables::encode(&FORMAT)),
        )])?;
        self.kv.flush()?;
        Ok(())
    }

    /// Drops the view tables and applies every change of every segment document again.
    pub fn rebuild_view(&mut self, now: i64) -> Result<(), NodeError> {
        self.close_docs();
        for p in VIEW_PREFIXES {
            let mut dels = Vec::new();
            self.kv.scan(p, &mut |k, _| {
                dels.push((k.to_vec(), None));
                true
            })?;
            for chunk in dels.chunks(10_000) {
                self.kv.apply(chunk.to_vec())?;
            }
        }
        let docs = self.doc_heads()?;
        for (doc, _) in docs {
            let Some(DocKind::Segment(mb, seg)) = parse_doc_id(&doc) else {
                continue;
            };
            let me = self.node;
            self.write(|r, tx| {
                let Some((am, _)) = r.doc(tx, &doc, false)? else {
                    return Ok(());
                };
                let hashes: Vec<_> = am.get_changes(&[]).iter().map(|c| c.hash()).collect();
                let messages = if seg.node == me {
                    count_messages(am, seg)?
                } else {
                    0
                };
                for h in &hashes {
                    tx.put_raw(tables::key_pending(&mb, h), doc.as_bytes().to_vec());
                }
                if seg.node == me {
                    remember_open_segment(tx, &mb, seg, messages)?;
                }
                Ok(())
            })?;
            self.close_docs();
        }
        // Our own changes come back through the pending table: they are not a sign that
        // this data dir went back in time.
        self.replaying = true;
        self.pending.reset();
        let done = self.deliver_all(now);
        self.replaying = false;
        done?;
        Ok(())
    }
}

/// Keeps the largest generation of this node's segments, with its message count, as the
/// mailbox's open segment, so appends go on filling it instead of starting at generation 0.
fn remember_open_segment(
    tx: &mut Tx<'_>,
    mb: &crate::model::MailboxId,
    seg: SegmentRef,
    messages: u64,
) -> Result<(), NodeError> {
    let mut meta = tx
        .mailbox_meta(mb)?
        .unwrap_or_else(crate::crdt::view::MailboxMeta::new);
    if meta.open_segment.is_none_or(|(g, _)| seg.gen >= g) {
        meta.open_segment = Some((seg.gen, messages));
        tx.put_mailbox_meta(mb, &meta);
    }
    Ok(())
}

/// Moves the per-UID claim records (`U` + mailbox + UID) of a store before format 4 into
/// blocks of 64 UIDs (`Q`).
fn block_claims(kv: &dyn Kv) -> Result<(), NodeError> {
    use crate::model::{Guid, MailboxId, OpId, Uid};
    rebucket::<Uid, Vec<(Guid, OpId)>>(kv, b"U", "claim", &|k, v| {
        let mb = k.get(1..17).and_then(MailboxId::from_slice)?;
        let uid = k
            .get(17..21)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .and_then(|b| Uid::new(u32::from_be_bytes(b)))?;
        let claims = tables::decode(k, v).ok()?;
        (k.len() == 21).then(|| {
            let block = tables::key_claims_block(&mb, uid.get() / tables::ROWS_PER_BLOCK);
            (block, uid, claims)
        })
    })
}

/// Moves the per-message records (`G` + mailbox + GUID) of a store before format 6 into
/// blocks per GUID window (`N`), then splits the blocks into parts (all `G` records are
/// gone before the first split, so a rerun after a crash merges only into whole blocks).
fn block_msgs(kv: &dyn Kv) -> Result<(), NodeError> {
    block_msgs_whole(kv)?;
    msg_blocks::split_whole(kv)?;
    Ok(())
}

fn block_msgs_whole(kv: &dyn Kv) -> Result<(), NodeError> {
    use crate::crdt::view::MsgRec;
    use crate::model::{Guid, MailboxId};
    rebucket::<Guid, MsgRec>(kv, b"G", "message", &|k, v| {
        let mb = k.get(1..17).and_then(MailboxId::from_slice)?;
        let guid = k.get(17..).and_then(Guid::from_slice)?;
        let rec = tables::decode(k, v).ok()?;
        (k.len() == 33).then(|| {
            (
                tables::key_msg_block(&mb, tables::msg_window(&guid)),
                guid,
                rec,
            )
        })
    })
}

/// Moves the per-entry change-index records (`C` + mailbox + MODSEQ + UID) of a store
/// before format 4 into blocks of 64 MODSEQs (`K`).
fn block_changes(kv: &dyn Kv) -> Result<(), NodeError> {
    use crate::model::MailboxId;
    use crate::store::changes::key_change_block;
    rebucket::<(u64, u32), u8>(kv, b"C", "change index", &|k, v| {
        let mb = k.get(1..17).and_then(MailboxId::from_slice)?;
        let modseq = u64::from_be_bytes(k.get(17..25)?.try_into().ok()?);
        let uid = u32::from_be_bytes(k.get(25..29)?.try_into().ok()?);
        match v {
            [c @ (0 | 1)] if k.len() == 29 => {
                Some((key_change_block(&mb, modseq), (modseq, uid), *c))
            }
            _ => None,
        }
    })
}

/// Parses a one-entry record (key, value) into the key of its block, its sort key in the
/// block and its value; `None`: malformed.
type Parse<'a, S, T> = &'a dyn Fn(&[u8], &[u8]) -> Option<(Vec<u8>, S, T)>;

/// Moves the one-entry records under `old` into blocks (each a map from sort key to value,
/// as the tables store them), in rounds of at most 65,536 records, each one atomic batch:
/// the blocks written and the records deleted together, so a crash between rounds leaves a
/// store the next open finishes converting. A block split over two rounds is merged.
fn rebucket<S, T>(
    kv: &dyn Kv,
    old: &[u8],
    what: &str,
    parse: Parse<'_, S, T>,
) -> Result<(), NodeError>
where
    S: Ord + serde::Serialize + serde::de::DeserializeOwned,
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    const ROUND: usize = 65_536;
    let mut start = old.to_vec();
    loop {
        let mut blocks: BTreeMap<Vec<u8>, BTreeMap<S, T>> = BTreeMap::new();
        let mut batch = Vec::new();
        let mut bad = None;
        kv.scan_from(old, &start, &mut |k, v| {
            let Some((block, s, t)) = parse(k, v) else {
                bad = Some(hex::encode(k));
                return false;
            };
            blocks.entry(block).or_default().insert(s, t);
            batch.push((k.to_vec(), None));
            batch.len() < ROUND
        })?;
        if let Some(key) = bad {
            return Err(NodeError::Io(format!("malformed {what} record {key}")));
        }
        let Some((last, _)) = batch.last() else {
            return Ok(());
        };
        start = [last.as_slice(), &[0]].concat();
        for (key, mut entries) in blocks {
            if let Some(v) = kv.get(&key)? {
                let stored: BTreeMap<S, T> = tables::decode(&key, &v)?;
                for (s, t) in stored {
                    entries.entry(s).or_insert(t);
                }
            }
            batch.push((key, Some(tables::encode(&entries))));
        }
        kv.apply(batch)?;
    }
}

/// Builds the change index of a format-2 store: a `Row` entry per visible row, and a vanish
/// floor at each mailbox's HIGHESTMODSEQ (its earlier expunges were never recorded, so a
/// QRESYNC value from before the upgrade gets the full VANISHED answer, not a partial one).
fn index_changes(kv: &dyn Kv) -> Result<(), NodeError> {
    use crate::crdt::view::{Change, MailboxMeta, ViewTables};
    use crate::store::changes::{floor_value, key_floor};
    let mut metas = Vec::new();
    kv.scan(b"M", &mut |k, v| {
        metas.push((k.to_vec(), v.to_vec()));
        true
    })?;
    for (k, v) in metas {
        let Some(mb) = k
            .get(1..)
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
            .map(crate::model::MailboxId)
        else {
            continue;
        };
        let meta: MailboxMeta = tables::decode(&k, &v)?;
        let mut rows = Vec::new();
        tables::each_row(kv, &mb, &mut |uid, row| {
            rows.push((uid, row.modseq));
            true
        })?;
        // Written in the format's own blocks, 10,000 entries per batch (a later batch
        // merges into a block an earlier one wrote).
        let mut tx = Tx::new(kv);
        tx.put_raw(key_floor(&mb), floor_value(meta.highest_modseq));
        for chunk in rows.chunks(10_000) {
            for (uid, modseq) in chunk {
                tx.view(mb).put_change(*modseq, *uid, Some(Change::Row));
            }
            std::mem::replace(&mut tx, Tx::new(kv)).commit()?;
        }
        tx.commit()?;
    }
    Ok(())
}

/// The messages added to a segment document, whatever format its changes were written in.
fn count_messages(am: &mut automerge::AutoCommit, seg: SegmentRef) -> Result<u64, NodeError> {
    let mut n = 0;
    for c in am.get_changes(&[]) {
        let Some(meta) = c.message().and_then(|m| ChangeMeta::decode(m).ok()) else {
            continue;
        };
        n += facts_of_change(&c, &meta, seg)?
            .iter()
            .filter(|f| matches!(f, Fact::Message { .. }))
            .count() as u64;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdt::view::ViewTables;
    use crate::model::{Guid, MailboxId, NodeId, OpId, Uid};
    use crate::store::{MemKv, Tx};

    /// Per-message records of an older store (minted and random GUIDs) become blocks per
    /// GUID window that read back the same, over more than one round; none is left.
    #[test]
    fn message_records_move_into_blocks() {
        use crate::crdt::segment::SegmentRef;
        use crate::crdt::view::MsgRec;
        use crate::model::BlobId;
        let kv = MemKv::new();
        let mb = MailboxId([3; 16]);
        let rec = |i: u32| MsgRec {
            blob: BlobId([i as u8; 32]),
            size: u64::from(i),
            internal_date: i64::from(i),
            claims: vec![],
            flags: Default::default(),
            tags: Default::default(),
            expunged: i.is_multiple_of(7),
            home: SegmentRef {
                node: NodeId([1; 32]),
                gen: 0,
            },
            shown: None,
        };
        // 70,000 GUIDs minted 1 us apart (17 windows), and 1,000 random ones.
        let mut guids: Vec<Guid> = (0..70_000u64)
            .map(|i| {
                let mut g = [0u8; 16];
                g[..8].copy_from_slice(&(1_700_000_000_000_000 + i).to_be_bytes());
                g[8..].copy_from_slice(&i.to_le_bytes());
                Guid(g)
            })
            .collect();
        guids.extend((0..1_000u32).map(|i| {
            Guid(
                *BlobId::of(&i.to_le_bytes()).as_bytes()[..16]
                    .first_chunk()
                    .unwrap(),
            )
        }));
        let batch = guids
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let key = [b"G".as_slice(), mb.as_bytes(), g.as_bytes()].concat();
                (key, Some(tables::encode(&rec(i as u32))))
            })
            .collect();
        kv.apply(batch).unwrap();
        block_msgs(&kv).unwrap();
        let (mut left, mut blocks) = (0, 0);
        kv.scan(b"G", &mut |_, _| {
            left += 1;
            true
        })
        .unwrap();
        msg_blocks::scan(&kv, b"N", &mut |_, _| {
            blocks += 1;
            true
        })
        .unwrap();
        assert_eq!(left, 0, "per-message records left");
        assert!(blocks < 1_100, "{blocks} blocks");
        // Split into parts, as format 7 stores them.
        let mut longest = 0;
        kv.scan(b"N", &mut |_, v| {
            longest = longest.max(v.len());
            true
        })
        .unwrap();
        assert!(longest <= tables::CHUNK_PART, "a value of {longest} bytes");
        let mut tx = Tx::new(&kv);
        let mut v = tx.view(mb);
        for (i, g) in guids.iter().enumerate() {
            assert_eq!(v.msg(g).unwrap(), Some(rec(i as u32)), "message {i}");
        }
        assert_eq!(v.msg(&Guid([9; 16])).unwrap(), None);
        let live = tables::live_messages(&kv, &mb).unwrap();
        assert_eq!(live.len(), guids.len() - guids.len().div_ceil(7));
    }

    /// Per-UID claim records of an older store become blocks that read back the same, over
    /// more than one round, and none of the old records is left.
    #[test]
    fn claim_records_move_into_blocks() {
        let kv = MemKv::new();
        let mbs = [MailboxId([1; 16]), MailboxId([2; 16])];
        let claims = |mb: &MailboxId, u: u32| -> Vec<(Guid, OpId)> {
            (0..1 + u % 3)
                .map(|i| {
                    (
                        Guid([mb.0[0] ^ i as u8; 16]),
                        OpId {
                            counter: u64::from(u) * 7 + u64::from(i),
                            node: NodeId([i as u8; 32]),
                        },
                    )
                })
                .collect()
        };
        let uids: Vec<u32> = (1..70_000).step_by(1).filter(|u| u % 5 != 0).collect();
        let mut batch = Vec::new();
        for mb in &mbs {
            for &u in &uids {
                let key = [b"U".as_slice(), mb.as_bytes(), &u.to_be_bytes()].concat();
                batch.push((key, Some(tables::encode(&claims(mb, u)))));
            }
        }
        kv.apply(batch).unwrap();
        block_claims(&kv).unwrap();
        let mut left = 0;
        kv.scan(b"U", &mut |_, _| {
            left += 1;
            true
        })
        .unwrap();
        assert_eq!(left, 0, "per-UID records left");
        let mut tx = Tx::new(&kv);
        for mb in &mbs {
            let mut v = tx.view(*mb);
            for u in 1..70_001u32 {
                let want = if u % 5 != 0 && u < 70_000 {
                    claims(mb, u)
                } else {
                    vec![]
                };
                assert_eq!(v.claims_at(Uid::new(u).unwrap()).unwrap(), want, "uid {u}");
            }
        }
    }

    /// Per-entry change-index records of a format-3 store become blocks from which `since`
    /// reads the same changes.
    #[test]
    fn change_records_move_into_blocks() {
        use crate::crdt::view::Change;
        use crate::model::ModSeq;
        use crate::store::changes::{change_value, key_change, since};
        let kv = MemKv::new();
        let mb = MailboxId([5; 16]);
        let mut batch = Vec::new();
        // UID u's row at MODSEQ 2u; every 7th UID vanished at 2u + 1 instead.
        for u in 1..40_000u32 {
            let (m, c) = if u % 7 == 0 {
                (2 * u64::from(u) + 1, Change::Vanished)
            } else {
                (2 * u64::from(u), Change::Row)
            };
            let key = key_change(&mb, ModSeq::new(m).unwrap(), Uid::new(u).unwrap());
            batch.push((key, Some(change_value(c))));
        }
        kv.apply(batch).unwrap();
        block_changes(&kv).unwrap();
        let mut left = 0;
        kv.scan(b"C", &mut |_, _| {
            left += 1;
            true
        })
        .unwrap();
        assert_eq!(left, 0, "per-entry records left");
        for after in [0u64, 1, 127, 128, 5_000, 79_990] {
            let s = since(&kv, &mb, after).unwrap();
            let want: Vec<Uid> = (1..40_000u32)
                .filter(|u| u % 7 == 0 && 2 * u64::from(*u) + 1 > after)
                .map(|u| Uid::new(u).unwrap())
                .collect();
            assert_eq!(s.vanished, want, "vanished after {after}");
        }
    }

    /// A format-2 store's rows get a change-index entry each, in blocks, and the vanish
    /// floor at the mailbox's HIGHESTMODSEQ.
    #[test]
    fn a_format_2_view_is_indexed() {
        use crate::crdt::view::{MailboxMeta, ViewRow};
        use crate::model::{BlobId, FlagSet, ModSeq};
        use crate::store::changes::since;
        let kv = MemKv::new();
        let mb = MailboxId([6; 16]);
        let mut meta = MailboxMeta::new();
        meta.highest_modseq = 30_000;
        let mut tx = Tx::new(&kv);
        tx.put_mailbox_meta(&mb, &meta);
        for u in 1..=25_000u32 {
            let row = ViewRow {
                guid: Guid::mint(),
                blob: BlobId::of(b"x"),
                size: 1,
                internal_date: 0,
                flags: FlagSet::new(),
                modseq: ModSeq::new(u64::from(u) + 5_000).unwrap(),
            };
            tx.view(mb).put_row(Uid::new(u).unwrap(), Some(&row));
        }
        tx.commit().unwrap();
        index_changes(&kv).unwrap();
        let all = since(&kv, &mb, 30_000).unwrap();
        assert!(all.rows.is_empty() && all.complete);
        let s = since(&kv, &mb, 29_990).unwrap();
        let uids: Vec<u32> = s.rows.iter().map(|(u, _)| u.get()).collect();
        assert_eq!(uids, (24_991..=25_000).collect::<Vec<_>>());
        assert!(!since(&kv, &mb, 5_000).unwrap().complete, "below the floor");
        assert_eq!(since(&kv, &mb, 5_000).unwrap().rows.len(), 25_000);
    }
}
