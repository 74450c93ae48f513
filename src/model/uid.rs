use super::ModelError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::num::{NonZeroU32, NonZeroU64};

/// An IMAP UID: non-zero, 32 bits (RFC 3501 §2.3.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Uid(NonZeroU32);

impl Uid {
    /// The smallest UID.
    pub const MIN: Uid = Uid(NonZeroU32::MIN);

    /// Builds a UID; `None` for 0.
    pub fn new(v: u32) -> Option<Uid> {
        NonZeroU32::new(v).map(Uid)
    }
    pub fn get(self) -> u32 {
        self.0.get()
    }
    /// The next UID, or `None` when the 32-bit space is exhausted.
    pub fn next(self) -> Option<Uid> {
        self.0.checked_add(1).map(Uid)
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl TryFrom<&str> for Uid {
    type Error = ModelError;
    fn try_from(s: &str) -> Result<Self, ModelError> {
        s.parse::<u32>()
            .ok()
            .and_then(Uid::new)
            .ok_or_else(|| ModelError::Uid(s.to_string()))
    }
}

/// IMAP UIDVALIDITY: non-zero, 32 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UidValidity(NonZeroU32);

impl UidValidity {
    pub fn new(v: u32) -> Option<UidValidity> {
        NonZeroU32::new(v).map(UidValidity)
    }
    pub fn get(self) -> u32 {
        self.0.get()
    }
}

impl fmt::Display for UidValidity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A CONDSTORE MODSEQ: non-zero, 63 bits in practice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ModSeq(NonZeroU64);

impl ModSeq {
    pub fn new(v: u64) -> Option<ModSeq> {
        NonZeroU64::new(v).map(ModSeq)
    }
    pub fn get(self) -> u64 {
        self.0.get()
    }
}

impl fmt::Display for ModSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One end of a range in a UID set: a number or `*` (the largest UID in use).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Num(u32),
    Star,
}

/// An IMAP UID set such as `3`, `2:7` or `1,4:*` (RFC 3501 `sequence-set`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UidSet(Vec<(End, End)>);

impl UidSet {
    /// Whether `uid` is in the set, given the largest UID in use (`*`).
    pub fn contains(&self, uid: Uid, largest: Option<Uid>) -> bool {
        let star = largest.map(Uid::get).unwrap_or(0);
        let v = |e: End| match e {
            End::Num(n) => n,
            End::Star => star,
        };
        let u = uid.get();
        self.0.iter().any(|&(a, b)| {
            let (lo, hi) = if v(a) <= v(b) {
                (v(a), v(b))
            } else {
                (v(b), v(a))
            };
            lo <= u && u <= hi
        })
    }
}

impl TryFrom<&str> for UidSet {
    type Error = ModelError;
    fn try_from(s: &str) -> Result<Self, ModelError> {
        let bad = || ModelError::UidSet(s.to_string());
        let end = |t: &str| -> Result<End, ModelError> {
            if t == "*" {
                Ok(End::Star)
            } else if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
                Uid::try_from(t)
                    .map(|u| End::Num(u.get()))
                    .map_err(|_| bad())
            } else {
                Err(bad())
            }
        };
        let mut ranges = Vec::new();
        for part in s.split(',') {
            let r = match part.split_once(':') {
                Some((a, b)) => (end(a)?, end(b)?),
                None => {
                    let e = end(part)?;
                    (e, e)
                }
            };
            ranges.push(r);
        }
        Ok(UidSet(ranges))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(n: u32) -> Uid {
        Uid::new(n).unwrap()
    }

    #[test]
    fn uid_sets_parse_and_match() {
        let s = UidSet::try_from("1,4:*").unwrap();
        assert!(s.contains(u(1), Some(u(9))));
        assert!(!s.contains(u(2), Some(u(9))));
        assert!(s.contains(u(9), Some(u(9))));
        let r = UidSet::try_from("7:2").unwrap();
        assert!(r.contains(u(5), None));
        assert!(!r.contains(u(8), None));
        for bad in ["", "0", "1,", "a", "1:2:3", "4294967296", "-1", " 1"] {
            assert!(UidSet::try_from(bad).is_err(), "{bad:?} accepted");
        }
    }
}
