//! The selected mailbox as one session shows it: the sequence-number map (UIDs in
//! ascending order; a message's sequence number is its index + 1) and the MODSEQ last told
//! per message, so that changes made elsewhere (other sessions, other nodes) are told
//! exactly once and only when IMAP allows: new messages as EXISTS and flag changes as
//! FETCH at any time, expunges as EXPUNGE only outside FETCH, STORE and SEARCH (until then
//! an expunged message keeps its sequence number, RFC 3501 7.4.1). Under QRESYNC expunges
//! are told as one `VANISHED uid-set` instead.
//!
//! A session reads only what changed since the MODSEQ it last read up to (`seen`): the
//! mailbox's change index gives the changed rows and the vanished UIDs, so a change costs
//! the session the change, not a reread of the mailbox.

use super::modseq::Issuer;
use crate::crdt::view::ViewRow;
use crate::model::{FlagSet, MailboxId, MailboxName, Uid};
use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::fetch::MessageDataItem;
use imap_codec::imap_types::response::Data;
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use std::num::NonZeroU32;

/// One visible message as a sync reads it.
#[derive(Clone, Debug)]
pub struct Current {
    pub uid: Uid,
    pub modseq: u64,
    pub flags: FlagSet,
}

impl Current {
    /// From a view row.
    pub fn of(uid: Uid, r: &ViewRow) -> Current {
        Current {
            uid,
            modseq: r.modseq.get(),
            flags: r.flags.clone(),
        }
    }
}

/// The selected mailbox of a session.
#[derive(Debug)]
pub struct Selected {
    pub name: MailboxName,
    pub id: MailboxId,
    pub uidvalidity: u32,
    /// EXAMINE: no flag changes, no expunges, no implicit `\Seen`.
    pub read_only: bool,
    /// The UIDs the client knows, ascending: sequence number = index + 1. Includes messages
    /// expunged since but not yet told.
    uids: Vec<Uid>,
    /// The MODSEQ last told, per entry of `uids`.
    modseqs: Vec<u64>,
    /// A view event about this mailbox arrived since the last sync.
    pub dirty: bool,
    /// This node's MODSEQ counter up to which the session has read the changes.
    pub seen: u64,
    /// Known UIDs that vanished and are not told yet (expunges wait outside FETCH, STORE
    /// and SEARCH), ascending.
    gone: Vec<Uid>,
}

/// What changed in the selected mailbox since the session last read: rows with a greater
/// MODSEQ (ascending by UID) and the UIDs that vanished.
#[derive(Debug, Default)]
pub struct Delta {
    pub rows: Vec<Current>,
    pub vanished: Vec<Uid>,
}

/// A sequence set that names messages the mailbox does not have.
#[derive(Debug)]
pub struct BadSequence;

impl Selected {
    /// A selection showing `uids` (ascending) with the MODSEQs last told, read when the
    /// mailbox's MODSEQ counter was `seen`.
    pub fn of_parts(
        name: MailboxName,
        id: MailboxId,
        uidvalidity: u32,
        read_only: bool,
        uids: Vec<Uid>,
        modseqs: Vec<u64>,
        seen: u64,
    ) -> Selected {
        Selected {
            name,
            id,
            uidvalidity,
            read_only,
            uids,
            modseqs,
            dirty: false,
            seen,
            gone: Vec::new(),
        }
    }

    /// The delta from a full read of the mailbox (`current`, ascending by UID): every row,
    /// and every known UID not in it. The fallback when the change index cannot say.
    pub fn delta_of(&self, current: Vec<Current>) -> Delta {
        let vanished = self
            .uids
            .iter()
            .copied()
            .filter(|u| current.binary_search_by_key(u, |c| c.uid).is_err())
            .collect();
        Delta {
            rows: current,
            vanished,
        }
    }

    /// Messages the client knows (EXISTS).
    pub fn exists(&self) -> u32 {
        self.uids.len() as u32
    }

    /// The UIDs the client knows, ascending.
    pub fn known(&self) -> &[Uid] {
        &self.uids
    }

    /// The sequence number of a UID the client knows.
    pub fn seq_of(&self, uid: Uid) -> Option<NonZeroU32> {
        self.uids
            .binary_search(&uid)
            .ok()
            .and_then(|i| NonZeroU32::new(i as u32 + 1))
    }

