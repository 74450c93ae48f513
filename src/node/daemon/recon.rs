//! Range-based set reconciliation of the (document, heads) summary: which documents differ
//! between two nodes, at a cost that grows with the number of differences (times the log of
//! the number of documents), not with the number of documents.
//!
//! Pure: no I/O. The initiator ([`Initiator`]) asks about ranges of the document-id space,
//! each with its fingerprint (XOR of per-item hashes, plus the item count); the responder
//! ([`answer`]) says, per range, `Same`, or lists its items (document, item hash) when the
//! range is small, or splits it into up to [`RECON_FANOUT`] sub-ranges with their
//! fingerprints. The initiator compares each sub-range with its own and asks again about
//! those that differ: one round trip per level, `log16(n)` levels. Equal summaries cost one
//! round trip (the whole id space, one fingerprint).
//!
//! Item hashes are 16 bytes of sha256 over (document, sorted heads); XOR is fine as a
//! fingerprint because the items of a range are a set keyed by document id (an item cannot
//! appear twice and cancel out). A hostile peer can only make its own comparison wrong;
//! every count it sends is bounded and every answer is checked against the question.

use crate::net::protocol::{
    Fingerprint, ReconAnswer, ReconPart, ReconRange, MAX_DOC_ID, MAX_RECON_RANGES, RECON_FANOUT,
    RECON_ITEMS, RECON_LIST,
};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Round trips after which a comparison gives up: a correct peer needs about
/// `log16(documents) + documents / (16 * MAX_RECON_RANGES)`; more means it never narrows.
pub const MAX_ROUNDS: usize = 64;

/// Ranges an initiator keeps pending at most (a peer that keeps splitting without end).
pub const MAX_PENDING: usize = 1 << 20;

/// Why a reconciliation failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReconError {
    #[error("bad reconciliation request: {0}")]
    BadRequest(String),
    #[error("bad reconciliation answer: {0}")]
    BadAnswer(String),
    #[error("reconciliation did not converge in {MAX_ROUNDS} round trips")]
    TooManyRounds,
}

/// One node's documents, sorted by id, each with the hash of (document, sorted heads).
#[derive(Clone, Debug, Default)]
pub struct Summary {
    docs: Vec<String>,
    hashes: Vec<Fingerprint>,
}

