//! The UID engine (design notes §3) and the mailbox view it maintains.
//!
//! A *claim* is (GUID, UID, op id). Claims are never removed. A UID claimed by two or more
//! GUIDs is *dead* forever. A message's UID is its live claim with the greatest op id; a
//! message with claims but no live one is *homeless* until a renumbering claims a fresh UID
//! for it at the renumbering node's UIDNEXT (1 + the largest UID claimed by any known claim).
//!
//! The engine works on view tables behind [`ViewTables`] (sled in production, maps in tests)
//! so that a 1M-message mailbox is never held in memory: applying a claim touches only the
//! records of the UID and the GUIDs involved.

use super::meta::VClock;
use super::segment::{Fact, SegmentRef};
use crate::model::{BlobId, Flag, FlagSet, Guid, ModSeq, NodeId, OpId, Uid};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What a node knows about one message of a mailbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsgRec {
    pub blob: BlobId,
    pub size: u64,
    pub internal_date: i64,
    /// Every claim on this message: (UID, op id).
    pub claims: Vec<(Uid, OpId)>,
    /// The flags set: those with at least one add not removed.
    pub flags: FlagSet,
    /// Per flag, the tags of its adds not removed (see `segment`): a `-FLAGS` removes
    /// exactly these.
    pub tags: BTreeMap<Flag, BTreeSet<String>>,
    pub expunged: bool,
    /// The segment holding the message.
    pub home: SegmentRef,
    /// The row this node shows for the message, if it is visible.
    pub shown: Option<Shown>,
}

/// The visible row of a message, as far as the mailbox counters need to remember it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shown {
    pub uid: Uid,
    pub modseq: ModSeq,
    pub hash: u128,
    pub seen: bool,
}

/// One visible message, as listed in UID order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewRow {
    pub guid: Guid,
    pub blob: BlobId,
    pub size: u64,
    pub internal_date: i64,
    pub flags: FlagSet,
    pub modseq: ModSeq,
}

/// Per-node state of one mailbox besides its rows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxMeta {
    /// 1 + the largest UID claimed by any known claim (dead ones included); at least 1.
    pub uidnext: u64,
    /// The largest MODSEQ this node has given out in the mailbox.
    pub highest_modseq: u64,
    /// Changes applied to the view, per author.
    pub applied: VClock,
    /// The largest Lamport counter applied.
    pub lamport: u64,
    /// Visible messages.
    pub exists: u64,
    /// Visible messages without `\Seen`.
    pub unseen: u64,
    /// Order-independent hash of the visible rows: the wrapping sum of their hashes.
    pub digest: u128,
    /// Messages with claims but no live claim, with their greatest claim (op id, UID).
    pub homeless: BTreeMap<Guid, Homeless>,
    /// This node's open segment (generation) and how many messages it holds.
    pub open_segment: Option<(u32, u64)>,
}

impl MailboxMeta {
    pub fn new() -> MailboxMeta {
        MailboxMeta {
            uidnext: 1,
            ..Default::default()
        }
    }

    /// The next sequence number this node's change to the mailbox gets.
    pub fn next_seq(&self, node: &NodeId) -> u64 {
        self.applied.get(node).copied().unwrap_or(0) + 1
    }

    /// Whether `me` made the greatest claim of some homeless message: then it renumbers
    /// at once, and renumbers every homeless message, so that the nodes whose claims
    /// clashed all make the same plan from the same state (identical, harmless claims)
    /// instead of renumbering disjoint subsets from one UIDNEXT and clashing again.
    fn claimant(&self, me: &NodeId) -> bool {
        self.homeless.values().any(|h| h.op.node == *me)
    }

    /// Whether a homeless message is due for renumbering by `me`: every one if `me` is a
    /// claimant, otherwise once *it* has been homeless for the grace period (counted per
    /// message, so a message that became homeless later waits its own full period).
    fn due(&self, h: &Homeless, me: &NodeId, now: i64, grace_secs: i64) -> bool {
        self.claimant(me) || now.saturating_sub(h.since) >= grace_secs
    }

    /// Whether `me` should renumber some homeless messages now.
    pub fn renumber_due(&self, me: &NodeId, now: i64, grace_secs: i64) -> bool {
        self.homeless
            .values()
            .any(|h| self.due(h, me, now, grace_secs))
    }

    /// The claims a renumbering by `me` makes: the homeless messages due, ordered by their
    /// greatest claim (op id, then its UID, so a batch keeps its order; then GUID), given
    /// ascending UIDs from UIDNEXT. Every node that renumbers the same messages from the
    /// same UIDNEXT makes the same claims, so duplicates are harmless. `None` if the 32-bit
    /// UID space of the mailbox would be exhausted.
    pub fn renumber_plan(
        &self,
        me: &NodeId,
        now: i64,
        grace_secs: i64,
    ) -> Option<Vec<(Guid, Uid)>> {
        let mut order: Vec<(OpId, Uid, Guid)> = self
            .homeless
            .iter()
            .filter(|(_, h)| self.due(h, me, now, grace_secs))
            .map(|(g, h)| (h.op, h.uid, *g))
            .collect();
        order.sort();
        order
            .into_iter()
            .enumerate()
            .map(|(i, (_, _, g))| {
                let u = u32::try_from(self.uidnext + i as u64).ok()?;
                Some((g, Uid::new(u)?))
            })
            .collect()
    }

