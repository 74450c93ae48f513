//! The typed tables, all in one keyspace so that one operation is one atomic batch.
//!
//! | prefix | key                         | value                                   |
//! |--------|-----------------------------|-----------------------------------------|
//! | `D`    | doc id, 0, chunk index (be) | automerge chunk (snapshot or changes)   |
//! | `H`    | doc id                      | [`DocMeta`]: heads, chunk range         |
//! | `M`    | mailbox id                  | [`MailboxMeta`]                         |
//! | `N`    | mailbox id, GUID window (be) [, part] | message records of GUIDs minted in one window of [`MSG_WINDOW_US`]: {GUID: [`MsgRec`]}, in parts ([`super::msg_blocks`]) |
//! | `Q`    | mailbox id, UID / 64 (be)   | claims of 64 consecutive UIDs: [(UID, [(GUID, op)])] |
//! | `R`    | mailbox id, UID / 64 (be)   | visible messages of 64 consecutive UIDs: [(UID, [`ViewRow`])] |
//! | `P`    | mailbox id, change hash     | doc id of a change not yet applied      |
//! | `K`, `F` | mailbox id, ...           | the change index ([`super::changes`])   |
//! | `S`    | peer id, doc id             | automerge sync state                    |
//! | `I`    |                             | node identity (ed25519 keypair)         |
//! | `W`    |                             | writer id and the store's (dev, inode)  |
//! | `V`    |                             | format version                          |
//!
//! Blobs live in the engine's blob space, keyed by sha256.
//!
//! Visible rows are packed [`ROWS_PER_BLOCK`] to a record: listing a mailbox reads one record
//! per 64 messages instead of one per message, which is what makes listing 1M messages fast
//! (sled's per-record cost dominates a scan). A transaction gathers row edits per block and
//! merges them into the stored block at commit.

use super::changes::ChangeBlock;
pub(crate) use super::msg_blocks::key_msg_block;
use super::msg_blocks::{self, Stored};
pub use super::msg_blocks::{msg_window, prefix_msgs, MsgBlock, MSG_WINDOW_US};
use super::{Kv, StoreError};
use crate::crdt::view::{Change, MailboxMeta, MsgRec, ViewRow, ViewTables};
use crate::model::{Guid, MailboxId, ModSeq, NodeId, OpId, Uid};
use automerge::{AutoCommit, ChangeHash};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Visible rows per `R` record.
pub const ROWS_PER_BLOCK: u32 = 64;

/// Incremental chunks a document may accumulate before it is compacted into one snapshot.
/// Loading replays every incremental chunk as a remote change, which automerge 0.12 does in
/// time proportional to the whole document: with segments of 16k messages, 64 chunks load
/// in ~0.1 s, and compacting more often costs appends more than it saves.
pub const COMPACT_AFTER: u64 = 64;

/// A save that brings more changes than this (a sync) writes a snapshot, not a chunk: one
/// chunk of hundreds of changes would be replayed change by change on every load.
pub const SNAPSHOT_OVER_CHANGES: usize = 4;

/// Where a document's chunks are and what its heads are (so heads can be compared without
/// loading the document).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocMeta {
    pub heads: Vec<[u8; 32]>,
    pub first_chunk: u64,
    pub next_chunk: u64,
}

impl DocMeta {
    pub fn heads(&self) -> Vec<ChangeHash> {
        self.heads.iter().map(|h| ChangeHash(*h)).collect()
    }
}

pub fn key_doc_meta(doc: &str) -> Vec<u8> {
    [b"H", doc.as_bytes()].concat()
}
fn key_chunk(doc: &str, i: u64) -> Vec<u8> {
    [b"D", doc.as_bytes(), &[0], &i.to_be_bytes()].concat()
}
/// Part `p` of chunk `i`: part 0 is at [`key_chunk`], so chunks written whole by earlier
/// versions read the same way.
fn key_chunk_part(doc: &str, i: u64, p: u32) -> Vec<u8> {
    part_key(&key_chunk(doc, i), p)
}
/// The key of part `p` of a value stored in parts under `key` (document chunks, message
/// blocks): part 0 is `key` itself, part `p` from 1 is `key` followed by `p` (be).
pub(crate) fn part_key(key: &[u8], p: u32) -> Vec<u8> {
    match p {
        0 => key.to_vec(),
        p => [key, &p.to_be_bytes()].concat(),
    }
}

