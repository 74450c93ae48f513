//! Invariant 4 per mailbox *name* (issue 5 §1), on the account document alone: K nodes
//! create, delete, rename and append to a few names concurrently and merge their account
//! documents in random pairs. After every step, on every node, for every listed name:
//!
//! - the UIDVALIDITY it shows never goes below one it showed before (across deletes and
//!   re-creates too: a re-created name shows a strictly greater value);
//! - a UIDVALIDITY value always belongs to one mailbox (never shown for another one);
//! - two mailboxes listed at once never share a UIDVALIDITY;
//! - a deleted mailbox that comes back to hold a message is listed under a restore name.
//!
//! At the end everything is merged everywhere and all nodes list the same thing. The
//! messages are modelled as a grow-only set per node with delete-expunges-what-it-saw, as
//! the replica does it.

use automerge::AutoCommit;
use dovetail::crdt::account::{Account, Listed};
use dovetail::model::{AccountName, MailboxId, MailboxName, NodeId};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use std::collections::{BTreeMap, BTreeSet};

const NAMES: [&str; 4] = ["Lists", "Sent", "Junk", "Lists/2025"];

#[derive(Clone, Debug)]
enum Op {
    Create { node: u8, name: u8 },
    Delete { node: u8, which: u8 },
    Rename { node: u8, which: u8, to: u8 },
    Append { node: u8, which: u8 },
    Merge { a: u8, b: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    let n = || any::<u8>();
    prop_oneof![
        4 => (n(), 0u8..4).prop_map(|(node, name)| Op::Create { node, name }),
        3 => (n(), n()).prop_map(|(node, which)| Op::Delete { node, which }),
        2 => (n(), n(), 0u8..4).prop_map(|(node, which, to)| Op::Rename { node, which, to }),
        3 => (n(), n()).prop_map(|(node, which)| Op::Append { node, which }),
        5 => (n(), n()).prop_map(|(a, b)| Op::Merge { a, b }),
    ]
}

struct Node {
    acc: Account,
    /// Messages known: (mailbox, number).
    msgs: BTreeSet<(MailboxId, u32)>,
    expunged: BTreeSet<(MailboxId, u32)>,
    /// Per name: the last (UIDVALIDITY, mailbox) it showed.
    shown: BTreeMap<String, (u32, MailboxId)>,
}

impl Node {
    fn has_messages(&self, id: &MailboxId) -> bool {
        self.msgs
            .iter()
            .any(|m| &m.0 == id && !self.expunged.contains(m))
    }

    fn listed(&self) -> Vec<Listed> {
        self.acc.listed(|id| self.has_messages(id))
    }
}

struct World {
    nodes: Vec<Node>,
    /// Every UIDVALIDITY value ever shown, and the mailbox it belonged to.
    owner: BTreeMap<u32, MailboxId>,
    next_msg: u32,
    races: usize,
}

fn account() -> AccountName {
    AccountName::try_from("alice").expect("account")
}

impl World {
    fn new(k: usize) -> World {
        let nodes = (0..k)
            .map(|i| {
                let mut acc = Account::new(&NodeId([i as u8 + 1; 32]));
                acc.create(&account(), &MailboxName::inbox())
                    .expect("inbox");
                Node {
                    acc,
                    msgs: BTreeSet::new(),
                    expunged: BTreeSet::new(),
                    shown: BTreeMap::new(),
                }
            })
            .collect();
        World {
            nodes,
            owner: BTreeMap::new(),
            next_msg: 0,
            races: 0,
        }
    }

    fn pick(&self, i: usize, which: u8) -> Option<Listed> {
        let l: Vec<Listed> = self.nodes[i]
            .listed()
            .into_iter()
            .filter(|l| !l.name.is_inbox())
            .collect();
        (!l.is_empty()).then(|| l[which as usize % l.len()].clone())
    }

