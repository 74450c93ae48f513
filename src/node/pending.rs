//! Remote changes waiting to reach the view, and their delivery in mailbox-causal order.
//!
//! The pending table in the store (`P<mailbox><change hash>` → document id) is the truth: a
//! change is written there in the same transaction that stores it in its document, and
//! deleted in the one that applies it to the view. Delivering used to rescan and decode a
//! mailbox's whole pending table for every sync message and blob batch, which made an
//! initial sync quadratic in the changes waiting. [`PendingIndex`] is an in-memory index of
//! that table by what each change waits for:
//! - the blobs it names that are not stored yet (counted per change; a stored blob wakes the
//!   changes that named it);
//! - otherwise, the first mailbox-clock entry it needs (`applied[node] ≥ c`), woken when
//!   delivering a change of `node` makes that true;
//! - otherwise it is ready, and ready changes are applied in (Lamport, node) order, so a
//!   change always comes after the changes it depends on.
//!
//! The index is built from the table on first use (one scan) and is then kept in step with
//! every transaction; a transaction that fails drops it, and the next use rebuilds it, so it
//! never disagrees with what was committed.

use super::doc_id::{parse_doc_id, DocKind};
use super::replica::Replica;
use super::NodeError;
use crate::crdt::meta::ChangeMeta;
use crate::crdt::segment::Segment;
use crate::crdt::view::{self, MailboxMeta};
use crate::model::{BlobId, MailboxId, NodeId};
use crate::store::tables::key_pending;
use crate::store::{StoreError, Tx};
use automerge::ChangeHash;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Mailboxes delivered per transaction by [`Replica::deliver_all`]: bounds the documents a
/// transaction holds open.
const DELIVER_BATCH: usize = 32;

/// Facts applied in one transaction of [`Replica::deliver_all`] at most (a change is not
/// split: the one that crosses it completes). ~7k appended messages: tens of MB of records.
const TX_FACTS: usize = 20_000;

/// The pending table, indexed by what each change waits for.
#[derive(Default)]
pub(crate) struct PendingIndex {
    /// Built from the store (false: rebuild before use).
    loaded: bool,
    mbs: HashMap<MailboxId, Waiting>,
    /// Blob → the waiting changes that name it and lack it.
    by_blob: HashMap<BlobId, Vec<(MailboxId, ChangeHash)>>,
    /// Blobs stored since the index last looked.
    arrived: Vec<BlobId>,
    /// Mailboxes that had changes delivered since [`Replica::renumber_delivered`] last
    /// looked: the only ones a delivery can have made due for renumbering.
    pub(crate) delivered: HashSet<MailboxId>,
    /// Changes decoded into the index so far (each once while it waits): what keeps
    /// delivery linear, and what the tests count.
    pub(crate) decoded: u64,
}

/// The waiting changes of one mailbox.
#[derive(Default)]
struct Waiting {
    items: HashMap<ChangeHash, Item>,
    /// node → c → changes waiting until `applied[node] ≥ c`.
    by_clock: HashMap<NodeId, BTreeMap<u64, Vec<ChangeHash>>>,
    /// Changes with every blob, to check against the clock and apply, in Lamport order.
    ready: BTreeSet<(u64, NodeId, ChangeHash)>,
    /// Blobs this mailbox's changes lack, with how many changes lack each.
    lacking: BTreeMap<BlobId, usize>,
}

struct Item {
    cm: ChangeMeta,
    doc: String,
    /// Blobs of this change not stored yet.
    lacking: usize,
}

impl PendingIndex {
    /// Forgets everything: the next use rebuilds the index from the store.
    pub(crate) fn reset(&mut self) {
        *self = PendingIndex::default();
    }

    /// A blob was stored: the changes waiting for it may go on.
    pub(crate) fn blob_stored(&mut self, id: &BlobId) {
        if self.loaded && self.by_blob.contains_key(id) {
            self.arrived.push(*id);
        }
    }

    /// Changes waiting, and distinct blobs they lack (`None` before the index is built).
    pub(crate) fn counts(&self) -> Option<(usize, usize)> {
        self.loaded.then(|| {
            let changes = self.mbs.values().map(|w| w.items.len()).sum();
            (changes, self.by_blob.len())
        })
    }