/// Chunks are stored in parts of at most this many bytes. sled keeps a tree page whose
/// encoding exceeds a quarter of its segment (128 KiB) in a file of its own and counts it
/// in its cache as a pointer of a few bytes: pages of whole snapshots were never evicted
/// (227 MB of a 1M-message sync held by a 32 MiB cache). A leaf holds up to 16 values, so
/// parts of 4 KiB keep every page inline and counted.
pub const CHUNK_PART: usize = 4096;
pub fn key_mailbox(mb: &MailboxId) -> Vec<u8> {
    [b"M".as_slice(), mb.as_bytes()].concat()
}
/// The key of the claims of UIDs `64 * block ..= 64 * block + 63`. (Format 3 kept one `U`
/// record per UID: an append wrote one more sled record per message.)
pub(crate) fn key_claims_block(mb: &MailboxId, block: u32) -> Vec<u8> {
    [b"Q".as_slice(), mb.as_bytes(), &block.to_be_bytes()].concat()
}
pub(crate) fn key_row_block(mb: &MailboxId, block: u32) -> Vec<u8> {
    [b"R".as_slice(), mb.as_bytes(), &block.to_be_bytes()].concat()
}
/// The key of the row block holding `uid`.
pub fn row_block(mb: &MailboxId, uid: Uid) -> Vec<u8> {
    key_row_block(mb, uid.get() / ROWS_PER_BLOCK)
}
/// Prefix of a mailbox's visible rows.
pub fn prefix_rows(mb: &MailboxId) -> Vec<u8> {
    [b"R".as_slice(), mb.as_bytes()].concat()
}
pub fn key_pending(mb: &MailboxId, h: &ChangeHash) -> Vec<u8> {
    [b"P".as_slice(), mb.as_bytes(), &h.0].concat()
}
pub fn prefix_pending(mb: &MailboxId) -> Vec<u8> {
    [b"P".as_slice(), mb.as_bytes()].concat()
}
pub fn key_sync_state(peer: &NodeId, doc: &str) -> Vec<u8> {
    [b"S".as_slice(), peer.as_bytes(), doc.as_bytes()].concat()
}
pub const KEY_IDENTITY: &[u8] = b"I";
/// The writer record: the writer id and where the store was when it was recorded.
pub const KEY_WRITER: &[u8] = b"W";
/// The store's format version (absent in the first one).
pub const KEY_FORMAT: &[u8] = b"V";

pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).expect("serializing to memory cannot fail")
}

pub fn decode<T: DeserializeOwned>(key: &[u8], v: &[u8]) -> Result<T, StoreError> {
    postcard::from_bytes(v).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        why: e.to_string(),
    })
}

/// Edits of visible rows, per (mailbox, block), per UID: `None` removes the row.
type RowEdits = BTreeMap<(MailboxId, u32), BTreeMap<Uid, Option<ViewRow>>>;

/// The claims on one UID of a mailbox.
type Claims = Vec<(Guid, OpId)>;

/// The claims of one block of [`ROWS_PER_BLOCK`] UIDs (UIDs without a claim left out),
/// stored as postcard encodes the map: a count, then each (UID, claims) in order.
type ClaimsBlock = BTreeMap<Uid, Claims>;

