//! The real kernel under the model: replicas on in-memory stores, frozen copies of those
//! stores, and the path-independent labels the model gives to messages and changes.
//!
//! A state of the model is a description (labels only); the real stores that go with it are
//! carried beside it ([`Mat`]) and never hashed. Every action re-opens the replicas it
//! touches from their frozen stores, runs the real operation, and freezes the result.

use automerge::{AutoCommit, Change, ReadDoc};
use dovetail::crdt::meta::ChangeMeta;
use dovetail::crdt::segment::{facts_of_change, Fact, SegmentRef};
use dovetail::crdt::view::MailboxMeta;
use dovetail::model::{AccountName, BlobId, Guid, MailboxId, NodeId};
use dovetail::node::{Options, Replica};
use dovetail::store::{tables, DocMeta, Kv, MemKv, Tx};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;

/// The clock every operation runs at. Time never passes in the model: the renumbering
/// grace period is a nondeterministic choice (renumber with a grace of 0 or of forever).
pub const NOW: i64 = 1_000;

/// A label: a message (`A1` = node A's first append) or a whole change, as text.
pub type Lbl = Arc<str>;

pub fn account() -> AccountName {
    AccountName::try_from("alice").expect("valid account")
}

/// The replica options of every node of the model.
pub fn options(causal: bool, segment_capacity: u64) -> Options {
    Options {
        segment_capacity,
        causal_delivery: causal,
        ..Options::default()
    }
}

/// Node `i`'s letter in traces and labels.
pub fn letter(i: usize) -> char {
    (b'A' + i as u8) as char
}

/// The body of the message labelled `m`: distinct per message, so is its blob.
pub fn body(m: &str) -> Vec<u8> {
    format!("From: m@example.org\r\nSubject: {m}\r\n\r\n{m}\r\n").into_bytes()
}

/// One node's store, frozen: its key-value map and its blobs. Entries are shared with the
/// snapshot the store was opened from when unchanged (a step rewrites a few entries of a
/// store; memory, not time, is what limits the larger bounds).
#[derive(Default)]
pub struct Snap {
    main: BTreeMap<Arc<[u8]>, Arc<[u8]>>,
    blobs: BTreeMap<[u8; 32], Arc<[u8]>>,
    /// SHA-256 of every key, value and blob: the store's identity for the step cache.
    pub hash: [u8; 32],
    /// Bytes this snapshot does not share with the one it came from.
    pub fresh: usize,
}

impl Snap {
    /// Freezes a store, sharing what is unchanged with `prev`. `bodies` are all the blobs
    /// that may exist in the model.
    pub fn of(
        kv: &MemKv,
        bodies: &BTreeMap<[u8; 32], Vec<u8>>,
        prev: Option<&Snap>,
    ) -> Result<Snap, String> {
        let mut main = BTreeMap::new();
        let mut fresh = 0;
        kv.scan(b"", &mut |k, v| {
            let old = prev.and_then(|p| p.main.get_key_value(k));
            let entry = match old {
                Some((ok, ov)) if **ov == *v => (Arc::clone(ok), Arc::clone(ov)),
                Some((ok, _)) => {
                    fresh += v.len();
                    (Arc::clone(ok), Arc::from(v))
                }
                None => {
                    fresh += k.len() + v.len();
                    (Arc::from(k), Arc::from(v))
                }
            };
            main.insert(entry.0, entry.1);
            true
        })
        .map_err(|e| e.to_string())?;
        let mut blobs = BTreeMap::new();
        for (id, b) in bodies {
            if kv.blob_has(id).map_err(|e| e.to_string())? {
                let b = match prev.and_then(|p| p.blobs.get(id)) {
                    Some(old) => Arc::clone(old),
                    None => Arc::from(b.as_slice()),
                };
                blobs.insert(*id, b);
            }
        }
        let mut h = Sha256::new();
        for (k, v) in &main {
            h.update((k.len() as u64).to_le_bytes());
            h.update(k);
            h.update((v.len() as u64).to_le_bytes());
            h.update(v);
        }
        h.update(b"blobs");
        for id in blobs.keys() {
            h.update(id);
        }
        Ok(Snap {
            main,
            blobs,
            hash: h.finalize().into(),
            fresh,
        })
    }