    /// UIDNEXT as an IMAP value (saturating at the top of the 32-bit space).
    pub fn uidnext_u32(&self) -> u32 {
        u32::try_from(self.uidnext).unwrap_or(u32::MAX)
    }
}

/// A message with claims but no live one: its greatest claim, and since when (node clock,
/// seconds) it has been homeless.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Homeless {
    pub op: OpId,
    pub uid: Uid,
    pub since: i64,
}

/// A change to what a node shows, for front ends (IMAP untagged responses) and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ViewEvent {
    /// `guid` became visible at `uid`.
    Shown { uid: Uid, guid: Guid },
    /// `guid` stopped being visible at `uid`.
    Hidden { uid: Uid, guid: Guid },
    /// The flags of the message at `uid` changed.
    Flags { uid: Uid, guid: Guid },
}

/// What the change index says happened at a UID at a MODSEQ (QRESYNC, and sessions that
/// read only what changed since the MODSEQ they last told).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The visible row at the UID has this MODSEQ (a row has one entry: its current one).
    Row,
    /// The UID stopped being visible at this MODSEQ (expunge, a clash making it dead, or a
    /// renumbering moving the message away). Final: a UID that vanished never shows again
    /// (invariant 2), so these entries are the node's expunge history.
    Vanished,
}

/// The tables the engine reads and writes. Reads must see earlier writes of the same batch.
pub trait ViewTables {
    type Error;
    fn msg(&mut self, guid: &Guid) -> Result<Option<MsgRec>, Self::Error>;
    fn put_msg(&mut self, guid: &Guid, rec: MsgRec);
    fn claims_at(&mut self, uid: Uid) -> Result<Vec<(Guid, OpId)>, Self::Error>;
    fn put_claims_at(&mut self, uid: Uid, claims: &[(Guid, OpId)]);
    fn put_row(&mut self, uid: Uid, row: Option<&ViewRow>);
    /// Sets (`Some`) or removes (`None`) the change-index entry of (MODSEQ, UID).
    fn put_change(&mut self, modseq: ModSeq, uid: Uid, change: Option<Change>);
}

/// The hash of one visible row, for the digest.
pub fn row_hash(uid: Uid, guid: &Guid, blob: &BlobId, flags: &FlagSet) -> u128 {
    let mut h = Sha256::new();
    h.update(uid.get().to_be_bytes());
    h.update(guid.as_bytes());
    h.update(blob.as_bytes());
    for f in flags {
        h.update(f.as_str().as_bytes());
        h.update([0]);
    }
    let d: [u8; 32] = h.finalize().into();
    u128::from_be_bytes(d[..16].try_into().expect("16 bytes"))
}

fn is_dead<T: ViewTables>(t: &mut T, uid: Uid) -> Result<bool, T::Error> {
    let at = t.claims_at(uid)?;
    Ok(at.iter().any(|(g, _)| g != &at[0].0))
}

