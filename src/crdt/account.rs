//! The account document: the mailbox tree of one account, as flat keys at the root.
//!
//! | key                     | value  | meaning                                          |
//! |-------------------------|--------|--------------------------------------------------|
//! | `mb/<id>/cname`         | string | name at creation                                 |
//! | `mb/<id>/uv`            | number | UIDVALIDITY at creation                          |
//! | `mb/<id>/bump/<uv>`     | true   | (older documents) a value taken at a rename      |
//! | `mb/<id>/name`          | string | current name (a register)                        |
//! | `mb/<id>/alive`         | true   | set by create, *deleted* by delete (add-wins)    |
//! | `mb/<id>/del`           | true   | deleted (meaningful only while `alive` is unset) |
//! | `nm/<name>/<uv>`        | id     | mailbox `id` took this UIDVALIDITY for `name`    |
//! | `user/<login>`          | string | the login's password hash (argon2 PHC string)    |
//! | `sub/<name>`            | true   | IMAP subscription (add-wins, like `alive`)       |
//!
//! **The name rule** (invariant 4 is about names: IMAP clients cache UIDVALIDITY by name).
//! Every create and every rename writes a *pair* (name N, value v, mailbox id) in the same
//! change as the name register it sets: `nm/N/v = id` (a create's pair is also its
//! `cname`/`uv`). Pairs are never removed, so for a name N the set S(N) of the values of
//! N's pairs only grows. N is shown for the live mailbox whose name register is N and which
//! owns the pair of max S(N), with that value, and for no other: so what N shows is always
//! max S(N), which never goes down, and a lower-valued mailbox can never take N back. A
//! mailbox's own value (for the names made up below) is the greatest of its pairs, so it
//! only grows too.
//!
//! Why pairs, and not "the register's name with the mailbox's greatest value": two
//! concurrent changes can leave a mailbox with the name of one (a create of N) and the
//! value of the other (a rename to M that took a greater value); a later change that
//! supersedes the create without having seen that value made the combination vanish, and N
//! went back to a lower value. A pair is written by one change, so it cannot be a
//! combination.
//!
//! A live mailbox named N that does not own max S(N) is listed as `N~<id>`; a deleted
//! mailbox that comes back to hold a concurrently appended message is listed as
//! `N (restored <id>)`, never under N. Both names are unique per mailbox and show its own
//! value.
//!
//! **UIDVALIDITY values.** A create of N takes a value above max S(N) as the creator knows
//! it (so delete + create gives a greater value, RFC 3501 2.3.1.1), chosen by hashing
//! (account, N, that floor) and skipping every value the creator knows in the account, so
//! values are unique within an account (concurrent creates of two names can still draw the
//! same value, with probability ~2^-28 for a first generation). The mailbox id is derived
//! from (account, N, UIDVALIDITY): two nodes that create N concurrently from the same state
//! derive the same id and write the same keys: one mailbox. A rename onto N keeps the
//! mailbox's own value when that is above max S(N), and else takes a greater one the same
//! way (hashed with the mailbox id, so it cannot meet a concurrent create's value).
//!
//! Older documents wrote `nm/<name>/<uv> = true` (at create, rename to and from, delete)
//! and `bump` keys: such a pair belongs to the mailbox whose `uv` or bump has that value.
//!
//! A create concurrent with a delete of the same mailbox keeps it: the delete removes only
//! the `alive` value it observed (automerge map semantics), so a concurrent `alive` survives.

use super::CrdtError;
use crate::model::{AccountName, MailboxId, MailboxName, NodeId, UidValidity};
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{AutoCommit, ReadDoc, ScalarValue, Value, ROOT};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// One mailbox of the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailboxEntry {
    pub id: MailboxId,
    /// Current name (the register; see [`Account::listed`] for the name it is listed under).
    pub name: String,
    pub creation_name: String,
    /// The greatest of the creation value and the bumps.
    pub uidvalidity: UidValidity,
    pub deleted: bool,
}