    /// Turns stored blobs into ready changes.
    fn take_arrivals(&mut self) {
        for b in std::mem::take(&mut self.arrived) {
            let Some(waiters) = self.by_blob.remove(&b) else {
                continue;
            };
            for (mb, h) in waiters {
                let Some(w) = self.mbs.get_mut(&mb) else {
                    continue;
                };
                if let Some(n) = w.lacking.get_mut(&b) {
                    *n -= 1;
                    if *n == 0 {
                        w.lacking.remove(&b);
                    }
                }
                if let Some(it) = w.items.get_mut(&h) {
                    it.lacking -= 1;
                    if it.lacking == 0 {
                        // Checked against the clock when the mailbox is delivered.
                        w.ready.insert((it.cm.lamport, it.cm.node, h));
                    }
                }
            }
        }
    }
}

impl Waiting {
    /// Files a change with every blob under what it waits for now.
    fn classify(&mut self, h: ChangeHash, applied: &crate::crdt::meta::VClock, causal: bool) {
        let Some(it) = self.items.get(&h) else {
            return;
        };
        let cm = &it.cm;
        let have = |n: &NodeId| applied.get(n).copied().unwrap_or(0);
        let wait = if !causal || cm.already_applied(applied) {
            None
        } else if have(&cm.node) + 1 < cm.seq() {
            Some((cm.node, cm.seq() - 1))
        } else {
            cm.clock
                .iter()
                .find(|(n, &c)| **n != cm.node && c > have(n))
                .map(|(n, &c)| (*n, c))
        };
        match wait {
            Some((n, c)) => self
                .by_clock
                .entry(n)
                .or_default()
                .entry(c)
                .or_default()
                .push(h),
            None => {
                self.ready.insert((cm.lamport, cm.node, h));
            }
        }
    }

    /// Re-files the changes whose clock wait `applied` now satisfies.
    fn wake(&mut self, applied: &crate::crdt::meta::VClock, causal: bool) {
        let mut woken = Vec::new();
        self.by_clock.retain(|n, waits| {
            let have = applied.get(n).copied().unwrap_or(0);
            let later = waits.split_off(&(have + 1));
            for (_, hs) in std::mem::replace(waits, later) {
                woken.extend(hs);
            }
            !waits.is_empty()
        });
        for h in woken {
            self.classify(h, applied, causal);
        }
    }
}

impl Replica {
    /// Builds the pending index from the store, once. Called outside any transaction (it
    /// drops the open documents it loaded).
    pub(crate) fn ensure_pending(&mut self) -> Result<(), NodeError> {
        if self.pending.loaded {
            return Ok(());
        }
        self.pending.reset();
        let mut rows: Vec<(MailboxId, ChangeHash, String)> = Vec::new();
        let mut bad = None;
        self.kv.scan(b"P", &mut |k, v| {
            let mb = MailboxId::from_slice(k.get(1..17).unwrap_or_default());
            let h = k.get(17..49).and_then(|b| <[u8; 32]>::try_from(b).ok());
            match (mb, h) {
                (Some(mb), Some(h)) => {
                    rows.push((mb, ChangeHash(h), String::from_utf8_lossy(v).into_owned()))
                }
                _ => {
                    bad = Some(k.to_vec());
                    return false;
                }
            }
            true
        })?;
        if let Some(k) = bad {
            return Err(StoreError::Corrupt {
                key: hex::encode(k),
                why: "bad pending key".into(),
            }
            .into());
        }
        self.pending.loaded = true;
        let kv = std::sync::Arc::clone(&self.kv);
        let mut start = 0;
        while start < rows.len() {
            // One read-only transaction per mailbox: nothing is written while loading but
            // the deletion of entries that can never apply, committed below.
            let mb = rows[start].0;
            let end = rows[start..]
                .iter()
                .position(|r| r.0 != mb)
                .map_or(rows.len(), |p| start + p);
            let mut tx = Tx::new(kv.as_ref());
            let applied = tx
                .mailbox_meta(&mb)?
                .unwrap_or_else(MailboxMeta::new)
                .applied;
            for (_, h, doc) in &rows[start..end] {
                self.index_change(&mut tx, &mb, *h, doc, &applied)?;
            }
            tx.commit()?;
            self.close_docs();
            start = end;
        }
        Ok(())
    }