    /// A fresh store holding this snapshot, and the replica opened on it (a restart).
    pub fn open(&self, opts: &Options) -> Result<(MemKv, Replica), String> {
        let kv = MemKv::new();
        let batch = self
            .main
            .iter()
            .map(|(k, v)| (k.to_vec(), Some(v.to_vec())))
            .collect();
        kv.apply(batch).map_err(|e| e.to_string())?;
        for (id, b) in &self.blobs {
            kv.blob_put(id, b).map_err(|e| e.to_string())?;
        }
        kv.flush().map_err(|e| e.to_string())?;
        let r = Replica::with_kv(Arc::new(kv.clone()), None, opts.clone())
            .map_err(|e| format!("reopening a replica: {e}"))?;
        Ok((kv, r))
    }
}

/// A sync message in flight: the sender's document as it was when sent, and the blobs of
/// its messages (blobs travel with the changes that need them).
pub struct Payload {
    pub doc: Vec<u8>,
    pub blobs: Vec<(BlobId, Vec<u8>)>,
    /// SHA-256 of the document and the blob ids (a blob id is its content's hash).
    pub hash: [u8; 32],
}

impl Payload {
    pub fn new(doc: Vec<u8>, blobs: Vec<(BlobId, Vec<u8>)>) -> Payload {
        let ids: Vec<&[u8]> = blobs.iter().map(|(id, _)| id.0.as_slice()).collect();
        let mut parts: Vec<&[u8]> = vec![&doc];
        parts.extend(ids);
        let hash = crate::memo::digest(&parts);
        Payload { doc, blobs, hash }
    }
}

/// What a change is, without GUIDs, hashes or node keys: the same text on every path that
/// makes the same change, so it can be a label.
#[derive(Clone, Debug)]
pub struct ChangeInfo {
    pub label: Lbl,
    /// The author (node index).
    pub author: usize,
    /// The mailbox, for segment changes; `None` for the account document.
    pub mailbox: Option<String>,
    /// The author's sequence number in the mailbox (or in the account document).
    pub seq: u64,
    pub facts: Vec<AFact>,
    /// Touches the raced name (a create or delete of it, or an append to a mailbox of
    /// it): set by the model, which knows what operation made the change.
    pub name_op: bool,
    /// The name operations its author had stored when it made this change.
    pub knew: BTreeSet<Lbl>,
}

/// A fact of a change, with messages as labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AFact {
    Add(Lbl),
    Claim(Lbl, u32),
    Flag {
        msg: Lbl,
        flag: String,
        tag: String,
        present: bool,
    },
    Expunge(Lbl),
}

/// Everything that maps real ids (GUIDs, change hashes, node keys) to labels along one
/// path. Cloned per state (cheap: small maps behind `Arc`s).
#[derive(Clone, Default)]
pub struct Names {
    pub nodes: Vec<NodeId>,
    pub guids: Arc<BTreeMap<Guid, Lbl>>,
    pub changes: Arc<BTreeMap<[u8; 32], Arc<ChangeInfo>>>,
    pub inbox: String,
}

impl Names {
    pub fn node_index(&self, n: &NodeId) -> Option<usize> {
        self.nodes.iter().position(|x| x == n)
    }

    /// A short, stable label of a mailbox id.
    pub fn mailbox(&self, id: &str) -> String {
        if id == self.inbox {
            "INBOX".into()
        } else {
            format!("mb{}", &id[..4])
        }
    }

    /// A short, stable label of a document id.
    pub fn doc(&self, doc: &str) -> String {
        let p: Vec<&str> = doc.split('/').collect();
        match p.as_slice() {
            ["acct", _] => "acct".into(),
            ["seg", _, mb, node, gen] => {
                let owner = NodeId::try_from(*node)
                    .ok()
                    .and_then(|n| self.node_index(&n))
                    .map_or('?', letter);
                format!("{}/{owner}{gen}", self.mailbox(mb))
            }
            _ => doc.to_string(),
        }
    }

