//! Mailbox-level causality. automerge orders changes within one document only, but the UID
//! argument needs causal delivery over all of a mailbox's claims, which live in several
//! segment documents. So every change to a mailbox carries, in its automerge message field,
//! its author's vector clock over that mailbox: per node, how many of that node's changes to
//! the mailbox the author had applied (its own entry counts this change). A receiver applies a
//! change to its view only once everything the clock names is applied.

use super::CrdtError;
use crate::model::{BlobId, NodeId};
use std::collections::BTreeMap;

/// Per node, the number of its changes to one mailbox that have been applied.
pub type VClock = BTreeMap<NodeId, u64>;

/// What a change to a mailbox carries besides its operations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeMeta {
    /// The author.
    pub node: NodeId,
    /// The author's vector clock over the mailbox, including this change
    /// (`clock[node]` is this change's sequence number).
    pub clock: VClock,
    /// Lamport counter of this change: claims made in it have op id (lamport, node).
    pub lamport: u64,
    /// Blobs of the messages this change adds: a receiver stores them before applying it.
    pub blobs: Vec<BlobId>,
}

const TAG: &str = "dt1";

impl ChangeMeta {
    /// The author's sequence number of this change within the mailbox.
    pub fn seq(&self) -> u64 {
        self.clock.get(&self.node).copied().unwrap_or(0)
    }

    /// Whether a node whose applied clock is `applied` can apply this change now: it is the
    /// next change of its author, and every other change it depends on is applied.
    pub fn deliverable(&self, applied: &VClock) -> bool {
        let have = |n: &NodeId| applied.get(n).copied().unwrap_or(0);
        self.seq() == have(&self.node) + 1
            && self
                .clock
                .iter()
                .all(|(n, &c)| n == &self.node || c <= have(n))
    }

    /// Whether `applied` already contains this change.
    pub fn already_applied(&self, applied: &VClock) -> bool {
        applied.get(&self.node).copied().unwrap_or(0) >= self.seq()
    }

    /// Text form for automerge's message field:
    /// `dt1 L=<lamport> C=<node>:<n>,... B=<blob>,...` with the author's entry first.
    pub fn encode(&self) -> String {
        let mut s = format!("{TAG} L={} C={}:{}", self.lamport, self.node, self.seq());
        for (n, c) in &self.clock {
            if n != &self.node {
                s.push_str(&format!(",{n}:{c}"));
            }
        }
        if !self.blobs.is_empty() {
            s.push_str(" B=");
            let b: Vec<String> = self.blobs.iter().map(|b| b.to_hex()).collect();
            s.push_str(&b.join(","));
        }
        s
    }

    /// Parses [`ChangeMeta::encode`]'s output; anything else is an error, never a panic.
    pub fn decode(s: &str) -> Result<ChangeMeta, CrdtError> {
        let bad = |why: &str| CrdtError::BadMeta(format!("{why} in {:?}", truncate(s)));
        let mut parts = s.split(' ');
        if parts.next() != Some(TAG) {
            return Err(bad("missing tag"));
        }
        let (mut lamport, mut node, mut clock, mut blobs) = (None, None, VClock::new(), vec![]);
        for p in parts {
            let (k, v) = p.split_once('=').ok_or_else(|| bad("field without ="))?;
            match k {
                "L" => lamport = Some(v.parse::<u64>().map_err(|_| bad("bad lamport"))?),
                "C" => {
                    for (i, e) in v.split(',').enumerate() {
                        let (n, c) = e.split_once(':').ok_or_else(|| bad("bad clock entry"))?;
                        let n = NodeId::try_from(n).map_err(|_| bad("bad node id"))?;
                        let c = c.parse::<u64>().map_err(|_| bad("bad clock count"))?;
                        if c == 0 || clock.insert(n, c).is_some() {
                            return Err(bad("bad clock entry"));
                        }
                        if i == 0 {
                            node = Some(n);
                        }
                    }
                }
                "B" => {
                    for b in v.split(',') {
                        blobs.push(BlobId::try_from(b).map_err(|_| bad("bad blob id"))?);
                    }
                }
                _ => return Err(bad("unknown field")),
            }
        }
        match (lamport, node) {
            (Some(lamport), Some(node)) if lamport > 0 => Ok(ChangeMeta {
                node,
                clock,
                lamport,
                blobs,
            }),
            _ => Err(bad("missing lamport or clock")),
        }
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(80) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_and_orders() {
        let a = NodeId([1; 32]);
        let b = NodeId([2; 32]);
        let m = ChangeMeta {
            node: b,
            clock: [(a, 3), (b, 2)].into_iter().collect(),
            lamport: 9,
            blobs: vec![BlobId([7; 32])],
        };
        assert_eq!(ChangeMeta::decode(&m.encode()).unwrap(), m);
        let applied: VClock = [(a, 3), (b, 1)].into_iter().collect();
        assert!(m.deliverable(&applied));
        let behind: VClock = [(a, 2), (b, 1)].into_iter().collect();
        assert!(!m.deliverable(&behind));
        for bad in [
            "",
            "dt1",
            "dt1 L=1",
            "dt1 L=x C=00:1",
            "dt1 L=1 C=zz:1",
            "xx L=1",
        ] {
            assert!(ChangeMeta::decode(bad).is_err(), "{bad:?}");
        }
    }
}