/// The writes of one operation, readable before they are applied (except visible rows,
/// which are write-only here: they are merged into their blocks at commit, and read from the
/// store by [`rows`]).
pub struct Tx<'a> {
    kv: &'a dyn Kv,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    rows: RowEdits,
    /// Message-record blocks and claim blocks this transaction read or wrote, decoded
    /// (`true`: written, encoded into `writes` at commit). Applying a change reads and
    /// rewrites a message's record several times (its add, claim, flags, then where it
    /// shows): one decode and one encode each, not one per access.
    msgs: HashMap<(MailboxId, u64), (MsgBlock, bool)>,
    /// The message-record blocks as read (written back by the parts that changed).
    msgs_read: HashMap<(MailboxId, u64), Stored>,
    /// Claim blocks, by (mailbox, UID / 64).
    claims: HashMap<(MailboxId, u32), (ClaimsBlock, bool)>,
    /// Change-index blocks, by (mailbox, MODSEQ / 64).
    changes: HashMap<(MailboxId, u64), (ChangeBlock, bool)>,
    /// A write that could not be prepared: [`Tx::commit`] fails with it.
    failed: Option<StoreError>,
}

impl<'a> Tx<'a> {
    pub fn new(kv: &'a dyn Kv) -> Tx<'a> {
        Tx {
            kv,
            writes: BTreeMap::new(),
            rows: BTreeMap::new(),
            msgs: HashMap::new(),
            msgs_read: HashMap::new(),
            claims: HashMap::new(),
            changes: HashMap::new(),
            failed: None,
        }
    }

    pub fn kv(&self) -> &'a dyn Kv {
        self.kv
    }

