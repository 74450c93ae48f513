//! Invariant 7 while changes wait (issue 5 §2): nodes change the flags of a shared
//! message while remote changes are stored but not yet applied to their view (waiting for
//! a causal dependency in another segment document, or for a blob). Add-wins is judged
//! relative to what each node showed when its user acted: a flag a user added survives
//! unless a node that had applied that add removed it afterwards; a `-FLAGS` never removes
//! an add the acting node had not shown. At quiescence all nodes agree on that result.

use super::sim::*;
use super::{apply_flag_op, crash_during, restart};
use dovetail::model::{Flag, FlagSet, Guid, MailboxId};
use dovetail::node::FlagOp;
use dovetail::store::Tx;
use proptest::prelude::*;

/// One step of a history: a user's flag change on the shared message, or anything else.
#[derive(Clone, Debug)]
pub enum Act {
    /// `kind` 0: +FLAGS, 1: -FLAGS, 2: =FLAGS, of `\Seen` and `\Flagged` (bits).
    Flag {
        node: u8,
        kind: u8,
        bits: u8,
    },
    Step(Op),
}

/// Flag changes interleaved with appends (new dependencies and blobs) and partial,
/// per-document delivery with blobs late, so that flag changes wait at their receivers.
pub fn act() -> impl Strategy<Value = Act> {
    let n = || 0u8..4;
    prop_oneof![
        8 => (n(), 0u8..3, 0u8..4).prop_map(|(node, kind, bits)| Act::Flag { node, kind, bits }),
        3 => (n(), any::<u8>()).prop_map(|(node, body)| Act::Step(Op::Append {
            node,
            mb: 0,
            msgs: vec![(body | 1, 0)],
        })),
        6 => (n(), n(), any::<u8>()).prop_map(|(a, b, doc)| Act::Step(Op::Pump { a, b, doc })),
        3 => (n(), n(), any::<u8>())
            .prop_map(|(from, to, doc)| Act::Step(Op::Generate { from, to, doc })),
        4 => (any::<u8>(), prop::bool::weighted(0.1))
            .prop_map(|(queue, dup)| Act::Step(Op::Deliver { queue, dup })),
        1 => n().prop_map(|node| Act::Step(Op::Blobs { node })),
        1 => any::<u8>().prop_map(|queue| Act::Step(Op::Lose { queue })),
        1 => restart().prop_map(Act::Step),
        1 => crash_during().prop_map(Act::Step),
    ]
}

/// A flag a user's change added or removed, as the acting node's view judged it.
struct Event {
    node: usize,
    /// The acting node's own entry in its mailbox clock after the change: another node
    /// has applied the change iff its clock has at least this for that node.
    seq: u64,
    flag: Flag,
    add: bool,
    /// For a removal: the adds of this flag the acting node had applied (indexes).
    saw: Vec<usize>,
}

fn clock_of(sim: &Sim, i: usize, mb: &MailboxId) -> R<std::collections::BTreeMap<usize, u64>> {
    let meta = Tx::new(sim.nodes[i].kv())
        .mailbox_meta(mb)
        .map_err(|e| e.to_string())?
        .unwrap_or_else(dovetail::crdt::view::MailboxMeta::new);
    Ok((0..sim.k())
        .map(|j| (j, meta.applied.get(&sim.ids[j]).copied().unwrap_or(0)))
        .collect())
}

/// Runs a history of `acts` on `k` nodes sharing one message with `initial` flags; checks
/// add-wins at quiescence. Returns what the history exercised.
pub fn add_wins_with_pending(k: usize, seed: u64, initial: u8, acts: &[Act]) -> R<Stats> {
    let (stats, verdict) = exercise(k, seed, initial, acts);
    verdict.map(|()| stats)
}

/// As [`add_wins_with_pending`], but returns what the history exercised whatever the
/// verdict (for the coverage test).
pub fn exercise(k: usize, seed: u64, initial: u8, acts: &[Act]) -> (Stats, R<()>) {
    let mut sim = match Sim::new(k, seed) {
        Ok(s) => s,
        Err(e) => return (Stats::default(), Err(e)),
    };
    let verdict = run(&mut sim, initial, acts).map_err(|e| sim.report(&e));
    (sim.stats.clone(), verdict)
}