    /// The sequence numbers of `uids` (ascending, each one the selection knows), by one
    /// walk instead of a search per UID.
    pub fn seqs_of(&self, uids: &[Uid]) -> Vec<NonZeroU32> {
        let mut out = Vec::with_capacity(uids.len());
        let mut i = 0;
        for &u in uids {
            i += self.uids[i..].partition_point(|&k| k < u);
            out.push(NonZeroU32::new(i as u32 + 1).unwrap_or(NonZeroU32::MIN));
        }
        out
    }

    /// The UID at a sequence number.
    pub fn uid_at(&self, seq: u32) -> Option<Uid> {
        self.uids.get((seq as usize).checked_sub(1)?).copied()
    }

    /// The known UIDs a set names, ascending. By sequence number, a number above EXISTS is
    /// an error (RFC 3501 6.4.5 "invalid message sequence number"); by UID, UIDs that do
    /// not exist are ignored (RFC 3501 6.4.8).
    pub fn resolve(&self, set: &SequenceSet, by_uid: bool) -> Result<Vec<Uid>, BadSequence> {
        let seqs: &[Sequence] = set.0.as_ref();
        if by_uid {
            let largest = self.uids.last().map_or(0, |u| u.get());
            let range = |s: &Sequence| {
                let v = |x: &SeqOrUid| match x {
                    SeqOrUid::Value(n) => n.get(),
                    SeqOrUid::Asterisk => largest,
                };
                match s {
                    Sequence::Single(a) => (v(a), v(a)),
                    Sequence::Range(a, b) => (v(a).min(v(b)), v(a).max(v(b))),
                }
            };
            let ranges: Vec<(u32, u32)> = seqs.iter().map(range).collect();
            if self.uids.is_empty() {
                return Ok(vec![]);
            }
            Ok(self
                .uids
                .iter()
                .copied()
                .filter(|u| {
                    ranges
                        .iter()
                        .any(|&(lo, hi)| lo <= u.get() && u.get() <= hi)
                })
                .collect())
        } else {
            let n = self.exists();
            let mut out = std::collections::BTreeSet::new();
            for s in seqs {
                let v = |x: &SeqOrUid| match x {
                    SeqOrUid::Value(v) => Some(v.get()),
                    SeqOrUid::Asterisk => (n > 0).then_some(n),
                };
                let (a, b) = match s {
                    Sequence::Single(a) => (v(a), v(a)),
                    Sequence::Range(a, b) => (v(a), v(b)),
                };
                // `*` in an empty mailbox names nothing.
                let (Some(a), Some(b)) = (a, b) else {
                    if n == 0 {
                        continue;
                    }
                    return Err(BadSequence);
                };
                let (lo, hi) = (a.min(b), a.max(b));
                if hi > n {
                    return Err(BadSequence);
                }
                for seq in lo..=hi {
                    if let Some(u) = self.uid_at(seq) {
                        out.insert(u);
                    }
                }
            }
            Ok(out.into_iter().collect())
        }
    }

    /// [`Selected::told`] by sequence number.
    pub fn told_at(&mut self, seq: NonZeroU32, modseq: u64) {
        if let Some(m) = self.modseqs.get_mut(seq.get() as usize - 1) {
            *m = (*m).max(modseq);
        }
    }

    /// Records that the client was told the flags of `uid` at `modseq`.
    pub fn told(&mut self, uid: Uid, modseq: u64) {
        if let Ok(i) = self.uids.binary_search(&uid) {
            self.modseqs[i] = self.modseqs[i].max(modseq);
        }
    }

