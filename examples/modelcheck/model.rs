//! The model: a small cluster of real replicas as a `stateright` model.
//!
//! A state is a description made of labels ([`Desc`]): per node, the changes its documents
//! hold (per document), which are waiting, its mailbox clocks, what it shows and what it
//! has shown (for the invariants that speak of the past); the messages in flight (at most
//! one per sender, receiver and document: a later message of the same document carries a
//! superset); the operations used of each bound. Two paths that reach the same description
//! are one state. The real stores that go with a state ([`Mat`]) ride along without being
//! hashed: every action re-opens the replicas it touches from them and runs the real
//! operation (`Replica::append`, `sync_receive`, `renumber_after`...).

use crate::world::{self, letter, AFact, ChangeInfo, Lbl, Names, Payload, Snap, NOW};
use dovetail::crdt::view::MailboxMeta;
use dovetail::model::{BlobId, Flag, FlagSet, MailboxName, UidSet};
use dovetail::node::{FlagOp, NewMessage, Options, Replica};
use dovetail::store::MemKv;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// The bounds of a check.
#[derive(Clone, Debug)]
pub struct Config {
    pub nodes: usize,
    /// Appends, over all nodes.
    pub appends: u32,
    pub expunges: u32,
    /// Flag changes (`+FLAGS` or `-FLAGS` of one flag on one message).
    pub flags: u32,
    /// Renumberings, over all nodes (a claimant may renumber forever against another
    /// claimant that never hears of it, so the number must be bounded).
    pub renumbers: u32,
    /// Deliveries that leave a copy of the message in flight (a duplicate).
    pub dups: u32,
    /// Messages in flight: a send captures the sender's document, its delivery comes any
    /// time later (reordered, delayed, duplicated). Without it a sync of one document is
    /// one atomic step (the receiver gets the sender's document as it is now): documents
    /// still arrive separately and in any order, with far fewer states.
    pub in_flight: bool,
    /// A mailbox `Work` that one delete and up to two creates race on.
    pub mailbox_race: bool,
    /// Mailbox-causal delivery in the kernel (`--no-causal` turns it off).
    pub causal: bool,
    pub segment_capacity: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nodes: 2,
            appends: 2,
            expunges: 1,
            flags: 0,
            renumbers: 2,
            dups: 1,
            in_flight: true,
            mailbox_race: false,
            causal: true,
            segment_capacity: 16_384,
        }
    }
}

/// The raced mailbox name.
pub const RACED: &str = "Work";
/// The flags flag changes use: two, so that changes of different flags meet.
pub const FLAGS: [&str; 2] = ["\\Seen", "\\Flagged"];

/// One listed mailbox as a node shows it.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct MbView {
    /// The mailbox id's label (`INBOX`, `mb3fa2`).
    pub id: String,
    pub name: String,
    pub uv: u32,
    pub uidnext: u32,
    /// UID, message, flags.
    pub rows: Vec<(u32, Lbl, Vec<String>)>,
}

/// What a node has shown, for the invariants about the past.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq)]
pub struct Hist {
    /// (mailbox, UID) → the message ever shown there.
    pub shown: BTreeMap<(String, u32), Lbl>,
    /// The largest UIDNEXT announced per mailbox.
    pub announced: BTreeMap<String, u32>,
    /// Messages whose expunge this node applied.
    pub expunged: BTreeSet<Lbl>,
    /// The largest UIDVALIDITY shown per name.
    pub name_uv: BTreeMap<String, u32>,
}

/// One node, described.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq)]
pub struct NodeDesc {
    /// Per document id, the changes it holds.
    pub docs: BTreeMap<String, BTreeSet<Lbl>>,
    /// Changes held but not applied to the view (waiting for a dependency).
    pub pending: BTreeSet<Lbl>,
    /// Per mailbox, its applied clock (per node).
    pub applied: BTreeMap<String, Vec<u64>>,
    pub view: Vec<MbView>,
    /// Per mailbox, the homeless messages and the node that made each one's greatest claim.
    pub homeless: BTreeMap<String, Vec<(Lbl, usize)>>,
    pub hist: Hist,
}

