//! Model-based property test of the replication core (design notes §2 and §3).
//!
//! K simulated nodes (in-memory stores, identities seeded from the test input) run random
//! local operations (append, flags, expunge, copy/move, mailbox create/rename/delete,
//! renumbering, restart from the store) while a simulated network carries the per-document
//! automerge sync messages between them: queued per (from, to, document), delivered late, out
//! of order across documents, duplicated or dropped (a drop resets the connection: both ends
//! end their sessions and resume from the persisted shared heads). Only some documents of a
//! pair may be synced, which exercises the mailbox-level causal context across segment
//! documents. Blobs travel separately and late.
//!
//! After every step, on every node and every mailbox (by id): invariant 2 (a shown
//! (UIDVALIDITY, UID) keeps its GUID or shows nothing), 3 (a newly shown UID is not below a
//! UIDNEXT announced before; UIDNEXT never decreases), 4 (UIDVALIDITY of a mailbox id never
//! changes), 6 (an expunged GUID never comes back), 9 (HIGHESTMODSEQ never decreases and
//! every visible change raises it), and that a shown message has its blob and appears
//! once. At quiescence (everything delivered, blobs included, renumbered past the grace
//! period): invariant 1 (identical state everywhere, `diff` finds nothing, nothing pending
//! or homeless) and 5 (every accepted, not expunged GUID visible exactly once). Invariant 7
//! has two flag-focused properties and a scenario; shrunk failures and hand-written races
//! are named tests at the end.
//!
//! `PROPTEST_CASES=n` and `MODEL_STEPS=n` (history length) make longer searches;
//! `MODEL_STATS=1` prints what each history exercised.

use dovetail::crdt::view::ViewRow;
use dovetail::model::{
    AccountName, BlobId, Flag, FlagSet, Guid, MailboxId, MailboxName, NodeId, Uid, UidSet,
};
use dovetail::node::{FlagOp, MailboxStatus, NewMessage, NodeError, Options, Replica};
use dovetail::store::{tables, MemKv, Tx};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

/// Seconds a node waits before renumbering homeless messages it did not claim.
const GRACE: i64 = 5;
/// Mailbox names the random operations use besides INBOX.
const NAMES: [&str; 3] = ["Work", "Archive", "Lists"];
/// Flags the random operations use.
const FLAGS: [&str; 4] = ["\\Seen", "\\Flagged", "\\Deleted", "$Work"];

fn options() -> Options {
    Options {
        renumber_grace_secs: GRACE,
        // Small, so that a mailbox spans several segment documents.
        segment_capacity: 4,
        ..Default::default()
    }
}

fn account() -> AccountName {
    AccountName::try_from("alice").expect("valid account")
}

fn mailbox(name: &str) -> MailboxName {
    MailboxName::try_from(name).expect("valid mailbox name")
}

fn flag_set(bits: u8) -> FlagSet {
    FLAGS
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, f)| Flag::try_from(*f).expect("valid flag"))
        .collect()
}

fn flag_names(f: &FlagSet) -> String {
    f.iter().map(Flag::as_str).collect::<Vec<_>>().join(" ")
}

/// Errors an operation may legitimately return in a random history (the harness picks
/// names and mailboxes blindly); anything else is a failure.
fn expected(e: &NodeError) -> bool {
    matches!(
        e,
        NodeError::MailboxExists(_) | NodeError::UnknownMailbox { .. } | NodeError::Inbox(_)
    )
}

/// A selection of 1 to 3 consecutive rows of a mailbox, from row `start` (modulo).
#[derive(Clone, Copy, Debug)]
struct Sel {
    start: u8,
    len: u8,
}

impl Sel {
    fn pick<T: Clone>(&self, rows: &[T]) -> Vec<T> {
        if rows.is_empty() {
            return Vec::new();
        }
        let n = rows.len();
        let start = self.start as usize % n;
        rows[start..]
            .iter()
            .take(1 + self.len as usize % 3)
            .cloned()
            .collect()
    }
}

/// One step of a random history. Node and mailbox indexes are taken modulo what exists.
#[derive(Clone, Debug)]
enum Op {
    /// Append messages (body from a small pool so blobs are shared; flag bits).
    Append {
        node: u8,
        mb: u8,
        msgs: Vec<(u8, u8)>,
    },
    /// `kind` 0: +FLAGS, 1: -FLAGS, 2: =FLAGS.
    Flags {
        node: u8,
        mb: u8,
        sel: Sel,
        kind: u8,
        flags: u8,
    },
    Expunge {
        node: u8,
        mb: u8,
        sel: Sel,
    },
    Copy {
        node: u8,
        from: u8,
        to: u8,
        sel: Sel,
        remove_source: bool,
    },
    Create {
        node: u8,
        name: u8,
    },
    Rename {
        node: u8,
        which: u8,
        to: u8,
    },
    Delete {
        node: u8,
        which: u8,
    },
    Restart {
        node: u8,
    },
    Renumber {
        node: u8,
    },
    Tick {
        secs: u8,
    },
    /// `from` generates a sync message about a document for `to` (queued).
    Generate {
        from: u8,
        to: u8,
        doc: u8,
    },
    /// Delivers the first message of a non-empty queue (and leaves a copy if `dup`).
    Deliver {
        queue: u8,
        dup: bool,
    },
    /// Loses the first message of a queue: the connection is reset.
    Lose {
        queue: u8,
    },
    /// Resets the connection of two nodes.
    Reset {
        a: u8,
        b: u8,
    },
    /// Syncs one document between two nodes until neither has anything to say.
    Pump {
        a: u8,
        b: u8,
        doc: u8,
    },
    /// Gives a node the blobs it is missing.
    Blobs {
        node: u8,
    },
    /// Everything is delivered and renumbered (the history goes on afterwards).
    Quiesce,
}

/// What one node has shown, for the invariants checked after every step.
#[derive(Default)]
struct Seen {
    /// (mailbox id, UID) → the GUID ever shown there.
    shown: BTreeMap<(String, u32), Guid>,
    /// The largest UIDNEXT announced per mailbox id.
    announced: BTreeMap<String, u32>,
    /// GUIDs this node has applied an expunge of.
    expunged: BTreeSet<Guid>,
    /// Per mailbox id, HIGHESTMODSEQ and the rows last seen.
    modseq: BTreeMap<String, (u64, ModseqRows)>,
}

/// UID → (GUID, flags, MODSEQ).
type ModseqRows = BTreeMap<u32, (Guid, FlagSet, u64)>;

/// A mailbox as one node shows it, for comparing nodes at quiescence.
#[derive(Debug, PartialEq)]
struct MailboxState {
    name: String,
    id: String,
    uidvalidity: u32,
    uidnext: u32,
    messages: u64,
    unseen: u64,
    digest: String,
    /// "UID GUID blob (flags)" in UID order.
    rows: Vec<String>,
}

/// The simulation: nodes, their stores, the network and what the harness knows.
struct Sim {
    kvs: Vec<MemKv>,
    nodes: Vec<Replica>,
    ids: Vec<NodeId>,
    now: i64,
    /// Sync messages in flight per (from, to, document), in order.
    queues: BTreeMap<(usize, usize, String), VecDeque<Vec<u8>>>,
    /// Blobs each node reported missing.
    missing: Vec<BTreeSet<BlobId>>,
    seen: Vec<Seen>,
    /// UIDVALIDITY of every mailbox id ever listed anywhere.
    uidvalidity: BTreeMap<String, u32>,
    /// Every GUID accepted by some node, with its mailbox id.
    accepted: BTreeMap<Guid, String>,
    /// Every GUID some node expunged (it was visible there when it did).
    expunged: BTreeSet<Guid>,
    /// Steps done so far, for failure reports.
    trace: Vec<String>,
    next_body: u32,
    stats: Stats,
}