    pub fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.writes.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.kv.get(key),
        }
    }

    pub fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.get_raw(key)? {
            Some(v) => decode(key, &v).map(Some),
            None => Ok(None),
        }
    }

    pub fn put_raw(&mut self, key: Vec<u8>, v: Vec<u8>) {
        self.writes.insert(key, Some(v));
    }

    pub fn put<T: Serialize>(&mut self, key: Vec<u8>, v: &T) {
        self.writes.insert(key, Some(encode(v)));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
            && self.rows.is_empty()
            && !self.msgs.values().any(|(_, w)| *w)
            && !self.claims.values().any(|(_, w)| *w)
            && !self.changes.values().any(|(_, w)| *w)
    }

    /// Values written (not deleted) in this transaction under `prefix`.
    pub fn pending_writes(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.writes
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect()
    }

    /// Writes a cached block back if it was `written` (an empty one is deleted).
    fn put_block<K: Serialize, V: Serialize>(
        &mut self,
        key: Vec<u8>,
        b: &BTreeMap<K, V>,
        written: bool,
    ) {
        match (written, b.is_empty()) {
            (false, _) => {}
            (true, true) => self.delete(key),
            (true, false) => self.put(key, b),
        }
    }

    /// A block read through the transaction, empty if absent.
    fn get_block<K: Ord + DeserializeOwned, V: DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<BTreeMap<K, V>, StoreError> {
        Ok(self.get(key)?.unwrap_or_default())
    }

    /// Applies every write as one atomic batch (not yet flushed).
    pub fn commit(mut self) -> Result<(), StoreError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let mut read = std::mem::take(&mut self.msgs_read);
        for ((mb, w), (b, written)) in std::mem::take(&mut self.msgs) {
            if written {
                let old = read.remove(&(mb, w)).unwrap_or_default();
                msg_blocks::write(&key_msg_block(&mb, w), &b, &old, &mut |k, v| {
                    self.writes.insert(k, v);
                });
            }
        }
        for ((mb, block), (b, written)) in std::mem::take(&mut self.changes) {
            let key =
                super::changes::key_change_block(&mb, block * super::changes::CHANGES_PER_BLOCK);
            self.put_block(key, &b, written);
        }
        for ((mb, block), (b, written)) in std::mem::take(&mut self.claims) {
            self.put_block(key_claims_block(&mb, block), &b, written);
        }
        for ((mb, block), edits) in std::mem::take(&mut self.rows) {
            let key = key_row_block(&mb, block);
            let mut rows: BTreeMap<Uid, ViewRow> = match self.kv.get(&key)? {
                Some(v) => decode::<Vec<(Uid, ViewRow)>>(&key, &v)?
                    .into_iter()
                    .collect(),
                None => BTreeMap::new(),
            };
            for (uid, row) in edits {
                match row {
                    Some(r) => rows.insert(uid, r),
                    None => rows.remove(&uid),
                };
            }
            if rows.is_empty() {
                self.delete(key);
            } else {
                let rows: Vec<(&Uid, &ViewRow)> = rows.iter().collect();
                self.put(key, &rows);
            }
        }
        if self.writes.is_empty() {
            return Ok(());
        }
        self.kv.apply(self.writes.into_iter().collect())
    }

    // ---- documents ----

    /// The metadata of a document, if it exists.
    pub fn doc_meta(&self, doc: &str) -> Result<Option<DocMeta>, StoreError> {
        self.get(&key_doc_meta(doc))
    }

    /// Loads a document from its chunks.
    pub fn load_doc(&self, doc: &str) -> Result<Option<(AutoCommit, DocMeta)>, StoreError> {
        Ok(self.load_doc_sized(doc)?.map(|(am, meta, _)| (am, meta)))
    }

    /// [`Tx::load_doc`], with the stored bytes it loaded (what the document cache weighs
    /// documents by).
    pub fn load_doc_sized(
        &self,
        doc: &str,
    ) -> Result<Option<(AutoCommit, DocMeta, usize)>, StoreError> {
        let Some(meta) = self.doc_meta(doc)? else {
            return Ok(None);
        };
        let err = |source| StoreError::Doc {
            doc: doc.to_string(),
            source: Box::new(source),
        };
        // One load of the snapshot and every incremental chunk after it: automerge then
        // applies all the chunks' changes in one batch. Loading the chunks one by one
        // (`load_incremental`) splices the whole document's columns once per chunk: a
        // 16k-message segment with 33 chunks took 1.2-3.6 s to open instead of ~0.1 s.
        let mut all = Vec::new();
        for i in meta.first_chunk..meta.next_chunk {
            if !self.read_chunk(doc, i, &mut all)? {
                return Err(StoreError::Corrupt {
                    key: doc.to_string(),
                    why: format!("chunk {i} missing"),
                });
            }
        }
        let am = AutoCommit::load_with_options(
            &all,
            automerge::LoadOptions::new()
                .on_partial_load(automerge::OnPartialLoad::Error)
                .verification_mode(automerge::VerificationMode::Check),
        )
        .map_err(err)?;
        Ok(Some((am, meta, all.len())))
    }

    /// Appends chunk `i` of `doc` (all its parts) to `out`; false if there is no such chunk.
    pub fn read_chunk(&self, doc: &str, i: u64, out: &mut Vec<u8>) -> Result<bool, StoreError> {
        let Some(first) = self.get_raw(&key_chunk(doc, i))? else {
            return Ok(false);
        };
        if out.is_empty() {
            *out = first;
        } else {
            out.extend_from_slice(&first);
        }
        for p in 1.. {
            match self.get_raw(&key_chunk_part(doc, i, p))? {
                Some(part) => out.extend_from_slice(&part),
                None => break,
            }
        }
        Ok(true)
    }

    /// Writes chunk `i` of `doc` in parts of [`CHUNK_PART`] bytes.
    fn put_chunk(&mut self, doc: &str, i: u64, bytes: Vec<u8>) {
        if bytes.len() <= CHUNK_PART {
            self.put_raw(key_chunk(doc, i), bytes);
            return;
        }
        for (p, part) in bytes.chunks(CHUNK_PART).enumerate() {
            self.put_raw(key_chunk_part(doc, i, p as u32), part.to_vec());
        }
    }

    /// Deletes chunk `i` of `doc` and its parts.
    fn delete_chunk(&mut self, doc: &str, i: u64) -> Result<(), StoreError> {
        self.delete(key_chunk(doc, i));
        for p in 1.. {
            let key = key_chunk_part(doc, i, p);
            if self.get_raw(&key)?.is_none() {
                break;
            }
            self.delete(key);
        }
        Ok(())
    }

    /// Persists what `doc` has beyond `meta.heads`: one incremental chunk, or a compacted
    /// snapshot once enough chunks have piled up or when many changes arrive at once.
    /// Returns what it wrote: the chunk's bytes, and whether it is a snapshot (the whole
    /// document) rather than an increment.
    pub fn save_doc(
        &mut self,
        doc: &str,
        am: &mut AutoCommit,
        meta: &mut DocMeta,
    ) -> Option<(usize, bool)> {
        let heads: Vec<[u8; 32]> = am.get_heads().iter().map(|h| h.0).collect();
        if heads == meta.heads && meta.next_chunk > 0 {
            return None;
        }
        let mut chunk = None;
        if meta.next_chunk - meta.first_chunk < COMPACT_AFTER {
            let changes = am.get_changes(&meta.heads());
            if changes.len() <= SNAPSHOT_OVER_CHANGES {
                // What `save_after` writes: the new changes, one after the other.
                let mut bytes = Vec::new();
                for c in &changes {
                    bytes.extend_from_slice(c.raw_bytes());
                }
                chunk = Some(bytes);
            }
        }
        let written = if let Some(bytes) = chunk {
            let n = bytes.len();
            self.put_chunk(doc, meta.next_chunk, bytes);
            (n, false)
        } else {
            for i in meta.first_chunk..meta.next_chunk {
                if let Err(e) = self.delete_chunk(doc, i) {
                    self.failed.get_or_insert(e);
                }
            }
            meta.first_chunk = meta.next_chunk;
            // Uncompressed: deflate is ~90% of the cost of a save (the latency spike of one
            // append in 64), and loading is no slower; snapshots take ~2x the space.
            let bytes = am.save_nocompress();
            let n = bytes.len();
            self.put_chunk(doc, meta.next_chunk, bytes);
            (n, true)
        };
        meta.next_chunk += 1;
        meta.heads = heads;
        self.put(key_doc_meta(doc), meta);
        Some(written)
    }

    // ---- mailboxes ----

    pub fn mailbox_meta(&self, mb: &MailboxId) -> Result<Option<MailboxMeta>, StoreError> {
        self.get(&key_mailbox(mb))
    }

    pub fn put_mailbox_meta(&mut self, mb: &MailboxId, m: &MailboxMeta) {
        self.put(key_mailbox(mb), m);
    }

    /// The view tables of one mailbox, for the UID engine.
    pub fn view<'t>(&'t mut self, mb: MailboxId) -> ViewTx<'t, 'a> {
        ViewTx { tx: self, mb }
    }
}