/// Operations used of each bound.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq)]
pub struct Used {
    pub appends: u32,
    pub expunges: u32,
    pub flags: u32,
    pub renumbers: u32,
    pub dups: u32,
    pub deletes: u32,
    pub creates: u32,
    /// Appends per node (they name messages: `B2` is node B's second).
    pub per_node: Vec<u32>,
}

/// The hashed part of a state.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq)]
pub struct Desc {
    pub nodes: Vec<NodeDesc>,
    /// (from, to, document id) → the changes the message carries.
    pub net: BTreeMap<(usize, usize, String), BTreeSet<Lbl>>,
    pub used: Used,
    /// Every UIDVALIDITY shown anywhere → the mailbox that showed it (invariant 4).
    pub uv_owner: BTreeMap<u32, String>,
    /// Property name → what broke it, first occurrence.
    pub violations: BTreeMap<&'static str, String>,
}

/// The real stores along the path to a state (not hashed).
#[derive(Clone, Default)]
pub struct Mat {
    pub snaps: Vec<Arc<Snap>>,
    /// Per node, the heads of its documents when last read.
    pub heads: Vec<Arc<world::Heads>>,
    pub net: BTreeMap<(usize, usize, String), Arc<Payload>>,
    pub names: Names,
    pub bodies: Arc<BTreeMap<[u8; 32], Vec<u8>>>,
}

/// A state: the description, and the stores that realise it.
#[derive(Clone)]
pub struct State {
    pub d: Desc,
    pub mat: Arc<Mat>,
}

impl Hash for State {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.d.hash(h)
    }
}

impl PartialEq for State {
    fn eq(&self, o: &Self) -> bool {
        self.d == o.d
    }
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.d.fmt(f)
    }
}

/// One step of the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Append {
        node: usize,
        mailbox: String,
    },
    Expunge {
        node: usize,
        msg: Lbl,
    },
    Flag {
        node: usize,
        msg: Lbl,
        flag: usize,
        add: bool,
    },
    /// `grace_over`: renumber every homeless message (the grace period has passed);
    /// otherwise only those whose greatest claim the node made (at once).
    Renumber {
        node: usize,
        grace_over: bool,
    },
    Send {
        from: usize,
        to: usize,
        doc: String,
    },
    Deliver {
        from: usize,
        to: usize,
        doc: String,
        dup: bool,
    },
    /// `to` receives `from`'s document as it is now (one atomic step).
    Sync {
        from: usize,
        to: usize,
        doc: String,
    },
    /// Re-open the replica from its store and apply whatever is deliverable.
    Restart {
        node: usize,
    },
    Delete {
        node: usize,
    },
    Create {
        node: usize,
    },
}

/// The model checker's model.
pub struct Mc {
    pub cfg: Config,
    pub opts: Options,
    init: State,
}

pub const PROP_KERNEL: &str = "the kernel returns no error";
pub const PROP_INV2: &str = "inv 2: a UID never points at another message";
pub const PROP_INV3: &str = "inv 3: new messages appear above UIDNEXT, which never decreases";
pub const PROP_INV4: &str =
    "inv 4: per name, UIDVALIDITY never goes down nor takes another mailbox's value";
pub const PROP_INV6: &str = "inv 6: expunge is final";
pub const PROP_INV7: &str = "inv 7: no lost flag update";
pub const PROP_INV1: &str = "inv 1: convergence at quiescence";
pub const PROP_INV5: &str = "inv 5: no message lost or duplicated at quiescence";

fn kernel<T>(r: Result<T, dovetail::node::NodeError>) -> Result<T, String> {
    r.map_err(|e| e.to_string())
}