    /// Adds a change of the pending table to the index. A change that cannot be read (its
    /// document or its dovetail metadata missing) leaves the table in `tx`.
    pub(crate) fn index_change(
        &mut self,
        tx: &mut Tx<'_>,
        mb: &MailboxId,
        h: ChangeHash,
        doc: &str,
        applied: &crate::crdt::meta::VClock,
    ) -> Result<(), NodeError> {
        self.pending.decoded += 1;
        let cm = match self.doc(tx, doc, false)? {
            Some((am, _)) => match am.get_change_by_hash(&h) {
                Some(change) => change.message().map(ChangeMeta::decode),
                None => None,
            },
            None => None,
        };
        let cm = match cm {
            Some(Ok(cm)) => cm,
            other => {
                tracing::warn!(doc = %doc, change = %h, ?other, "ignoring a change without dovetail metadata");
                tx.delete(key_pending(mb, &h));
                return Ok(());
            }
        };
        if cm.already_applied(applied) {
            tx.delete(key_pending(mb, &h));
            return Ok(());
        }
        let w = self.pending.mbs.entry(*mb).or_default();
        if w.items.contains_key(&h) {
            return Ok(());
        }
        let mut lacking = 0;
        // One look at the body index for the change's bodies (a bulk change names
        // thousands, and the copier stores bodies into the same index meanwhile).
        let ids: Vec<[u8; 32]> = cm.blobs.iter().map(|b| b.0).collect();
        let have = self
            .kv
            .blob_has_many(&ids)
            .unwrap_or_else(|_| vec![false; ids.len()]);
        for (b, has) in cm.blobs.iter().zip(have) {
            if has {
                continue;
            }
            lacking += 1;
            *w.lacking.entry(*b).or_default() += 1;
            self.pending.by_blob.entry(*b).or_default().push((*mb, h));
        }
        w.items.insert(
            h,
            Item {
                cm,
                doc: doc.to_string(),
                lacking,
            },
        );
        if lacking == 0 {
            w.classify(h, applied, self.opts.causal_delivery);
        }
        Ok(())
    }

    /// Records changes just stored in `doc` as pending for mailbox `mb` and delivers what it
    /// can. Returns the blobs the new changes lack.
    pub(crate) fn receive_pending(
        &mut self,
        tx: &mut Tx<'_>,
        mb: &MailboxId,
        doc: &str,
        new: &[ChangeHash],
        now: i64,
    ) -> Result<Vec<BlobId>, NodeError> {
        let applied = tx
            .mailbox_meta(mb)?
            .unwrap_or_else(MailboxMeta::new)
            .applied;
        for h in new {
            tx.put_raw(key_pending(mb, h), doc.as_bytes().to_vec());
            self.index_change(tx, mb, *h, doc, &applied)?;
        }
        self.deliver(tx, mb, now)?;
        let mut missing = Vec::new();
        if let Some(w) = self.pending.mbs.get(mb) {
            for h in new {
                if let Some(it) = w.items.get(h) {
                    missing.extend(
                        it.cm
                            .blobs
                            .iter()
                            .filter(|b| w.lacking.contains_key(b))
                            .copied(),
                    );
                }
            }
        }
        missing.sort();
        missing.dedup();
        Ok(missing)
    }

    /// Applies every pending change that can be applied now (after blobs arrived). Returns
    /// every blob the changes still waiting lack.
    pub fn deliver_all(&mut self, now: i64) -> Result<Vec<BlobId>, NodeError> {
        self.ensure_pending()?;
        self.pending.take_arrivals();
        // One transaction holds every record it writes until it commits: a new node's
        // initial sync (100k messages ready in one mailbox) held them all at once. So a
        // transaction stops after `TX_FACTS` facts, and a round cut short starts again with
        // every mailbox that has work (each cut round applied `TX_FACTS` facts: this ends).
        loop {
            let work = self.mailboxes_with_work();
            let mut cut = false;
            for chunk in work.chunks(DELIVER_BATCH) {
                cut = self.write(|r, tx| {
                    let mut budget = TX_FACTS;
                    for mb in chunk {
                        r.deliver_within(tx, mb, now, &mut budget)?;
                        if budget == 0 {
                            return Ok(true);
                        }
                    }
                    Ok(false)
                })?;
                if cut {
                    break;
                }
            }
            if !cut {
                break;
            }
        }
        Ok(self.pending.by_blob.keys().copied().collect())
    }