/// The hash of one (document, heads) item.
pub fn item_hash(doc: &str, heads: &[[u8; 32]]) -> Fingerprint {
    let mut hs = heads.to_vec();
    hs.sort();
    let mut h = Sha256::new();
    h.update((doc.len() as u64).to_be_bytes());
    h.update(doc.as_bytes());
    h.update((hs.len() as u64).to_be_bytes());
    for x in hs {
        h.update(x);
    }
    let full: [u8; 32] = h.finalize().into();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

impl Summary {
    /// The summary of (document -> heads).
    pub fn new(heads: &BTreeMap<String, Vec<[u8; 32]>>) -> Summary {
        Summary {
            docs: heads.keys().cloned().collect(),
            hashes: heads.iter().map(|(d, h)| item_hash(d, h)).collect(),
        }
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// Whether there is no document.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// The document ids, sorted.
    pub fn docs(&self) -> &[String] {
        &self.docs
    }

    /// Index range of the documents in `[lower, upper)` (`None`: no upper bound).
    fn span(&self, lower: &str, upper: Option<&str>) -> std::ops::Range<usize> {
        let a = self.docs.partition_point(|d| d.as_str() < lower);
        let b = match upper {
            Some(u) => self.docs.partition_point(|d| d.as_str() < u),
            None => self.docs.len(),
        };
        a..b.max(a)
    }

    fn fingerprint(&self, r: std::ops::Range<usize>) -> (Fingerprint, u64) {
        let mut fp = [0u8; 16];
        for h in &self.hashes[r.clone()] {
            for (a, b) in fp.iter_mut().zip(h) {
                *a ^= b;
            }
        }
        (fp, r.len() as u64)
    }
}

/// The shortest prefix of `next` that sorts after `prev` (`prev < next`): a short range
/// bound that still separates the two.
fn separator(prev: &str, next: &str) -> String {
    let common = prev
        .bytes()
        .zip(next.bytes())
        .take_while(|(a, b)| a == b)
        .count();
    let mut end = (common + 1).min(next.len());
    while !next.is_char_boundary(end) {
        end += 1;
    }
    next[..end].to_string()
}

fn check_range(r: &ReconRange) -> Result<(), String> {
    if r.lower.len() > MAX_DOC_ID || r.upper.as_ref().is_some_and(|u| u.len() > MAX_DOC_ID) {
        return Err("range bound too long".into());
    }
    if r.upper.as_ref().is_some_and(|u| *u <= r.lower) {
        return Err(format!("empty range {:?}..{:?}", r.lower, r.upper));
    }
    Ok(())
}

/// The responder's side: answers each range of a request. Ranges the answer has no room
/// for (a frame's worth of items is already listed) are answered [`ReconAnswer::Later`].
pub fn answer(mine: &Summary, ranges: &[ReconRange]) -> Result<Vec<ReconAnswer>, ReconError> {
    if ranges.len() > MAX_RECON_RANGES {
        return Err(ReconError::BadRequest(format!(
            "{} ranges (at most {MAX_RECON_RANGES})",
            ranges.len()
        )));
    }
    // Roughly the bytes of the answer so far: room for the frame limit with a wide margin.
    let budget = crate::net::protocol::CHUNK / 2;
    let mut used = 0usize;
    let mut out = Vec::with_capacity(ranges.len());
    for r in ranges {
        check_range(r).map_err(ReconError::BadRequest)?;
        let span = mine.span(&r.lower, r.upper.as_deref());
        let (fp, count) = mine.fingerprint(span.clone());
        if (fp, count) == (r.fp, r.count) {
            out.push(ReconAnswer::Same);
            continue;
        }
        // An initiator with nothing in the range learns nothing from fingerprints: list
        // more at once.
        let list = if r.count == 0 {
            RECON_LIST
        } else {
            RECON_ITEMS
        };
        if span.len() <= list {
            let size: usize = mine.docs[span.clone()].iter().map(|d| d.len() + 18).sum();
            if used > 0 && used + size > budget {
                out.push(ReconAnswer::Later);
                continue;
            }
            used += size;
            let items = span
                .map(|i| (mine.docs[i].clone(), mine.hashes[i]))
                .collect();
            out.push(ReconAnswer::Items(items));
            continue;
        }
        let chunk = span.len().div_ceil(RECON_FANOUT);
        let mut parts = Vec::with_capacity(RECON_FANOUT);
        let mut start = span.start;
        while start < span.end {
            let end = (start + chunk).min(span.end);
            let (fp, count) = mine.fingerprint(start..end);
            let upper = if end == span.end {
                r.upper.clone()
            } else {
                Some(separator(&mine.docs[end - 1], &mine.docs[end]))
            };
            used += upper.as_ref().map_or(0, |u| u.len()) + 24;
            parts.push(ReconPart { upper, fp, count });
            start = end;
        }
        out.push(ReconAnswer::Split(parts));
    }
    Ok(out)
}

/// On which side a differing document is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Only this node has it.
    Mine,
    /// Only the peer has it.
    Theirs,
    /// Both have it, with different heads.
    Both,
}

/// The initiator's side of one comparison.
pub struct Initiator<'a> {
    mine: &'a Summary,
    /// Ranges to ask about: (lower, upper).
    pending: Vec<(String, Option<String>)>,
    found: BTreeMap<String, Side>,
    rounds: usize,
}

impl<'a> Initiator<'a> {
    /// A comparison of `mine` with a peer's summary, starting with the whole id space.
    pub fn new(mine: &'a Summary) -> Initiator<'a> {
        Initiator {
            mine,
            pending: vec![(String::new(), None)],
            found: BTreeMap::new(),
            rounds: 0,
        }
    }

    /// The next request (at most [`MAX_RECON_RANGES`] ranges), or `None` when done.
    pub fn next_request(&mut self) -> Result<Option<Vec<ReconRange>>, ReconError> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        if self.rounds >= MAX_ROUNDS {
            return Err(ReconError::TooManyRounds);
        }
        self.rounds += 1;
        let n = self.pending.len().min(MAX_RECON_RANGES);
        let ranges = self
            .pending
            .drain(..n)
            .map(|(lower, upper)| {
                let (fp, count) = self
                    .mine
                    .fingerprint(self.mine.span(&lower, upper.as_deref()));
                ReconRange {
                    lower,
                    upper,
                    fp,
                    count,
                }
            })
            .collect();
        Ok(Some(ranges))
    }