    /// Tells the expunge of UIDs the client knows (ascending): EXPUNGE responses, each
    /// sequence number as it is when the response is read, or under QRESYNC (`vanished`)
    /// one `VANISHED` of the UIDs.
    pub fn expunged(&mut self, gone: &[Uid], vanished: bool) -> Vec<Data<'static>> {
        self.gone.retain(|u| gone.binary_search(u).is_err());
        if vanished {
            let told: Vec<Uid> = gone
                .iter()
                .copied()
                .filter(|u| self.uids.binary_search(u).is_ok())
                .collect();
            self.drop_uids(&told);
            return super::uidset::to_set(&super::uidset::of_uids(&told))
                .map(|known_uids| Data::Vanished {
                    earlier: false,
                    known_uids,
                })
                .into_iter()
                .collect();
        }
        let mut out = Vec::new();
        let mut keep_u = Vec::with_capacity(self.uids.len());
        let mut keep_m = Vec::with_capacity(self.uids.len());
        for (u, m) in self.uids.iter().zip(&self.modseqs) {
            if gone.binary_search(u).is_ok() {
                if let Some(seq) = NonZeroU32::new(keep_u.len() as u32 + 1) {
                    out.push(Data::Expunge(seq));
                }
            } else {
                keep_u.push(*u);
                keep_m.push(*m);
            }
        }
        self.uids = keep_u;
        self.modseqs = keep_m;
        out
    }

    fn drop_uids(&mut self, gone: &[Uid]) {
        let mut keep_u = Vec::with_capacity(self.uids.len());
        let mut keep_m = Vec::with_capacity(self.uids.len());
        for (u, m) in self.uids.iter().zip(&self.modseqs) {
            if gone.binary_search(u).is_err() {
                keep_u.push(*u);
                keep_m.push(*m);
            }
        }
        self.uids = keep_u;
        self.modseqs = keep_m;
    }

    /// Whether known UIDs vanished and wait to be told.
    pub fn expunges_waiting(&self) -> bool {
        !self.gone.is_empty()
    }

    /// Brings the client up to date with what changed: EXPUNGE (or VANISHED under
    /// QRESYNC, `vanished`) for known messages gone, only if `expunge_allowed` (otherwise
    /// they wait), FETCH (FLAGS) for messages whose MODSEQ grew, EXISTS for new messages.
    pub fn sync(
        &mut self,
        delta: &Delta,
        expunge_allowed: bool,
        modseq: Option<Issuer>,
        vanished: bool,
    ) -> Vec<Data<'static>> {
        let mut out = Vec::new();
        for u in &delta.vanished {
            if self.uids.binary_search(u).is_ok() {
                if let Err(i) = self.gone.binary_search(u) {
                    self.gone.insert(i, *u);
                }
            }
        }
        if expunge_allowed && !self.gone.is_empty() {
            let gone = std::mem::take(&mut self.gone);
            out.extend(self.expunged(&gone, vanished));
        }
        let last = self.uids.last().copied();
        let before = self.uids.len();
        for c in &delta.rows {
            match self.uids.binary_search(&c.uid) {
                Ok(i) => {
                    if c.modseq > self.modseqs[i] {
                        self.modseqs[i] = c.modseq;
                        if let Some(seq) = NonZeroU32::new(i as u32 + 1) {
                            let m = modseq.map(|i| i.wire(c.modseq));
                            out.push(flags_data(seq, c.uid, &c.flags, m));
                        }
                    }
                }
                Err(_) if last.is_none_or(|l| c.uid > l) => {
                    self.uids.push(c.uid);
                    self.modseqs.push(c.modseq);
                }
                Err(_) => {
                    // Invariant 3 says this cannot happen: a new message below a UID the
                    // client saw. Showing it would renumber the client's messages, so it
                    // waits for the next SELECT.
                    tracing::error!(uid = %c.uid, "a new message appeared below a known UID");
                }
            }
        }
        if self.uids.len() != before {
            out.push(Data::Exists(self.exists()));
        }
        out
    }
}

