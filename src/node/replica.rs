//! The replica: a store, a node identity and a cache of open documents. Every operation
//! gathers its writes in one [`Tx`]; the public operations commit and flush before returning,
//! so a returned `Ok` is durable.

use super::doc_id::{account_doc, parse_doc_id, segment_doc, DocKind};
use super::{identity, NodeError};
use crate::crdt::account::{Account, Listed, MailboxEntry};
use crate::crdt::meta::ChangeMeta;
use crate::crdt::segment::{LocalOp, Segment, SegmentRef};
use crate::crdt::view::{self, MailboxMeta, ViewEvent};
use crate::model::{AccountName, BlobId, MailboxId, MailboxName, NodeId};
use crate::store::tables::{self, DocMeta};
use crate::store::{Kv, SledKv, Tx};
use crate::sync::DocSession;
use automerge::{AutoCommit, ChangeHash};
use libp2p_identity::Keypair;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Tunables of a replica.
#[derive(Clone, Debug)]
pub struct Options {
    /// Largest message accepted, in bytes.
    pub max_message_size: u64,
    /// Messages per segment document before the node opens a new one. automerge 0.12 loads,
    /// snapshots and applies remote changes in time proportional to the whole document, and
    /// a node's open segment is the one every append and every sync touches: with 65,536, a
    /// two-dir sync of 1k new messages on each side took 2.8 s instead of 1.2 s, and appends
    /// were ~15% slower (docs/benchmarks.md).
    pub segment_capacity: u64,
    /// Seconds a node waits before renumbering homeless messages it did not claim.
    pub renumber_grace_secs: i64,
    /// Testing knob, always true in production: apply a remote change to the view only
    /// once it is mailbox-causally deliverable. `false` applies every stored change at
    /// once, out of mailbox-causal order: the exhaustive model check
    /// (`examples/modelcheck`, `--no-causal`) turns it off to show it finds what breaks.
    pub causal_delivery: bool,
    /// Bytes of memory the replica's caches may use together: sled's page cache and the
    /// open documents are both sized from it ([`Options::sled_cache`],
    /// [`Options::doc_cache_bytes`]). What no cache bounds comes on top: sled's page table
    /// (~16 bytes per stored page, ~125 MiB for a 7.8 GB store) and one operation's data.
    pub memory_budget: u64,
    /// The running node's metrics (appends, fsync latency); `None` for the CLI's own
    /// opens, which nobody scrapes.
    pub metrics: Option<Arc<super::metrics::Metrics>>,
    /// The accounts a running node takes from its peers (`--replicate-accounts`).
    pub replicate: super::AccountFilter,
}

/// The default [`Options::memory_budget`]: 256 MiB.
pub const DEFAULT_MEMORY_BUDGET: u64 = 256 * 1024 * 1024;

/// Memory an open document takes per byte of its stored form, to weigh the documents the
/// cache keeps against the budget: eight 16k-message segments (3.8 MB stored each) raised a
/// process's RSS by ~56 MB besides the page cache holding their chunks (~2.5×).
const DOC_MEMORY_PER_STORED_BYTE: u64 = 3;

/// The least weight of an open document (automerge's own structures, a new document).
const MIN_DOC_WEIGHT: u64 = 64 * 1024;

/// Open documents at most, whatever their weight (the cache's order is a list).
const MAX_OPEN_DOCS: usize = 1024;

impl Options {
    /// sled's page cache: a quarter of the budget (64 MiB of the default, the figure the
    /// list and sync benchmarks were tuned with).
    pub fn sled_cache(&self) -> u64 {
        (self.memory_budget / 4).max(4 * 1024 * 1024)
    }

    /// Memory for documents kept open between operations: three eighths of the budget
    /// (96 MiB of the default: eight full 16k-message segments). Documents are weighed by
    /// their stored size; the two most recently used always stay (the account document and
    /// the segment being written).
    pub fn doc_cache_bytes(&self) -> u64 {
        self.memory_budget / 8 * 3
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_message_size: 64 * 1024 * 1024,
            segment_capacity: 16_384,
            renumber_grace_secs: 30,
            causal_delivery: true,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            metrics: None,
            replicate: super::AccountFilter::default(),
        }
    }
}

