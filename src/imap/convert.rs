//! Model values to and from imap-types: flags, mailbox names, dates, strings, UID sets.

use crate::model::{Flag, FlagSet, MailboxName, ModelError, Uid, UidSet};
use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::core::{AString, Atom, IString, Literal, NString, Quoted, Text};
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::extensions::uidplus::{UidElement, UidSet as ImapUidSet};
use imap_codec::imap_types::flag::{Flag as ImapFlag, FlagFetch};
use imap_codec::imap_types::mailbox::Mailbox;
use std::num::NonZeroU32;

/// Response text: what IMAP's `text` allows (ASCII without CR/LF, not empty, not starting
/// with `[`, which would read as a response code).
pub fn text(s: impl AsRef<str>) -> Text<'static> {
    let mut t: String = s
        .as_ref()
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                ' '
            }
        })
        .collect();
    if t.trim().is_empty() {
        t = "done".into();
    }
    if t.starts_with('[') {
        t.insert(0, ' ');
    }
    Text::try_from(t).unwrap_or_else(|_| Text::try_from("done").expect("valid text"))
}

/// A stored flag as IMAP sends it.
pub fn flag_out(f: &Flag) -> Option<ImapFlag<'static>> {
    if !sendable(f.as_str()) {
        return None;
    }
    Some(match f.as_str() {
        "\\Seen" => ImapFlag::Seen,
        "\\Answered" => ImapFlag::Answered,
        "\\Flagged" => ImapFlag::Flagged,
        "\\Deleted" => ImapFlag::Deleted,
        "\\Draft" => ImapFlag::Draft,
        k => ImapFlag::Keyword(Atom::try_from(k.to_string()).ok()?),
    })
}

/// Whether IMAP can send a stored flag: a system flag, or a keyword that is an atom (others
/// are left out of FLAGS). Allocates nothing (FETCH's metadata encoder asks per flag).
pub fn sendable(s: &str) -> bool {
    matches!(
        s,
        "\\Seen" | "\\Answered" | "\\Flagged" | "\\Deleted" | "\\Draft"
    ) || Atom::validate(s).is_ok()
}

/// A FETCH `FLAGS` item.
pub fn flags_fetch(fs: &FlagSet) -> Vec<FlagFetch<'static>> {
    fs.iter()
        .filter_map(flag_out)
        .map(FlagFetch::Flag)
        .collect()
}

/// A flag a client sent. `\Recent` and unknown system flags are refused.
pub fn flag_in(f: &ImapFlag<'_>) -> Result<Flag, ModelError> {
    let s = match f {
        ImapFlag::Seen => "\\Seen".to_string(),
        ImapFlag::Answered => "\\Answered".to_string(),
        ImapFlag::Flagged => "\\Flagged".to_string(),
        ImapFlag::Deleted => "\\Deleted".to_string(),
        ImapFlag::Draft => "\\Draft".to_string(),
        ImapFlag::Keyword(a) => a.as_ref().to_string(),
        ImapFlag::Extension(_) => f.to_string(),
    };
    Flag::try_from(s.as_str())
}

/// The flags a client sent, as a set.
pub fn flags_in(fs: &[ImapFlag<'_>]) -> Result<FlagSet, ModelError> {
    fs.iter().map(flag_in).collect()
}

/// The bytes of a string argument.
pub fn astring_bytes(a: &AString<'_>) -> Vec<u8> {
    a.as_ref().to_vec()
}

/// Why a mailbox name a client sent is refused: not modified UTF-7, or not a valid name.
#[derive(Debug, thiserror::Error)]
pub enum NameError {
    #[error(transparent)]
    Utf7(#[from] super::mutf7::Utf7Error),
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// A mailbox name a client sent, decoded from modified UTF-7 (RFC 3501 5.1.3) to the UTF-8
/// name dovetail stores. A trailing hierarchy delimiter is dropped (`CREATE a/` creates
/// `a`, RFC 3501 6.3.3).
pub fn mailbox_in(m: &Mailbox<'_>) -> Result<MailboxName, NameError> {
    match m {
        Mailbox::Inbox => Ok(MailboxName::inbox()),
        Mailbox::Other(o) => {
            let raw = super::mutf7::decode(o.inner().as_ref())?;
            let s = raw.strip_suffix('/').unwrap_or(&raw);
            Ok(MailboxName::try_from(s)?)
        }
    }
}

/// A stored (UTF-8) mailbox name as IMAP sends it, in modified UTF-7.
pub fn mailbox_out(name: &str) -> Mailbox<'static> {
    match AString::try_from(super::mutf7::encode(name)) {
        Ok(a) => Mailbox::from(a),
        Err(_) => Mailbox::Inbox,
    }
}

/// An internal date (seconds since the epoch) as IMAP sends it (UTC).
pub fn datetime(secs: i64) -> DateTime {
    let dt = chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or(chrono::DateTime::UNIX_EPOCH)
        .fixed_offset();
    DateTime::try_from(dt).unwrap_or_else(|_| {
        DateTime::try_from(chrono::DateTime::UNIX_EPOCH.fixed_offset()).expect("epoch is valid")
    })
}

/// A string for a response: quoted when it can be, otherwise a literal.
pub fn istring(bytes: &[u8]) -> IString<'static> {
    if let Ok(q) = Quoted::try_from(String::from_utf8_lossy(bytes).into_owned()) {
        if q.inner().as_bytes() == bytes && bytes.len() < 1024 {
            return IString::Quoted(q);
        }
    }
    IString::Literal(literal(bytes))
}

/// A literal. NUL cannot be sent in an IMAP4rev1 literal: it goes as 0x80, as Dovecot does.
pub fn literal(bytes: &[u8]) -> Literal<'static> {
    match Literal::try_from(bytes.to_vec()) {
        Ok(l) => l,
        Err(_) => {
            let clean: Vec<u8> = bytes
                .iter()
                .map(|&b| if b == 0 { 0x80 } else { b })
                .collect();
            Literal::try_from(clean).expect("no NUL left")
        }
    }
}

