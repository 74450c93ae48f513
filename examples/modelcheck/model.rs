//! The model: a small cluster of real replicas as a `stateright` model.
//!
//! A state is a description made of labels ([`Desc`]): per node, the changes its documents
//! hold (per document), which are waiting, its mailbox clocks, what it shows and what it
//! has shown (for the invariants that speak of the past); the messages in flight (at most
//! one per sender, receiver and document: a later message of the same document carries a
//! superset); the operations used of each bound. Two paths that reach the same description
//! are one state. The real stores that go with a state ([`Mat`]) ride along without being
//! hashed: every action re-opens the replica it touches from them and runs the real
//! operation (`Replica::append`, `sync_receive`, `renumber_after`...), in `step`, through
//! the step cache of `memo`.

use crate::memo::Memo;
use crate::step::mbname;
use crate::world::{self, AFact, ChangeInfo, Lbl, Names, Payload, Snap, NOW};
use dovetail::node::{Options, Replica};
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
    /// Memoize kernel steps by the exact bytes of the store (`--no-memo` turns it off,
    /// to measure what it saves).
    pub memo: bool,
    /// Entries per generation of each step cache (`--memo-cap`; 0: unbounded): the cache
    /// holds at most about twice this, trading memory for kernel runs.
    pub memo_cap: usize,
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
            memo: true,
            memo_cap: 0,
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

/// One node, described. Every part is behind an `Arc`: a step changes one node, so the
/// other nodes' parts are shared between a state and its successors, and the parts read
/// back from a store are shared with the step cache (memory limits the larger bounds).
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq)]
pub struct NodeDesc {
    /// Per document id, the changes it holds.
    pub docs: Arc<BTreeMap<String, BTreeSet<Lbl>>>,
    /// Changes held but not applied to the view (waiting for a dependency).
    pub pending: Arc<BTreeSet<Lbl>>,
    /// Per mailbox, its applied clock (per node).
    pub applied: Arc<BTreeMap<String, Vec<u64>>>,
    pub view: Arc<Vec<MbView>>,
    /// Per mailbox, the homeless messages and the node that made each one's greatest claim.
    pub homeless: Arc<BTreeMap<String, Vec<(Lbl, usize)>>>,
    pub hist: Arc<Hist>,
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
    /// The step cache (`memo`).
    pub memo: Memo,
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

pub fn kernel<T>(r: Result<T, dovetail::node::NodeError>) -> Result<T, String> {
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
            memo: Memo::new(cfg.memo, cfg.memo_cap),
            cfg,
            opts,
            init: State {
                d: Desc::default(),
                mat: Arc::new(Mat::default()),
            },
        };
        for (i, kv) in kvs.iter().enumerate() {
            mat.snaps.push(Arc::new(Snap::of(kv, &mat.bodies, None)?));
            mat.heads.push(Arc::default());
            let mut r = mat.snaps[i].open(&mc.opts)?;
            let e = mc.read(&d, &mat, i, &mut r, None, Vec::new())?;
            mc.apply(&mut d, &mut mat, i, &e);
        }
        mc.init = State {
            d,
            mat: Arc::new(mat),
        };
        Ok(mc)
    }
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
                for m in n.view.iter() {
                    if m.name == "INBOX" || m.name == RACED {
                        out.push(Action::Append {
                            node: i,
                            mailbox: m.name.clone(),
                        });
                    }
                }
            }
            for m in n.view.iter() {
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
                for (doc, labels) in n.docs.iter() {
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