    /// Mailboxes with a change ready or waiting on the clock (a local write may have moved
    /// it); those only waiting for blobs have nothing to do.
    fn mailboxes_with_work(&self) -> Vec<MailboxId> {
        self.pending
            .mbs
            .iter()
            .filter(|(_, w)| !w.ready.is_empty() || !w.by_clock.is_empty())
            .map(|(mb, _)| *mb)
            .collect()
    }

    /// Applies the pending changes of a mailbox that can be applied, in causal order.
    pub(crate) fn deliver(
        &mut self,
        tx: &mut Tx<'_>,
        mb: &MailboxId,
        now: i64,
    ) -> Result<(), NodeError> {
        let mut unbounded = usize::MAX;
        self.deliver_within(tx, mb, now, &mut unbounded)
    }

    /// [`Replica::deliver`], stopping once the changes applied brought `budget` facts (it
    /// is decreased by what was applied; the rest stays ready for the next call).
    fn deliver_within(
        &mut self,
        tx: &mut Tx<'_>,
        mb: &MailboxId,
        now: i64,
        budget: &mut usize,
    ) -> Result<(), NodeError> {
        self.pending.take_arrivals();
        let causal = self.opts.causal_delivery;
        let Some(mut w) = self.pending.mbs.remove(mb) else {
            return Ok(());
        };
        self.pending.delivered.insert(*mb);
        let res = self.deliver_waiting(tx, mb, &mut w, causal, now, budget);
        if !w.items.is_empty() {
            self.pending.mbs.insert(*mb, w);
        }
        res
    }