    /// Takes the peer's answers to `asked`.
    pub fn on_answer(
        &mut self,
        asked: &[ReconRange],
        answers: Vec<ReconAnswer>,
    ) -> Result<(), ReconError> {
        let bad = |s: String| Err(ReconError::BadAnswer(s));
        if answers.len() != asked.len() {
            return bad(format!(
                "{} answers to {} ranges",
                answers.len(),
                asked.len()
            ));
        }
        for (r, a) in asked.iter().zip(answers) {
            match a {
                ReconAnswer::Same => {}
                ReconAnswer::Later => self.push(r.lower.clone(), r.upper.clone())?,
                ReconAnswer::Items(items) => {
                    let max = if r.count == 0 {
                        RECON_LIST
                    } else {
                        RECON_ITEMS
                    };
                    if items.len() > max {
                        return bad(format!("{} items listed (at most {max})", items.len()));
                    }
                    let within =
                        |d: &String| *d >= r.lower && r.upper.as_ref().is_none_or(|u| d < u);
                    if !items.iter().all(|(d, _)| within(d))
                        || !items.windows(2).all(|w| w[0].0 < w[1].0)
                    {
                        return bad("items out of order or outside the range".into());
                    }
                    self.diff_items(r, &items);
                }
                ReconAnswer::Split(parts) => {
                    if parts.len() < 2 || parts.len() > RECON_FANOUT {
                        return bad(format!("a split into {} parts", parts.len()));
                    }
                    let mut lower = r.lower.clone();
                    for (i, p) in parts.iter().enumerate() {
                        let last = i + 1 == parts.len();
                        let ok = match (&p.upper, last) {
                            (u, true) => *u == r.upper,
                            (Some(u), false) => {
                                *u > lower
                                    && u.len() <= MAX_DOC_ID
                                    && r.upper.as_ref().is_none_or(|ru| u < ru)
                            }
                            (None, false) => false,
                        };
                        if !ok || (last && p.upper.as_ref().is_some_and(|u| *u <= lower)) {
                            return bad("split bounds out of order".into());
                        }
                        let span = self.mine.span(&lower, p.upper.as_deref());
                        let (fp, count) = self.mine.fingerprint(span.clone());
                        if (fp, count) != (p.fp, p.count) {
                            if p.count == 0 {
                                // The peer has nothing here: everything of mine differs.
                                for i in span {
                                    self.found.insert(self.mine.docs[i].clone(), Side::Mine);
                                }
                            } else {
                                self.push(lower.clone(), p.upper.clone())?;
                            }
                        }
                        if let Some(u) = &p.upper {
                            lower = u.clone();
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn push(&mut self, lower: String, upper: Option<String>) -> Result<(), ReconError> {
        if self.pending.len() >= MAX_PENDING {
            return Err(ReconError::BadAnswer("too many ranges to compare".into()));
        }
        self.pending.push((lower, upper));
        Ok(())
    }

    fn diff_items(&mut self, r: &ReconRange, theirs: &[(String, Fingerprint)]) {
        let span = self.mine.span(&r.lower, r.upper.as_deref());
        let (docs, hashes) = (&self.mine.docs[span.clone()], &self.mine.hashes[span]);
        let (mut i, mut j) = (0, 0);
        while i < docs.len() || j < theirs.len() {
            let ord = match (docs.get(i), theirs.get(j)) {
                (Some(a), Some(b)) => a.cmp(&b.0),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match ord {
                std::cmp::Ordering::Less => {
                    self.found.insert(docs[i].clone(), Side::Mine);
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    self.found.insert(theirs[j].0.clone(), Side::Theirs);
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    if hashes[i] != theirs[j].1 {
                        self.found.insert(docs[i].clone(), Side::Both);
                    }
                    i += 1;
                    j += 1;
                }
            }
        }
    }

    /// Round trips (requests) made so far.
    pub fn rounds(&self) -> usize {
        self.rounds
    }

    /// The documents that differ, once [`Initiator::next_request`] returned `None`.
    pub fn finish(self) -> BTreeMap<String, Side> {
        self.found
    }
}

#[cfg(test)]
#[path = "recon_tests.rs"]
mod tests;