/// What a history exercised (printed with `MODEL_STATS=1`, to tune the strategies).
#[derive(Debug, Default)]
struct Stats {
    steps: usize,
    appended: usize,
    renumbered: usize,
    delivered: usize,
    hidden: usize,
    errors: usize,
    max_docs: usize,
    copies: usize,
    mailbox_ops: usize,
    restarts: usize,
}

type R<T> = Result<T, String>;

fn err(e: NodeError) -> String {
    format!("unexpected error: {e}")
}

impl Sim {
    fn new(k: usize, seed: u64) -> R<Sim> {
        let mut sim = Sim {
            kvs: Vec::new(),
            nodes: Vec::new(),
            ids: Vec::new(),
            now: 1_000,
            queues: BTreeMap::new(),
            missing: vec![BTreeSet::new(); k],
            seen: (0..k).map(|_| Seen::default()).collect(),
            uidvalidity: BTreeMap::new(),
            accepted: BTreeMap::new(),
            expunged: BTreeSet::new(),
            trace: Vec::new(),
            next_body: 0,
            stats: Stats::default(),
        };
        for i in 0..k {
            let kv = MemKv::new();
            let mut s = [0u8; 32];
            s[..8].copy_from_slice(&seed.to_le_bytes());
            s[8] = i as u8;
            s[9] = 0xd7;
            let mut r = Replica::with_kv(Arc::new(kv.clone()), Some(s), options()).map_err(err)?;
            // Every node creates the account on its own: the INBOX entries written
            // concurrently must name one mailbox.
            r.create_account(&account()).map_err(err)?;
            sim.ids.push(r.node_id());
            sim.kvs.push(kv);
            sim.nodes.push(r);
        }
        sim.check()?;
        Ok(sim)
    }

    fn k(&self) -> usize {
        self.nodes.len()
    }

    fn log(&mut self, s: String) {
        self.trace.push(s);
    }

    fn report(&self, what: &str) -> String {
        let from = self.trace.len().saturating_sub(60);
        format!(
            "{what}\n--- last steps ---\n{}",
            self.trace[from..].join("\n")
        )
    }

    // ---- local operations ----

    fn status(&mut self, i: usize) -> R<Vec<MailboxStatus>> {
        self.nodes[i].status(&account()).map_err(err)
    }

    fn rows(&mut self, i: usize, name: &str) -> R<Vec<(Uid, ViewRow)>> {
        self.nodes[i].list(&account(), &mailbox(name)).map_err(err)
    }

    /// The listed mailbox at index `mb` (modulo) on node `i`.
    fn pick_mailbox(&mut self, i: usize, mb: u8) -> R<MailboxStatus> {
        let st = self.status(i)?;
        Ok(st[mb as usize % st.len()].clone())
    }

    /// A listed mailbox other than INBOX, if any.
    fn pick_other(&mut self, i: usize, which: u8) -> R<Option<MailboxStatus>> {
        let st: Vec<MailboxStatus> = self
            .status(i)?
            .into_iter()
            .filter(|s| s.name != "INBOX")
            .collect();
        Ok((!st.is_empty()).then(|| st[which as usize % st.len()].clone()))
    }

    fn uid_set(uids: &[Uid]) -> UidSet {
        let s: Vec<String> = uids.iter().map(|u| u.to_string()).collect();
        UidSet::try_from(s.join(",").as_str()).expect("valid UID set")
    }

    /// Appends messages to `name` on node `i`; returns their GUIDs.
    fn append(&mut self, i: usize, name: &str, msgs: &[(u8, u8)]) -> R<Vec<Guid>> {
        let id = self
            .status(i)?
            .into_iter()
            .find(|s| s.name == name)
            .map(|s| s.id)
            .ok_or_else(|| format!("node {i} has no mailbox {name}"))?;
        let new: Vec<NewMessage> = msgs
            .iter()
            .map(|&(body, flags)| {
                // Half of the bodies come from a small pool, so blobs are shared.
                let body = if body % 2 == 0 {
                    format!("pool {}", body % 6)
                } else {
                    self.next_body += 1;
                    format!("unique {}", self.next_body)
                };
                NewMessage {
                    name: "model".into(),
                    bytes: format!("From: a@example.org\r\nSubject: {body}\r\n\r\n{body}\r\n")
                        .into_bytes(),
                    flags: flag_set(flags),
                    internal_date: self.now,
                }
            })
            .collect();
        let out = self.nodes[i]
            .append(&account(), &mailbox(name), new, self.now)
            .map_err(err)?;
        for (_, g) in &out {
            self.accepted.insert(*g, id.clone());
        }
        self.stats.appended += out.len();
        self.log(format!(
            "  appended {:?}",
            out.iter().map(|(u, _)| u.get()).collect::<Vec<_>>()
        ));
        Ok(out.into_iter().map(|(_, g)| g).collect())
    }

    fn store_flags(&mut self, i: usize, name: &str, uids: &[Uid], op: &FlagOp) -> R<()> {
        if uids.is_empty() {
            return Ok(());
        }
        self.nodes[i]
            .store_flags(
                &account(),
                &mailbox(name),
                &Self::uid_set(uids),
                op,
                self.now,
            )
            .map_err(err)?;
        Ok(())
    }

    fn expunge(&mut self, i: usize, name: &str, uids: &[Uid]) -> R<()> {
        if uids.is_empty() {
            return Ok(());
        }
        let rows = self.rows(i, name)?;
        let done = self.nodes[i]
            .expunge(&account(), &mailbox(name), &Self::uid_set(uids), self.now)
            .map_err(err)?;
        for (u, row) in rows {
            if done.contains(&u) {
                self.expunged.insert(row.guid);
            }
        }
        Ok(())
    }

    fn copy(&mut self, i: usize, from: &str, to: &str, uids: &[Uid], remove: bool) -> R<()> {
        if uids.is_empty() {
            return Ok(());
        }
        let src = self.rows(i, from)?;
        let dst_id = self
            .status(i)?
            .into_iter()
            .find(|s| s.name == to)
            .map(|s| s.id)
            .ok_or_else(|| format!("node {i} has no mailbox {to}"))?;
        let pairs = self.nodes[i]
            .copy(
                &account(),
                &mailbox(from),
                &Self::uid_set(uids),
                &mailbox(to),
                remove,
                self.now,
            )
            .map_err(err)?;
        let dst = self.rows(i, to)?;
        for (old, new) in &pairs {
            let row = dst
                .iter()
                .find(|(u, _)| u == new)
                .ok_or_else(|| format!("copy to UID {new} does not show it"))?;
            self.accepted.insert(row.1.guid, dst_id.clone());
            if remove {
                let g = src.iter().find(|(u, _)| u == old).map(|(_, r)| r.guid);
                self.expunged.extend(g);
            }
        }
        self.stats.copies += pairs.len();
        self.log(format!("  copied {pairs:?}"));
        Ok(())
    }

