//! SEARCH and UID SEARCH: flags, sequence and UID sets, sizes, internal and sent dates,
//! header fields and body text (the raw bytes and the decoded text parts, both
//! case-insensitively). Message bodies are read in batches only when a key needs them.

use crate::crdt::view::ViewRow;
use crate::imap::mime::{decoded_texts, Mime};
use crate::imap::modseq::Issuer;
use crate::imap::session::{highest, Reply, Session, State};
use crate::model::{Flag, Uid};
use imap_codec::imap_types::core::AString;
use imap_codec::imap_types::response::Data;
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use std::num::NonZeroU32;

const BATCH: usize = 256;

/// Whether a number is in a set, `*` being `largest` (RFC 3501 sequence-set).
pub fn in_set(set: &SequenceSet, n: u32, largest: u32) -> bool {
    let v = |x: &SeqOrUid| match x {
        SeqOrUid::Value(v) => v.get(),
        SeqOrUid::Asterisk => largest,
    };
    set.0.as_ref().iter().any(|s| match s {
        Sequence::Single(a) => v(a) == n,
        Sequence::Range(a, b) => v(a).min(v(b)) <= n && n <= v(a).max(v(b)),
    })
}

fn needs_raw(k: &SearchKey<'_>) -> bool {
    use SearchKey as K;
    match k {
        K::And(v) => v.as_ref().iter().any(needs_raw),
        K::Or(a, b) => needs_raw(a) || needs_raw(b),
        K::Not(a) => needs_raw(a),
        K::Bcc(_)
        | K::Body(_)
        | K::Cc(_)
        | K::From(_)
        | K::Header(..)
        | K::SentBefore(_)
        | K::SentOn(_)
        | K::SentSince(_)
        | K::Subject(_)
        | K::Text(_)
        | K::To(_) => true,
        _ => false,
    }
}

/// One message as a search sees it.
struct Msg<'m> {
    seq: u32,
    uid: Uid,
    row: &'m ViewRow,
    parsed: Option<Parsed>,
}

/// The parts of a message that text keys look at.
struct Parsed {
    headers: Vec<(String, String)>,
    header_raw: Vec<u8>,
    body_raw: Vec<u8>,
    texts: Vec<String>,
    subject: Option<String>,
    sent: Option<chrono::NaiveDate>,
}

