//! The exhaustive model check of the kernel (`examples/modelcheck`, issue 10) at a bound CI
//! can afford: every interleaving of two real replicas with two appends, an expunge and two
//! renumberings. The same model, shared with the example through `#[path]` modules.
//! (~1 s each in a release build, with the step cache.)

#[path = "../examples/modelcheck/check.rs"]
mod check;
#[path = "../examples/modelcheck/memo.rs"]
mod memo;
#[path = "../examples/modelcheck/model.rs"]
mod model;
#[path = "../examples/modelcheck/props.rs"]
mod props;
#[path = "../examples/modelcheck/step.rs"]
mod step;
#[path = "../examples/modelcheck/trace.rs"]
mod trace;
#[path = "../examples/modelcheck/world.rs"]
mod world;

use check::{run, Search};
use model::Config;

fn small(causal: bool) -> Config {
    Config {
        nodes: 2,
        appends: 2,
        expunges: 1,
        flags: 0,
        renumbers: 2,
        dups: 0,
        in_flight: true,
        mailbox_race: false,
        causal,
        segment_capacity: 16_384,
        memo: true,
        memo_cap: 0,
    }
}

/// Every state within the bound keeps every invariant, and the states that make the check
/// meaningful (a clash, a renumbering, a homeless message, a change waiting for another,
/// quiescence) are among those explored.
#[test]
fn every_interleaving_keeps_the_invariants() {
    let out = run(
        small(true),
        &Search {
            threads: 2,
            dfs: false,
            timeout: None,
            progress: false,
        },
    )
    .expect("model");
    eprintln!(
        "{} states ({} unique), depth {}, in {:.1} s; {} kernel steps run ({} store bytes), {} cached",
        out.states,
        out.unique,
        out.max_depth,
        out.time.as_secs_f64(),
        out.memo_misses,
        out.memo_fresh,
        out.memo_hits
    );
    assert!(out.complete);
    if let Some((p, trace)) = &out.counterexample {
        panic!("counterexample to \"{p}\":\n{trace}");
    }
    for (p, ok) in &out.reached {
        assert!(ok, "never reached: {p}");
    }
    // 639 unique states since a claimant renumbers every homeless message (fewer distinct
    // renumbering outcomes than when each node renumbered only its own): a floor, not a goal.
    assert!(out.unique > 500, "only {} states", out.unique);
    assert!(out.memo_hits > 0, "the step cache never hit");
}

/// The step cache (`memo.rs`) only saves work: without it, or bounded to a few entries,
/// the checker explores exactly the same states.
#[test]
fn the_step_cache_changes_no_state() {
    let search = Search {
        threads: 1,
        dfs: false,
        timeout: None,
        progress: false,
    };
    let with = run(small(true), &search).expect("model");
    let without = run(
        Config {
            memo: false,
            ..small(true)
        },
        &search,
    )
    .expect("model");
    let bounded = run(
        Config {
            memo_cap: 16,
            ..small(true)
        },
        &search,
    )
    .expect("model");
    for other in [&without, &bounded] {
        assert_eq!(
            (with.states, with.unique, with.max_depth),
            (other.states, other.unique, other.max_depth)
        );
        assert!(other.counterexample.is_none());
    }
    assert!(with.counterexample.is_none());
    assert!(with.memo_misses < without.memo_misses / 2);
    // Bounded, the cache misses more than unbounded and less than without it.
    assert!(with.memo_misses < bounded.memo_misses);
    assert!(bounded.memo_misses < without.memo_misses);
}

/// With mailbox-causal delivery off, the checker finds a broken invariant: it can see a
/// broken protocol.
#[test]
fn without_causal_delivery_a_counterexample_is_found() {
    let out = run(
        small(false),
        &Search {
            threads: 1,
            dfs: false,
            timeout: None,
            progress: false,
        },
    )
    .expect("model");
    let (p, trace) = out.counterexample.expect("a counterexample");
    eprintln!("counterexample to \"{p}\":\n{trace}");
    assert!(trace.contains("VIOLATED"), "{trace}");
}