    /// Labels a change, from its content alone.
    pub fn label(&self, change: &Change, doc: &str) -> Result<ChangeInfo, String> {
        let author = self
            .nodes
            .iter()
            .position(|n| automerge::ActorId::from(n.as_bytes().as_slice()) == *change.actor_id())
            .ok_or("a change by an unknown actor")?;
        let p: Vec<&str> = doc.split('/').collect();
        let mut text = String::new();
        if let ["seg", _, mb, node, gen] = p.as_slice() {
            let meta =
                ChangeMeta::decode(change.message().unwrap_or("")).map_err(|e| e.to_string())?;
            let home = SegmentRef {
                node: NodeId::try_from(*node).map_err(|e| e.to_string())?,
                gen: gen.parse().map_err(|_| "bad generation")?,
            };
            let facts = facts_of_change(change, &meta, home).map_err(|e| e.to_string())?;
            let clock: Vec<String> = self
                .nodes
                .iter()
                .map(|n| meta.clock.get(n).copied().unwrap_or(0).to_string())
                .collect();
            let _ = write!(
                text,
                "{}#{} in {} L{} clock {}:",
                letter(author),
                meta.seq(),
                self.doc(doc),
                meta.lamport,
                clock.join(".")
            );
            let mut afacts = Vec::new();
            for f in facts {
                let m = |g: &Guid| -> Result<Lbl, String> {
                    self.guids
                        .get(g)
                        .cloned()
                        .ok_or_else(|| format!("a fact on an unknown GUID {g}"))
                };
                let af = match &f {
                    Fact::Message { guid, .. } => AFact::Add(m(guid)?),
                    Fact::Claim { guid, uid, .. } => AFact::Claim(m(guid)?, uid.get()),
                    Fact::Flag {
                        guid,
                        flag,
                        tag,
                        present,
                    } => AFact::Flag {
                        msg: m(guid)?,
                        flag: flag.as_str().to_string(),
                        tag: self.tag(tag),
                        present: *present,
                    },
                    Fact::Expunge { guid } => AFact::Expunge(m(guid)?),
                };
                let _ = match &af {
                    AFact::Add(g) => write!(text, " add {g}"),
                    AFact::Claim(g, u) => write!(text, " claim {g}@{u}"),
                    AFact::Flag {
                        msg,
                        flag,
                        tag,
                        present,
                    } => write!(
                        text,
                        " {}{flag}({msg} tag {tag})",
                        if *present { "+" } else { "-" }
                    ),
                    AFact::Expunge(g) => write!(text, " expunge {g}"),
                };
                afacts.push(af);
            }
            return Ok(ChangeInfo {
                label: text.into(),
                author,
                mailbox: Some(self.mailbox(mb)),
                seq: meta.seq(),
                facts: afacts,
                name_op: false,
                knew: BTreeSet::new(),
            });
        }
        // The account document: its operations, with mailbox ids shortened.
        let _ = write!(text, "{}#{} in acct:", letter(author), change.seq());
        for op in change.decode().operations {
            let key = format!("{:?}", op.key);
            let key = key.trim_start_matches("Map(\"").trim_end_matches("\")");
            let key = self.shorten(key);
            let _ = match &op.action {
                automerge::legacy::OpType::Put(v) => write!(text, " {key}={v}"),
                automerge::legacy::OpType::Delete => write!(text, " -{key}"),
                other => write!(text, " {key}:{other:?}"),
            };
        }
        Ok(ChangeInfo {
            label: text.into(),
            author,
            mailbox: None,
            seq: change.seq(),
            facts: Vec::new(),
            name_op: false,
            knew: BTreeSet::new(),
        })
    }

    /// A flag tag `<lamport>.<writer hex>` as `<lamport>.<letter>`.
    fn tag(&self, tag: &str) -> String {
        match tag.split_once('.') {
            Some((l, w)) => {
                let who = self
                    .nodes
                    .iter()
                    .position(|n| n.to_hex().starts_with(w))
                    .map_or('?', letter);
                format!("{l}{who}")
            }
            None => tag.to_string(),
        }
    }