/// [`ViewTables`] over a [`Tx`], for one mailbox.
pub struct ViewTx<'t, 'a> {
    tx: &'t mut Tx<'a>,
    mb: MailboxId,
}

impl ViewTx<'_, '_> {
    /// The cached claim block holding `uid`, read from the store the first time.
    fn claims_block(&mut self, uid: Uid) -> Result<&mut (ClaimsBlock, bool), StoreError> {
        let k = (self.mb, uid.get() / ROWS_PER_BLOCK);
        if !self.tx.claims.contains_key(&k) {
            let block = self.tx.get_block(&key_claims_block(&self.mb, k.1))?;
            self.tx.claims.insert(k, (block, false));
        }
        Ok(self.tx.claims.get_mut(&k).expect("inserted above"))
    }
    /// The cached change-index block holding `modseq`, read from the store the first time.
    fn change_block(&mut self, modseq: u64) -> Result<&mut (ChangeBlock, bool), StoreError> {
        use super::changes::{key_change_block, CHANGES_PER_BLOCK};
        let k = (self.mb, modseq / CHANGES_PER_BLOCK);
        if !self.tx.changes.contains_key(&k) {
            let block = self.tx.get_block(&key_change_block(&self.mb, modseq))?;
            self.tx.changes.insert(k, (block, false));
        }
        Ok(self.tx.changes.get_mut(&k).expect("inserted above"))
    }
    /// The cached message-record block holding `guid`, read from the store the first time.
    fn msg_block(&mut self, guid: &Guid) -> Result<&mut (MsgBlock, bool), StoreError> {
        let k = (self.mb, msg_window(guid));
        if !self.tx.msgs.contains_key(&k) {
            // Blocks reach the transaction's writes only at commit: read the store.
            let (block, read) = msg_blocks::read(self.tx.kv, &key_msg_block(&self.mb, k.1))?;
            self.tx.msgs.insert(k, (block, false));
            self.tx.msgs_read.insert(k, read);
        }
        Ok(self.tx.msgs.get_mut(&k).expect("inserted above"))
    }
    /// The record of a message, through the transaction's block cache (a flag change of
    /// many messages decodes each block once, not once per message).
    pub fn msg_rec(&mut self, guid: &Guid) -> Result<Option<MsgRec>, StoreError> {
        Ok(self.msg_block(guid)?.0.get(guid).cloned())
    }
}