impl Mc {
    /// Builds the model and its initial state: every node creates the account (the same
    /// INBOX everywhere), node A creates `Work` when racing, and the account documents are
    /// synced to every node.
    pub fn new(cfg: Config) -> Result<Mc, String> {
        let opts = world::options(cfg.causal, cfg.segment_capacity);
        let mut kvs = Vec::new();
        let mut reps = Vec::new();
        let mut names = Names::default();
        for i in 0..cfg.nodes {
            let kv = MemKv::new();
            let mut seed = [0u8; 32];
            seed[0] = i as u8 + 1;
            seed[1] = 0x4d;
            let mut r = kernel(Replica::with_kv(
                Arc::new(kv.clone()),
                Some(seed),
                opts.clone(),
            ))?;
            kernel(r.create_account(&world::account()))?;
            names.nodes.push(r.node_id());
            kvs.push(kv);
            reps.push(r);
        }
        if cfg.mailbox_race {
            kernel(reps[0].create_mailbox(&world::account(), &mbname(RACED)))?;
        }
        for i in 0..cfg.nodes {
            for j in 0..cfg.nodes {
                if i < j {
                    let (a, b) = reps.split_at_mut(j);
                    kernel(dovetail::node::sync_pair(&mut a[i], &mut b[0], NOW))?;
                }
            }
        }
        let st = kernel(reps[0].status(&world::account()))?;
        names.inbox = st
            .iter()
            .find(|s| s.name == "INBOX")
            .map(|s| s.id.clone())
            .ok_or("no INBOX")?;
        drop(reps);
        let mut mat = Mat {
            names,
            ..Mat::default()
        };
        let mut d = Desc {
            used: Used {
                per_node: vec![0; cfg.nodes],
                ..Used::default()
            },
            nodes: vec![NodeDesc::default(); cfg.nodes],
            ..Desc::default()
        };
        let mut mc = Mc {
            cfg,
            opts,
            init: State {
                d: Desc::default(),
                mat: Arc::new(Mat::default()),
            },
        };
        for (i, kv) in kvs.iter().enumerate() {
            mat.snaps.push(Arc::new(Snap::of(kv, &mat.bodies)?));
            mat.heads.push(Arc::default());
            let mut r = mat.snaps[i].open(&mc.opts)?;
            mc.refresh(&mut d, &mut mat, i, &mut r, None)?;
        }
        mc.init = State {
            d,
            mat: Arc::new(mat),
        };
        Ok(mc)
    }

    /// Reads node `i`'s replica back into the description (labelling the changes a local
    /// operation made), checks the invariants on it, and freezes its store.
    fn refresh(
        &self,
        d: &mut Desc,
        mat: &mut Mat,
        i: usize,
        (kv, r): &mut (MemKv, Replica),
        made_by: Option<&Action>,
    ) -> Result<(), String> {
        let before: BTreeSet<Lbl> = d.nodes[i].docs.values().flatten().cloned().collect();
        let (heads, changed) = world::changed_docs(kv, &mat.heads[i])?;
        let mut docs: BTreeMap<String, BTreeSet<Lbl>> = d.nodes[i]
            .docs
            .iter()
            .filter(|(doc, _)| mat.heads[i].get(*doc) == heads.get(*doc))
            .map(|(doc, l)| (doc.clone(), l.clone()))
            .collect();
        for (doc, c) in changed {
            let h = world::hash_of(&c);
            let info = match mat.names.changes.get(&h) {
                Some(info) => Arc::clone(info),
                None => {
                    let mut info = mat.names.label(&c, &doc)?;
                    info.name_op = match made_by {
                        Some(Action::Delete { .. } | Action::Create { .. }) => {
                            info.mailbox.is_none()
                        }
                        Some(Action::Append { mailbox, .. }) => mailbox == RACED,
                        _ => false,
                    };
                    if info.name_op {
                        info.knew = before
                            .iter()
                            .filter(|l| {
                                mat.names
                                    .changes
                                    .values()
                                    .any(|c| c.name_op && c.label == **l)
                            })
                            .cloned()
                            .collect();
                    }
                    let info = Arc::new(info);
                    Arc::make_mut(&mut mat.names.changes).insert(h, Arc::clone(&info));
                    info
                }
            };
            docs.entry(doc).or_default().insert(info.label.clone());
        }
        mat.heads[i] = Arc::new(heads);
        let pending: BTreeSet<Lbl> = world::pending(kv)?
            .iter()
            .filter_map(|h| mat.names.changes.get(h).map(|c| c.label.clone()))
            .collect();
        let metas = world::mailbox_metas(kv)?;
        let mut applied = BTreeMap::new();
        let mut homeless = BTreeMap::new();
        for (id, m) in &metas {
            let mb = mat.names.mailbox(id);
            applied.insert(mb.clone(), self.clock(mat, m));
            let h: Vec<(Lbl, usize)> = m
                .homeless
                .iter()
                .map(|(g, h)| {
                    let l = mat
                        .names
                        .guids
                        .get(g)
                        .cloned()
                        .unwrap_or_else(|| "?".into());
                    (l, mat.names.node_index(&h.op.node).unwrap_or(usize::MAX))
                })
                .collect();
            if !h.is_empty() {
                homeless.insert(mb, h);
            }
        }
        let mut view = Vec::new();
        for s in kernel(r.status(&world::account()))? {
            let rows = kernel(r.list(&world::account(), &mbname(&s.name)))?
                .into_iter()
                .map(|(u, row)| {
                    let l = mat
                        .names
                        .guids
                        .get(&row.guid)
                        .cloned()
                        .unwrap_or_else(|| "?".into());
                    let f = row.flags.iter().map(|f| f.as_str().to_string()).collect();
                    (u.get(), l, f)
                })
                .collect();
            view.push(MbView {
                id: mat.names.mailbox(&s.id),
                name: s.name,
                uv: s.uidvalidity,
                uidnext: s.uidnext,
                rows,
            });
        }
        let n = &mut d.nodes[i];
        n.docs = docs;
        n.pending = pending;
        n.applied = applied;
        n.homeless = homeless;
        n.view = view;
        mat.snaps[i] = Arc::new(Snap::of(kv, &mat.bodies)?);
        crate::props::check_node(self, d, mat, i);
        Ok(())
    }

