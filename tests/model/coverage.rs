//! Coverage asserted, not printed (issue 5 §6): a fixed set of seeded histories from the
//! same generators as the properties, with their stats summed and checked against
//! minimums. A change to the generators that stops producing UID clashes, renumberings,
//! pending changes, crashes or mailbox name races fails here instead of silently making
//! the properties trivial.

use super::sim::*;
use super::{name_op, op, pending};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// Histories per generator: small, so the whole test stays within a few seconds.
const HISTORIES: usize = 16;

fn sample<S: Strategy>(s: S, runner: &mut TestRunner) -> S::Value {
    s.new_tree(runner).expect("generate").current()
}

fn add(total: &mut Stats, s: &Stats) {
    total.steps += s.steps;
    total.renumbered += s.renumbered;
    total.restarts += s.restarts;
    total.uid_clashes += s.uid_clashes;
    total.pending_changes += s.pending_changes;
    total.mid_sync_restarts += s.mid_sync_restarts;
    total.crash_drops += s.crash_drops;
    total.crashes_mid_op += s.crashes_mid_op;
    total.name_races += s.name_races;
    total.flags_while_pending += s.flags_while_pending;
}

#[test]
fn the_generators_exercise_the_edges() {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let mut total = Stats::default();
    let mut add_wins_failures = 0;
    for _ in 0..HISTORIES {
        let (k, seed, ops) = sample(
            (2usize..=5, any::<u64>(), prop::collection::vec(op(), 1..80)),
            &mut runner,
        );
        let mut sim = Sim::new(k, seed).expect("sim");
        sim.run(&ops)
            .unwrap_or_else(|e| panic!("random history: {e}"));
        add(&mut total, &sim.stats);
    }
    for _ in 0..HISTORIES {
        let (k, seed, ops) = sample(
            (
                2usize..=3,
                any::<u64>(),
                prop::collection::vec(name_op(), 1..60),
            ),
            &mut runner,
        );
        let mut sim = Sim::new(k, seed).expect("sim");
        sim.run(&ops)
            .unwrap_or_else(|e| panic!("name history: {e}"));
        add(&mut total, &sim.stats);
    }
    for _ in 0..HISTORIES {
        let (k, seed, initial, acts) = sample(
            (
                2usize..=4,
                any::<u64>(),
                0u8..4,
                prop::collection::vec(pending::act(), 1..50),
            ),
            &mut runner,
        );
        // Add-wins with pending changes is its own property (ignored until the kernel
        // fix): its verdict is counted, not asserted here; every other failure is.
        let (stats, verdict) = pending::exercise(k, seed, initial, &acts);
        match verdict {
            Err(e) if e.starts_with("inv 7: ") => add_wins_failures += 1,
            Err(e) => panic!("pending-flags history: {e}"),
            Ok(()) => {}
        }
        add(&mut total, &stats);
    }
    eprintln!(
        "coverage over {} histories: {total:?}; add-wins with pending changes failed in {add_wins_failures}",
        3 * HISTORIES
    );
    // About half of what these histories exercised when the minimums were set (88 UID
    // clashes, 619 renumbered messages, 117 pending changes, 21 restarts mid-sync, 8 crash
    // restarts that lost writes, 20 crashes mid-operation, 124 steps with a name race, 21
    // flag changes with changes pending): GUIDs are random, so counts vary a little.
    let minimums = [
        ("UID clashes", total.uid_clashes, 40),
        ("renumberings", total.renumbered, 250),
        ("pending changes", total.pending_changes, 50),
        ("restarts mid-sync", total.mid_sync_restarts, 8),
        ("crash restarts that lost writes", total.crash_drops, 3),
        ("crashes mid-operation", total.crashes_mid_op, 7),
        ("mailbox name races", total.name_races, 50),
        ("flag changes while pending", total.flags_while_pending, 8),
    ];
    let short: Vec<String> = minimums
        .iter()
        .filter(|(_, got, min)| got < min)
        .map(|(what, got, min)| format!("{what}: {got} < {min}"))
        .collect();
    assert!(
        short.is_empty(),
        "the generators no longer exercise: {short:?}"
    );
}
