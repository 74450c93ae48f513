//! Which account and mailbox a recipient address delivers to.
//!
//! The rule, tried in order (each name exactly as written, then in lower case):
//! 1. the whole address (`alice@example.org`) names an account → its INBOX;
//! 2. the local part (`alice`) names an account → its INBOX;
//! 3. the local part is `user+detail` and rule 1 or 2 finds an account for `user` (with the
//!    same domain, or bare) → the mailbox `detail` of that account if it exists there
//!    (`alice+Lists/rust@...` → `Lists/rust`; `INBOX` matches in any case), else its INBOX;
//! 4. otherwise the recipient is refused (550 5.1.1).
//!
//! Accounts are never created by delivery: an unknown user is an error the sending MTA
//! reports, not a new mailbox.

use crate::model::{AccountName, MailboxName};
use crate::node::{NodeError, Replica};

/// Where a recipient's copy goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub account: AccountName,
    pub mailbox: MailboxName,
}

/// The account names to try for `local` (and `domain`): whole address first, then the
/// local part, each as written and in lower case.
fn candidates(local: &str, domain: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |s: String| {
        for c in [s.clone(), s.to_ascii_lowercase()] {
            if !out.contains(&c) {
                out.push(c);
            }
        }
    };
    if let Some(d) = domain {
        push(format!("{local}@{d}"));
    }
    push(local.to_string());
    out
}

fn find_account(
    r: &Replica,
    local: &str,
    domain: Option<&str>,
) -> Result<Option<AccountName>, NodeError> {
    for c in candidates(local, domain) {
        if let Ok(a) = AccountName::try_from(c.as_str()) {
            if r.has_account(&a)? {
                return Ok(Some(a));
            }
        }
    }
    Ok(None)
}

/// Resolves `address` on replica `r` by the rule in the module docs; `None`: no account.
pub fn resolve(r: &mut Replica, address: &str) -> Result<Option<Target>, NodeError> {
    let (local, domain) = match address.rsplit_once('@') {
        Some((l, d)) => (l, Some(d)),
        None => (address, None),
    };
    if local.is_empty() {
        return Ok(None);
    }
    if let Some(account) = find_account(r, local, domain)? {
        return Ok(Some(Target {
            account,
            mailbox: MailboxName::inbox(),
        }));
    }
    let Some((user, detail)) = local.split_once('+') else {
        return Ok(None);
    };
    if user.is_empty() {
        return Ok(None);
    }
    let Some(account) = find_account(r, user, domain)? else {
        return Ok(None);
    };
    let mailbox = match MailboxName::try_from(detail) {
        Ok(m) if m.is_inbox() => m,
        Ok(m) => {
            let exists = r.status(&account)?.iter().any(|s| s.name == m.as_str());
            if exists {
                m
            } else {
                MailboxName::inbox()
            }
        }
        Err(_) => MailboxName::inbox(),
    };
    Ok(Some(Target { account, mailbox }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_order() {
        assert_eq!(
            candidates("Alice", Some("Example.org")),
            ["Alice@Example.org", "alice@example.org", "Alice", "alice"]
        );
        assert_eq!(candidates("bob", None), ["bob"]);
    }

    #[test]
    fn resolution_rule() {
        let dir = tempfile::TempDir::new().unwrap();
        Replica::init(dir.path()).unwrap();
        let mut r = Replica::open(dir.path(), crate::node::Options::default()).unwrap();
        let alice = AccountName::try_from("alice").unwrap();
        let full = AccountName::try_from("carol@example.org").unwrap();
        r.create_account(&alice).unwrap();
        r.create_account(&full).unwrap();
        let lists = MailboxName::try_from("Lists/rust").unwrap();
        r.create_mailbox(&alice, &lists).unwrap();
        let t = |r: &mut Replica, a: &str| {
            resolve(r, a)
                .unwrap()
                .map(|t| (t.account.to_string(), t.mailbox.to_string()))
        };
        let pair = |a: &str, m: &str| Some((a.to_string(), m.to_string()));
        assert_eq!(t(&mut r, "alice@example.org"), pair("alice", "INBOX"));
        assert_eq!(t(&mut r, "ALICE@x"), pair("alice", "INBOX"));
        assert_eq!(t(&mut r, "alice"), pair("alice", "INBOX"));
        assert_eq!(
            t(&mut r, "carol@example.org"),
            pair("carol@example.org", "INBOX")
        );
        assert_eq!(t(&mut r, "carol@other.org"), None);
        assert_eq!(t(&mut r, "alice+Lists/rust@x"), pair("alice", "Lists/rust"));
        assert_eq!(t(&mut r, "alice+nope@x"), pair("alice", "INBOX"));
        assert_eq!(t(&mut r, "alice+inbox@x"), pair("alice", "INBOX"));
        assert_eq!(
            t(&mut r, "carol+Lists@example.org"),
            pair("carol@example.org", "INBOX")
        );
        assert_eq!(t(&mut r, "bob@x"), None);
        assert_eq!(t(&mut r, "+x@y"), None);
        assert_eq!(t(&mut r, "@y"), None);
    }
}
