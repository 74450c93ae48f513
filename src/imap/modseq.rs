//! MODSEQ on the wire (docs/design.md §8): `(issuer tag << 40) | counter`, where the counter
//! is this node's per-mailbox MODSEQ and the tag names the node's writer (fresh per
//! incarnation). A value another node issued cannot be read here: it gets a full answer
//! (every message changed), never "nothing changed".

use crate::model::NodeId;
use sha2::{Digest, Sha256};

const COUNTER_BITS: u32 = 40;
const COUNTER_MASK: u64 = (1 << COUNTER_BITS) - 1;
/// Tags are 1..2^23: with 40 counter bits, values stay below 2^63 (RFC 7162's limit).
const TAGS: u64 = (1 << 23) - 1;

/// The issuer of this node's MODSEQ values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Issuer(u64);

impl Issuer {
    /// The issuer of a node (its writer id).
    pub fn of(node: &NodeId) -> Issuer {
        let d: [u8; 32] = Sha256::new()
            .chain_update(b"dovetail-modseq\0")
            .chain_update(node.as_bytes())
            .finalize()
            .into();
        let h = u64::from_be_bytes(d[..8].try_into().expect("8 bytes"));
        Issuer(1 + h % TAGS)
    }

    /// The wire value of a local counter (at least 1: the tag is never 0).
    pub fn wire(&self, counter: u64) -> u64 {
        (self.0 << COUNTER_BITS) | counter.min(COUNTER_MASK)
    }

    /// The local counter a client's value stands for: `None` when this node did not issue
    /// it (another tag, or a counter above the mailbox's highest here), so the caller
    /// answers as if everything changed.
    pub fn local(&self, wire: u64, highest: u64) -> Option<u64> {
        let c = wire & COUNTER_MASK;
        (wire >> COUNTER_BITS == self.0 && c <= highest).then_some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_name_their_issuer() {
        let a = Issuer::of(&NodeId([1; 32]));
        let b = Issuer::of(&NodeId([2; 32]));
        assert_ne!(a, b);
        assert!(a.wire(0) > 0 && a.wire(COUNTER_MASK) < 1 << 63);
        assert!(a.wire(5) < a.wire(6), "grows with the counter");
        assert_eq!(a.local(a.wire(5), 9), Some(5));
        assert_eq!(a.local(a.wire(10), 9), None, "beyond what was issued");
        assert_eq!(b.local(a.wire(5), 9), None, "another node's value");
        assert_eq!(a.local(0, 9), None);
    }
}