    fn delete(&mut self, i: usize, name: &str) -> R<()> {
        // A delete expunges every message the node knows in the mailbox: visible ones and
        // homeless ones waiting for a renumbering.
        let known = match self.status(i)?.iter().find(|s| s.name == name) {
            Some(s) => {
                let mb = MailboxId::try_from(s.id.as_str()).map_err(|e| e.to_string())?;
                tables::live_messages(&self.kvs[i], &mb).map_err(|e| e.to_string())?
            }
            None => Vec::new(),
        };
        match self.nodes[i].delete_mailbox(&account(), &mailbox(name), self.now) {
            Ok(()) => {
                self.stats.mailbox_ops += 1;
                self.expunged.extend(known);
                Ok(())
            }
            Err(e) if expected(&e) => {
                self.stats.errors += 1;
                Ok(())
            }
            Err(e) => Err(err(e)),
        }
    }

    /// Drops node `i` and opens it again from its store: its live sessions are gone, so
    /// every connection to it is reset.
    fn restart(&mut self, i: usize) -> R<()> {
        for j in 0..self.k() {
            if j != i {
                self.reset(i, j);
            }
        }
        self.stats.restarts += 1;
        let kv = Arc::new(self.kvs[i].clone());
        self.nodes[i] = Replica::with_kv(kv, None, options()).map_err(err)?;
        if self.nodes[i].node_id() != self.ids[i] {
            return Err(format!("node {i} came back with another identity"));
        }
        let missing = self.nodes[i].deliver_all(self.now).map_err(err)?;
        self.missing[i].extend(missing);
        Ok(())
    }

    fn renumber(&mut self, i: usize) -> R<usize> {
        let n = self.nodes[i].renumber_due(self.now).map_err(err)?;
        if n > 0 {
            self.stats.renumbered += n;
            self.log(format!("  node {i} renumbered {n}"));
        }
        Ok(n)
    }

    // ---- network ----

    /// Every document either node has, account documents first.
    fn docs_of(&self, a: usize, b: usize) -> R<Vec<String>> {
        let mut docs = BTreeSet::new();
        for i in [a, b] {
            for (d, _) in self.nodes[i].doc_heads().map_err(err)? {
                docs.insert(d);
            }
        }
        let mut docs: Vec<String> = docs.into_iter().collect();
        docs.sort_by_key(|d| !d.starts_with("acct/"));
        Ok(docs)
    }

    fn pair(&self, a: u8, b: u8) -> (usize, usize) {
        let k = self.k();
        let a = a as usize % k;
        let b = (a + 1 + b as usize % (k - 1)) % k;
        (a, b)
    }