/// A UIDVALIDITY above `floor` for `name`, not in `taken`: deterministic, so two nodes that
/// create one name from the same state pick the same value.
/// `mailbox` is `None` for a create (whose id derives from the value) and the mailbox for a
/// rename, so that a rename and a concurrent create of the same name above the same floor
/// do not draw the same value.
fn pick_uidvalidity(
    account: &AccountName,
    name: &str,
    floor: u32,
    taken: &BTreeSet<u32>,
    mailbox: Option<&MailboxId>,
) -> Result<UidValidity, CrdtError> {
    for salt in 0u32..64 {
        let mut h = Sha256::new();
        h.update(b"dovetail-uidvalidity\0");
        if let Some(id) = mailbox {
            h.update(b"rename\0");
            h.update(id.as_bytes());
        }
        h.update(account.as_str().as_bytes());
        h.update([0]);
        h.update(name.as_bytes());
        h.update([0]);
        h.update(floor.to_be_bytes());
        h.update(salt.to_be_bytes());
        let d: [u8; 32] = h.finalize().into();
        let r = u64::from_be_bytes(d[..8].try_into().expect("8 bytes"));
        // A first generation spreads over 2^28 values; later ones step at most 2^20 above
        // the floor, which leaves room for thousands of delete + create cycles of a name.
        let v = if floor == 0 {
            1 + r % (1 << 28)
        } else {
            u64::from(floor) + 1 + r % (1 << 20)
        };
        match u32::try_from(v) {
            Ok(v) if !taken.contains(&v) => return Ok(UidValidity::new(v).expect("above 0")),
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    // Near the top of the space (or an unlucky run): the next free value above the floor.
    floor
        .checked_add(1)
        .and_then(|lo| (lo..=u32::MAX).find(|v| !taken.contains(v)))
        .and_then(UidValidity::new)
        .ok_or_else(|| CrdtError::BadEntry {
            key: name.to_string(),
            why: "no UIDVALIDITY left for this name (recreated too many times)".into(),
        })
}

/// What the document says, parsed once.
struct Tree {
    entries: Vec<MailboxEntry>,
    /// The pairs of every name: S(N) and, per value, the mailbox that took it (`None` for
    /// an older key whose owner is not known).
    pairs: BTreeMap<String, BTreeMap<u32, Option<MailboxId>>>,
}

impl Tree {
    /// max S(N), or 0.
    fn top(&self, name: &str) -> u32 {
        self.pairs
            .get(name)
            .and_then(|s| s.keys().next_back().copied())
            .unwrap_or(0)
    }

    /// Every UIDVALIDITY value the account knows (to keep new ones unique).
    fn taken(&self) -> BTreeSet<u32> {
        let pairs = self.pairs.values().flat_map(|s| s.keys().copied());
        pairs
            .chain(self.entries.iter().map(|e| e.uidvalidity.get()))
            .collect()
    }
}

/// The account document.
pub struct Account {
    pub doc: AutoCommit,
}

/// A mailbox as listed: the entry and the name it is listed under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub name: MailboxName,
    pub entry: MailboxEntry,
}

impl Account {
    pub fn new(node: &NodeId) -> Account {
        Account {
            doc: AutoCommit::new().with_actor(super::segment::actor(node)),
        }
    }

    pub fn from_doc(mut doc: AutoCommit, node: &NodeId) -> Account {
        doc.set_actor(super::segment::actor(node));
        Account { doc }
    }

    fn tree(&self) -> Tree {
        #[derive(Default)]
        struct Fields {
            name: Option<String>,
            cname: Option<String>,
            uv: Option<u64>,
            bumps: Vec<u64>,
            alive: bool,
            del: bool,
        }
        let mut fields: BTreeMap<String, Fields> = BTreeMap::new();
        // (name, value, owner as written: an id, or None for an older `true`).
        let mut named: Vec<(String, u32, Option<MailboxId>)> = Vec::new();
        let num = |v: &ScalarValue| match v {
            ScalarValue::Uint(n) => Some(*n),
            ScalarValue::Int(n) => u64::try_from(*n).ok(),
            _ => None,
        };
        for key in self.doc.keys(ROOT) {
            let Ok(Some((Value::Scalar(v), _))) = self.doc.get(ROOT, key.as_str()) else {
                continue;
            };
            if let Some(rest) = key.strip_prefix("nm/") {
                // The name may contain '/': the value is after the last one.
                if let Some((name, n)) = rest.rsplit_once('/') {
                    if let Some(n) = n.parse::<u32>().ok().filter(|n| *n > 0) {
                        let owner = v.as_str().and_then(|id| MailboxId::try_from(id).ok());
                        named.push((name.to_string(), n, owner));
                    }
                }
                continue;
            }
            let mut p = key.splitn(3, '/');
            let (Some("mb"), Some(id), Some(field)) = (p.next(), p.next(), p.next()) else {
                continue;
            };
            let f = fields.entry(id.to_string()).or_default();
            match field {
                "name" => f.name = v.as_str().map(str::to_string),
                "cname" => f.cname = v.as_str().map(str::to_string),
                "uv" => f.uv = num(&v),
                "alive" => f.alive = true,
                "del" => f.del = matches!(v.as_ref(), ScalarValue::Boolean(true)),
                _ => {
                    if let Some(b) = field.strip_prefix("bump/").and_then(|b| b.parse().ok()) {
                        f.bumps.push(b);
                    }
                }
            }
        }
        let mut pairs: BTreeMap<String, BTreeMap<u32, Option<MailboxId>>> = BTreeMap::new();
        // Older keys: the owner of a value is the mailbox whose uv or bump it is.
        let mut owner_of: BTreeMap<u32, MailboxId> = BTreeMap::new();
        let mut entries = Vec::new();
        let mut own: BTreeMap<MailboxId, u32> = BTreeMap::new();
        for (id, f) in fields {
            let Ok(id) = MailboxId::try_from(id.as_str()) else {
                continue;
            };
            let values: Vec<u32> = f
                .bumps
                .iter()
                .copied()
                .chain(f.uv)
                .filter_map(|v| u32::try_from(v).ok().filter(|v| *v > 0))
                .collect();
            for v in &values {
                owner_of.insert(*v, id);
            }
            if let (Some(cname), Some(uv)) = (&f.cname, f.uv.and_then(|v| u32::try_from(v).ok())) {
                if uv > 0 {
                    pairs.entry(cname.clone()).or_default().insert(uv, Some(id));
                }
            }
            if let Some(m) = values.iter().max() {
                own.insert(id, *m);
            }
            let (Some(name), Some(creation_name)) = (f.name, f.cname) else {
                continue;
            };
            entries.push((id, name, creation_name, f.del && !f.alive));
        }
        for (name, v, owner) in named {
            let owner = owner.or_else(|| owner_of.get(&v).copied());
            if let Some(o) = owner {
                let m = own.entry(o).or_insert(v);
                *m = (*m).max(v);
            }
            pairs
                .entry(name)
                .or_default()
                .entry(v)
                .and_modify(|o| *o = o.or(owner))
                .or_insert(owner);
        }
        let entries = entries
            .into_iter()
            .filter_map(|(id, name, creation_name, deleted)| {
                Some(MailboxEntry {
                    uidvalidity: UidValidity::new(*own.get(&id)?)?,
                    id,
                    name,
                    creation_name,
                    deleted,
                })
            })
            .collect();
        Tree { entries, pairs }
    }

    /// Every mailbox entry, deleted ones included, in id order.
    pub fn entries(&self) -> Vec<MailboxEntry> {
        self.tree().entries
    }

    /// The mailboxes to list, under the name rule of this module: not deleted, or deleted
    /// but still holding messages. The same on every node that has the same document and
    /// the same `has_messages`.
    pub fn listed(&self, has_messages: impl Fn(&MailboxId) -> bool) -> Vec<Listed> {
        let tree = self.tree();
        let mut out: Vec<Listed> = Vec::new();
        for mut e in tree.entries.iter().cloned() {
            if e.deleted && !has_messages(&e.id) {
                continue;
            }
            let top = tree.top(&e.name);
            let owns_top = tree
                .pairs
                .get(&e.name)
                .and_then(|s| s.get(&top))
                .is_some_and(|o| *o == Some(e.id));
            let short = &e.id.to_hex()[..8];
            let name = if e.deleted {
                format!("{} (restored {short})", e.name)
            } else if owns_top {
                // Shown under N with N's value (which may be below the mailbox's own
                // greatest value, taken for another name by a concurrent rename).
                e.uidvalidity = UidValidity::new(top).expect("pairs are above 0");
                e.name.clone()
            } else {
                format!("{}~{short}", e.name)
            };
            let name = MailboxName::try_from(name.as_str())
                .unwrap_or_else(|_| MailboxName::try_from(e.id.to_hex().as_str()).expect("hex"));
            out.push(Listed { name, entry: e });
        }
        // A made-up name can still meet a real one (a user may type anything): the
        // greater UIDVALIDITY keeps it, the others get their whole id appended.
        out.sort_by(|a, b| {
            (&a.name, std::cmp::Reverse(a.entry.uidvalidity), a.entry.id).cmp(&(
                &b.name,
                std::cmp::Reverse(b.entry.uidvalidity),
                b.entry.id,
            ))
        });
        for i in 1..out.len() {
            if out[..i].iter().any(|l| l.name == out[i].name) {
                let n = format!("{}~{}", out[i].name, out[i].entry.id);
                out[i].name = MailboxName::try_from(n.as_str()).unwrap_or_else(|_| {
                    MailboxName::try_from(out[i].entry.id.to_hex().as_str()).expect("hex")
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Creates `name`. The caller has checked that no listed mailbox has that name.
    pub fn create(
        &mut self,
        account: &AccountName,
        name: &MailboxName,
    ) -> Result<MailboxEntry, CrdtError> {
        let tree = self.tree();
        let floor = tree.top(name.as_str());
        let uv = pick_uidvalidity(account, name.as_str(), floor, &tree.taken(), None)?;
        let id = MailboxId::derive(account.as_str(), name.as_str(), uv.get());
        let k = |f: &str| format!("mb/{id}/{f}");
        self.doc.put(ROOT, k("cname"), name.as_str())?;
        self.doc.put(ROOT, k("uv"), u64::from(uv.get()))?;
        self.doc.put(ROOT, k("name"), name.as_str())?;
        self.doc.put(ROOT, k("alive"), true)?;
        self.doc
            .put(ROOT, format!("nm/{name}/{}", uv.get()), id.to_hex())?;
        self.commit("create");
        Ok(MailboxEntry {
            id,
            name: name.to_string(),
            creation_name: name.to_string(),
            uidvalidity: uv,
            deleted: false,
        })
    }

    /// Renames a mailbox (bringing it back if it was deleted and restored). The caller has
    /// checked that no listed mailbox has the new name. Returns its UIDVALIDITY, greater
    /// than every value the new name has shown.
    pub fn rename(
        &mut self,
        account: &AccountName,
        id: &MailboxId,
        to: &MailboxName,
    ) -> Result<UidValidity, CrdtError> {
        let tree = self.tree();
        let e = tree
            .entries
            .iter()
            .find(|e| &e.id == id)
            .ok_or_else(|| CrdtError::BadEntry {
                key: id.to_hex(),
                why: "no such mailbox".into(),
            })?;
        let floor = tree.top(to.as_str());
        let mut uv = e.uidvalidity;
        // Equal is this mailbox's own value (values are unique): keep it.
        if floor > uv.get() {
            uv = pick_uidvalidity(account, to.as_str(), floor, &tree.taken(), Some(id))?;
        }
        // The pair and the register in one change: see the module docs.
        self.doc
            .put(ROOT, format!("nm/{to}/{}", uv.get()), id.to_hex())?;
        self.doc.put(ROOT, format!("mb/{id}/name"), to.as_str())?;
        if e.deleted {
            self.doc.put(ROOT, format!("mb/{id}/alive"), true)?;
        }
        self.commit("rename");
        Ok(uv)
    }

    /// Deletes a mailbox: removes the `alive` value this node observed (a concurrent
    /// create keeps the mailbox) and marks it deleted.
    pub fn delete(&mut self, id: &MailboxId) -> Result<(), CrdtError> {
        let alive = format!("mb/{id}/alive");
        if self.doc.get(ROOT, alive.as_str())?.is_some() {
            self.doc.delete(ROOT, alive.as_str())?;
        }
        self.doc.put(ROOT, format!("mb/{id}/del"), true)?;
        self.commit("delete");
        Ok(())
    }

    /// Sets (or, with `None`, removes) the password hash of a login of this account. The
    /// hash replicates with the account so that every node can authenticate the login; two
    /// concurrent changes resolve like any automerge register (the greatest op id wins).
    pub fn set_password(&mut self, login: &str, hash: Option<&str>) -> Result<(), CrdtError> {
        let key = format!("user/{login}");
        match hash {
            Some(h) => self.doc.put(ROOT, key, h)?,
            None => {
                if self.doc.get(ROOT, key.as_str())?.is_some() {
                    self.doc.delete(ROOT, key.as_str())?;
                }
            }
        }
        self.commit("user");
        Ok(())
    }

    /// The password hash of a login of this account, if it has one.
    pub fn password(&self, login: &str) -> Option<String> {
        match self.doc.get(ROOT, format!("user/{login}").as_str()) {
            Ok(Some((v, _))) => v.as_str().map(str::to_string),
            _ => None,
        }
    }

    /// Subscribes to (or unsubscribes from) a mailbox name (IMAP SUBSCRIBE). Names, not
    /// mailboxes: a subscription outlives the mailbox (RFC 3501 6.3.6).
    pub fn subscribe(&mut self, name: &str, on: bool) -> Result<(), CrdtError> {
        let key = format!("sub/{name}");
        if on {
            self.doc.put(ROOT, key, true)?;
        } else if self.doc.get(ROOT, key.as_str())?.is_some() {
            self.doc.delete(ROOT, key.as_str())?;
        }
        self.commit("subscribe");
        Ok(())
    }

    /// The subscribed names, sorted.
    pub fn subscriptions(&self) -> Vec<String> {
        self.doc
            .keys(ROOT)
            .filter_map(|k| k.strip_prefix("sub/").map(str::to_string))
            .collect()
    }

    fn commit(&mut self, what: &str) {
        self.doc
            .commit_with(CommitOptions::default().with_message(format!("dt1-account {what}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_set_replaced_and_removed() {
        let node = NodeId([7; 32]);
        let mut acc = Account::new(&node);
        assert_eq!(acc.password("alice"), None);
        acc.set_password("alice", Some("$argon2id$x")).unwrap();
        assert_eq!(acc.password("alice").as_deref(), Some("$argon2id$x"));
        acc.set_password("alice", Some("$argon2id$y")).unwrap();
        assert_eq!(acc.password("alice").as_deref(), Some("$argon2id$y"));
        // The mailbox tree ignores the key.
        assert!(acc.entries().is_empty());
        acc.set_password("alice", None).unwrap();
        assert_eq!(acc.password("alice"), None);
        // Removing a login that has no password is not an error.
        acc.set_password("bob", None).unwrap();
    }

    #[test]
    fn subscriptions_are_names() {
        let mut acc = Account::new(&NodeId([7; 32]));
        acc.subscribe("Work/2026", true).unwrap();
        acc.subscribe("INBOX", true).unwrap();
        acc.subscribe("Gone", false).unwrap();
        assert_eq!(acc.subscriptions(), vec!["INBOX", "Work/2026"]);
        acc.subscribe("INBOX", false).unwrap();
        assert_eq!(acc.subscriptions(), vec!["Work/2026"]);
        assert!(acc.entries().is_empty(), "not mailboxes");
    }
}