    fn clock(&self, mat: &Mat, m: &MailboxMeta) -> Vec<u64> {
        mat.names
            .nodes
            .iter()
            .map(|n| m.applied.get(n).copied().unwrap_or(0))
            .collect()
    }

    /// Node `from`'s document `doc` as it is now, with every blob `from` has.
    fn payload(&self, mat: &Mat, from: usize, doc: &str) -> Result<Payload, String> {
        let (kv, _) = mat.snaps[from].open(&self.opts)?;
        let bytes = world::save_doc(&kv, doc)?.ok_or("sending a missing document")?;
        let mut blobs = Vec::new();
        for (id, b) in mat.bodies.iter() {
            if dovetail::store::Kv::blob_has(&kv, id).map_err(|e| e.to_string())? {
                blobs.push((BlobId(*id), b.clone()));
            }
        }
        Ok(Payload { doc: bytes, blobs })
    }

    /// Runs `a` on the real replicas.
    fn step(&self, d: &mut Desc, mat: &mut Mat, a: &Action) -> Result<(), String> {
        let acct = world::account();
        match a {
            Action::Send { from, to, doc } => {
                let payload = self.payload(mat, *from, doc)?;
                let labels = d.nodes[*from].docs.get(doc).cloned().unwrap_or_default();
                d.net.insert((*from, *to, doc.clone()), labels);
                mat.net.insert((*from, *to, doc.clone()), Arc::new(payload));
                return Ok(());
            }
            Action::Sync { from, to, doc } => {
                let payload = self.payload(mat, *from, doc)?;
                let mut r = mat.snaps[*to].open(&self.opts)?;
                world::deliver(&mut r.1, &mat.names.nodes[*from], doc, &payload)?;
                return self.refresh(d, mat, *to, &mut r, Some(a));
            }
            Action::Deliver { from, to, doc, dup } => {
                let key = (*from, *to, doc.clone());
                let payload = mat.net.get(&key).cloned().ok_or("no such message")?;
                if *dup {
                    d.used.dups += 1;
                } else {
                    d.net.remove(&key);
                    mat.net.remove(&key);
                }
                let mut r = mat.snaps[*to].open(&self.opts)?;
                world::deliver(&mut r.1, &mat.names.nodes[*from], doc, &payload)?;
                return self.refresh(d, mat, *to, &mut r, Some(a));
            }
            _ => {}
        }
        let node = match a {
            Action::Append { node, .. }
            | Action::Expunge { node, .. }
            | Action::Flag { node, .. }
            | Action::Renumber { node, .. }
            | Action::Restart { node }
            | Action::Delete { node }
            | Action::Create { node } => *node,
            Action::Send { .. } | Action::Deliver { .. } | Action::Sync { .. } => {
                unreachable!("handled above")
            }
        };
        let mut r = mat.snaps[node].open(&self.opts)?;
        let rep = &mut r.1;
        match a {
            Action::Append { mailbox, .. } => {
                d.used.appends += 1;
                d.used.per_node[node] += 1;
                let label: Lbl = format!("{}{}", letter(node), d.used.per_node[node]).into();
                let bytes = world::body(&label);
                let id = BlobId::of(&bytes);
                Arc::make_mut(&mut mat.bodies).insert(*id.as_bytes(), bytes.clone());
                let out = kernel(rep.append(
                    &acct,
                    &mbname(mailbox),
                    vec![NewMessage {
                        name: label.to_string(),
                        bytes,
                        flags: FlagSet::new(),
                        internal_date: NOW,
                    }],
                    NOW,
                ))?;
                for (_, g) in out {
                    Arc::make_mut(&mut mat.names.guids).insert(g, label.clone());
                }
            }
            Action::Expunge { msg, .. } => {
                d.used.expunges += 1;
                let (name, uid) = find(&d.nodes[node], msg)?;
                kernel(rep.expunge(&acct, &mbname(&name), &uid_set(uid), NOW))?;
            }
            Action::Flag { msg, flag, add, .. } => {
                d.used.flags += 1;
                let (name, uid) = find(&d.nodes[node], msg)?;
                let f: FlagSet = [Flag::try_from(FLAGS[*flag]).map_err(|e| e.to_string())?]
                    .into_iter()
                    .collect();
                let op = if *add {
                    FlagOp::Add(f)
                } else {
                    FlagOp::Remove(f)
                };
                kernel(rep.store_flags(&acct, &mbname(&name), &uid_set(uid), &op, NOW))?;
            }
            Action::Renumber { grace_over, .. } => {
                d.used.renumbers += 1;
                let grace = if *grace_over { 0 } else { i64::MAX };
                kernel(rep.renumber_after(NOW, grace))?;
            }
            Action::Restart { .. } => {
                kernel(rep.deliver_all(NOW))?;
            }
            Action::Delete { .. } => {
                d.used.deletes += 1;
                kernel(rep.delete_mailbox(&acct, &mbname(RACED), NOW))?;
            }
            Action::Create { .. } => {
                d.used.creates += 1;
                kernel(rep.create_mailbox(&acct, &mbname(RACED)))?;
            }
            Action::Send { .. } | Action::Deliver { .. } | Action::Sync { .. } => {
                unreachable!("handled above")
            }
        }
        self.refresh(d, mat, node, &mut r, Some(a))
    }
}

