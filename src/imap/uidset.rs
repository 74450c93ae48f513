//! UID sets as sorted, disjoint inclusive ranges, for VANISHED: a client's known-uids can
//! be `1:4294967295`, so the arithmetic works on ranges, never on one UID at a time.

use crate::model::Uid;
use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use std::num::NonZeroU32;

/// Sorted, disjoint, non-adjacent inclusive ranges of UIDs.
pub type Ranges = Vec<(u32, u32)>;

/// Sorts and merges ranges (overlapping or adjacent ones become one).
pub fn normalize(mut v: Ranges) -> Ranges {
    v.sort();
    let mut out: Ranges = Vec::with_capacity(v.len());
    for (lo, hi) in v {
        match out.last_mut() {
            Some(last) if u64::from(lo) <= u64::from(last.1) + 1 => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// The ranges of ascending UIDs.
pub fn of_uids(uids: &[Uid]) -> Ranges {
    normalize(uids.iter().map(|u| (u.get(), u.get())).collect())
}

/// The ranges a set names, `*` standing for `star` (a set of UIDs from a client).
pub fn of_set(set: &SequenceSet, star: u32) -> Ranges {
    let v = |x: &SeqOrUid| match x {
        SeqOrUid::Value(n) => n.get(),
        SeqOrUid::Asterisk => star,
    };
    let seqs: &[Sequence] = set.0.as_ref();
    normalize(
        seqs.iter()
            .map(|s| match s {
                Sequence::Single(a) => (v(a), v(a)),
                Sequence::Range(a, b) => (v(a).min(v(b)), v(a).max(v(b))),
            })
            .filter(|&(lo, _)| lo > 0)
            .collect(),
    )
}

/// Whether `u` is in the ranges.
pub fn contains(r: &[(u32, u32)], u: u32) -> bool {
    let i = r.partition_point(|&(_, hi)| hi < u);
    r.get(i).is_some_and(|&(lo, _)| lo <= u)
}

/// The UIDs of the ranges that are not in `present` (ascending). Costs the ranges plus the
/// present UIDs inside them.
pub fn minus(r: &[(u32, u32)], present: &[Uid]) -> Ranges {
    let mut out = Vec::new();
    for &(lo, hi) in r {
        let mut from = u64::from(lo);
        let start = present.partition_point(|u| u.get() < lo);
        for u in present[start..].iter().take_while(|u| u.get() <= hi) {
            let u = u64::from(u.get());
            if u > from {
                out.push((from as u32, (u - 1) as u32));
            }
            from = u + 1;
        }
        if from <= u64::from(hi) {
            out.push((from as u32, hi));
        }
    }
    out
}

/// The ranges as an IMAP set; `None` when empty. UIDs from 4294967294 up are left out:
/// imap-codec normalizes every set it writes into half-open ranges, and a range ending at
/// 4294967294 comes out as `n:*`, which a VANISHED set may not hold (RFC 7162 known-uids).
/// No node reaches those UIDs in practice (it would take 2^32 appends and renumberings in
/// one mailbox).
pub fn to_set(r: &[(u32, u32)]) -> Option<SequenceSet> {
    let seqs: Vec<Sequence> = r
        .iter()
        .map(|&(lo, hi)| (lo, hi.min(u32::MAX - 2)))
        .filter(|&(lo, hi)| lo <= hi)
        .filter_map(|(lo, hi)| {
            let (a, b) = (NonZeroU32::new(lo)?, NonZeroU32::new(hi)?);
            Some(if a == b {
                Sequence::Single(SeqOrUid::Value(a))
            } else {
                Sequence::Range(SeqOrUid::Value(a), SeqOrUid::Value(b))
            })
        })
        .collect();
    Vec1::try_from(seqs).ok().map(SequenceSet)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uids(v: &[u32]) -> Vec<Uid> {
        v.iter().map(|&u| Uid::new(u).unwrap()).collect()
    }

    #[test]
    fn ranges_minus_present() {
        assert_eq!(
            of_uids(&uids(&[1, 2, 3, 5, 7, 8])),
            vec![(1, 3), (5, 5), (7, 8)]
        );
        let all = vec![(1, u32::MAX)];
        assert_eq!(
            minus(&all, &uids(&[1, 4, 5, 9])),
            vec![(2, 3), (6, 8), (10, u32::MAX)]
        );
        assert_eq!(minus(&[(3, 4)], &uids(&[3, 4])), vec![]);
        assert_eq!(
            minus(&[(1, 2), (6, 9)], &uids(&[2, 3, 9])),
            vec![(1, 1), (6, 8)]
        );
        assert!(contains(&[(2, 3), (6, 8)], 7) && !contains(&[(2, 3), (6, 8)], 5));
        let set = SequenceSet::try_from("5:3,1,9:*").unwrap();
        assert_eq!(of_set(&set, 12), vec![(1, 1), (3, 5), (9, 12)]);
        let back = to_set(&[(1, 1), (3, 5)]).unwrap();
        assert_eq!(of_set(&back, 0), vec![(1, 1), (3, 5)]);
        assert!(to_set(&[]).is_none());
    }
}
