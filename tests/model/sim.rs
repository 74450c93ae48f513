//! The simulation harness: nodes on in-memory stores, the per-document network, and the
//! operations of a random history.

use dovetail::crdt::view::ViewRow;
use dovetail::model::{
    AccountName, BlobId, Flag, FlagSet, Guid, MailboxId, MailboxName, NodeId, Uid, UidSet,
};
use dovetail::node::{FlagOp, MailboxStatus, NewMessage, NodeError, Options, Replica};
use dovetail::store::{tables, Kv, MemKv};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

/// Seconds a node waits before renumbering homeless messages it did not claim.
pub const GRACE: i64 = 5;
/// Mailbox names the random operations use besides INBOX.
pub const NAMES: [&str; 3] = ["Work", "Archive", "Lists"];
/// Flags the random operations use.
pub const FLAGS: [&str; 4] = ["\\Seen", "\\Flagged", "\\Deleted", "$Work"];

pub fn options() -> Options {
    Options {
        renumber_grace_secs: GRACE,
        // Small, so that a mailbox spans several segment documents.
        segment_capacity: 4,
        ..Default::default()
    }
}

pub fn account() -> AccountName {
    AccountName::try_from("alice").expect("valid account")
}

pub fn mailbox(name: &str) -> MailboxName {
    MailboxName::try_from(name).expect("valid mailbox name")
}

pub fn flag_set(bits: u8) -> FlagSet {
    FLAGS
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, f)| Flag::try_from(*f).expect("valid flag"))
        .collect()
}

pub fn flag_names(f: &FlagSet) -> String {
    f.iter().map(Flag::as_str).collect::<Vec<_>>().join(" ")
}

/// Errors an operation may legitimately return in a random history (the harness picks
/// names and mailboxes blindly); anything else is a failure.
pub fn expected(e: &NodeError) -> bool {
    matches!(
        e,
        NodeError::MailboxExists(_) | NodeError::UnknownMailbox { .. } | NodeError::Inbox(_)
    )
}

/// A selection of 1 to 3 consecutive rows of a mailbox, from row `start` (modulo).
#[derive(Clone, Copy, Debug)]
pub struct Sel {
    pub start: u8,
    pub len: u8,
}