/// Applies the facts of one change (already known to be causally deliverable) to the view.
/// `now` is the node's clock, only used to time the renumbering grace period.
pub fn apply_facts<T: ViewTables>(
    t: &mut T,
    meta: &mut MailboxMeta,
    facts: &[Fact],
    now: i64,
) -> Result<Vec<ViewEvent>, T::Error> {
    // (guid, whether its row content changed besides the UID), in first-touch order, with
    // an index: a change adding 10k messages touches 10k GUIDs, and a linear search per
    // fact made applying it quadratic.
    let mut touched: Vec<(Guid, bool)> = Vec::new();
    let mut index: HashMap<Guid, usize> = HashMap::new();
    let mut touch = |g: Guid, dirty: bool| match index.get(&g) {
        Some(&i) => touched[i].1 |= dirty,
        None => {
            index.insert(g, touched.len());
            touched.push((g, dirty));
        }
    };
    for fact in facts {
        match fact {
            Fact::Message {
                guid,
                blob,
                size,
                internal_date,
                home,
            } => {
                if t.msg(guid)?.is_none() {
                    let rec = MsgRec {
                        blob: *blob,
                        size: *size,
                        internal_date: *internal_date,
                        claims: Vec::new(),
                        flags: FlagSet::new(),
                        tags: BTreeMap::new(),
                        expunged: false,
                        home: *home,
                        shown: None,
                    };
                    t.put_msg(guid, rec);
                    touch(*guid, true);
                }
            }
            Fact::Claim { guid, uid, op } => {
                // Causal delivery puts a message's record before any claim on it; a claim on
                // an unknown GUID can only come from a malformed change and is ignored.
                let Some(mut rec) = t.msg(guid)? else {
                    continue;
                };
                if rec.claims.contains(&(*uid, *op)) {
                    continue;
                }
                rec.claims.push((*uid, *op));
                t.put_msg(guid, rec);
                let mut at = t.claims_at(*uid)?;
                at.push((*guid, *op));
                t.put_claims_at(*uid, &at);
                meta.uidnext = meta.uidnext.max(u64::from(uid.get()) + 1);
                touch(*guid, false);
                for (g, _) in &at {
                    touch(*g, false);
                }
            }
            Fact::Flag {
                guid,
                flag,
                tag,
                present,
            } => {
                let Some(mut rec) = t.msg(guid)? else {
                    continue;
                };
                let tags = rec.tags.entry(flag.clone()).or_default();
                let changed_tags = if *present {
                    tags.insert(tag.clone())
                } else {
                    tags.remove(tag)
                };
                let set = !tags.is_empty();
                if !set {
                    rec.tags.remove(flag);
                }
                let changed_flags = if set {
                    rec.flags.insert(flag.clone())
                } else {
                    rec.flags.remove(flag)
                };
                if changed_flags {
                    t.put_msg(guid, rec);
                    touch(*guid, true);
                } else if changed_tags {
                    t.put_msg(guid, rec);
                }
            }
            Fact::Expunge { guid } => {
                let Some(mut rec) = t.msg(guid)? else {
                    continue;
                };
                if !rec.expunged {
                    rec.expunged = true;
                    t.put_msg(guid, rec);
                    touch(*guid, true);
                }
            }
        }
    }
    let mut events = Vec::new();
    for (g, dirty) in touched {
        refresh(t, meta, &g, dirty, now, &mut events)?;
    }
    Ok(events)
}

/// Recomputes where `guid` is shown and updates its row, the counters and the digest.
fn refresh<T: ViewTables>(
    t: &mut T,
    meta: &mut MailboxMeta,
    guid: &Guid,
    dirty: bool,
    now: i64,
    events: &mut Vec<ViewEvent>,
) -> Result<(), T::Error> {
    let Some(mut rec) = t.msg(guid)? else {
        return Ok(());
    };
    let mut best: Option<(OpId, Uid)> = None;
    if !rec.expunged {
        for &(uid, op) in &rec.claims {
            if !is_dead(t, uid)? && best.is_none_or(|(b, _)| op > b) {
                best = Some((op, uid));
            }
        }
    }
    let new_uid = best.map(|(_, u)| u);
    match rec.claims.iter().map(|&(u, op)| (op, u)).max() {
        Some(greatest) if !rec.expunged && new_uid.is_none() => {
            let (op, uid) = greatest;
            let since = meta.homeless.get(guid).map_or(now, |h| h.since);
            meta.homeless.insert(*guid, Homeless { op, uid, since });
        }
        _ => {
            meta.homeless.remove(guid);
        }
    }
    let old_uid = rec.shown.map(|s| s.uid);
    if old_uid == new_uid && !dirty {
        return Ok(());
    }
    if let Some(old) = rec.shown.take() {
        meta.digest = meta.digest.wrapping_sub(old.hash);
        meta.exists -= 1;
        if !old.seen {
            meta.unseen -= 1;
        }
        t.put_row(old.uid, None);
        t.put_change(old.modseq, old.uid, None);
        if new_uid != Some(old.uid) {
            events.push(ViewEvent::Hidden {
                uid: old.uid,
                guid: *guid,
            });
            if new_uid.is_none() {
                meta.highest_modseq += 1;
            }
            // A move (renumbering) vanishes the old UID at the MODSEQ the new row takes
            // below: one value for both halves of the move.
            let at = meta.highest_modseq + u64::from(new_uid.is_some());
            let at = ModSeq::new(at).expect("above zero");
            t.put_change(at, old.uid, Some(Change::Vanished));
        }
    }
    if let Some(uid) = new_uid {
        meta.highest_modseq += 1;
        let modseq = ModSeq::new(meta.highest_modseq).expect("incremented above zero");
        let hash = row_hash(uid, guid, &rec.blob, &rec.flags);
        let seen = rec.flags.contains(&Flag::seen());
        meta.digest = meta.digest.wrapping_add(hash);
        meta.exists += 1;
        if !seen {
            meta.unseen += 1;
        }
        let row = ViewRow {
            guid: *guid,
            blob: rec.blob,
            size: rec.size,
            internal_date: rec.internal_date,
            flags: rec.flags.clone(),
            modseq,
        };
        t.put_row(uid, Some(&row));
        t.put_change(modseq, uid, Some(Change::Row));
        events.push(if old_uid == Some(uid) {
            ViewEvent::Flags { uid, guid: *guid }
        } else {
            ViewEvent::Shown { uid, guid: *guid }
        });
        rec.shown = Some(Shown {
            uid,
            modseq,
            hash,
            seen,
        });
    }
    t.put_msg(guid, rec);
    Ok(())
}
