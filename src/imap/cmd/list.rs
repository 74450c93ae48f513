//! LIST, LSUB and NAMESPACE. One personal namespace, `/` as the hierarchy delimiter. LSUB
//! lists the subscribed names (stored in the account document), whether or not a mailbox
//! has the name now. Names go out in modified UTF-7; patterns are decoded from it.

use crate::imap::convert::mailbox_out;
use crate::imap::mutf7;
use crate::imap::session::{Reply, Session};
use imap_codec::imap_types::core::{IString, QuotedChar};
use imap_codec::imap_types::extensions::namespace::Namespace;
use imap_codec::imap_types::flag::FlagNameAttribute;
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_codec::imap_types::response::Data;
use std::collections::BTreeMap;

fn delimiter() -> QuotedChar {
    QuotedChar::try_from('/').expect("valid delimiter")
}

/// Whether `name` matches an IMAP list pattern: `*` matches anything, `%` anything but
/// the delimiter (RFC 3501 6.3.8).
pub fn matches(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|i| matches(rest, &name[i..])),
        Some((b'%', rest)) => (0..=name.len())
            .take_while(|&i| i == 0 || name[i - 1] != b'/')
            .any(|i| matches(rest, &name[i..])),
        Some((c, rest)) => name.first() == Some(c) && matches(rest, &name[1..]),
    }
}

/// The UTF-8 bytes of a reference name or pattern sent in modified UTF-7.
fn decoded(wire: &[u8]) -> Result<Vec<u8>, Reply> {
    mutf7::decode(wire)
        .map(String::into_bytes)
        .map_err(|e| Reply::bad(e.to_string()))
}

fn bytes_of_mailbox(m: &Mailbox<'_>) -> Result<Vec<u8>, Reply> {
    match m {
        Mailbox::Inbox => Ok(b"INBOX".to_vec()),
        Mailbox::Other(o) => decoded(o.inner().as_ref()),
    }
}

pub async fn list(
    s: &mut Session,
    reference: &Mailbox<'static>,
    pattern: &ListMailbox<'static>,
    lsub: bool,
) -> Reply {
    let Some(account) = s.account().cloned() else {
        return Reply::bad("not logged in");
    };
    // Names are matched in UTF-8 (as stored): the pattern and reference are decoded first.
    let pat = match pattern {
        ListMailbox::Token(t) => decoded(t.as_ref()),
        ListMailbox::String(st) => decoded(st.as_ref()),
    };
    let (pat, mut reference) = match (pat, bytes_of_mailbox(reference)) {
        (Ok(p), Ok(r)) => (p, r),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    if reference.eq_ignore_ascii_case(b"inbox") && !pat.is_empty() {
        reference = b"INBOX".to_vec();
    }
    let done = if lsub {
        "LSUB completed"
    } else {
        "LIST completed"
    };
    if pat.is_empty() && !lsub {
        // The hierarchy delimiter and root (RFC 3501 6.3.8).
        s.data(Data::List {
            items: vec![FlagNameAttribute::Noselect],
            delimiter: Some(delimiter()),
            mailbox: mailbox_out(""),
        });
        return Reply::ok(done);
    }
    let mut full = reference.clone();
    if !full.is_empty() && !full.ends_with(b"/") && !pat.starts_with(b"/") {
        full.push(b'/');
    }
    full.extend_from_slice(&pat);
    let names = match s
        .call(move |r| {
            if lsub {
                return r.subscriptions(&account);
            }
            Ok(r.status(&account)?
                .into_iter()
                .map(|m| m.name)
                .collect::<Vec<_>>())
        })
        .await
    {
        Ok(n) => n,
        Err(r) => return r,
    };
    // Existing mailboxes (or subscribed names), and their ancestors that are not (\Noselect).
    let mut all: BTreeMap<String, bool> = BTreeMap::new();
    // Ancestors matter to `%` only: `*` reaches the names themselves.
    let percent = full.contains(&b'%');
    for n in &names {
        if !percent {
            all.insert(n.clone(), true);
            continue;
        }
        let mut prefix = String::new();
        for (i, level) in n.split('/').enumerate() {
            if i > 0 {
                prefix.push('/');
            }
            prefix.push_str(level);
            all.entry(prefix.clone()).or_insert(false);
        }
        all.insert(n.clone(), true);
    }
    for (name, exists) in all {
        let cmp = |n: &str| -> Vec<u8> {
            // INBOX matches case-insensitively.
            if n == "INBOX" {
                let mut p = full.clone();
                if p.len() >= 5 && p[..5].eq_ignore_ascii_case(b"inbox") {
                    p[..5].copy_from_slice(b"INBOX");
                }
                p
            } else {
                full.clone()
            }
        };
        if !matches(&cmp(&name), name.as_bytes()) {
            continue;
        }
        let items = if exists {
            vec![]
        } else {
            vec![FlagNameAttribute::Noselect]
        };
        let mailbox = mailbox_out(&name);
        s.data(if lsub {
            Data::Lsub {
                items,
                delimiter: Some(delimiter()),
                mailbox,
            }
        } else {
            Data::List {
                items,
                delimiter: Some(delimiter()),
                mailbox,
            }
        });
    }
    Reply::ok(done)
}

pub fn namespace(s: &mut Session) -> Reply {
    s.data(Data::Namespace {
        personal: vec![Namespace {
            prefix: IString::try_from("").expect("empty quoted"),
            delimiter: Some(delimiter()),
            extensions: vec![],
        }],
        other: vec![],
        shared: vec![],
    });
    Reply::ok("NAMESPACE completed")
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn list_patterns() {
        assert!(matches(b"*", b"a/b/c"));
        assert!(matches(b"%", b"abc"));
        assert!(!matches(b"%", b"a/b"));
        assert!(matches(b"a/%", b"a/b"));
        assert!(!matches(b"a/%", b"a/b/c"));
        assert!(matches(b"a*c", b"a/b/c"));
        assert!(!matches(b"x*", b"a"));
        assert!(matches(b"", b""));
    }
}