    /// Replaces 32-hex mailbox ids and 64-hex node ids in account keys by short labels.
    fn shorten(&self, key: &str) -> String {
        key.split('/')
            .map(|p| {
                if p.len() == 32 && p.bytes().all(|b| b.is_ascii_hexdigit()) {
                    self.mailbox(p)
                } else if let Some(i) = NodeId::try_from(p).ok().and_then(|n| self.node_index(&n)) {
                    letter(i).to_string()
                } else {
                    p.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// Every document's heads in a store.
pub type Heads = BTreeMap<String, Vec<[u8; 32]>>;

/// The heads of every document of a store, and every change of the documents whose heads
/// are not those in `known` (loading an automerge document is most of a step's cost).
pub fn changed_docs(kv: &MemKv, known: &Heads) -> Result<(Heads, Vec<(String, Change)>), String> {
    let mut heads = Heads::new();
    let mut err = None;
    kv.scan(b"H", &mut |k, v| {
        match tables::decode::<DocMeta>(k, v) {
            Ok(m) => {
                heads.insert(String::from_utf8_lossy(&k[1..]).into_owned(), m.heads);
            }
            Err(e) => err = Some(e.to_string()),
        }
        true
    })
    .map_err(|e| e.to_string())?;
    if let Some(e) = err {
        return Err(e);
    }
    let tx = Tx::new(kv);
    let mut out = Vec::new();
    for (d, h) in &heads {
        if known.get(d) == Some(h) {
            continue;
        }
        let Some((mut am, _)) = tx.load_doc(d).map_err(|e| e.to_string())? else {
            continue;
        };
        for c in am.get_changes(&[]) {
            out.push((d.clone(), c.clone()));
        }
    }
    Ok((heads, out))
}

/// A document of a store, saved whole (to send it), if the store has it.
pub fn save_doc(kv: &MemKv, doc: &str) -> Result<Option<Vec<u8>>, String> {
    let tx = Tx::new(kv);
    Ok(tx
        .load_doc(doc)
        .map_err(|e| e.to_string())?
        .map(|(mut am, _)| am.save()))
}

/// The change hashes pending (stored, not yet applied) in a store.
pub fn pending(kv: &MemKv) -> Result<BTreeSet<[u8; 32]>, String> {
    let mut out = BTreeSet::new();
    kv.scan(b"P", &mut |k, _| {
        if let Some(h) = k.get(17..49).and_then(|h| <[u8; 32]>::try_from(h).ok()) {
            out.insert(h);
        }
        true
    })
    .map_err(|e| e.to_string())?;
    Ok(out)
}

/// Every mailbox record of a store, by mailbox id (hex).
pub fn mailbox_metas(kv: &MemKv) -> Result<BTreeMap<String, MailboxMeta>, String> {
    let mut ids = Vec::new();
    kv.scan(b"M", &mut |k, _| {
        if let Some(m) = k.get(1..17).and_then(MailboxId::from_slice) {
            ids.push(m);
        }
        true
    })
    .map_err(|e| e.to_string())?;
    let tx = Tx::new(kv);
    let mut out = BTreeMap::new();
    for id in ids {
        if let Some(m) = tx.mailbox_meta(&id).map_err(|e| e.to_string())? {
            out.insert(id.to_hex(), m);
        }
    }
    Ok(out)
}

/// Delivers a sent document to `to` through the real sync protocol: the sender is the
/// document as it was when sent (a fresh session, as after a reconnect), the receiver the
/// replica with its persisted session for that peer.
pub fn deliver(
    to: &mut Replica,
    from: &NodeId,
    doc: &str,
    payload: &Payload,
) -> Result<(), String> {
    for (id, bytes) in &payload.blobs {
        to.put_blob(id, bytes).map_err(|e| e.to_string())?;
    }
    let mut sender = AutoCommit::load(&payload.doc).map_err(|e| e.to_string())?;
    let mut session = dovetail::sync::DocSession::new();
    for _ in 0..32 {
        let mut quiet = true;
        if let Some(m) = session.generate(&mut sender) {
            quiet = false;
            to.sync_receive(from, doc, &m, NOW)
                .map_err(|e| format!("receiving {doc}: {e}"))?;
        }
        if let Some(m) = to.sync_generate(from, doc).map_err(|e| e.to_string())? {
            quiet = false;
            session
                .receive(&mut sender, &m)
                .map_err(|e| e.to_string())?;
        }
        if quiet {
            let want = sender.get_heads();
            let tx = Tx::new(to.kv());
            let have = tx
                .load_doc(doc)
                .map_err(|e| e.to_string())?
                .map(|(am, _)| want.iter().all(|h| am.get_change_by_hash(h).is_some()))
                .unwrap_or(want.is_empty());
            if !have {
                return Err(format!("the sync of {doc} ended without every change"));
            }
            return Ok(());
        }
    }
    Err(format!("the sync of {doc} did not settle"))
}

/// The hash of a change as bytes.
pub fn hash_of(c: &Change) -> [u8; 32] {
    c.hash().0
}