    fn step(&mut self, op: &Op) -> Result<(), String> {
        let k = self.nodes.len();
        match *op {
            Op::Create { node, name } => {
                let i = node as usize % k;
                let name = MailboxName::try_from(NAMES[name as usize]).expect("name");
                if self.nodes[i].listed().iter().all(|l| l.name != name) {
                    self.nodes[i]
                        .acc
                        .create(&account(), &name)
                        .map_err(|e| e.to_string())?;
                }
            }
            Op::Delete { node, which } => {
                let i = node as usize % k;
                if let Some(l) = self.pick(i, which) {
                    let n = &mut self.nodes[i];
                    let seen: Vec<_> = n
                        .msgs
                        .iter()
                        .filter(|m| m.0 == l.entry.id)
                        .copied()
                        .collect();
                    n.expunged.extend(seen);
                    n.acc.delete(&l.entry.id).map_err(|e| e.to_string())?;
                }
            }
            Op::Rename { node, which, to } => {
                let i = node as usize % k;
                let to = MailboxName::try_from(NAMES[to as usize]).expect("name");
                if let Some(l) = self.pick(i, which) {
                    if self.nodes[i].listed().iter().all(|x| x.name != to) {
                        self.nodes[i]
                            .acc
                            .rename(&account(), &l.entry.id, &to)
                            .map_err(|e| e.to_string())?;
                    }
                }
            }
            Op::Append { node, which } => {
                let i = node as usize % k;
                if let Some(l) = self.pick(i, which) {
                    self.next_msg += 1;
                    self.nodes[i].msgs.insert((l.entry.id, self.next_msg));
                }
            }
            Op::Merge { a, b } => {
                let (a, b) = (a as usize % k, b as usize % k);
                if a != b {
                    let mut other: AutoCommit = self.nodes[b].acc.doc.clone();
                    self.nodes[a]
                        .acc
                        .doc
                        .merge(&mut other)
                        .map_err(|e| e.to_string())?;
                    let (msgs, exp) = (self.nodes[b].msgs.clone(), self.nodes[b].expunged.clone());
                    self.nodes[a].msgs.extend(msgs);
                    self.nodes[a].expunged.extend(exp);
                }
            }
        }
        self.check()
    }

    fn check(&mut self) -> Result<(), String> {
        for i in 0..self.nodes.len() {
            let listed = self.nodes[i].listed();
            let mut uvs = BTreeSet::new();
            let mut claims: BTreeMap<&str, usize> = BTreeMap::new();
            for e in self.nodes[i].acc.entries() {
                *claims
                    .entry(Box::leak(e.name.into_boxed_str()))
                    .or_default() += 1;
            }
            if claims.values().any(|&c| c > 1) {
                self.races += 1;
            }
            for l in &listed {
                let uv = l.entry.uidvalidity.get();
                if !uvs.insert(uv) {
                    return Err(format!(
                        "node {i}: two mailboxes listed with UIDVALIDITY {uv}"
                    ));
                }
                let owner = *self.owner.entry(uv).or_insert(l.entry.id);
                if owner != l.entry.id {
                    return Err(format!(
                        "node {i}: {} shows UIDVALIDITY {uv}, which was mailbox {owner}'s",
                        l.name
                    ));
                }
                let name = l.name.to_string();
                if let Some(&(old, id)) = self.nodes[i].shown.get(&name) {
                    if uv < old || (uv == old && id != l.entry.id) {
                        return Err(format!(
                            "node {i}: {name} showed UIDVALIDITY {old} ({id}), now {uv} ({})",
                            l.entry.id
                        ));
                    }
                }
                if l.entry.deleted && l.name.as_str() == l.entry.name {
                    return Err(format!("node {i}: a restored mailbox took the name {name}"));
                }
                self.nodes[i].shown.insert(name, (uv, l.entry.id));
            }
        }
        Ok(())
    }

    fn converge(&mut self) -> Result<(), String> {
        let k = self.nodes.len();
        for _ in 0..2 {
            for a in 0..k {
                for b in 0..k {
                    self.step(&Op::Merge {
                        a: a as u8,
                        b: b as u8,
                    })?;
                }
            }
        }
        let first: Vec<(String, u32)> = self.nodes[0]
            .listed()
            .iter()
            .map(|l| (l.name.to_string(), l.entry.uidvalidity.get()))
            .collect();
        for n in &self.nodes[1..] {
            let l: Vec<(String, u32)> = n
                .listed()
                .iter()
                .map(|l| (l.name.to_string(), l.entry.uidvalidity.get()))
                .collect();
            if l != first {
                return Err(format!("nodes differ: {first:?} vs {l:?}"));
            }
        }
        Ok(())
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(160),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/names.txt",
        ))),
        ..ProptestConfig::default()
    }
}