impl ViewTables for ViewTx<'_, '_> {
    type Error = StoreError;

    fn msg(&mut self, guid: &Guid) -> Result<Option<MsgRec>, StoreError> {
        self.msg_rec(guid)
    }
    fn put_msg(&mut self, guid: &Guid, rec: MsgRec) {
        // The engine reads a message's record before it writes it, so the block is cached.
        // Were it not and could it not be read, the transaction must not commit.
        match self.msg_block(guid) {
            Ok((b, written)) => {
                b.insert(*guid, rec);
                *written = true;
            }
            Err(e) => {
                self.tx.failed.get_or_insert(e);
            }
        }
    }
    fn claims_at(&mut self, uid: Uid) -> Result<Vec<(Guid, OpId)>, StoreError> {
        Ok(self
            .claims_block(uid)?
            .0
            .get(&uid)
            .cloned()
            .unwrap_or_default())
    }
    fn put_claims_at(&mut self, uid: Uid, claims: &[(Guid, OpId)]) {
        // The engine reads a UID's claims before it writes them, so the block is cached. Were
        // it not and could it not be read, the transaction must not commit (a fresh block
        // would drop the other UIDs' claims).
        let block = match self.claims_block(uid) {
            Ok(b) => b,
            Err(e) => {
                self.tx.failed.get_or_insert(e);
                return;
            }
        };
        if claims.is_empty() {
            block.0.remove(&uid);
        } else {
            block.0.insert(uid, claims.to_vec());
        }
        block.1 = true;
    }
    fn put_row(&mut self, uid: Uid, row: Option<&ViewRow>) {
        self.tx
            .rows
            .entry((self.mb, uid.get() / ROWS_PER_BLOCK))
            .or_default()
            .insert(uid, row.cloned());
    }
    fn put_change(&mut self, modseq: ModSeq, uid: Uid, change: Option<Change>) {
        // As for claims: the entry cannot be written without its block.
        let (block, written) = match self.change_block(modseq.get()) {
            Ok(b) => b,
            Err(e) => {
                self.tx.failed.get_or_insert(e);
                return;
            }
        };
        let k = (modseq.get(), uid.get());
        match change {
            Some(c) => block.insert(k, super::changes::change_kind(c)),
            None => block.remove(&k),
        };
        *written = true;
    }
}

/// Calls `f` for each visible row of a mailbox in UID order, one row block (64 rows) in
/// memory at a time, until it returns false: listing a 1M-message mailbox never holds it.
/// ([`super::rows_ref::each_row_ref`] with each row made owned.)
pub fn each_row(
    kv: &dyn Kv,
    mb: &MailboxId,
    f: &mut dyn FnMut(Uid, ViewRow) -> bool,
) -> Result<(), StoreError> {
    super::rows_ref::each_row_ref(kv, mb, &mut |u, r| f(u, r.to_row()))
}

/// Reads a mailbox's visible rows in UID order (all in memory: prefer [`each_row`]).
pub fn rows(kv: &dyn Kv, mb: &MailboxId) -> Result<Vec<(Uid, ViewRow)>, StoreError> {
    let mut out = Vec::new();
    each_row(kv, mb, &mut |u, r| {
        out.push((u, r));
        true
    })?;
    Ok(out)
}