    fn generate(&mut self, from: usize, to: usize, doc: &str) -> R<bool> {
        let msg = self.nodes[from]
            .sync_generate(&self.ids[to], doc)
            .map_err(err)?;
        match msg {
            Some(m) => {
                self.queues
                    .entry((from, to, doc.to_string()))
                    .or_default()
                    .push_back(m);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn receive(&mut self, from: usize, to: usize, doc: &str, msg: &[u8]) -> R<()> {
        let missing = self.nodes[to]
            .sync_receive(&self.ids[from], doc, msg, self.now)
            .map_err(|e| format!("node {to} receiving {doc} from {from}: {e}"))?;
        self.stats.delivered += 1;
        self.missing[to].extend(missing);
        Ok(())
    }

    /// The non-empty queue at index `q` (modulo), if any.
    fn queue(&self, q: u8) -> Option<(usize, usize, String)> {
        let keys: Vec<&(usize, usize, String)> = self
            .queues
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, _)| k)
            .collect();
        (!keys.is_empty()).then(|| keys[q as usize % keys.len()].clone())
    }

    fn pop(&mut self, key: &(usize, usize, String)) -> Option<Vec<u8>> {
        let q = self.queues.get_mut(key)?;
        let m = q.pop_front();
        if q.is_empty() {
            self.queues.remove(key);
        }
        m
    }

    /// The connection of `a` and `b` closes: messages in flight are lost, both end their
    /// sessions (they resume from the persisted shared heads).
    fn reset(&mut self, a: usize, b: usize) {
        self.queues
            .retain(|(f, t, _), _| !((*f == a && *t == b) || (*f == b && *t == a)));
        let (ia, ib) = (self.ids[a], self.ids[b]);
        self.nodes[a].end_sessions(&ib);
        self.nodes[b].end_sessions(&ia);
    }

    /// Delivers everything queued from `from` to `to` about `doc`, in order.
    fn flush_queue(&mut self, from: usize, to: usize, doc: &str) -> R<()> {
        let key = (from, to, doc.to_string());
        while let Some(m) = self.pop(&key) {
            self.receive(from, to, doc, &m)?;
        }
        Ok(())
    }

    /// Syncs `doc` between `a` and `b` until neither has anything to say.
    fn pump(&mut self, a: usize, b: usize, doc: &str) -> R<()> {
        self.flush_queue(a, b, doc)?;
        self.flush_queue(b, a, doc)?;
        for _ in 0..64 {
            let mut quiet = true;
            for (x, y) in [(a, b), (b, a)] {
                let msg = self.nodes[x]
                    .sync_generate(&self.ids[y], doc)
                    .map_err(err)?;
                if let Some(m) = msg {
                    quiet = false;
                    self.receive(x, y, doc, &m)?;
                }
            }
            if quiet {
                return Ok(());
            }
        }
        Err(format!("sync of {doc} between {a} and {b} did not settle"))
    }

    /// Gives node `i` the blobs it misses (from whichever node has them) and lets it apply
    /// what waited for them, repeatedly. Returns whether it got any.
    fn blobs(&mut self, i: usize) -> R<bool> {
        let mut any = false;
        for _ in 0..16 {
            let wanted = std::mem::take(&mut self.missing[i]);
            let mut got = false;
            for b in wanted {
                if self.nodes[i].blob(&b).map_err(err)?.is_some() {
                    got = true;
                    continue;
                }
                let mut bytes = None;
                for j in 0..self.k() {
                    if let Some(x) = self.nodes[j].blob(&b).map_err(err)? {
                        bytes = Some(x);
                        break;
                    }
                }
                match bytes {
                    Some(x) => {
                        if !self.nodes[i].put_blob(&b, &x).map_err(err)? {
                            return Err(format!("blob {b} rejected"));
                        }
                        got = true;
                    }
                    None => {
                        self.missing[i].insert(b);
                    }
                }
            }
            if !got {
                break;
            }
            any = true;
            let more = self.nodes[i].deliver_all(self.now).map_err(err)?;
            self.missing[i].extend(more);
        }
        Ok(any)
    }

    // ---- one random step ----

    fn step(&mut self, op: &Op) -> R<()> {
        let k = self.k();
        let node = |n: u8| n as usize % k;
        self.log(format!("t={} {op:?}", self.now));
        match op {
            Op::Append { node: n, mb, msgs } => {
                let i = node(*n);
                let m = self.pick_mailbox(i, *mb)?;
                self.append(i, &m.name, msgs)?;
            }
            Op::Flags {
                node: n,
                mb,
                sel,
                kind,
                flags,
            } => {
                let i = node(*n);
                let m = self.pick_mailbox(i, *mb)?;
                let uids: Vec<Uid> = sel
                    .pick(&self.rows(i, &m.name)?)
                    .into_iter()
                    .map(|(u, _)| u)
                    .collect();
                let f = flag_set(*flags);
                let op = match kind % 3 {
                    0 => FlagOp::Add(f),
                    1 => FlagOp::Remove(f),
                    _ => FlagOp::Replace(f),
                };
                self.store_flags(i, &m.name, &uids, &op)?;
            }
            Op::Expunge { node: n, mb, sel } => {
                let i = node(*n);
                let m = self.pick_mailbox(i, *mb)?;
                let uids: Vec<Uid> = sel
                    .pick(&self.rows(i, &m.name)?)
                    .into_iter()
                    .map(|(u, _)| u)
                    .collect();
                self.expunge(i, &m.name, &uids)?;
            }
            Op::Copy {
                node: n,
                from,
                to,
                sel,
                remove_source,
            } => {
                let i = node(*n);
                let f = self.pick_mailbox(i, *from)?;
                let t = self.pick_mailbox(i, *to)?;
                let uids: Vec<Uid> = sel
                    .pick(&self.rows(i, &f.name)?)
                    .into_iter()
                    .map(|(u, _)| u)
                    .collect();
                self.copy(i, &f.name, &t.name, &uids, *remove_source)?;
            }
            Op::Create { node: n, name } => {
                let i = node(*n);
                let name = NAMES[*name as usize % NAMES.len()];
                match self.nodes[i].create_mailbox(&account(), &mailbox(name)) {
                    Ok(_) => self.stats.mailbox_ops += 1,
                    Err(e) if expected(&e) => self.stats.errors += 1,
                    Err(e) => return Err(err(e)),
                }
            }
            Op::Rename { node: n, which, to } => {
                let i = node(*n);
                if let Some(m) = self.pick_other(i, *which)? {
                    let to = NAMES[*to as usize % NAMES.len()];
                    match self.nodes[i].rename_mailbox(&account(), &mailbox(&m.name), &mailbox(to))
                    {
                        Ok(()) => self.stats.mailbox_ops += 1,
                        Err(e) if expected(&e) => self.stats.errors += 1,
                        Err(e) => return Err(err(e)),
                    }
                }
            }
            Op::Delete { node: n, which } => {
                let i = node(*n);
                if let Some(m) = self.pick_other(i, *which)? {
                    self.delete(i, &m.name)?;
                }
            }
            Op::Restart { node: n } => self.restart(node(*n))?,
            Op::Renumber { node: n } => {
                self.renumber(node(*n))?;
            }
            Op::Tick { secs } => self.now += i64::from(*secs % 8),
            Op::Generate { from, to, doc } => {
                let (a, b) = self.pair(*from, *to);
                let docs = self.docs_of(a, b)?;
                let d = docs[*doc as usize % docs.len()].clone();
                self.generate(a, b, &d)?;
            }
            Op::Deliver { queue, dup } => {
                if let Some(key) = self.queue(*queue) {
                    let m = self.pop(&key).expect("non-empty queue");
                    self.log(format!("  {} -> {} {}", key.0, key.1, key.2));
                    self.receive(key.0, key.1, &key.2, &m)?;
                    if *dup {
                        self.queues.entry(key).or_default().push_front(m);
                    }
                }
            }
            Op::Lose { queue } => {
                if let Some(key) = self.queue(*queue) {
                    self.pop(&key);
                    self.reset(key.0, key.1);
                }
            }
            Op::Reset { a, b } => {
                let (a, b) = self.pair(*a, *b);
                self.reset(a, b);
            }
            Op::Pump { a, b, doc } => {
                let (a, b) = self.pair(*a, *b);
                let docs = self.docs_of(a, b)?;
                let d = docs[*doc as usize % docs.len()].clone();
                self.log(format!("  {a} <-> {b} {d}"));
                self.pump(a, b, &d)?;
            }
            Op::Blobs { node: n } => {
                self.blobs(node(*n))?;
            }
            Op::Quiesce => {
                self.quiesce()?;
                self.check_converged()?;
            }
        }
        self.now += 1;
        self.check()
    }

    // ---- invariants ----

    /// Invariants 2, 3, 4 and 6 on every node, plus the view's own consistency.
    fn check(&mut self) -> R<()> {
        for i in 0..self.k() {
            let st = self.status(i)?;
            let mut visible: BTreeMap<String, BTreeSet<Guid>> = BTreeMap::new();
            for s in &st {
                // Invariant 4: UIDVALIDITY of a mailbox id never changes (on any node).
                let uv = *self
                    .uidvalidity
                    .entry(s.id.clone())
                    .or_insert(s.uidvalidity);
                if uv != s.uidvalidity {
                    return Err(format!(
                        "inv 4: node {i} mailbox {} ({}) UIDVALIDITY {} was {uv}",
                        s.name, s.id, s.uidvalidity
                    ));
                }
                let announced = self.seen[i].announced.get(&s.id).copied().unwrap_or(1);
                if s.uidnext < announced {
                    return Err(format!(
                        "inv 3: node {i} mailbox {} UIDNEXT went down from {announced} to {}",
                        s.name, s.uidnext
                    ));
                }
                let rows = self.rows(i, &s.name)?;
                if rows.len() as u64 != s.messages {
                    return Err(format!(
                        "node {i} mailbox {}: {} rows but {} messages",
                        s.name,
                        rows.len(),
                        s.messages
                    ));
                }
                let vis = visible.entry(s.id.clone()).or_default();
                for (uid, row) in &rows {
                    if uid.get() >= s.uidnext {
                        return Err(format!(
                            "node {i} mailbox {}: UID {uid} not below UIDNEXT {}",
                            s.name, s.uidnext
                        ));
                    }
                    // Blobs before claims (design notes §6): a shown message can be read.
                    if self.nodes[i].blob(&row.blob).map_err(err)?.is_none() {
                        return Err(format!(
                            "node {i} mailbox {}: UID {uid} shown without its blob",
                            s.name
                        ));
                    }
                    if !vis.insert(row.guid) {
                        return Err(format!(
                            "inv 5: node {i} mailbox {}: {:?} shown twice",
                            s.name, row.guid
                        ));
                    }
                    match self.accepted.get(&row.guid) {
                        Some(id) if *id == s.id => {}
                        other => {
                            return Err(format!(
                                "node {i} mailbox {}: {:?} at UID {uid} was accepted in {other:?}",
                                s.name, row.guid
                            ))
                        }
                    }
                    match self.seen[i].shown.get(&(s.id.clone(), uid.get())) {
                        Some(g) if *g != row.guid => {
                            return Err(format!(
                                "inv 2: node {i} mailbox {}: UID {uid} was {g:?}, now {:?}",
                                s.name, row.guid
                            ))
                        }
                        Some(_) => {}
                        None => {
                            if uid.get() < announced {
                                return Err(format!(
                                    "inv 3: node {i} mailbox {}: {:?} appeared at UID {uid} below UIDNEXT {announced}",
                                    s.name, row.guid
                                ));
                            }
                            self.seen[i]
                                .shown
                                .insert((s.id.clone(), uid.get()), row.guid);
                        }
                    }
                }
                self.seen[i]
                    .announced
                    .insert(s.id.clone(), s.uidnext.max(announced));
                self.check_modseq(i, s, &rows)?;
            }
            let ever = self.seen[i].shown.len();
            let now: usize = visible.values().map(BTreeSet::len).sum();
            self.stats.hidden = self.stats.hidden.max(ever.saturating_sub(now));
            let docs = self.nodes[i].doc_heads().map_err(err)?.len();
            self.stats.max_docs = self.stats.max_docs.max(docs);
            // Invariant 6: once this node applied the expunge of a GUID, it never shows
            // it again (and never forgets the expunge).
            let kv = self.kvs[i].clone();
            let mut tx = Tx::new(&kv);
            for (g, id) in &self.accepted {
                let mb = MailboxId::try_from(id.as_str()).map_err(|e| e.to_string())?;
                let rec = tx.view(mb).msg_rec(g).map_err(|e| e.to_string())?;
                let now_expunged = rec.is_some_and(|r| r.expunged);
                let shown = visible.get(id).is_some_and(|v| v.contains(g));
                if now_expunged {
                    if !self.expunged.contains(g) {
                        return Err(format!("node {i}: {g:?} expunged but nobody expunged it"));
                    }
                    self.seen[i].expunged.insert(*g);
                }
                if self.seen[i].expunged.contains(g) && (!now_expunged || shown) {
                    return Err(format!(
                        "inv 6: node {i}: expunged {g:?} is back (expunge mark {now_expunged}, shown {shown})"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Invariant 9 on node `i`: HIGHESTMODSEQ never decreases, every visible change (a
    /// row added, changed or removed) raises it, and a row's MODSEQ is at most it.
    fn check_modseq(&mut self, i: usize, s: &MailboxStatus, rows: &[(Uid, ViewRow)]) -> R<()> {
        let now: ModseqRows = rows
            .iter()
            .map(|(u, r)| (u.get(), (r.guid, r.flags.clone(), r.modseq.get())))
            .collect();
        let (hms, before) = self.seen[i]
            .modseq
            .insert(s.id.clone(), (s.highest_modseq, now.clone()))
            .unwrap_or_default();
        let bad = |what: String| Err(format!("inv 9: node {i} mailbox {}: {what}", s.name));
        if s.highest_modseq < hms {
            return bad(format!(
                "HIGHESTMODSEQ went down from {hms} to {}",
                s.highest_modseq
            ));
        }
        for (uid, (g, f, m)) in &now {
            if *m > s.highest_modseq {
                return bad(format!("UID {uid} has MODSEQ {m} above HIGHESTMODSEQ"));
            }
            let unchanged = before.get(uid).filter(|(pg, pf, _)| pg == g && pf == f);
            match unchanged {
                Some((_, _, pm)) if m < pm => {
                    return bad(format!("UID {uid} MODSEQ went down from {pm} to {m}"));
                }
                Some(_) => {}
                None if *m <= hms => {
                    return bad(format!(
                        "UID {uid} changed but its MODSEQ {m} is not above {hms}"
                    ));
                }
                _ => {}
            }
        }
        if before.keys().any(|u| !now.contains_key(u)) && s.highest_modseq <= hms {
            return bad("a row went away without raising HIGHESTMODSEQ".into());
        }
        Ok(())
    }

    // ---- quiescence ----

    /// Delivers everything between all pairs, blobs included, and renumbers with the clock
    /// past the grace period, until nothing changes. Checks the invariants all along.
    fn quiesce(&mut self) -> R<()> {
        self.log("quiesce".into());
        let keys: Vec<(usize, usize, String)> = self.queues.keys().cloned().collect();
        for (f, t, d) in keys {
            self.flush_queue(f, t, &d)?;
            self.check()?;
        }
        for _round in 0..24 {
            for a in 0..self.k() {
                for b in a + 1..self.k() {
                    for d in self.docs_of(a, b)? {
                        self.pump(a, b, &d)?;
                    }
                }
            }
            for i in 0..self.k() {
                self.blobs(i)?;
            }
            self.check()?;
            self.now += GRACE + 1;
            let mut renumbered = 0;
            for i in 0..self.k() {
                renumbered += self.renumber(i)?;
            }
            self.check()?;
            let heads: Vec<Vec<(String, Vec<[u8; 32]>)>> = self
                .nodes
                .iter()
                .map(|n| n.doc_heads())
                .collect::<Result<_, _>>()
                .map_err(err)?;
            let missing = self.missing.iter().any(|m| !m.is_empty());
            if renumbered == 0 && !missing && heads.iter().all(|h| *h == heads[0]) {
                return Ok(());
            }
        }
        Err("no quiescence after 24 rounds".into())
    }

    /// One node's whole visible state: mailboxes and their rows.
    fn snapshot(&mut self, i: usize) -> R<Vec<MailboxState>> {
        let mut out = Vec::new();
        for s in self.status(i)? {
            let rows = self
                .rows(i, &s.name)?
                .into_iter()
                .map(|(u, r)| format!("{u} {:?} {} ({})", r.guid, r.blob, flag_names(&r.flags)))
                .collect();
            out.push(MailboxState {
                name: s.name,
                id: s.id,
                uidvalidity: s.uidvalidity,
                uidnext: s.uidnext,
                messages: s.messages,
                unseen: s.unseen,
                digest: s.digest,
                rows,
            });
        }
        Ok(out)
    }

    /// Invariants 1 and 5 once quiescent.
    fn check_converged(&mut self) -> R<()> {
        let first = self.snapshot(0)?;
        for i in 1..self.k() {
            let other = self.snapshot(i)?;
            if other != first {
                return Err(format!(
                    "inv 1: node 0 and node {i} differ:\n{first:#?}\nvs\n{other:#?}"
                ));
            }
        }
        let labels: Vec<String> = (0..self.k()).map(|i| format!("node{i}")).collect();
        let d = dovetail::diff::diff(&mut self.nodes, &labels).map_err(err)?;
        if !d.is_empty() {
            let d: Vec<String> = d.iter().map(|x| x.to_string()).collect();
            return Err(format!("inv 1: diff reports {}", d.join("; ")));
        }
        for i in 0..self.k() {
            let mut pending = 0;
            self.nodes[i]
                .kv()
                .scan(b"P", &mut |_, _| {
                    pending += 1;
                    true
                })
                .map_err(|e| e.to_string())?;
            if pending > 0 {
                return Err(format!("node {i}: {pending} changes never applied"));
            }
        }
        // Invariant 5: every accepted, not expunged GUID is shown exactly once, in its
        // mailbox; nothing else is shown.
        let mut shown: BTreeMap<Guid, (String, usize)> = BTreeMap::new();
        for MailboxState { id, .. } in &first {
            let mb = MailboxId::try_from(id.as_str()).map_err(|e| e.to_string())?;
            let meta = Tx::new(self.nodes[0].kv())
                .mailbox_meta(&mb)
                .map_err(|e| e.to_string())?;
            if let Some(m) = meta.filter(|m| !m.homeless.is_empty()) {
                return Err(format!(
                    "mailbox {id}: homeless at quiescence: {:?}",
                    m.homeless
                ));
            }
            for (_, row) in tables::rows(self.nodes[0].kv(), &mb).map_err(|e| e.to_string())? {
                shown.entry(row.guid).or_insert((id.clone(), 0)).1 += 1;
            }
        }
        for (g, id) in &self.accepted {
            let want = usize::from(!self.expunged.contains(g));
            let got = shown
                .get(g)
                .filter(|(sid, _)| sid == id)
                .map_or(0, |(_, n)| *n);
            if got != want {
                return Err(format!(
                    "inv 5: {g:?} (mailbox {id}, expunged {}) shown {got} times",
                    want == 0
                ));
            }
        }
        if let Some(g) = shown.keys().find(|g| !self.accepted.contains_key(g)) {
            return Err(format!("inv 5: {g:?} shown but never accepted"));
        }
        Ok(())
    }

    /// Syncs every document of `a` and `b` and gives both the blobs they miss.
    fn sync(&mut self, a: usize, b: usize) -> R<()> {
        self.log(format!("sync {a} <-> {b}"));
        for d in self.docs_of(a, b)? {
            self.pump(a, b, &d)?;
        }
        self.blobs(a)?;
        self.blobs(b)?;
        self.check()
    }

    /// Node 0 appends messages to INBOX and every node gets them: the common start of the
    /// flag scenarios.
    fn shared_messages(&mut self, msgs: &[(u8, u8)]) -> R<()> {
        self.append(0, "INBOX", msgs)?;
        self.quiesce()?;
        self.check_converged()?;
        for i in 0..self.k() {
            if self.rows(i, "INBOX")?.len() != msgs.len() {
                return Err(format!("node {i} does not show the shared messages"));
            }
        }
        Ok(())
    }

    /// Runs a history, then quiesces and checks convergence.
    fn run(&mut self, ops: &[Op]) -> R<()> {
        for op in ops {
            self.stats.steps += 1;
            self.step(op).map_err(|e| self.report(&e))?;
        }
        self.quiesce().map_err(|e| self.report(&e))?;
        self.check_converged().map_err(|e| self.report(&e))?;
        if std::env::var_os("MODEL_STATS").is_some() {
            eprintln!("k={} {:?}", self.k(), self.stats);
        }
        Ok(())
    }
}

// ---- strategies ----

fn sel() -> impl Strategy<Value = Sel> {
    (any::<u8>(), any::<u8>()).prop_map(|(start, len)| Sel { start, len })
}

fn op() -> impl Strategy<Value = Op> {
    let n = || 0u8..5;
    let mb = || 0u8..4;
    prop_oneof![
        10 => (n(), mb(), prop::collection::vec((any::<u8>(), 0u8..16), 1..=3))
            .prop_map(|(node, mb, msgs)| Op::Append { node, mb, msgs }),
        4 => (n(), mb(), sel(), 0u8..3, 0u8..16)
            .prop_map(|(node, mb, sel, kind, flags)| Op::Flags { node, mb, sel, kind, flags }),
        3 => (n(), mb(), sel()).prop_map(|(node, mb, sel)| Op::Expunge { node, mb, sel }),
        4 => (n(), mb(), mb(), sel(), any::<bool>()).prop_map(|(node, from, to, sel, remove_source)| {
            Op::Copy { node, from, to, sel, remove_source }
        }),
        3 => (n(), 0u8..3).prop_map(|(node, name)| Op::Create { node, name }),
        2 => (n(), any::<u8>(), 0u8..3).prop_map(|(node, which, to)| Op::Rename { node, which, to }),
        2 => (n(), any::<u8>()).prop_map(|(node, which)| Op::Delete { node, which }),
        1 => n().prop_map(|node| Op::Restart { node }),
        5 => n().prop_map(|node| Op::Renumber { node }),
        3 => any::<u8>().prop_map(|secs| Op::Tick { secs }),
        8 => (n(), n(), any::<u8>()).prop_map(|(from, to, doc)| Op::Generate { from, to, doc }),
        10 => (any::<u8>(), prop::bool::weighted(0.1)).prop_map(|(queue, dup)| Op::Deliver { queue, dup }),
        1 => any::<u8>().prop_map(|queue| Op::Lose { queue }),
        1 => (n(), n()).prop_map(|(a, b)| Op::Reset { a, b }),
        12 => (n(), n(), any::<u8>()).prop_map(|(a, b, doc)| Op::Pump { a, b, doc }),
        5 => n().prop_map(|node| Op::Blobs { node }),
        1 => Just(Op::Quiesce),
    ]
}

/// A number from the environment, for longer local runs (`PROPTEST_CASES=2000`).
fn env_or(var: &str, default: u32) -> u32 {
    std::env::var(var)
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default)
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: env_or("PROPTEST_CASES", cases),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/model.txt",
        ))),
        max_shrink_iters: env_or("PROPTEST_MAX_SHRINK_ITERS", 4096),
        max_shrink_time: 120_000,
        ..ProptestConfig::default()
    }
}

// Case counts keep the whole file under ~30 s in the test profile on 2 cores; raise them
// with PROPTEST_CASES for a longer search (3,000 random histories take ~5 minutes).
proptest! {
    #![proptest_config(config(128))]

    /// Random histories on 2..=5 nodes: invariants 2, 3, 4, 6 after every step, 1 and 5
    /// at quiescence.
    #[test]
    fn random_histories_keep_the_invariants(
        k in 2usize..=5,
        seed in any::<u64>(),
        ops in prop::collection::vec(op(), 1..env_or("MODEL_STEPS", 80) as usize),
    ) {
        let mut sim = Sim::new(k, seed).map_err(TestCaseError::fail)?;
        sim.run(&ops).map_err(TestCaseError::fail)?;
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Flag changes on two shared messages, with two flags only so that nodes often
    /// change the same flag of the same message concurrently, under partial and lossy
    /// delivery: the nodes converge (invariant 7, second half) and keep invariants 2-6.
    #[test]
    fn concurrent_flag_changes_converge(
        k in 2usize..=4,
        seed in any::<u64>(),
        ops in prop::collection::vec(flag_op(), 1..60),
    ) {
        let mut sim = Sim::new(k, seed).map_err(TestCaseError::fail)?;
        sim.shared_messages(&[(1, 0), (3, 0b11)]).map_err(TestCaseError::fail)?;
        sim.run(&ops).map_err(TestCaseError::fail)?;
    }

    /// One round of concurrent flag changes (each node changes the flags of one shared
    /// message on its own, then everything is delivered) ends exactly as add-wins says,
    /// on every node: a flag is set iff some node set it and did not clear it again, or
    /// it was set before and no node cleared it (invariant 7).
    #[test]
    fn concurrent_flag_changes_are_add_wins(
        k in 2usize..=4,
        seed in any::<u64>(),
        initial in 0u8..4,
        changes in prop::collection::vec(prop::collection::vec((0u8..3, 0u8..4), 0..4), 4),
    ) {
        add_wins_round(k, seed, initial, &changes[..k]).map_err(TestCaseError::fail)?;
    }
}

/// Flag-heavy histories: +/-/= of `\Seen` and `\Flagged`, delivery, loss, restarts.
fn flag_op() -> impl Strategy<Value = Op> {
    let n = || 0u8..5;
    prop_oneof![
        8 => (n(), sel(), 0u8..3, 0u8..4).prop_map(|(node, sel, kind, flags)| Op::Flags {
            node,
            mb: 0,
            sel,
            kind,
            flags
        }),
        6 => (n(), n(), any::<u8>()).prop_map(|(a, b, doc)| Op::Pump { a, b, doc }),
        4 => (n(), n(), any::<u8>()).prop_map(|(from, to, doc)| Op::Generate { from, to, doc }),
        4 => (any::<u8>(), prop::bool::weighted(0.1)).prop_map(|(queue, dup)| Op::Deliver { queue, dup }),
        1 => any::<u8>().prop_map(|queue| Op::Lose { queue }),
        1 => n().prop_map(|node| Op::Restart { node }),
        1 => (n(), 0u8..1, sel()).prop_map(|(node, mb, sel)| Op::Expunge { node, mb, sel }),
    ]
}

/// Applies a flag change to a flag set as `store_flags` does, and returns which flags it
/// put and which it deleted.
fn apply_flag_op(have: &mut FlagSet, kind: u8, f: &FlagSet) -> (FlagSet, FlagSet) {
    let (add, del): (FlagSet, FlagSet) = match kind % 3 {
        0 => (f.difference(have).cloned().collect(), FlagSet::new()),
        1 => (FlagSet::new(), f.intersection(have).cloned().collect()),
        _ => (
            f.difference(have).cloned().collect(),
            have.difference(f).cloned().collect(),
        ),
    };
    for x in &add {
        have.insert(x.clone());
    }
    for x in &del {
        have.remove(x);
    }
    (add, del)
}

fn add_wins_round(k: usize, seed: u64, initial: u8, changes: &[Vec<(u8, u8)>]) -> R<()> {
    let mut sim = Sim::new(k, seed)?;
    let run = |sim: &mut Sim| -> R<()> {
        sim.shared_messages(&[(1, initial)])?;
        let uid = sim.rows(0, "INBOX")?[0].0;
        let before = flag_set(initial);
        // What add-wins promises, computed from each node's own view of its changes.
        let mut put_kept = FlagSet::new();
        let mut deleted = FlagSet::new();
        for (i, ops) in changes.iter().enumerate() {
            let mut have = before.clone();
            let mut put = FlagSet::new();
            for &(kind, bits) in ops {
                let (add, del) = apply_flag_op(&mut have, kind, &flag_set(bits));
                put.extend(add);
                deleted.extend(del);
                let op = match kind % 3 {
                    0 => FlagOp::Add(flag_set(bits)),
                    1 => FlagOp::Remove(flag_set(bits)),
                    _ => FlagOp::Replace(flag_set(bits)),
                };
                sim.store_flags(i, "INBOX", &[uid], &op)?;
                sim.check()?;
                let now = sim.rows(i, "INBOX")?[0].1.flags.clone();
                if now != have {
                    return Err(format!(
                        "node {i} shows ({}) after {op:?}, expected ({})",
                        flag_names(&now),
                        flag_names(&have)
                    ));
                }
            }
            put_kept.extend(put.intersection(&have).cloned());
        }
        let want: FlagSet = before
            .difference(&deleted)
            .cloned()
            .chain(put_kept)
            .collect();
        sim.quiesce()?;
        sim.check_converged()?;
        for i in 0..sim.k() {
            let rows = sim.rows(i, "INBOX")?;
            let got = &rows[0].1.flags;
            if rows.len() != 1 || *got != want {
                return Err(format!(
                    "inv 7: node {i} has ({}), add-wins gives ({})",
                    flag_names(got),
                    flag_names(&want)
                ));
            }
        }
        Ok(())
    };
    run(&mut sim).map_err(|e| sim.report(&e))
}

// ---- regressions found by the property test ----

fn at(start: u8, len: u8) -> Sel {
    Sel { start, len }
}

/// Shrunk from `random_histories_keep_the_invariants`. Node 1 expunges a message homed in
/// node 0's segment; node 0 gets that change (in its segment document) before the node-1
/// changes it depends on, so it stays pending. Node 0 then expunges the same message: the
/// `x/<guid>` key already holds `true` in its document, automerge 0.12 skips a put of the
/// value a key already holds and commits no change at all when nothing is left, but the
/// replica still counted the change in its mailbox clock. Node 0's next change (its
/// renumbering) then names a sequence number no peer can ever reach: node 1 keeps it
/// pending forever and the nodes never converge. Fixed in `Segment::commit`: an empty
/// change carries the causal context when every operation was a no-op.
#[test]
fn regression_noop_change_keeps_the_mailbox_clock() {
    let ops = vec![
        Op::Append {
            node: 0,
            mb: 0,
            msgs: vec![(30, 0), (30, 0)],
        },
        Op::Append {
            node: 1,
            mb: 0,
            msgs: vec![(0, 0)],
        },
        Op::Append {
            node: 1,
            mb: 0,
            msgs: vec![(0, 0)],
        },
        Op::Pump {
            a: 0,
            b: 0,
            doc: 29,
        },
        Op::Renumber { node: 1 },
        Op::Expunge {
            node: 1,
            mb: 0,
            sel: at(60, 1),
        },
        Op::Append {
            node: 2,
            mb: 0,
            msgs: vec![(0, 0), (0, 0)],
        },
        Op::Pump {
            a: 0,
            b: 0,
            doc: 17,
        },
        Op::Expunge {
            node: 2,
            mb: 0,
            sel: at(124, 24),
        },
    ];
    Sim::new(2, 1097483966709013244).unwrap().run(&ops).unwrap();
}

/// The same bug with a flag: node 1 sets `\Flagged` on a message homed in node 0's
/// segment; node 0 holds that change pending and then sets `\Flagged` itself (its view
/// does not show it yet), which automerge turns into no change at all.
#[test]
fn regression_noop_flag_change_keeps_the_mailbox_clock() {
    let mut sim = Sim::new(2, 7).unwrap();
    sim.append(0, "INBOX", &[(1, 0)]).unwrap();
    let docs = sim.docs_of(0, 1).unwrap();
    for d in &docs {
        sim.pump(0, 1, d).unwrap();
    }
    sim.blobs(1).unwrap();
    sim.check().unwrap();
    assert_eq!(sim.rows(1, "INBOX").unwrap().len(), 1);
    // Node 1 appends (not synced), then flags node 0's message: the flag change depends on
    // the append.
    sim.append(1, "INBOX", &[(3, 0)]).unwrap();
    let uid = sim.rows(1, "INBOX").unwrap()[0].0;
    sim.store_flags(1, "INBOX", &[uid], &FlagOp::Add(flag_set(0b10)))
        .unwrap();
    // Only node 0's segment goes to node 0: the flag change stays pending there.
    let home = docs.iter().find(|d| d.starts_with("seg/")).unwrap().clone();
    sim.pump(0, 1, &home).unwrap();
    sim.check().unwrap();
    sim.store_flags(0, "INBOX", &[uid], &FlagOp::Add(flag_set(0b10)))
        .unwrap();
    sim.append(0, "INBOX", &[(5, 0)]).unwrap();
    sim.check().unwrap();
    sim.quiesce().unwrap();
    sim.check_converged().unwrap();
    let rows = sim.rows(1, "INBOX").unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
}

// ---- scenarios ----

/// Runs `f` on a fresh simulation; on failure, panics with the steps taken.
fn scenario(k: usize, seed: u64, f: impl FnOnce(&mut Sim) -> R<()>) {
    let mut sim = Sim::new(k, seed).unwrap_or_else(|e| panic!("{e}"));
    if let Err(e) = f(&mut sim) {
        panic!("{}", sim.report(&e));
    }
}

fn uids(rows: &[(Uid, ViewRow)]) -> Vec<u32> {
    rows.iter().map(|(u, _)| u.get()).collect()
}

/// Cyrus's `splitbrain` test: two nodes each append 3 messages to INBOX at UIDs 1-3 while
/// apart. Once synced, all 6 are visible, each at a UID above both sides' UIDNEXT (4),
/// UIDVALIDITY unchanged, the same everywhere.
#[test]
fn split_brain_appends_get_new_uids() {
    scenario(2, 11, |sim| {
        let uv = sim.status(0)?[0].uidvalidity;
        let a = sim.append(0, "INBOX", &[(1, 0), (3, 1), (5, 0)])?;
        let b = sim.append(1, "INBOX", &[(7, 0), (9, 2), (11, 0)])?;
        for i in 0..2 {
            if uids(&sim.rows(i, "INBOX")?) != [1, 2, 3] {
                return Err(format!("node {i} did not append at 1-3"));
            }
        }
        sim.sync(0, 1)?;
        sim.quiesce()?;
        sim.check_converged()?;
        let rows = sim.rows(0, "INBOX")?;
        let shown: BTreeSet<Guid> = rows.iter().map(|(_, r)| r.guid).collect();
        let all: BTreeSet<Guid> = a.iter().chain(&b).copied().collect();
        if shown != all || rows.len() != 6 {
            return Err(format!("after sync node 0 shows {:?}", uids(&rows)));
        }
        if rows.iter().any(|(u, _)| u.get() < 4) {
            return Err(format!("a message below UID 4: {:?}", uids(&rows)));
        }
        for s in [sim.status(0)?, sim.status(1)?] {
            if s[0].uidvalidity != uv || s[0].messages != 6 {
                return Err(format!("status {:?}", s[0]));
            }
        }
        Ok(())
    });
}

/// Three nodes, a renumbering racing an append and another renumbering: A and B append at
/// UID 1 concurrently; A renumbers both at once (it made a dead claim) while B appends at
/// 2; C, which heard only from B, renumbers after the grace period at 3 and 4; B renumbers
/// too. A's renumbering then meets B's append at 2 and C's claims at 3, killing both
/// UIDs. Every node keeps invariants 2-6 at every step, whatever order the segments
/// arrive in, and all converge with the three messages visible once each.
#[test]
fn three_nodes_racing_renumberings() {
    scenario(3, 12, |sim| {
        let uv = sim.status(0)?[0].uidvalidity;
        sim.append(0, "INBOX", &[(1, 0)])?;
        sim.append(1, "INBOX", &[(3, 0)])?;
        sim.sync(0, 1)?;
        for i in 0..2 {
            if !sim.rows(i, "INBOX")?.is_empty() {
                return Err(format!("node {i} shows a message at the dead UID 1"));
            }
        }
        if sim.renumber(0)? != 2 {
            return Err("A did not renumber both homeless messages".into());
        }
        sim.append(1, "INBOX", &[(5, 0)])?;
        sim.sync(1, 2)?;
        if uids(&sim.rows(2, "INBOX")?) != [2] {
            return Err("C should show only B's second message, at 2".into());
        }
        if sim.renumber(2)? != 0 {
            return Err("C renumbered before the grace period".into());
        }
        sim.now += GRACE + 1;
        if sim.renumber(2)? != 2 {
            return Err("C did not renumber after the grace period".into());
        }
        sim.renumber(1)?;
        sim.check()?;
        // Deliver segment by segment, C first hearing from A only some documents.
        let docs = sim.docs_of(0, 2)?;
        for d in docs.iter().rev() {
            sim.pump(0, 2, d)?;
            sim.blobs(2)?;
            sim.check()?;
        }
        sim.restart(1)?;
        sim.check()?;
        sim.sync(0, 1)?;
        sim.quiesce()?;
        sim.check_converged()?;
        let rows = sim.rows(0, "INBOX")?;
        if rows.len() != 3 || sim.status(0)?[0].uidvalidity != uv {
            return Err(format!("end state {:?}", uids(&rows)));
        }
        Ok(())
    });
}

/// Invariant 7: `+FLAGS \Seen` on one node and `+FLAGS \Flagged` on another,
/// concurrently, give both everywhere; a concurrent clear and re-set of one flag on one
/// node against a clear on another resolves to set (add-wins) on every node, whatever
/// order the changes arrive in.
#[test]
fn concurrent_flag_updates_all_survive() {
    for order in [[0usize, 1, 2], [2, 1, 0], [1, 2, 0]] {
        scenario(3, 13, |sim| {
            sim.shared_messages(&[(1, 0)])?;
            let uid = sim.rows(0, "INBOX")?[0].0;
            let seen = flag_set(0b01);
            let flagged = flag_set(0b10);
            sim.store_flags(0, "INBOX", &[uid], &FlagOp::Add(seen.clone()))?;
            sim.store_flags(1, "INBOX", &[uid], &FlagOp::Add(flagged.clone()))?;
            // Node 2 first hears from the nodes in `order`.
            for &i in &order {
                if i != 2 {
                    sim.sync(i, 2)?;
                }
            }
            sim.quiesce()?;
            sim.check_converged()?;
            let both: FlagSet = seen.union(&flagged).cloned().collect();
            for i in 0..3 {
                let f = &sim.rows(i, "INBOX")?[0].1.flags;
                if *f != both {
                    return Err(format!("node {i} has ({})", flag_names(f)));
                }
            }
            // Node 0 clears \Seen; node 1 clears it and sets it again, concurrently.
            sim.store_flags(0, "INBOX", &[uid], &FlagOp::Remove(seen.clone()))?;
            sim.store_flags(1, "INBOX", &[uid], &FlagOp::Remove(seen.clone()))?;
            sim.store_flags(1, "INBOX", &[uid], &FlagOp::Add(seen.clone()))?;
            // Node 2 changes \Flagged meanwhile: =FLAGS (\Seen) keeps \Seen, drops \Flagged.
            sim.store_flags(2, "INBOX", &[uid], &FlagOp::Replace(seen.clone()))?;
            for &i in &order {
                let j = (i + 1) % 3;
                sim.sync(i, j)?;
            }
            sim.quiesce()?;
            sim.check_converged()?;
            for i in 0..3 {
                let f = &sim.rows(i, "INBOX")?[0].1.flags;
                if *f != seen {
                    return Err(format!(
                        "node {i} has ({}), expected (\\Seen)",
                        flag_names(f)
                    ));
                }
            }
            Ok(())
        });
    }
}

/// A mailbox deleted on one node while another appends to it: the delete removes only
/// what the deleting node saw, the concurrent message survives and brings the mailbox
/// back (same id, same UIDVALIDITY) on every node.
#[test]
fn delete_racing_an_append_keeps_the_message() {
    scenario(2, 14, |sim| {
        sim.nodes[0]
            .create_mailbox(&account(), &mailbox("Work"))
            .map_err(err)?;
        sim.append(0, "Work", &[(1, 0)])?;
        sim.sync(0, 1)?;
        sim.delete(0, "Work")?;
        let kept = sim.append(1, "Work", &[(3, 0)])?;
        sim.sync(0, 1)?;
        sim.quiesce()?;
        sim.check_converged()?;
        let rows = sim.rows(0, "Work")?;
        if rows.len() != 1 || rows[0].1.guid != kept[0] {
            return Err(format!("Work holds {:?}", uids(&rows)));
        }
        Ok(())
    });
}

/// A delete removes every message the deleting node observed, including messages waiting
/// for a renumbering (homeless after a split brain): none of them brings the mailbox back.
#[test]
fn delete_removes_homeless_messages_too() {
    scenario(2, 15, |sim| {
        for i in 0..2 {
            sim.nodes[i]
                .create_mailbox(&account(), &mailbox("Work"))
                .map_err(err)?;
        }
        sim.append(0, "Work", &[(1, 0)])?;
        sim.append(1, "Work", &[(3, 0)])?;
        sim.sync(0, 1)?;
        if !sim.rows(0, "Work")?.is_empty() {
            return Err("the split-brain messages should be homeless before renumbering".into());
        }
        sim.delete(0, "Work")?;
        sim.quiesce()?;
        sim.check_converged()?;
        for i in 0..2 {
            if sim.status(i)?.iter().any(|s| s.name == "Work") {
                return Err(format!("node {i} still lists Work: {:?}", sim.status(i)?));
            }
        }
        Ok(())
    });
}