fn run(sim: &mut Sim, initial: u8, acts: &[Act]) -> R<()> {
    sim.shared_messages(&[(1, initial)])?;
    let guid: Guid = sim.rows(0, "INBOX")?[0].1.guid;
    let mb = MailboxId::try_from(sim.status(0)?[0].id.as_str()).map_err(|e| e.to_string())?;
    // The initial flags: adds every node has applied (sequence 0).
    let mut events: Vec<Event> = flag_set(initial)
        .into_iter()
        .map(|flag| Event {
            node: 0,
            seq: 0,
            flag,
            add: true,
            saw: Vec::new(),
        })
        .collect();
    for a in acts {
        sim.stats.steps += 1;
        let Act::Flag { node, kind, bits } = a else {
            let Act::Step(op) = a else { unreachable!() };
            sim.step(op)?;
            continue;
        };
        let i = *node as usize % sim.k();
        sim.log(format!(
            "t={} node {i} flags kind {kind} bits {bits}",
            sim.now
        ));
        let rows = sim.rows(i, "INBOX")?;
        let (uid, row) = rows
            .iter()
            .find(|(_, r)| r.guid == guid)
            .ok_or_else(|| format!("node {i} no longer shows the shared message"))?;
        let mut have = row.flags.clone();
        let (added, removed) = apply_flag_op(&mut have, *kind, &flag_set(*bits));
        if sim.pending_keys(i)?.next().is_some() {
            sim.stats.flags_while_pending += 1;
        }
        let before = clock_of(sim, i, &mb)?;
        let op = match kind % 3 {
            0 => FlagOp::Add(flag_set(*bits)),
            1 => FlagOp::Remove(flag_set(*bits)),
            _ => FlagOp::Replace(flag_set(*bits)),
        };
        sim.store_flags(i, "INBOX", &[*uid], &op)?;
        let shown = sim
            .rows(i, "INBOX")?
            .into_iter()
            .find(|(_, r)| r.guid == guid)
            .map(|(_, r)| r.flags)
            .ok_or_else(|| format!("node {i} lost the shared message"))?;
        if shown != have {
            return Err(format!(
                "node {i} shows ({}) after {op:?}, expected ({})",
                flag_names(&shown),
                flag_names(&have)
            ));
        }
        let seq = clock_of(sim, i, &mb)?[&i];
        for flag in removed {
            let saw = events
                .iter()
                .enumerate()
                .filter(|(_, e)| e.add && e.flag == flag && before[&e.node] >= e.seq)
                .map(|(x, _)| x)
                .collect();
            events.push(Event {
                node: i,
                seq,
                flag,
                add: false,
                saw,
            });
        }
        for flag in added {
            events.push(Event {
                node: i,
                seq,
                flag,
                add: true,
                saw: Vec::new(),
            });
        }
        sim.now += 1;
        sim.check()?;
    }
    sim.quiesce()?;
    sim.check_converged()?;
    // A flag is set iff some add of it was not removed by a node that had applied it.
    let want: FlagSet = events
        .iter()
        .enumerate()
        .filter(|(x, e)| e.add && !events.iter().any(|d| !d.add && d.saw.contains(x)))
        .map(|(_, e)| e.flag.clone())
        .collect();
    for i in 0..sim.k() {
        let got = sim
            .rows(i, "INBOX")?
            .into_iter()
            .find(|(_, r)| r.guid == guid)
            .map(|(_, r)| r.flags)
            .ok_or_else(|| format!("node {i} lost the shared message"))?;
        if got != want {
            let ev: Vec<String> = events
                .iter()
                .map(|e| {
                    format!(
                        "{}{} by node {} (seq {}, saw {:?})",
                        if e.add { "+" } else { "-" },
                        e.flag.as_str(),
                        e.node,
                        e.seq,
                        e.saw
                    )
                })
                .collect();
            return Err(format!(
                "inv 7: node {i} has ({}), add-wins relative to what each node showed gives ({})\nflag events: {}",
                flag_names(&got),
                flag_names(&want),
                ev.join("; ")
            ));
        }
    }
    Ok(())
}

/// Shrunk from `flag_changes_with_pending_changes_are_add_wins`: node 1 appends (its own
/// segment) and adds `\Seen` to the shared message (node 0's segment; the change depends
/// on the append). Node 0 receives only its segment: the add waits there for the append.
/// Node 1 removes `\Seen` (its own add); node 0, which shows no `\Seen`, replaces the
/// flags with `\Seen`. Node 1 never saw node 0's add, so `\Seen` must survive; today node
/// 0's put matches the pending put, automerge records nothing, and node 1's removal
/// clears `\Seen` everywhere.
#[test]
fn regression_add_matching_a_pending_put_survives_a_clear() {
    let acts = vec![
        Act::Step(Op::Append {
            node: 1,
            mb: 0,
            msgs: vec![(1, 0)],
        }),
        Act::Flag {
            node: 1,
            kind: 0,
            bits: 1,
        },
        Act::Step(Op::Pump {
            a: 0,
            b: 0,
            doc: 29,
        }),
        Act::Flag {
            node: 1,
            kind: 1,
            bits: 1,
        },
        Act::Flag {
            node: 0,
            kind: 2,
            bits: 1,
        },
    ];
    add_wins_with_pending(3, 2070395260026852545, 2, &acts).unwrap_or_else(|e| panic!("{e}"));
}