/// The visible row at `uid`, reading one row block.
pub fn row(kv: &dyn Kv, mb: &MailboxId, uid: Uid) -> Result<Option<ViewRow>, StoreError> {
    let key = key_row_block(mb, uid.get() / ROWS_PER_BLOCK);
    let Some(v) = kv.get(&key)? else {
        return Ok(None);
    };
    Ok(decode::<Vec<(Uid, ViewRow)>>(&key, &v)?
        .into_iter()
        .find(|(u, _)| *u == uid)
        .map(|(_, r)| r))
}

/// A row of a decoded block, `None` once [`rows_at`] moved it out.
type TakenRow = (Uid, Option<ViewRow>);

/// The visible rows at `uids`, in that order (missing ones left out). Each row block is
/// decoded once per run of UIDs that fall in it, so a sorted list costs one decode per
/// block, not one per UID: decoding a block (64 rows) per UID made `FETCH 1:* (FLAGS)`
/// 64 times slower than the rows it returns.
pub fn rows_at(
    kv: &dyn Kv,
    mb: &MailboxId,
    uids: &[Uid],
) -> Result<Vec<(Uid, ViewRow)>, StoreError> {
    let mut out = Vec::with_capacity(uids.len());
    // Rows are moved out of the decoded block (a UID set names each UID once); a UID
    // named twice is read again.
    let mut block: Option<(u32, Vec<TakenRow>)> = None;
    for &uid in uids {
        let b = uid.get() / ROWS_PER_BLOCK;
        if block.as_ref().is_none_or(|(n, _)| *n != b) {
            let key = key_row_block(mb, b);
            let rows = match kv.get(&key)? {
                Some(v) => decode::<Vec<(Uid, ViewRow)>>(&key, &v)?,
                None => Vec::new(),
            };
            block = Some((b, rows.into_iter().map(|(u, r)| (u, Some(r))).collect()));
        }
        let Some((_, rows)) = &mut block else {
            continue;
        };
        let taken = rows
            .iter_mut()
            .find(|(u, _)| *u == uid)
            .map(|(_, r)| r.take());
        match taken {
            Some(Some(r)) => out.push((uid, r)),
            Some(None) => out.extend(row(kv, mb, uid)?.map(|r| (uid, r))),
            None => {}
        }
    }
    Ok(out)
}

/// The largest visible UID of a mailbox (what `*` means in a UID set), reading one block.
pub fn last_uid(kv: &dyn Kv, mb: &MailboxId) -> Result<Option<Uid>, StoreError> {
    match kv.last(&prefix_rows(mb))? {
        Some((k, v)) => Ok(decode::<Vec<(Uid, ViewRow)>>(&k, &v)?
            .last()
            .map(|(u, _)| *u)),
        None => Ok(None),
    }
}