impl Parsed {
    fn of(raw: &[u8]) -> Parsed {
        let m = Mime::parse(raw);
        let (texts, subject) = decoded_texts(raw);
        let headers = m.header_values();
        let sent = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("date"))
            .and_then(|(_, v)| chrono::DateTime::parse_from_rfc2822(v).ok())
            .map(|d| d.date_naive());
        Parsed {
            header_raw: m.header_bytes().to_vec(),
            body_raw: m.body_bytes().to_vec(),
            headers,
            texts,
            subject,
            sent,
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    let hay = hay.to_ascii_lowercase();
    let needle = needle.to_ascii_lowercase();
    hay.windows(needle.len()).any(|w| w == needle.as_slice())
}

fn text_contains(hay: &str, needle: &str) -> bool {
    hay.to_lowercase().contains(&needle.to_lowercase())
}

fn header_has(p: &Parsed, name: &str, value: &AString<'_>) -> bool {
    let v = value.as_ref();
    let vs = String::from_utf8_lossy(v);
    let in_fields = p
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .any(|(_, val)| contains(val.as_bytes(), v));
    let in_subject = name.eq_ignore_ascii_case("subject")
        && p.subject.as_deref().is_some_and(|s| text_contains(s, &vs));
    in_fields || in_subject
}

fn day(secs: i64) -> chrono::NaiveDate {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or(chrono::DateTime::UNIX_EPOCH)
        .date_naive()
}

/// What keys compare against besides the message: the mailbox's EXISTS and largest UID,
/// and this node's MODSEQ issuer with the mailbox's HIGHESTMODSEQ counter.
struct Env {
    exists: u32,
    last_uid: u32,
    issuer: Issuer,
    highest: u64,
}

fn has_modseq(k: &SearchKey<'_>) -> bool {
    use SearchKey as K;
    match k {
        K::And(v) => v.as_ref().iter().any(has_modseq),
        K::Or(a, b) => has_modseq(a) || has_modseq(b),
        K::Not(a) => has_modseq(a),
        K::ModSequence { .. } => true,
        _ => false,
    }
}

fn eval(k: &SearchKey<'_>, m: &Msg<'_>, env: &Env) -> bool {
    use SearchKey as K;
    let (exists, last_uid) = (env.exists, env.last_uid);
    let has = |f: &str| Flag::try_from(f).is_ok_and(|f| m.row.flags.contains(&f));
    let p = m.parsed.as_ref();
    let hdr = |name: &str, v: &AString<'_>| p.is_some_and(|p| header_has(p, name, v));
    let internal = day(m.row.internal_date);
    match k {
        K::And(v) => v.as_ref().iter().all(|k| eval(k, m, env)),
        K::Or(a, b) => eval(a, m, env) || eval(b, m, env),
        K::Not(a) => !eval(a, m, env),
        K::All | K::Old => true,
        K::New | K::Recent => false,
        K::SequenceSet(s) => in_set(s, m.seq, exists),
        K::Uid(s) => in_set(s, m.uid.get(), last_uid),
        K::Answered => has("\\Answered"),
        K::Deleted => has("\\Deleted"),
        K::Draft => has("\\Draft"),
        K::Flagged => has("\\Flagged"),
        K::Seen => has("\\Seen"),
        K::Unanswered => !has("\\Answered"),
        K::Undeleted => !has("\\Deleted"),
        K::Undraft => !has("\\Draft"),
        K::Unflagged => !has("\\Flagged"),
        K::Unseen => !has("\\Seen"),
        K::Keyword(a) => has(a.as_ref()),
        K::Unkeyword(a) => !has(a.as_ref()),
        K::Larger(n) => m.row.size > u64::from(*n),
        K::Smaller(n) => m.row.size < u64::from(*n),
        K::Before(d) => internal < *d.as_ref(),
        K::On(d) => internal == *d.as_ref(),
        K::Since(d) => internal >= *d.as_ref(),
        K::SentBefore(d) => p.and_then(|p| p.sent).is_some_and(|s| s < *d.as_ref()),
        K::SentOn(d) => p.and_then(|p| p.sent).is_some_and(|s| s == *d.as_ref()),
        K::SentSince(d) => p.and_then(|p| p.sent).is_some_and(|s| s >= *d.as_ref()),
        K::Header(name, v) => hdr(&String::from_utf8_lossy(name.as_ref()), v),
        K::Subject(v) => hdr("subject", v),
        K::From(v) => hdr("from", v),
        K::To(v) => hdr("to", v),
        K::Cc(v) => hdr("cc", v),
        K::Bcc(v) => hdr("bcc", v),
        K::Body(v) | K::Text(v) => p.is_some_and(|p| {
            let needle = v.as_ref();
            let ns = String::from_utf8_lossy(needle);
            contains(&p.body_raw, needle)
                || p.texts.iter().any(|t| text_contains(t, &ns))
                || (matches!(k, K::Text(_)) && contains(&p.header_raw, needle))
        }),
        // A value this node did not issue matches everything (docs/design.md 8).
        K::ModSequence { modseq, .. } => match env.issuer.local(*modseq, env.highest) {
            Some(c) => m.row.modseq.get() >= c,
            None => true,
        },
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

pub async fn search(s: &mut Session, criteria: &[SearchKey<'static>], by_uid: bool) -> Reply {
    let State::Selected { mailbox, .. } = &s.state else {
        return Reply::bad("no mailbox selected");
    };
    let known: Vec<Uid> = mailbox.known().to_vec();
    let exists = known.len() as u32;
    let last_uid = known.last().map_or(0, |u| u.get());
    let id = mailbox.id;
    let key = SearchKey::And(
        criteria
            .to_vec()
            .try_into()
            .unwrap_or_else(|_| imap_codec::imap_types::core::Vec1::from(SearchKey::All)),
    );
    let raw = needs_raw(&key);
    let with_modseq = has_modseq(&key);
    s.condstore |= with_modseq;
    let highest = match s.call(move |r| highest(r, &id)).await {
        Ok(h) => h,
        Err(r) => return r,
    };
    let env = Env {
        exists,
        last_uid,
        issuer: s.ctx.issuer,
        highest,
    };
    let mut top = 0;
    let mut hits = Vec::new();
    for (c, chunk) in known.chunks(BATCH).enumerate() {
        let chunk = chunk.to_vec();
        let res = s
            .call(move |r| {
                let rows = crate::store::tables::rows_at(r.kv(), &id, &chunk)?;
                let mut out = Vec::with_capacity(rows.len());
                // rows_at keeps the order of `chunk` and leaves out missing UIDs: the
                // index is the UID's place in `chunk`.
                let mut at = 0;
                for (u, row) in rows {
                    while chunk[at] != u {
                        at += 1;
                    }
                    let body = if raw { r.blob(&row.blob)? } else { None };
                    out.push((at, u, row, body));
                }
                Ok(out)
            })
            .await;
        let rows = match res {
            Ok(r) => r,
            Err(r) => return r,
        };
        for (i, uid, row, body) in rows {
            let m = Msg {
                seq: (c * BATCH + i + 1) as u32,
                uid,
                row: &row,
                parsed: body.as_deref().map(Parsed::of),
            };
            if eval(&key, &m, &env) {
                top = top.max(row.modseq.get());
                let n = if by_uid { uid.get() } else { m.seq };
                hits.extend(NonZeroU32::new(n));
            }
        }
    }
    // Under a MODSEQ key, the highest MODSEQ of the messages found (RFC 7162 3.1.5).
    let modseq = (with_modseq && !hits.is_empty())
        .then(|| std::num::NonZeroU64::new(env.issuer.wire(top)))
        .flatten();
    s.data(Data::Search(hits, modseq));
    Reply::ok("SEARCH completed")
}

#[cfg(test)]
mod tests {
    use super::in_set;
    use imap_codec::imap_types::sequence::SequenceSet;

    #[test]
    fn sets_match() {
        let s = SequenceSet::try_from("2,4:*").unwrap();
        assert!(!in_set(&s, 1, 9));
        assert!(in_set(&s, 2, 9));
        assert!(in_set(&s, 9, 9));
        assert!(!in_set(&s, 3, 9));
    }
}