pub fn mbname(s: &str) -> MailboxName {
    MailboxName::try_from(s).expect("valid mailbox name")
}

fn uid_set(uid: u32) -> UidSet {
    UidSet::try_from(uid.to_string().as_str()).expect("a UID is a UID set")
}

/// Where node `n` shows message `msg`: its mailbox name and UID.
fn find(n: &NodeDesc, msg: &Lbl) -> Result<(String, u32), String> {
    n.view
        .iter()
        .find_map(|m| {
            m.rows
                .iter()
                .find(|(_, l, _)| l == msg)
                .map(|(u, _, _)| (m.name.clone(), *u))
        })
        .ok_or_else(|| format!("{msg} is not shown"))
}

impl stateright::Model for Mc {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        vec![self.init.clone()]
    }

    fn actions(&self, s: &State, out: &mut Vec<Action>) {
        let d = &s.d;
        if !d.violations.is_empty() {
            // A broken state ends its path: the counterexample stops there.
            return;
        }
        let c = &self.cfg;
        let u = &d.used;
        for (i, n) in d.nodes.iter().enumerate() {
            if u.appends < c.appends {
                for m in &n.view {
                    if m.name == "INBOX" || m.name == RACED {
                        out.push(Action::Append {
                            node: i,
                            mailbox: m.name.clone(),
                        });
                    }
                }
            }
            for m in &n.view {
                for (_, l, flags) in &m.rows {
                    if u.expunges < c.expunges {
                        out.push(Action::Expunge {
                            node: i,
                            msg: l.clone(),
                        });
                    }
                    if u.flags < c.flags {
                        for (f, name) in FLAGS.iter().enumerate() {
                            out.push(Action::Flag {
                                node: i,
                                msg: l.clone(),
                                flag: f,
                                add: !flags.iter().any(|x| x == name),
                            });
                        }
                    }
                }
            }
            if u.renumbers < c.renumbers {
                let all = n.homeless.values().flatten();
                if all.clone().any(|(_, who)| *who == i) {
                    out.push(Action::Renumber {
                        node: i,
                        grace_over: false,
                    });
                }
                if all.clone().any(|(_, who)| *who != i) {
                    out.push(Action::Renumber {
                        node: i,
                        grace_over: true,
                    });
                }
            }
            if !n.pending.is_empty() {
                out.push(Action::Restart { node: i });
            }
            if c.mailbox_race {
                let listed = n.view.iter().any(|m| m.name == RACED);
                if listed && u.deletes < 1 {
                    out.push(Action::Delete { node: i });
                }
                if !listed && u.deletes >= 1 && u.creates < 2 {
                    out.push(Action::Create { node: i });
                }
            }
        }
        for (i, n) in d.nodes.iter().enumerate() {
            for (j, m) in d.nodes.iter().enumerate() {
                if i == j {
                    continue;
                }
                for (doc, labels) in &n.docs {
                    let key = (i, j, doc.clone());
                    let theirs = m.docs.get(doc);
                    let news = labels.iter().any(|l| theirs.is_none_or(|t| !t.contains(l)));
                    if news && !c.in_flight {
                        out.push(Action::Sync {
                            from: i,
                            to: j,
                            doc: doc.clone(),
                        });
                    } else if news && !d.net.contains_key(&key) {
                        out.push(Action::Send {
                            from: i,
                            to: j,
                            doc: doc.clone(),
                        });
                    }
                }
            }
        }
        for (from, to, doc) in d.net.keys() {
            out.push(Action::Deliver {
                from: *from,
                to: *to,
                doc: doc.clone(),
                dup: false,
            });
            if u.dups < c.dups {
                out.push(Action::Deliver {
                    from: *from,
                    to: *to,
                    doc: doc.clone(),
                    dup: true,
                });
            }
        }
    }

    fn next_state(&self, s: &State, a: Action) -> Option<State> {
        let mut d = s.d.clone();
        let mut mat = (*s.mat).clone();
        if let Err(e) = self.step(&mut d, &mut mat, &a) {
            d.violations.entry(PROP_KERNEL).or_insert(e);
        }
        if crate::props::quiescent(&d) {
            crate::props::check_quiescent(self, &mut d, &mat);
        }
        Some(State {
            d,
            mat: Arc::new(mat),
        })
    }

    fn properties(&self) -> Vec<stateright::Property<Self>> {
        crate::props::properties(&self.cfg)
    }

    fn format_action(&self, a: &Action) -> String {
        crate::trace::action(&self.init.mat.names, a)
    }
}

/// The facts of the changes node `n` has applied (held, not waiting, within its clocks).
pub fn applied_facts<'m>(
    n: &NodeDesc,
    mat: &'m Mat,
) -> impl Iterator<Item = (&'m ChangeInfo, &'m AFact)> + 'm {
    let held: BTreeSet<Lbl> = n
        .docs
        .values()
        .flatten()
        .filter(|l| !n.pending.contains(*l))
        .cloned()
        .collect();
    let applied = n.applied.clone();
    mat.names
        .changes
        .values()
        .filter_map(move |c| {
            if !held.contains(&c.label) {
                return None;
            }
            let mb = c.mailbox.as_ref()?;
            let within = applied
                .get(mb)
                .is_some_and(|v| v.get(c.author).is_some_and(|&s| c.seq <= s));
            within.then_some(c)
        })
        .flat_map(|c| c.facts.iter().map(move |f| (&**c, f)))
}