/// An untagged `FETCH (UID u FLAGS (...))`, with `MODSEQ (m)` under CONDSTORE.
pub fn flags_data(
    seq: NonZeroU32,
    uid: Uid,
    flags: &FlagSet,
    modseq: Option<u64>,
) -> Data<'static> {
    let mut items = vec![
        MessageDataItem::Uid(NonZeroU32::new(uid.get()).expect("UIDs are not 0")),
        MessageDataItem::Flags(super::convert::flags_fetch(flags)),
    ];
    if let Some(m) = modseq.and_then(std::num::NonZeroU64::new) {
        items.push(MessageDataItem::ModSeq(m));
    }
    Data::Fetch {
        seq,
        items: Vec1::try_from(items).expect("two items"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cur(uid: u32, modseq: u64) -> Current {
        Current {
            uid: Uid::new(uid).unwrap(),
            modseq,
            flags: FlagSet::new(),
        }
    }

    fn sel(rows: &[Current]) -> Selected {
        let uids = rows.iter().map(|r| r.uid).collect();
        let modseqs = rows.iter().map(|r| r.modseq).collect();
        Selected::of_parts(
            MailboxName::inbox(),
            MailboxId([0; 16]),
            1,
            false,
            uids,
            modseqs,
            0,
        )
    }

    fn full(s: &Selected, rows: &[Current]) -> Delta {
        s.delta_of(rows.to_vec())
    }

    #[test]
    fn expunges_wait_until_allowed_then_renumber() {
        let mut s = sel(&[cur(1, 1), cur(2, 1), cur(3, 1), cur(5, 1)]);
        // 2 and 3 expunged elsewhere, 7 appended, 5 re-flagged.
        let now = [cur(1, 1), cur(5, 4), cur(7, 5)];
        let during_fetch = s.sync(&full(&s, &now), false, None, false);
        assert_eq!(during_fetch.len(), 2, "{during_fetch:?}");
        assert!(matches!(during_fetch[1], Data::Exists(5)));
        assert_eq!(s.exists(), 5);
        let later = s.sync(&full(&s, &now), true, None, false);
        let seqs: Vec<u32> = later
            .iter()
            .filter_map(|d| match d {
                Data::Expunge(n) => Some(n.get()),
                _ => None,
            })
            .collect();
        assert_eq!(seqs, vec![2, 2]);
        assert_eq!(s.exists(), 3);
        assert_eq!(s.seq_of(Uid::new(7).unwrap()).map(|n| n.get()), Some(3));
        assert!(
            s.sync(&full(&s, &now), true, None, false).is_empty(),
            "told once"
        );
    }

    #[test]
    fn under_qresync_expunges_are_one_vanished() {
        let mut s = sel(&[cur(1, 1), cur(2, 1), cur(3, 1), cur(5, 1)]);
        let delta = Delta {
            rows: vec![cur(8, 6)],
            vanished: vec![
                Uid::new(2).unwrap(),
                Uid::new(3).unwrap(),
                Uid::new(4).unwrap(),
            ],
        };
        let waiting = s.sync(&delta, false, None, true);
        assert!(matches!(waiting[..], [Data::Exists(5)]), "{waiting:?}");
        assert!(s.expunges_waiting());
        let told = s.sync(&Delta::default(), true, None, true);
        match &told[..] {
            [Data::Vanished {
                earlier: false,
                known_uids,
            }] => assert_eq!(
                super::super::uidset::of_set(known_uids, u32::MAX),
                vec![(2, 3)]
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.exists(), 3);
        assert!(!s.expunges_waiting());
    }

    #[test]
    fn sequence_sets_resolve() {
        let s = sel(&[cur(4, 1), cur(9, 1), cur(12, 1)]);
        let set = |t: &str| SequenceSet::try_from(t).unwrap();
        let u = |v: &[u32]| v.iter().map(|&x| Uid::new(x).unwrap()).collect::<Vec<_>>();
        assert_eq!(s.resolve(&set("2:*"), false).unwrap(), u(&[9, 12]));
        assert!(s.resolve(&set("4"), false).is_err());
        assert_eq!(s.resolve(&set("5:10"), true).unwrap(), u(&[9]));
        assert_eq!(s.resolve(&set("20:*"), true).unwrap(), u(&[12]));
        let empty = sel(&[]);
        assert!(empty.resolve(&set("1:*"), false).unwrap().is_empty());
        assert!(empty.resolve(&set("1:*"), true).unwrap().is_empty());
    }

    #[test]
    fn seqs_of_walks_to_what_seq_of_finds() {
        let s = sel(&[cur(4, 1), cur(9, 1), cur(12, 1), cur(13, 1), cur(40, 1)]);
        let u = |v: &[u32]| v.iter().map(|&x| Uid::new(x).unwrap()).collect::<Vec<_>>();
        for ask in [vec![4, 9, 12, 13, 40], vec![9, 40], vec![13], vec![]] {
            let ask = u(&ask);
            let want: Vec<_> = ask.iter().map(|x| s.seq_of(*x).unwrap()).collect();
            assert_eq!(s.seqs_of(&ask), want, "{ask:?}");
        }
    }
}