/// An NSTRING that is never NIL (message bodies and sections).
pub fn nstring(bytes: &[u8]) -> NString<'static> {
    NString(Some(IString::Literal(literal(bytes))))
}

/// An NSTRING from an optional header value.
pub fn nstring_opt(v: Option<&[u8]>) -> NString<'static> {
    match v {
        Some(b) => NString(Some(istring(b))),
        None => NString(None),
    }
}

/// UIDs (ascending) as ranges `a:b`, for COPYUID and the model's [`UidSet`].
pub fn ranges(uids: &[Uid]) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for u in uids {
        let u = u.get();
        match out.last_mut() {
            Some((_, hi)) if hi.checked_add(1) == Some(u) => *hi = u,
            _ => out.push((u, u)),
        }
    }
    out
}

/// The model's UID set of exactly these UIDs (`None` when empty).
pub fn model_set(uids: &[Uid]) -> Option<UidSet> {
    let s: Vec<String> = ranges(uids)
        .into_iter()
        .map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}:{b}")
            }
        })
        .collect();
    if s.is_empty() {
        return None;
    }
    UidSet::try_from(s.join(",").as_str()).ok()
}

/// A UIDPLUS set of exactly these UIDs, in the given order (COPYUID pairs its two sets by
/// position, so they are not sorted here).
pub fn uidplus_set(uids: &[Uid]) -> Option<ImapUidSet> {
    let mut els: Vec<UidElement> = Vec::new();
    let mut run: Option<(u32, u32)> = None;
    let nz = |v: u32| NonZeroU32::new(v).expect("UIDs are not 0");
    let push = |els: &mut Vec<UidElement>, (a, b): (u32, u32)| {
        els.push(if a == b {
            UidElement::Single(nz(a))
        } else {
            UidElement::Range(nz(a), nz(b))
        })
    };
    for u in uids {
        let u = u.get();
        run = match run {
            Some((a, b)) if b.checked_add(1) == Some(u) => Some((a, u)),
            Some(r) => {
                push(&mut els, r);
                Some((u, u))
            }
            None => Some((u, u)),
        };
    }
    if let Some(r) = run {
        push(&mut els, r);
    }
    Vec1::try_from(els).ok().map(ImapUidSet)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(v: &[u32]) -> Vec<Uid> {
        v.iter().map(|&x| Uid::new(x).unwrap()).collect()
    }

    #[test]
    fn uid_ranges_compress() {
        assert_eq!(
            ranges(&u(&[1, 2, 3, 5, 7, 8])),
            vec![(1, 3), (5, 5), (7, 8)]
        );
        let s = model_set(&u(&[1, 2, 3, 5])).unwrap();
        assert!(s.contains(Uid::new(2).unwrap(), None));
        assert!(!s.contains(Uid::new(4).unwrap(), None));
        assert!(model_set(&[]).is_none());
        assert!(uidplus_set(&u(&[4, 5, 9])).is_some());
    }

    #[test]
    fn texts_are_made_valid() {
        assert_eq!(text("a\r\nb").inner(), "a  b");
        assert_eq!(text("").inner(), "done");
        assert_eq!(text("[x]").inner(), " [x]");
    }

    #[test]
    fn flags_round_trip() {
        for f in ["\\Seen", "\\Deleted", "$Work"] {
            let m = Flag::try_from(f).unwrap();
            assert_eq!(flag_in(&flag_out(&m).unwrap()).unwrap(), m);
        }
    }
}