    fn deliver_waiting(
        &mut self,
        tx: &mut Tx<'_>,
        mb: &MailboxId,
        w: &mut Waiting,
        causal: bool,
        now: i64,
        budget: &mut usize,
    ) -> Result<(), NodeError> {
        let mut meta = tx.mailbox_meta(mb)?.unwrap_or_else(MailboxMeta::new);
        w.wake(&meta.applied, causal);
        let mut changed = false;
        while *budget > 0 {
            let Some((_, _, h)) = w.ready.pop_first() else {
                break;
            };
            let Some(it) = w.items.get(&h) else {
                continue;
            };
            if it.cm.already_applied(&meta.applied) {
                w.items.remove(&h);
                tx.delete(key_pending(mb, &h));
                continue;
            }
            if causal && !it.cm.deliverable(&meta.applied) {
                w.classify(h, &meta.applied, causal);
                continue;
            }
            let Item { cm, doc, .. } = w.items.remove(&h).expect("present above");
            if cm.node == self.node && !self.replaying {
                // Our own writer made this change and we never applied it: this data dir
                // went back in time (restored from a backup or a snapshot).
                tracing::warn!(doc = %doc, change = %h, "received a change of our own writer that this data dir does not have: it was restored; switching writer");
                self.rewound = true;
            }
            let Some(DocKind::Segment(_, seg)) = parse_doc_id(&doc) else {
                tx.delete(key_pending(mb, &h));
                continue;
            };
            let node = self.node;
            let Some((am, _)) = self.doc(tx, &doc, false)? else {
                continue;
            };
            let Some(change) = am.get_change_by_hash(&h) else {
                continue;
            };
            let s = Segment::from_doc(std::mem::take(am), &node, seg);
            let facts = s.facts_of(&change, &cm);
            *am = s.doc;
            match facts {
                Ok(facts) => {
                    *budget = budget.saturating_sub(facts.len().max(1));
                    let events = view::apply_facts(&mut tx.view(*mb), &mut meta, &facts, now)?;
                    self.stage_events(mb, events, true);
                }
                Err(e) => {
                    // Every node skips the same malformed change, so views still agree.
                    tracing::warn!(doc = %doc, change = %h, error = %e, "skipping a malformed change");
                }
            }
            meta.applied.insert(cm.node, cm.seq());
            meta.lamport = meta.lamport.max(cm.lamport);
            tx.delete(key_pending(mb, &h));
            changed = true;
            // Changes that waited for this one.
            w.wake(&meta.applied, causal);
        }
        if changed {
            tx.put_mailbox_meta(mb, &meta);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{AccountName, FlagSet, MailboxName};
    use crate::node::{NewMessage, Options, Replica};
    use crate::store::MemKv;
    use std::sync::Arc;

    fn replica(seed: u8) -> Replica {
        Replica::with_kv(Arc::new(MemKv::new()), Some([seed; 32]), Options::default())
            .expect("replica")
    }

    /// 300 changes arrive at once, each lacking its blob; the blobs then come one by one,
    /// last first (so almost every change waits for an earlier one too). Every change is
    /// decoded once, not once per delivery (rescanning per delivery decodes ~45,000 times), and the
    /// receiver ends up showing exactly what the sender shows.
    #[test]
    fn waiting_changes_are_decoded_once_however_the_blobs_come() {
        const N: usize = 300;
        let alice = AccountName::try_from("alice").expect("account");
        let inbox = MailboxName::inbox();
        let mut a = replica(1);
        a.create_account(&alice).expect("account");
        for i in 0..N {
            let m = NewMessage {
                name: format!("m{i}"),
                bytes: format!("Subject: {i}\r\n\r\nbody {i}\r\n").into_bytes(),
                flags: FlagSet::new(),
                internal_date: 0,
            };
            a.append(&alice, &inbox, vec![m], 0).expect("append");
        }
        let mut b = replica(2);
        let (ida, idb) = (a.node_id(), b.node_id());
        let mut missing = Vec::new();
        let docs: Vec<String> = {
            let mut d: Vec<String> = a
                .doc_heads()
                .expect("heads")
                .into_iter()
                .map(|x| x.0)
                .collect();
            d.sort_by_key(|id| !id.starts_with("acct/"));
            d
        };
        for doc in &docs {
            for _ in 0..16 {
                let mut quiet = true;
                if let Some(m) = a.sync_generate(&idb, doc).expect("generate") {
                    quiet = false;
                    missing.extend(b.sync_receive(&ida, doc, &m, 0).expect("receive"));
                }
                if let Some(m) = b.sync_generate(&ida, doc).expect("generate") {
                    quiet = false;
                    a.sync_receive(&idb, doc, &m, 0).expect("receive");
                }
                if quiet {
                    break;
                }
            }
        }
        assert_eq!(missing.len(), N, "every change lacks its blob");
        assert_eq!(b.pending_counts(), Some((N, N)));
        missing.reverse();
        for id in &missing {
            let bytes = a.blob(id).expect("read").expect("sender has it");
            assert!(b.put_blob(id, &bytes).expect("store"));
            b.deliver_all(0).expect("deliver");
        }
        assert_eq!(b.pending_counts(), Some((0, 0)));
        assert!(
            b.pending.decoded <= N as u64 + 2,
            "decoded {} times for {N} changes",
            b.pending.decoded
        );
        assert_eq!(
            a.list(&alice, &inbox).expect("a"),
            b.list(&alice, &inbox).expect("b")
        );
        assert_eq!(a.status(&alice).expect("a"), b.status(&alice).expect("b"));
    }

    /// More facts arrive at once than one delivery transaction takes (`TX_FACTS`): the
    /// delivery goes on over several transactions and the receiver ends up showing
    /// exactly what the sender shows.
    #[test]
    fn a_delivery_larger_than_one_transaction_completes() {
        let alice = AccountName::try_from("alice").expect("account");
        let inbox = MailboxName::inbox();
        let mut a = replica(1);
        a.create_account(&alice).expect("account");
        // 5 changes of 3,000 messages, 6,000 facts each (an add and a claim per message):
        // the first transaction stops after the fourth, the fifth goes in the next.
        for batch in 0..5 {
            let msgs = (0..3_000)
                .map(|i| NewMessage {
                    name: format!("m{batch}-{i}"),
                    bytes: format!("Subject: {batch}-{i}\r\n\r\nbody\r\n").into_bytes(),
                    flags: FlagSet::new(),
                    internal_date: 0,
                })
                .collect();
            a.append(&alice, &inbox, msgs, 0).expect("append");
        }
        const _: () = assert!(4 * 3_000 * 2 >= super::TX_FACTS && 3 * 3_000 * 2 < super::TX_FACTS);
        let mut b = replica(2);
        crate::node::sync_pair(&mut a, &mut b, 0).expect("sync");
        let (sa, sb) = (a.status(&alice).expect("a"), b.status(&alice).expect("b"));
        assert_eq!(sa[0].messages, 15_000);
        assert_eq!(sa, sb);
    }
}
