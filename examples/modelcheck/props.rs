//! The properties: the invariants of design notes §2, checked on every node after every
//! step (2, 3, 4, 6, 7) or at quiescence (1, 5), and the `sometimes` properties that show
//! the check is not vacuous.
//!
//! The step checks run in `next_state`, where the node's real replica has just been read,
//! and record a violation in the state; the `always` properties read those records.

use crate::model::{
    applied_facts, Config, Desc, Mat, Mc, PROP_INV1, PROP_INV2, PROP_INV3, PROP_INV4, PROP_INV5,
    PROP_INV6, PROP_INV7, PROP_KERNEL,
};
use crate::world::{self, letter, AFact, Lbl};
use stateright::Property;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

fn violate(d: &mut Desc, prop: &'static str, what: String) {
    d.violations.entry(prop).or_insert(what);
}

/// Invariants 2, 3, 4, 6 and 7 on node `i`, whose view was just read; updates its history.
pub fn check_node(_mc: &Mc, d: &mut Desc, mat: &Mat, i: usize) {
    let who = letter(i);
    let mut hist = (*d.nodes[i].hist).clone();
    let mut found: Vec<(&'static str, String)> = Vec::new();
    // What the node applied, per the changes themselves (not per its view).
    let mut expunged: BTreeSet<Lbl> = BTreeSet::new();
    let mut adds: BTreeMap<(Lbl, String), BTreeSet<String>> = BTreeMap::new();
    let mut removes: BTreeMap<(Lbl, String), BTreeSet<String>> = BTreeMap::new();
    for (_, f) in applied_facts(&d.nodes[i], mat) {
        match f {
            AFact::Expunge(g) => {
                expunged.insert(g.clone());
            }
            AFact::Flag {
                msg,
                flag,
                tag,
                present,
            } => {
                let to = if *present { &mut adds } else { &mut removes };
                to.entry((msg.clone(), flag.clone()))
                    .or_default()
                    .insert(tag.clone());
            }
            _ => {}
        }
    }
    hist.expunged.extend(expunged);
    let mut uv_owner = d.uv_owner.clone();
    for m in d.nodes[i].view.iter() {
        let announced = hist.announced.get(&m.id).copied().unwrap_or(1);
        if m.uidnext < announced {
            found.push((
                PROP_INV3,
                format!(
                    "node {who} {}: UIDNEXT went down from {announced} to {}",
                    m.name, m.uidnext
                ),
            ));
        }
        for (u, l, flags) in &m.rows {
            match hist.shown.get(&(m.id.clone(), *u)) {
                Some(g) if g != l => found.push((
                    PROP_INV2,
                    format!("node {who} {}: UID {u} showed {g}, now shows {l}", m.name),
                )),
                Some(_) => {}
                None => {
                    if *u < announced {
                        found.push((
                            PROP_INV3,
                            format!(
                                "node {who} {}: {l} appeared at UID {u}, below the UIDNEXT {announced} it announced",
                                m.name
                            ),
                        ));
                    }
                    hist.shown.insert((m.id.clone(), *u), l.clone());
                }
            }
            if hist.expunged.contains(l) {
                found.push((
                    PROP_INV6,
                    format!("node {who} {}: expunged {l} is shown at UID {u}", m.name),
                ));
            }
            let want: BTreeSet<&str> = adds
                .iter()
                .filter(|((g, _), _)| g == l)
                .filter(|((g, f), tags)| {
                    let gone = removes.get(&(g.clone(), f.clone()));
                    tags.iter().any(|t| gone.is_none_or(|r| !r.contains(t)))
                })
                .map(|((_, f), _)| f.as_str())
                .collect();
            let have: BTreeSet<&str> = flags.iter().map(String::as_str).collect();
            if want != have {
                found.push((
                    PROP_INV7,
                    format!(
                        "node {who} {}: {l} shows flags {have:?}, its applied adds and removals give {want:?}",
                        m.name
                    ),
                ));
            }
        }
        hist.announced
            .insert(m.id.clone(), m.uidnext.max(announced));
        let top = hist.name_uv.get(&m.name).copied().unwrap_or(0);
        if m.uv < top {
            found.push((
                PROP_INV4,
                format!(
                    "node {who}: {} shows UIDVALIDITY {}, it showed {top}",
                    m.name, m.uv
                ),
            ));
        }
        hist.name_uv.insert(m.name.clone(), m.uv.max(top));
        match uv_owner.get(&m.uv) {
            Some(id) if *id != m.id => found.push((
                PROP_INV4,
                format!(
                    "node {who}: {} ({}) shows UIDVALIDITY {}, the value of mailbox {id}",
                    m.name, m.id, m.uv
                ),
            )),
            Some(_) => {}
            None => {
                uv_owner.insert(m.uv, m.id.clone());
            }
        }
    }
    d.nodes[i].hist = Arc::new(hist);
    d.uv_owner = uv_owner;
    for (p, w) in found {
        violate(d, p, w);
    }
}

/// No message in flight, every node holds every change, none waits, none is homeless.
pub fn quiescent(d: &Desc) -> bool {
    d.net.is_empty()
        && d.nodes
            .iter()
            .all(|n| n.pending.is_empty() && n.homeless.is_empty() && n.docs == d.nodes[0].docs)
}

/// Invariants 1 and 5 in a quiescent state.
pub fn check_quiescent(mc: &Mc, d: &mut Desc, mat: &Mat) {
    let first = &d.nodes[0].view;
    let mut found = Vec::new();
    for (i, n) in d.nodes.iter().enumerate().skip(1) {
        if n.view != *first {
            found.push((
                PROP_INV1,
                format!(
                    "nodes A and {} show different mailboxes: {first:?} vs {:?}",
                    letter(i),
                    n.view
                ),
            ));
        }
    }
    // The digests too (they hash the real GUIDs and blobs), through `status`.
    let mut digests = Vec::new();
    for (i, s) in mat.snaps.iter().enumerate() {
        let st = mc.memo.status(s, || {
            let (_, mut r) = s.open(&mc.opts)?;
            let st = r.status(&world::account()).map_err(|e| e.to_string())?;
            let st: Vec<_> = st
                .into_iter()
                .map(|s| (s.name, s.uidvalidity, s.uidnext, s.messages, s.digest))
                .collect();
            Ok(format!("{st:?}"))
        });
        match &*st {
            Ok(st) => digests.push(st.clone()),
            Err(e) => found.push((PROP_KERNEL, format!("node {}: {e}", letter(i)))),
        }
    }
    if digests.iter().any(|x| *x != digests[0]) {
        found.push((PROP_INV1, format!("statuses differ: {digests:?}")));
    }
    // Invariant 5: every message added and not expunged is shown exactly once.
    let all: BTreeSet<Lbl> = d.nodes[0].docs.values().flatten().cloned().collect();
    let mut added = BTreeSet::new();
    let mut expunged = BTreeSet::new();
    for c in mat
        .names
        .changes
        .values()
        .filter(|c| all.contains(&c.label))
    {
        for f in &c.facts {
            match f {
                AFact::Add(g) => {
                    added.insert(g.clone());
                }
                AFact::Expunge(g) => {
                    expunged.insert(g.clone());
                }
                _ => {}
            }
        }
    }
    let mut shown: BTreeMap<Lbl, usize> = BTreeMap::new();
    for m in first.iter() {
        for (_, l, _) in &m.rows {
            *shown.entry(l.clone()).or_default() += 1;
        }
    }
    for g in &added {
        let want = usize::from(!expunged.contains(g));
        let got = shown.get(g).copied().unwrap_or(0);
        if got != want {
            found.push((
                PROP_INV5,
                format!(
                    "{g} (expunged: {}) is shown {got} times",
                    expunged.contains(g)
                ),
            ));
        }
    }
    for (p, w) in found {
        violate(d, p, w);
    }
}

fn holds(s: &crate::model::State, p: &'static str) -> bool {
    !s.d.violations.contains_key(p)
}

/// Two different messages claim one UID in what some node applied.
fn clash(s: &crate::model::State) -> bool {
    s.d.nodes.iter().any(|n| {
        let mut at: BTreeMap<(String, u32), BTreeSet<Lbl>> = BTreeMap::new();
        for (c, f) in applied_facts(n, &s.mat) {
            if let (AFact::Claim(g, u), Some(mb)) = (f, &c.mailbox) {
                at.entry((mb.clone(), *u)).or_default().insert(g.clone());
            }
        }
        at.values().any(|g| g.len() > 1)
    })
}

/// Some node applied a renumbering (a claim on a message the change does not add).
fn renumbered(s: &crate::model::State) -> bool {
    s.d.nodes.iter().any(|n| {
        applied_facts(n, &s.mat).any(|(c, f)| match f {
            AFact::Claim(g, _) => !c.facts.contains(&AFact::Add(g.clone())),
            _ => false,
        })
    })
}

/// Some node holds two operations on the raced name by different nodes, neither of which
/// knew the other.
fn name_race(s: &crate::model::State) -> bool {
    s.d.nodes.iter().any(|n| {
        let ops: Vec<_> = s
            .mat
            .names
            .changes
            .values()
            .filter(|c| c.name_op && n.docs.values().any(|d| d.contains(&c.label)))
            .collect();
        ops.iter().any(|a| {
            ops.iter().any(|b| {
                a.author != b.author && !a.knew.contains(&b.label) && !b.knew.contains(&a.label)
            })
        })
    })
}

/// The properties of a check with these bounds.
pub fn properties(cfg: &Config) -> Vec<Property<Mc>> {
    let mut p = vec![
        Property::always(PROP_KERNEL, |_, s| holds(s, PROP_KERNEL)),
        Property::always(PROP_INV2, |_, s| holds(s, PROP_INV2)),
        Property::always(PROP_INV3, |_, s| holds(s, PROP_INV3)),
        Property::always(PROP_INV4, |_, s| holds(s, PROP_INV4)),
        Property::always(PROP_INV6, |_, s| holds(s, PROP_INV6)),
        Property::always(PROP_INV7, |_, s| holds(s, PROP_INV7)),
        Property::always(PROP_INV1, |_, s| holds(s, PROP_INV1)),
        Property::always(PROP_INV5, |_, s| holds(s, PROP_INV5)),
        Property::sometimes(SOME_CLASH, |_, s| clash(s)),
        Property::sometimes(SOME_RENUMBER, |_, s| renumbered(s)),
        Property::sometimes(SOME_HOMELESS, |_, s: &crate::model::State| {
            s.d.nodes.iter().any(|n| !n.homeless.is_empty())
        }),
        Property::sometimes(SOME_WAITING, |_, s: &crate::model::State| {
            s.d.nodes.iter().any(|n| !n.pending.is_empty())
        }),
        Property::sometimes(SOME_QUIESCENT, |_, s: &crate::model::State| {
            quiescent(&s.d) && s.d.nodes[0].view.iter().any(|m| !m.rows.is_empty())
        }),
    ];
    if cfg.flags > 0 {
        p.push(Property::sometimes(
            SOME_FLAGS,
            |_, s: &crate::model::State| {
                s.d.nodes
                    .iter()
                    .any(|n| n.view.iter().any(|m| m.rows.iter().any(|r| r.2.len() > 1)))
            },
        ));
    }
    if cfg.mailbox_race {
        p.push(Property::sometimes(SOME_RACE, |_, s| name_race(s)));
    }
    p
}

pub const SOME_CLASH: &str = "sometimes: a UID clash (two messages claim one UID)";
pub const SOME_RENUMBER: &str = "sometimes: a renumbering";
pub const SOME_HOMELESS: &str = "sometimes: a homeless message";
pub const SOME_WAITING: &str = "sometimes: a change waiting for a dependency";
pub const SOME_QUIESCENT: &str = "sometimes: quiescence with messages shown";
pub const SOME_FLAGS: &str = "sometimes: a message with two flags";
pub const SOME_RACE: &str = concat!("sometimes: a name race on ", "Work");