/// The GUIDs of a mailbox's messages that are not expunged (visible or homeless).
pub fn live_messages(kv: &dyn Kv, mb: &MailboxId) -> Result<Vec<Guid>, StoreError> {
    let mut out = Vec::new();
    msg_blocks::scan(kv, &prefix_msgs(mb), &mut |_, block| {
        out.extend(
            block
                .into_iter()
                .filter(|(_, rec)| !rec.expunged)
                .map(|(g, _)| g),
        );
        true
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BlobId, ModSeq};
    use crate::store::MemKv;

    fn row(i: u32) -> ViewRow {
        ViewRow {
            guid: Guid::mint(),
            blob: BlobId::of(&i.to_be_bytes()),
            size: u64::from(i),
            internal_date: 0,
            flags: Default::default(),
            modseq: ModSeq::new(u64::from(i)).expect("not 0"),
        }
    }

    #[test]
    fn rows_at_answers_as_row_does_for_every_uid() {
        let kv = MemKv::new();
        let mb = MailboxId::derive("a", "INBOX", 1);
        let present = [1u32, 2, 5, 63, 64, 70, 130, 131];
        let mut blocks: BTreeMap<u32, Vec<(Uid, ViewRow)>> = BTreeMap::new();
        for u in present {
            let uid = Uid::new(u).expect("not 0");
            blocks
                .entry(u / ROWS_PER_BLOCK)
                .or_default()
                .push((uid, row(u)));
        }
        let batch = blocks
            .iter()
            .map(|(b, rows)| (key_row_block(&mb, *b), Some(encode(rows))))
            .collect();
        kv.apply(batch).expect("apply");
        let uid = |u: u32| Uid::new(u).expect("not 0");
        // Sorted, unsorted, missing, repeated and past-the-end UIDs.
        for ask in [
            vec![1, 2, 3, 5, 63, 64, 65, 70, 130, 131, 500],
            vec![131, 1, 70, 2, 64],
            vec![5, 5, 64],
            vec![],
        ] {
            let ask: Vec<Uid> = ask.into_iter().map(uid).collect();
            let want: Vec<(Uid, ViewRow)> = ask
                .iter()
                .filter_map(|u| super::row(&kv, &mb, *u).expect("row").map(|r| (*u, r)))
                .collect();
            assert_eq!(rows_at(&kv, &mb, &ask).expect("rows_at"), want, "{ask:?}");
        }
    }

    #[test]
    fn chunks_in_parts_load_back_compact_cleanly_and_whole_chunks_still_load() {
        use automerge::transaction::Transactable;
        let kv = MemKv::new();
        let (doc, mut am, mut meta) = ("seg/a/x", AutoCommit::new(), DocMeta::default());
        let chunk_keys = |kv: &MemKv| {
            let mut n = 0;
            kv.scan(&[b"D", doc.as_bytes(), &[0]].concat(), &mut |_, v| {
                assert!(v.len() <= CHUNK_PART, "a part of {} bytes", v.len());
                n += 1;
                true
            })
            .expect("scan");
            n
        };
        let mut snapshots = 0;
        for i in 0..(2 * COMPACT_AFTER + 10) {
            // Big changes now and then, so snapshots and some chunks span several parts.
            let text = "x".repeat(if i % 7 == 0 { 3 * CHUNK_PART } else { 40 });
            am.put(automerge::ROOT, format!("k{i}"), text).expect("put");
            let mut tx = Tx::new(&kv);
            let (_, whole) = tx.save_doc(doc, &mut am, &mut meta).expect("saved");
            snapshots += usize::from(whole);
            tx.commit().expect("commit");
            let (mut back, m) = Tx::new(&kv).load_doc(doc).expect("load").expect("doc");
            assert_eq!((back.get_heads(), &m), (am.get_heads(), &meta));
            let parts: usize = (m.first_chunk..m.next_chunk)
                .map(|c| {
                    let mut b = Vec::new();
                    Tx::new(&kv).read_chunk(doc, c, &mut b).expect("chunk");
                    b.len().div_ceil(CHUNK_PART).max(1)
                })
                .sum();
            assert_eq!(
                chunk_keys(&kv),
                parts,
                "no part of a compacted chunk is left"
            );
        }
        assert!(snapshots >= 2, "two compactions wrote snapshots");
        // A chunk written whole, as earlier versions did, loads as before.
        let old = "seg/a/old";
        let bytes = am.save_nocompress();
        assert!(bytes.len() > 2 * CHUNK_PART);
        let mut tx = Tx::new(&kv);
        tx.put_raw(key_chunk(old, 0), bytes);
        let m = DocMeta {
            heads: am.get_heads().iter().map(|h| h.0).collect(),
            first_chunk: 0,
            next_chunk: 1,
        };
        tx.put(key_doc_meta(old), &m);
        tx.commit().expect("commit");
        let (mut back, _) = Tx::new(&kv).load_doc(old).expect("load").expect("doc");
        assert_eq!(back.get_heads(), am.get_heads());
    }
}