/// The random histories, with coverage asserted: enough of them must race two mailboxes
/// for one name and bring back a deleted mailbox, or the generator has gone trivial.
#[test]
fn names_never_go_back_in_uidvalidity() {
    use proptest::test_runner::TestRunner;
    let races = std::cell::Cell::new(0usize);
    let restored = std::cell::Cell::new(0usize);
    let mut runner = TestRunner::new(config());
    let strategy = (2usize..=4, prop::collection::vec(op(), 1..60));
    let result = runner.run(&strategy, |(k, ops)| {
        let mut w = World::new(k);
        for op in &ops {
            w.step(op)
                .map_err(|e| TestCaseError::fail(format!("{e}\nafter {op:?}")))?;
        }
        w.converge().map_err(TestCaseError::fail)?;
        races.set(races.get() + w.races.min(1));
        let back = w.nodes[0].listed().iter().any(|l| l.entry.deleted);
        restored.set(restored.get() + usize::from(back));
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let cases = config().cases as usize;
    eprintln!(
        "{cases} histories: {} raced a name, {} restored a mailbox",
        races.get(),
        restored.get()
    );
    assert!(
        races.get() * 10 >= cases,
        "only {} of {cases} histories raced two mailboxes for a name",
        races.get()
    );
    assert!(
        restored.get() * 20 >= cases,
        "only {} of {cases} histories brought a deleted mailbox back",
        restored.get()
    );
}

/// The scenario, for the ten names it tried: A deletes a name and creates it again
/// while B appends to the old mailbox; after merging, the name shows the new, greater
/// UIDVALIDITY on both, and the old mailbox is listed under a restore name.
#[test]
fn delete_and_recreate_racing_an_append() {
    for name in [
        "Lists", "Sent", "Junk", "Projects", "Notes", "Receipts", "Drafts", "Trash", "Work",
        "Archive",
    ] {
        let mut w = World::new(2);
        let n = MailboxName::try_from(name).expect("name");
        w.nodes[0].acc.create(&account(), &n).expect("create");
        w.step(&Op::Merge { a: 1, b: 0 }).expect("merge");
        let old = w.nodes[1]
            .listed()
            .into_iter()
            .find(|l| l.name == n)
            .expect("old");
        w.nodes[0].acc.delete(&old.entry.id).expect("delete");
        w.nodes[0].acc.create(&account(), &n).expect("create again");
        let new = w.nodes[0]
            .listed()
            .into_iter()
            .find(|l| l.name == n)
            .expect("new");
        assert!(new.entry.uidvalidity > old.entry.uidvalidity, "{name}");
        w.next_msg += 1;
        w.nodes[1].msgs.insert((old.entry.id, w.next_msg));
        w.check().expect("before merging");
        w.converge().expect("converge");
        for node in &w.nodes {
            let l = node.listed();
            let shown = l.iter().find(|l| l.name == n).expect("name shown");
            assert_eq!(shown.entry.id, new.entry.id, "{name}: {l:?}");
            let restored = l.iter().find(|l| l.entry.id == old.entry.id).expect("kept");
            assert_eq!(
                restored.name.as_str(),
                format!("{name} (restored {})", &old.entry.id.to_hex()[..8])
            );
        }
    }
}

/// A create concurrent with a delete of the same mailbox keeps it (add-wins).
#[test]
fn a_create_concurrent_with_a_delete_keeps_the_mailbox() {
    let mut w = World::new(2);
    let n = MailboxName::try_from("Work").expect("name");
    w.nodes[0].acc.create(&account(), &n).expect("create on A");
    let id = w.nodes[0]
        .listed()
        .into_iter()
        .find(|l| l.name == n)
        .expect("A")
        .entry
        .id;
    w.nodes[0].acc.delete(&id).expect("delete on A");
    w.nodes[1].acc.create(&account(), &n).expect("create on B");
    w.converge().expect("converge");
    let l = w.nodes[0].listed();
    let work = l.iter().find(|l| l.name == n).expect("kept");
    assert_eq!(work.entry.id, id, "one mailbox");
    assert!(!work.entry.deleted);
}

/// UIDVALIDITY values are unique among many mailboxes of one account.
#[test]
fn a_thousand_mailboxes_have_distinct_uidvalidities() {
    let mut acc = Account::new(&NodeId([1; 32]));
    for i in 0..1000 {
        let n = MailboxName::try_from(format!("box{i}").as_str()).expect("name");
        acc.create(&account(), &n).expect("create");
    }
    let uvs: BTreeSet<u32> = acc.entries().iter().map(|e| e.uidvalidity.get()).collect();
    assert_eq!(uvs.len(), 1000);
}