/// One local change to a segment: its operations and the blobs of the messages it adds.
pub(crate) struct LocalChange<'o> {
    pub seg: SegmentRef,
    pub ops: &'o [LocalOp],
    pub blobs: Vec<BlobId>,
}

/// Every document id with its heads.
pub type DocHeads = Vec<(String, Vec<[u8; 32]>)>;

/// One node's data.
pub struct Replica {
    pub(crate) kv: Arc<dyn Kv>,
    /// The writer id: the automerge actor and mailbox-clock entry of this data dir's
    /// changes. It is the node id until the data dir is copied or restored from a backup;
    /// then it is fresh, so no (actor, sequence number) is ever used twice (docs/design.md).
    pub(crate) node: NodeId,
    /// The node's network identity (its ed25519 public key), which a restore keeps.
    pub(crate) peer: NodeId,
    pub(crate) opts: Options,
    /// Open documents and the metadata of what is persisted of them.
    pub(crate) docs: HashMap<String, (AutoCommit, DocMeta)>,
    /// Open documents, least recently used first: at most [`Options::doc_cache_bytes`] of
    /// them (by weight) stay open between operations, so a node with many segments never
    /// holds them all in memory.
    lru: Vec<String>,
    /// Estimated memory of the open documents loaded from the store (see
    /// [`DOC_MEMORY_PER_STORED_BYTE`]); others weigh [`MIN_DOC_WEIGHT`].
    weights: HashMap<String, u64>,
    /// Live sync sessions by (peer, document). Only their persistent part (the shared
    /// heads) is stored; the in-flight part must live as long as the connection.
    sessions: HashMap<(NodeId, String), DocSession>,
    /// Set when a peer sent a change this replica's own writer made that it does not have:
    /// the data dir went back in time, and must write under a new writer from now on.
    pub(crate) rewound: bool,
    /// Set while the view is rebuilt from the documents (our own changes come back then).
    pub(crate) replaying: bool,
    /// The pending table indexed by what each change waits for.
    pub(crate) pending: super::pending::PendingIndex,
    /// View events of the running transaction, and of committed ones not yet taken.
    staged: Vec<MailboxEvent>,
    events: Vec<MailboxEvent>,
    /// Whether view events are kept (a running node publishes them; the offline CLI does
    /// not need them).
    keep_events: bool,
    /// Documents saved since [`Replica::take_touched_heads`] (kept with the events: only a
    /// running node asks).
    touched: std::collections::BTreeSet<String>,
}

/// View events kept for [`Replica::take_events`] at most (older ones are dropped: a reader
/// that falls this far behind rereads the mailbox).
const MAX_EVENTS: usize = 100_000;

impl Replica {
    /// Creates a data dir and its node identity.
    pub fn init(dir: &Path) -> Result<NodeId, NodeError> {
        if dir.join("db").exists() {
            return Err(NodeError::AlreadyInitialized(dir.to_path_buf()));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| NodeError::Io(format!("{}: {e}", dir.display())))?;
        let kv = SledKv::open(dir)?;
        let key = identity::generate(None);
        kv.apply(vec![(
            tables::KEY_IDENTITY.to_vec(),
            Some(identity::encode(&key)),
        )])?;
        kv.flush()?;
        Ok(identity::node_id(&key))
    }

    /// Opens an existing data dir.
    pub fn open(dir: &Path, opts: Options) -> Result<Replica, NodeError> {
        if !dir.join("db").exists() {
            return Err(NodeError::NoDataDir(dir.to_path_buf()));
        }
        let kv = SledKv::open_with_cache(dir, opts.sled_cache())?;
        let place = super::writer::DirPlace::of(&dir.join("db"))?;
        let kv: Arc<dyn Kv> = match &opts.metrics {
            Some(m) => Arc::new(super::timed_kv::TimedKv {
                inner: Arc::new(kv),
                metrics: m.clone(),
            }),
            None => Arc::new(kv),
        };
        let mut r = Replica::with_kv(kv, None, opts)?;
        r.node = super::writer::writer_for(r.kv.as_ref(), &r.peer, Some(place))?;
        Ok(r)
    }

