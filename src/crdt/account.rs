//! The account document: the mailbox tree of one account, as flat keys at the root:
//! `mb/<mailbox id>/<field>` with fields `cname` (name at creation), `gen` (generation of that
//! name), `uv` (UIDVALIDITY), `name` (current name, a register) and `del` (deleted).
//!
//! A mailbox's id is derived from (account, creation name, generation), so two nodes that
//! create one name concurrently write the same keys with the same values: one mailbox, one
//! UIDVALIDITY. Deleting and creating again bumps the generation: a new mailbox whose
//! UIDVALIDITY is greater. A deleted mailbox that still holds messages (appended concurrently
//! with the delete) stays listed, so nothing is silently lost.

use super::CrdtError;
use crate::model::{AccountName, MailboxId, MailboxName, NodeId, UidValidity};
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{AutoCommit, ReadDoc, ScalarValue, Value, ROOT};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// One mailbox of the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailboxEntry {
    pub id: MailboxId,
    /// Current name (before collision resolution).
    pub name: String,
    pub creation_name: String,
    pub generation: u32,
    pub uidvalidity: UidValidity,
    pub deleted: bool,
}

/// Largest generation: UIDVALIDITY keeps the generation in its top 12 bits.
const MAX_GENERATION: u32 = (1 << 12) - 2;

/// UIDVALIDITY of the `generation`-th mailbox of a name: greater for every later generation.
pub fn uidvalidity(account: &AccountName, name: &str, generation: u32) -> UidValidity {
    let d: [u8; 32] = Sha256::digest(format!("{account}\0{name}").as_bytes()).into();
    let low = u32::from_be_bytes([0, d[0], d[1], d[2]]) & 0xF_FFFF;
    UidValidity::new(((generation + 1) << 20) | low).expect("top bits non-zero")
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

    /// Every mailbox entry, deleted ones included, in id order.
    pub fn entries(&self) -> Vec<MailboxEntry> {
        let mut fields: BTreeMap<String, BTreeMap<String, ScalarValue>> = BTreeMap::new();
        for key in self.doc.keys(ROOT) {
            let mut p = key.splitn(3, '/');
            if let (Some("mb"), Some(id), Some(field)) = (p.next(), p.next(), p.next()) {
                if let Ok(Some((Value::Scalar(v), _))) = self.doc.get(ROOT, key.as_str()) {
                    fields
                        .entry(id.to_string())
                        .or_default()
                        .insert(field.to_string(), v.into_owned());
                }
            }
        }
        fields
            .into_iter()
            .filter_map(|(id, f)| {
                let s = |k: &str| match f.get(k) {
                    Some(ScalarValue::Str(s)) => Some(s.to_string()),
                    _ => None,
                };
                let n = |k: &str| match f.get(k) {
                    Some(ScalarValue::Uint(n)) => Some(*n),
                    Some(ScalarValue::Int(n)) => u64::try_from(*n).ok(),
                    _ => None,
                };
                Some(MailboxEntry {
                    id: MailboxId::try_from(id.as_str()).ok()?,
                    name: s("name")?,
                    creation_name: s("cname")?,
                    generation: u32::try_from(n("gen")?).ok()?,
                    uidvalidity: UidValidity::new(u32::try_from(n("uv")?).ok()?)?,
                    deleted: matches!(f.get("del"), Some(ScalarValue::Boolean(true))),
                })
            })
            .collect()
    }

    /// The mailboxes to list: not deleted, or deleted but still holding messages. Names
    /// that collide (concurrent renames or creates) are made distinct the same way on every
    /// node: the smallest id keeps the name, the others get `~` and their id's first 8 digits.
    pub fn listed(&self, has_messages: impl Fn(&MailboxId) -> bool) -> Vec<Listed> {
        let mut alive: Vec<MailboxEntry> = self
            .entries()
            .into_iter()
            .filter(|e| !e.deleted || has_messages(&e.id))
            .collect();
        alive.sort_by(|a, b| (&a.name, a.id).cmp(&(&b.name, b.id)));
        let mut out: Vec<Listed> = Vec::with_capacity(alive.len());
        for e in alive {
            let taken = out.last().is_some_and(|l| l.entry.name == e.name);
            let name = if taken {
                format!("{}~{}", e.name, &e.id.to_hex()[..8])
            } else {
                e.name.clone()
            };
            let name = MailboxName::try_from(name.as_str())
                .unwrap_or_else(|_| MailboxName::try_from(e.id.to_hex().as_str()).expect("hex"));
            out.push(Listed { name, entry: e });
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
        let generation = self
            .entries()
            .iter()
            .filter(|e| e.creation_name == name.as_str())
            .map(|e| e.generation + 1)
            .max()
            .unwrap_or(0);
        if generation > MAX_GENERATION {
            return Err(CrdtError::BadEntry {
                key: name.to_string(),
                why: "mailbox recreated too many times".into(),
            });
        }
        let id = MailboxId::derive(account.as_str(), name.as_str(), generation);
        let uv = uidvalidity(account, name.as_str(), generation);
        let k = |f: &str| format!("mb/{id}/{f}");
        self.doc.put(ROOT, k("cname"), name.as_str())?;
        self.doc.put(ROOT, k("gen"), u64::from(generation))?;
        self.doc.put(ROOT, k("uv"), u64::from(uv.get()))?;
        self.doc.put(ROOT, k("name"), name.as_str())?;
        self.commit("create");
        Ok(MailboxEntry {
            id,
            name: name.to_string(),
            creation_name: name.to_string(),
            generation,
            uidvalidity: uv,
            deleted: false,
        })
    }

    pub fn rename(&mut self, id: &MailboxId, to: &MailboxName) -> Result<(), CrdtError> {
        self.doc.put(ROOT, format!("mb/{id}/name"), to.as_str())?;
        self.commit("rename");
        Ok(())
    }

    pub fn delete(&mut self, id: &MailboxId) -> Result<(), CrdtError> {
        self.doc.put(ROOT, format!("mb/{id}/del"), true)?;
        self.commit("delete");
        Ok(())
    }

    fn commit(&mut self, what: &str) {
        self.doc
            .commit_with(CommitOptions::default().with_message(format!("dt1-account {what}")));
    }
}