impl Sel {
    pub fn pick<T: Clone>(&self, rows: &[T]) -> Vec<T> {
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
pub enum Op {
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
    /// The node restarts; of its writes not yet flushed, `keep` (modulo) survive.
    Restart {
        node: u8,
        keep: u8,
    },
    /// The node's store dies at its `after`-th (modulo 3) next flush during one operation
    /// (`what` modulo 5: receiving a queued message, syncing a document with `other`,
    /// taking blobs, appending, renumbering), then the node restarts keeping `keep`
    /// (modulo) of its unflushed writes.
    CrashDuring {
        node: u8,
        what: u8,
        other: u8,
        doc: u8,
        after: u8,
        keep: u8,
    },
    /// Append to the mailbox listed under `NAMES[name]` (modulo), if there is one: many
    /// nodes appending to the same few names is how deletes, re-creates and renames race.
    AppendTo {
        node: u8,
        name: u8,
        msgs: Vec<(u8, u8)>,
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
pub struct Seen {
    /// (mailbox id, UID) → the GUID ever shown there.
    pub shown: BTreeMap<(String, u32), Guid>,
    /// The largest UIDNEXT announced per mailbox id.
    pub announced: BTreeMap<String, u32>,
    /// GUIDs this node has applied an expunge of.
    pub expunged: BTreeSet<Guid>,
    /// Per mailbox id, HIGHESTMODSEQ and the rows last seen.
    pub modseq: BTreeMap<String, (u64, ModseqRows)>,
}

/// UID → (GUID, flags, MODSEQ).
pub type ModseqRows = BTreeMap<u32, (Guid, FlagSet, u64)>;

/// A mailbox as one node shows it, for comparing nodes at quiescence.
#[derive(Debug, PartialEq)]
pub struct MailboxState {
    pub name: String,
    pub id: String,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub messages: u64,
    pub unseen: u64,
    pub digest: String,
    /// "UID GUID blob (flags)" in UID order.
    pub rows: Vec<String>,
}

/// The simulation: nodes, their stores, the network and what the harness knows.
pub struct Sim {
    pub kvs: Vec<MemKv>,
    pub nodes: Vec<Replica>,
    pub ids: Vec<NodeId>,
    pub now: i64,
    /// Sync messages in flight per (from, to, document), in order.
    pub queues: BTreeMap<(usize, usize, String), VecDeque<Vec<u8>>>,
    /// Blobs each node reported missing.
    pub missing: Vec<BTreeSet<BlobId>>,
    pub seen: Vec<Seen>,
    /// UIDVALIDITY of every mailbox id ever listed anywhere.
    pub uidvalidity: BTreeMap<String, u32>,
    /// Every GUID accepted by some node, with its mailbox id.
    pub accepted: BTreeMap<Guid, String>,
    /// Every GUID some node expunged (it was visible there when it did).
    pub expunged: BTreeSet<Guid>,
    /// Steps done so far, for failure reports.
    pub trace: Vec<String>,
    pub next_body: u32,
    pub stats: Stats,
    /// Check invariant 4 per mailbox name too (see `check_names`).
    pub per_name: bool,
    /// Per node: name → the greatest UIDVALIDITY it showed under that name, and the
    /// mailbox id that showed it.
    pub name_uv: Vec<BTreeMap<String, (u32, String)>>,
    /// UIDVALIDITY value → the mailbox id that showed it first (anywhere).
    pub uv_owner: BTreeMap<u32, String>,
    /// Mailbox ids some node deleted.
    pub deleted_ids: BTreeSet<String>,
    /// Mailbox id → the names creates and renames gave it.
    pub given_names: BTreeMap<String, BTreeSet<String>>,
    /// Per node: the pending-change keys it was seen to hold.
    pub pending_seen: Vec<BTreeSet<Vec<u8>>>,
}

/// Whether every property checks invariant 4 per name (the kernel keeps it since the name
/// rule of docs/design.md §2; the first release let a restored mailbox take its name back).
pub const PER_NAME_EVERYWHERE: bool = true;

/// What a history exercised (printed with `MODEL_STATS=1`; the coverage test sums them
/// over fixed histories and asserts minimums).
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// UIDs claimed by two or more GUIDs (on node 0, at the end).
    pub uid_clashes: usize,
    /// Distinct changes some node kept pending (waiting for a dependency or a blob).
    pub pending_changes: usize,
    /// Restarts with sync traffic to or from the node in flight, or changes pending.
    pub mid_sync_restarts: usize,
    /// Crash restarts that lost unflushed writes.
    pub crash_drops: usize,
    /// Restarts in the middle of an operation (the store died during it).
    pub crashes_mid_op: usize,
    /// Steps at which some node listed two mailboxes that were given one name.
    pub name_races: usize,
    /// Flag changes made while the acting node had remote changes pending.
    pub flags_while_pending: usize,
    pub steps: usize,
    pub appended: usize,
    pub renumbered: usize,
    pub delivered: usize,
    pub hidden: usize,
    pub errors: usize,
    pub max_docs: usize,
    pub copies: usize,
    pub mailbox_ops: usize,
    pub restarts: usize,
}

pub type R<T> = Result<T, String>;

pub fn err(e: NodeError) -> String {
    format!("unexpected error: {e}")
}

impl Sim {
    pub fn new(k: usize, seed: u64) -> R<Sim> {
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
            per_name: PER_NAME_EVERYWHERE,
            name_uv: vec![BTreeMap::new(); k],
            uv_owner: BTreeMap::new(),
            deleted_ids: BTreeSet::new(),
            given_names: BTreeMap::new(),
            pending_seen: vec![BTreeSet::new(); k],
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

    pub fn k(&self) -> usize {
        self.nodes.len()
    }

    pub fn log(&mut self, s: String) {
        self.trace.push(s);
    }

    pub fn report(&self, what: &str) -> String {
        let from = self.trace.len().saturating_sub(60);
        format!(
            "{what}\n--- last steps ---\n{}",
            self.trace[from..].join("\n")
        )
    }

    // ---- local operations ----

    pub fn status(&mut self, i: usize) -> R<Vec<MailboxStatus>> {
        self.nodes[i].status(&account()).map_err(err)
    }

    pub fn rows(&mut self, i: usize, name: &str) -> R<Vec<(Uid, ViewRow)>> {
        self.nodes[i].list(&account(), &mailbox(name)).map_err(err)
    }

    /// The listed mailbox at index `mb` (modulo) on node `i`.
    pub fn pick_mailbox(&mut self, i: usize, mb: u8) -> R<MailboxStatus> {
        let st = self.status(i)?;
        Ok(st[mb as usize % st.len()].clone())
    }

    /// A listed mailbox other than INBOX, if any.
    pub fn pick_other(&mut self, i: usize, which: u8) -> R<Option<MailboxStatus>> {
        let st: Vec<MailboxStatus> = self
            .status(i)?
            .into_iter()
            .filter(|s| s.name != "INBOX")
            .collect();
        Ok((!st.is_empty()).then(|| st[which as usize % st.len()].clone()))
    }

    pub fn uid_set(uids: &[Uid]) -> UidSet {
        let s: Vec<String> = uids.iter().map(|u| u.to_string()).collect();
        UidSet::try_from(s.join(",").as_str()).expect("valid UID set")
    }

    /// Appends messages to `name` on node `i`; returns their GUIDs.
    pub fn append(&mut self, i: usize, name: &str, msgs: &[(u8, u8)]) -> R<Vec<Guid>> {
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

    pub fn store_flags(&mut self, i: usize, name: &str, uids: &[Uid], op: &FlagOp) -> R<()> {
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

    pub fn expunge(&mut self, i: usize, name: &str, uids: &[Uid]) -> R<()> {
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

    pub fn copy(&mut self, i: usize, from: &str, to: &str, uids: &[Uid], remove: bool) -> R<()> {
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

    pub fn delete(&mut self, i: usize, name: &str) -> R<()> {
        // A delete expunges every message the node knows in the mailbox: visible ones and
        // homeless ones waiting for a renumbering.
        let target = self.status(i)?.into_iter().find(|s| s.name == name);
        let known = match &target {
            Some(s) => {
                let mb = MailboxId::try_from(s.id.as_str()).map_err(|e| e.to_string())?;
                tables::live_messages(&self.kvs[i], &mb).map_err(|e| e.to_string())?
            }
            None => Vec::new(),
        };
        match self.nodes[i].delete_mailbox(&account(), &mailbox(name), self.now) {
            Ok(()) => {
                self.stats.mailbox_ops += 1;
                self.deleted_ids.extend(target.map(|s| s.id));
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

    /// Drops node `i` and opens it again from its store, keeping every write.
    pub fn restart(&mut self, i: usize) -> R<()> {
        self.crash_restart(i, usize::MAX)
    }

    /// Node `i` crashes and comes back: of its writes not yet flushed, the first `keep`
    /// survive (sled keeps a prefix of its log). Its live sessions are gone, so every
    /// connection to it is reset; what it had asked for is forgotten, and it asks again
    /// for the blobs its pending changes need.
    pub fn crash_restart(&mut self, i: usize, keep: usize) -> R<()> {
        let in_flight = self.queues.keys().any(|(f, t, _)| *f == i || *t == i);
        if in_flight || !self.missing[i].is_empty() || self.pending_keys(i)?.next().is_some() {
            self.stats.mid_sync_restarts += 1;
        }
        for j in 0..self.k() {
            if j != i {
                self.reset(i, j);
            }
        }
        self.stats.restarts += 1;
        let lost = self.kvs[i].crash(keep);
        if lost > 0 {
            self.stats.crash_drops += 1;
            self.log(format!("  node {i} crashed: {lost} unflushed writes lost"));
        }
        let kv = Arc::new(self.kvs[i].clone());
        self.nodes[i] = Replica::with_kv(kv, None, options()).map_err(err)?;
        if self.nodes[i].node_id() != self.ids[i] {
            return Err(format!("node {i} came back with another identity"));
        }
        self.adopt_survivors(i)?;
        self.missing[i].clear();
        let missing = self.nodes[i].deliver_all(self.now).map_err(err)?;
        self.missing[i].extend(missing);
        Ok(())
    }

    /// The pending-change keys of node `i`.
    pub fn pending_keys(&self, i: usize) -> R<std::vec::IntoIter<Vec<u8>>> {
        let mut keys = Vec::new();
        self.kvs[i]
            .scan(b"P", &mut |k, _| {
                keys.push(k.to_vec());
                true
            })
            .map_err(|e| e.to_string())?;
        Ok(keys.into_iter())
    }

    /// A write that was not acknowledged (its operation died with the store) may still
    /// have survived the crash: messages it added are accepted like any other.
    fn adopt_survivors(&mut self, i: usize) -> R<()> {
        let mut found = Vec::new();
        dovetail::store::msg_blocks::scan(&self.kvs[i], b"N", &mut |mb, block| {
            found.extend(block.into_keys().map(|g| (g, mb.to_hex())));
            true
        })
        .map_err(|e| e.to_string())?;
        for (g, mb) in found {
            if !self.accepted.contains_key(&g) {
                self.log(format!("  {g:?} survived the crash unacknowledged"));
                self.accepted.insert(g, mb);
            }
        }
        Ok(())
    }

    /// Runs one operation of node `i` with its store dying after `after` writes, then
    /// restarts the node keeping `keep` (modulo) of its unflushed writes.
    pub fn crash_during(
        &mut self,
        i: usize,
        what: u8,
        other: u8,
        doc: u8,
        after: u8,
        keep: u8,
    ) -> R<()> {
        self.kvs[i].die_after(after as usize % 3);
        let res = match what % 5 {
            0 => {
                let key = self
                    .queues
                    .iter()
                    .filter(|((_, t, _), q)| *t == i && !q.is_empty())
                    .map(|(k, _)| k.clone())
                    .nth(other as usize % 4);
                match key {
                    Some(key) => {
                        let m = self.pop(&key).expect("non-empty queue");
                        self.receive(key.0, key.1, &key.2, &m)
                    }
                    None => Ok(()),
                }
            }
            1 => {
                let (_, j) = self.pair(i as u8, other);
                self.docs_of(i, j).and_then(|docs| {
                    let d = docs[doc as usize % docs.len()].clone();
                    self.pump(i, j, &d)
                })
            }
            2 => self.blobs(i).map(|_| ()),
            3 => self
                .pick_mailbox(i, other)
                .and_then(|m| self.append(i, &m.name, &[(doc, 0)]).map(|_| ())),
            _ => self.renumber(i).map(|_| ()),
        };
        match res {
            Err(e) if !(self.kvs[i].is_dead() && e.contains("crashed (simulated)")) => {
                return Err(e)
            }
            Err(_) => self.stats.crashes_mid_op += 1,
            Ok(()) => {}
        }
        let unflushed = self.kvs[i].unflushed();
        self.crash_restart(i, keep as usize % (unflushed + 1))
    }

    pub fn renumber(&mut self, i: usize) -> R<usize> {
        let n = self.nodes[i].renumber_due(self.now).map_err(err)?;
        if n > 0 {
            self.stats.renumbered += n;
            self.log(format!("  node {i} renumbered {n}"));
        }
        Ok(n)
    }

    // ---- one random step ----
}