    /// Opens a replica on any store; creates the identity (from `seed`, if given) when the
    /// store has none. Used by tests and simulations with the in-memory store.
    pub fn with_kv(
        kv: Arc<dyn Kv>,
        seed: Option<[u8; 32]>,
        opts: Options,
    ) -> Result<Replica, NodeError> {
        let key: Keypair = match kv.get(tables::KEY_IDENTITY)? {
            Some(b) => identity::decode(&b)?,
            None => {
                let k = identity::generate(seed);
                kv.apply(vec![(
                    tables::KEY_IDENTITY.to_vec(),
                    Some(identity::encode(&k)),
                )])?;
                kv.flush()?;
                k
            }
        };
        let peer = identity::node_id(&key);
        let node = super::writer::writer_for(kv.as_ref(), &peer, None)?;
        let mut r = Replica {
            node,
            peer,
            kv,
            opts,
            docs: HashMap::new(),
            lru: Vec::new(),
            weights: HashMap::new(),
            sessions: HashMap::new(),
            rewound: false,
            replaying: false,
            pending: Default::default(),
            staged: Vec::new(),
            events: Vec::new(),
            keep_events: false,
            touched: Default::default(),
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        r.upgrade(now)?;
        Ok(r)
    }

    /// The id this replica writes and syncs as (see [`Replica::new_writer`]).
    pub fn node_id(&self) -> NodeId {
        self.node
    }

    /// The node's network identity: its ed25519 public key, kept across restores.
    pub fn peer_id(&self) -> NodeId {
        self.peer
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    pub fn kv(&self) -> &dyn Kv {
        self.kv.as_ref()
    }

    /// Runs `f` on a fresh transaction and commits and flushes what it wrote. On error
    /// nothing is written, and open documents (which may hold the failed operation's
    /// uncommitted changes) are dropped from the cache.
    pub(crate) fn write<T>(
        &mut self,
        f: impl FnOnce(&mut Self, &mut Tx<'_>) -> Result<T, NodeError>,
    ) -> Result<T, NodeError> {
        self.write_with(true, f)
    }

    /// [`Replica::write`], flushing only if `flush` (the caller then flushes before it
    /// acknowledges anything).
    pub(crate) fn write_with<T>(
        &mut self,
        flush: bool,
        f: impl FnOnce(&mut Self, &mut Tx<'_>) -> Result<T, NodeError>,
    ) -> Result<T, NodeError> {
        // The transaction borrows the store, the closure borrows the replica: give the
        // transaction its own handle on the store.
        let kv = Arc::clone(&self.kv);
        let mut tx = Tx::new(kv.as_ref());
        let done = f(self, &mut tx).and_then(|v| {
            tx.commit()?;
            if flush {
                self.kv.flush()?;
            }
            Ok(v)
        });
        match done {
            Ok(v) => {
                self.evict_docs();
                self.events.append(&mut self.staged);
                if self.events.len() > MAX_EVENTS {
                    let drop = self.events.len() - MAX_EVENTS;
                    self.events.drain(..drop);
                }
                if std::mem::take(&mut self.rewound) {
                    self.new_writer()?;
                }
                Ok(v)
            }
            Err(e) => {
                // Open documents may hold the failed operation's changes, and the index of
                // waiting changes may name some it did not commit: both are rebuilt from
                // the store on demand.
                self.close_docs();
                self.pending.reset();
                self.staged.clear();
                Err(e)
            }
        }
    }

    /// Loads a document into the cache (or creates an empty one with `create`).
    pub(crate) fn doc<'s>(
        &'s mut self,
        tx: &Tx<'_>,
        id: &str,
        create: bool,
    ) -> Result<Option<&'s mut (AutoCommit, DocMeta)>, NodeError> {
        if let Some(i) = self.lru.iter().position(|d| d == id) {
            let d = self.lru.remove(i);
            self.lru.push(d);
        }
        if !self.docs.contains_key(id) {
            let t = std::time::Instant::now();
            match tx.load_doc_sized(id)? {
                Some((mut am, meta, bytes)) => {
                    tracing::debug!(
                        doc = id,
                        chunks = meta.next_chunk - meta.first_chunk,
                        bytes,
                        ms = t.elapsed().as_millis() as u64,
                        open = self.lru.len(),
                        "loaded a document"
                    );
                    self.weights
                        .insert(id.to_string(), bytes as u64 * DOC_MEMORY_PER_STORED_BYTE);
                    am.set_actor(crate::crdt::segment::actor(&self.node));
                    self.docs.insert(id.to_string(), (am, meta));
                }
                None if create => {
                    let am = AutoCommit::new().with_actor(crate::crdt::segment::actor(&self.node));
                    self.docs.insert(id.to_string(), (am, DocMeta::default()));
                }
                None => return Ok(None),
            }
            self.lru.push(id.to_string());
        }
        Ok(self.docs.get_mut(id))
    }

    /// A document if it is open (never loads one).
    pub(crate) fn open_doc(&mut self, id: &str) -> Option<&mut AutoCommit> {
        self.docs.get_mut(id).map(|(am, _)| am)
    }

    /// Closes the least recently used documents until the open ones fit the budget.
    fn evict_docs(&mut self) {
        let budget = self.opts.doc_cache_bytes();
        let weights = &self.weights;
        let weight = |d: &String| weights.get(d).copied().unwrap_or(0).max(MIN_DOC_WEIGHT);
        let mut total: u64 = self.lru.iter().map(weight).sum();
        let mut evict = 0;
        while self.lru.len() - evict > 2
            && (total > budget || self.lru.len() - evict > MAX_OPEN_DOCS)
        {
            total -= weight(&self.lru[evict]);
            evict += 1;
        }
        for old in self.lru.drain(..evict) {
            self.docs.remove(&old);
            self.weights.remove(&old);
        }
    }

    /// Persists the changes of a cached document into `tx`.
    pub(crate) fn save(&mut self, tx: &mut Tx<'_>, id: &str) {
        if let Some((am, meta)) = self.docs.get_mut(id) {
            // The cache weighs a document by what it has stored: a document created empty
            // here and filled by a sync (a new node's segments) would otherwise weigh
            // nothing, and every one of them stayed open (160 MB of a 1M-message sync).
            if let Some((n, whole)) = tx.save_doc(id, am, meta) {
                let n = n as u64 * DOC_MEMORY_PER_STORED_BYTE;
                let w = self.weights.entry(id.to_string()).or_default();
                *w = if whole { n } else { *w + n };
            }
            if self.keep_events {
                self.touched.insert(id.to_string());
            }
        }
    }

    /// Every document's heads, forgetting the documents saved so far (the next
    /// [`Replica::take_touched_heads`] names only those saved after this).
    pub fn all_heads_from_now(&mut self) -> Result<DocHeads, NodeError> {
        self.touched.clear();
        self.doc_heads()
    }

    /// The heads of the documents saved since the last call (a running node announces
    /// them without rereading every document's heads).
    pub fn take_touched_heads(&mut self) -> Result<DocHeads, NodeError> {
        let mut out = Vec::new();
        for doc in std::mem::take(&mut self.touched) {
            if let Some(v) = self.kv.get(&tables::key_doc_meta(&doc))? {
                let m: DocMeta = tables::decode(&tables::key_doc_meta(&doc), &v)?;
                out.push((doc, m.heads));
            }
        }
        Ok(out)
    }

    /// Drops cached documents to bound memory (they are reloaded on demand).
    pub fn close_docs(&mut self) {
        self.docs.clear();
        self.lru.clear();
        self.weights.clear();
    }

    // ---- accounts and mailboxes ----

    /// The account document, if the account exists.
    pub(crate) fn account(
        &mut self,
        tx: &Tx<'_>,
        a: &AccountName,
    ) -> Result<Option<Account>, NodeError> {
        let id = account_doc(a);
        let node = self.node;
        Ok(self
            .doc(tx, &id, false)?
            .map(|(am, _)| Account::from_doc(am.fork(), &node)))
    }

    pub(crate) fn account_or_err(
        &mut self,
        tx: &Tx<'_>,
        a: &AccountName,
    ) -> Result<Account, NodeError> {
        self.account(tx, a)?
            .ok_or_else(|| NodeError::UnknownAccount(a.to_string()))
    }

    /// Writes back an account document changed through [`Replica::account`].
    pub(crate) fn put_account(&mut self, tx: &mut Tx<'_>, a: &AccountName, acc: Account) {
        let id = account_doc(a);
        let meta = self.docs.remove(&id).map(|(_, m)| m).unwrap_or_default();
        let mut am = acc.doc;
        am.set_actor(crate::crdt::segment::actor(&self.node));
        self.docs.insert(id.clone(), (am, meta));
        if !self.lru.contains(&id) {
            self.lru.push(id.clone());
        }
        self.save(tx, &id);
    }

    /// The mailboxes of an account as listed.
    pub(crate) fn listed(&mut self, tx: &Tx<'_>, acc: &Account) -> Result<Vec<Listed>, NodeError> {
        let mut exists = HashMap::new();
        for e in acc.entries() {
            let n = tx.mailbox_meta(&e.id)?.map(|m| m.exists).unwrap_or(0);
            exists.insert(e.id, n);
        }
        Ok(acc.listed(|id| exists.get(id).copied().unwrap_or(0) > 0))
    }

    /// Finds a listed mailbox by name.
    pub(crate) fn find(
        &mut self,
        tx: &Tx<'_>,
        a: &AccountName,
        name: &MailboxName,
    ) -> Result<MailboxEntry, NodeError> {
        let acc = self.account_or_err(tx, a)?;
        self.listed(tx, &acc)?
            .into_iter()
            .find(|l| &l.name == name)
            .map(|l| l.entry)
            .ok_or_else(|| NodeError::UnknownMailbox {
                account: a.to_string(),
                mailbox: name.to_string(),
            })
    }

    /// Every account of this replica.
    pub fn accounts(&self) -> Result<Vec<AccountName>, NodeError> {
        let mut out = Vec::new();
        self.kv.scan(&tables::key_doc_meta("acct/"), &mut |k, _| {
            if let Ok(a) = AccountName::try_from(String::from_utf8_lossy(&k[6..]).as_ref()) {
                out.push(a);
            }
            true
        })?;
        Ok(out)
    }

    /// Every document and its heads.
    pub fn doc_heads(&self) -> Result<DocHeads, NodeError> {
        let mut out = Vec::new();
        let mut err = None;
        self.kv.scan(b"H", &mut |k, v| {
            match tables::decode::<DocMeta>(k, v) {
                Ok(m) => out.push((String::from_utf8_lossy(&k[1..]).into_owned(), m.heads)),
                Err(e) => {
                    err = Some(e);
                    return false;
                }
            }
            true
        })?;
        match err {
            Some(e) => Err(e.into()),
            None => Ok(out),
        }
    }

    // ---- local changes to a mailbox ----

    /// Makes one change to a segment of a mailbox, carrying the mailbox causal context, and
    /// applies its facts to the view.
    pub(crate) fn local_change(
        &mut self,
        tx: &mut Tx<'_>,
        a: &AccountName,
        mb: &MailboxId,
        meta: &mut MailboxMeta,
        change: LocalChange<'_>,
        now: i64,
    ) -> Result<Vec<ViewEvent>, NodeError> {
        let LocalChange { seg, ops, blobs } = change;
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let seq = meta.next_seq(&self.node);
        let mut clock = meta.applied.clone();
        clock.insert(self.node, seq);
        let cm = ChangeMeta {
            node: self.node,
            clock,
            lamport: meta.lamport + 1,
            blobs,
        };
        let id = segment_doc(a, mb, &seg);
        let node = self.node;
        let (am, _) = self.doc(tx, &id, true)?.expect("created");
        let mut s = Segment::from_doc(std::mem::take(am), &node, seg);
        let facts = s.commit(ops, &cm);
        *am = s.doc;
        let facts = facts?;
        self.save(tx, &id);
        meta.applied.insert(self.node, seq);
        meta.lamport = cm.lamport;
        let events = view::apply_facts(&mut tx.view(*mb), meta, &facts, now)?;
        if self.keep_events {
            self.stage_events(mb, events.clone(), false);
        }
        Ok(events)
    }

    /// This node's open segment of a mailbox with room for at least one message.
    pub(crate) fn open_segment(&self, meta: &mut MailboxMeta) -> SegmentRef {
        let (gen, count) = meta.open_segment.unwrap_or((0, 0));
        let gen = if count >= self.opts.segment_capacity {
            meta.open_segment = Some((gen + 1, 0));
            gen + 1
        } else {
            meta.open_segment = Some((gen, count));
            gen
        };
        SegmentRef {
            node: self.node,
            gen,
        }
    }

    // ---- remote changes ----

    /// Stores a blob received from a peer (checked against its id).
    pub fn put_blob(&mut self, id: &BlobId, bytes: &[u8]) -> Result<bool, NodeError> {
        Ok(self.put_blobs(&[(*id, bytes)])?[0])
    }

    /// Stores blobs received from a peer (each checked against its id) with one pack write
    /// and one index batch ([`crate::store::Kv::blob_put_many`]); says which matched their
    /// id and were stored. One by one, each blob was its own pack write and index insert.
    pub fn put_blobs(&mut self, blobs: &[(BlobId, &[u8])]) -> Result<Vec<bool>, NodeError> {
        let ok: Vec<bool> = blobs.iter().map(|(id, b)| BlobId::of(b) == *id).collect();
        let good: Vec<(BlobId, &[u8])> = blobs
            .iter()
            .zip(&ok)
            .filter(|(_, ok)| **ok)
            .map(|(b, _)| *b)
            .collect();
        self.store_blobs(&good)?;
        Ok(ok)
    }

    /// Stores blobs whose ids are their hashes (one pack write, one index batch) and tells
    /// the pending changes they arrived.
    pub(crate) fn store_blobs(&mut self, blobs: &[(BlobId, &[u8])]) -> Result<(), NodeError> {
        let raw: Vec<([u8; 32], &[u8])> = blobs.iter().map(|(id, b)| (id.0, *b)).collect();
        self.kv.blob_put_many(&raw)?;
        self.blobs_stored(blobs.iter().map(|(id, _)| id));
        Ok(())
    }

    /// Tells the pending changes that `blobs` were stored.
    pub(crate) fn blobs_stored<'i>(&mut self, ids: impl IntoIterator<Item = &'i BlobId>) {
        for id in ids {
            self.pending.blob_stored(id);
        }
    }

    pub fn blob(&self, id: &BlobId) -> Result<Option<Vec<u8>>, NodeError> {
        Ok(self.kv.blob_get(id.as_bytes())?)
    }

    /// The live session with `peer` about `doc`, restored from its persisted part if new.
    pub(crate) fn session(
        &mut self,
        tx: &Tx<'_>,
        peer: &NodeId,
        doc: &str,
    ) -> Result<DocSession, NodeError> {
        if let Some(s) = self.sessions.remove(&(*peer, doc.to_string())) {
            return Ok(s);
        }
        Ok(match tx.get_raw(&tables::key_sync_state(peer, doc))? {
            Some(b) => DocSession::decode(&b)?,
            None => DocSession::new(),
        })
    }

    pub(crate) fn keep_session(
        &mut self,
        tx: &mut Tx<'_>,
        peer: &NodeId,
        doc: &str,
        s: DocSession,
    ) {
        tx.put_raw(tables::key_sync_state(peer, doc), s.encode());
        self.sessions.insert((*peer, doc.to_string()), s);
    }

    /// Keeps a session live without persisting it (it did not change).
    pub(crate) fn cache_session(&mut self, peer: &NodeId, doc: &str, s: DocSession) {
        self.sessions.insert((*peer, doc.to_string()), s);
    }

    /// Ends every live sync session.
    pub(crate) fn end_all_sessions(&mut self) {
        self.sessions.clear();
    }

    /// Ends every live session with `peer` (the connection closed).
    pub fn end_sessions(&mut self, peer: &NodeId) {
        self.sessions.retain(|(p, _), _| p != peer);
    }

    /// The next sync message for `peer` about document `doc`, if any.
    pub fn sync_generate(
        &mut self,
        peer: &NodeId,
        doc: &str,
    ) -> Result<Option<Vec<u8>>, NodeError> {
        Ok(self.generate_message(peer, doc, false)?.map(|(msg, _)| msg))
    }

    /// Applies a sync message from `peer` about document `doc`. Changes it brings are kept
    /// in the document at once, and reach the view once causally deliverable and their blobs
    /// are here. Returns the blobs the new changes lack.
    pub fn sync_receive(
        &mut self,
        peer: &NodeId,
        doc: &str,
        msg: &[u8],
        now: i64,
    ) -> Result<Vec<BlobId>, NodeError> {
        self.ensure_pending()?;
        self.write(|r, tx| r.receive_in(tx, peer, doc, msg, &[], now))
            .map(|got| got.map(|g| g.missing).unwrap_or_default())
    }

    /// Applies a sync message in `tx`; `blobs` came with it (see
    /// [`Replica::sync_generate_attaching`]): those the new changes lack are stored.
    /// `None`: it brought no change.
    pub(crate) fn receive_in(
        &mut self,
        tx: &mut Tx<'_>,
        peer: &NodeId,
        doc: &str,
        msg: &[u8],
        blobs: &[(BlobId, Vec<u8>)],
        now: i64,
    ) -> Result<Option<Got>, NodeError> {
        let kind = parse_doc_id(doc)
            .ok_or_else(|| NodeError::Io(format!("peer sent a bad document id {doc:?}")))?;
        let mut session = self.session(tx, peer, doc)?;
        let (am, _) = self.doc(tx, doc, true)?.expect("created");
        let before = am.get_heads();
        let received = session.receive_caught_up(am, msg);
        let new: Vec<ChangeHash> = am.get_changes(&before).iter().map(|c| c.hash()).collect();
        if new.is_empty() {
            // The persisted part of a session only saves work on the next connection, and
            // heads shared earlier are still shared: a message that brought nothing does
            // not write it (the next one that brings changes does).
            self.cache_session(peer, doc, session);
        } else {
            self.keep_session(tx, peer, doc, session);
        }
        let caught_up = received?;
        if new.is_empty() {
            // Most messages of a live cluster only say what the peer has (the answer to
            // a pushed change): the document is as it was, so there is nothing to save,
            // announce or deliver, and nothing the caller must make durable.
            return Ok(None);
        }
        self.save(tx, doc);
        let DocKind::Segment(mb, _) = kind else {
            return Ok(Some(Got {
                missing: Vec::new(),
                caught_up,
                attached: (0, 0),
            }));
        };
        let missing = self.receive_pending(tx, &mb, doc, &new, now)?;
        let (missing, attached) = self.take_attached(tx, &mb, missing, blobs, now)?;
        Ok(Some(Got {
            missing,
            caught_up,
            attached,
        }))
    }

    /// Queues view events of mailbox `mb` made by the running transaction (`remote`: by a
    /// peer's change); they are published once it commits.
    pub(crate) fn stage_events(&mut self, mb: &MailboxId, events: Vec<ViewEvent>, remote: bool) {
        if !self.keep_events {
            return;
        }
        self.staged
            .extend(events.into_iter().map(|event| MailboxEvent {
                mailbox: *mb,
                event,
                remote,
            }));
    }

    /// Keeps view events for [`Replica::take_events`] from now on (or stops).
    pub fn keep_events(&mut self, on: bool) {
        self.keep_events = on;
        if !on {
            self.events.clear();
        }
    }

    /// The view events committed since the last call, oldest first.
    pub fn take_events(&mut self) -> Vec<MailboxEvent> {
        std::mem::take(&mut self.events)
    }

    /// Changes waiting for delivery and distinct blobs they lack (`None` until the index of
    /// waiting changes is built, at the first delivery).
    pub fn pending_counts(&self) -> Option<(usize, usize)> {
        self.pending.counts()
    }
}

/// What a sync message that brought changes did.
pub(crate) struct Got {
    /// The blobs the new changes lack.
    pub missing: Vec<BlobId>,
    /// The document now has the sender's heads (see [`DocSession::receive_caught_up`]).
    pub caught_up: bool,
    /// Blobs and bytes stored from those that came with the message.
    pub attached: (u64, u64),
}

/// A change to what a node shows in one mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailboxEvent {
    pub mailbox: MailboxId,
    pub event: ViewEvent,
    /// Made by a change received from a peer (false: a local write).
    pub remote: bool,
}
