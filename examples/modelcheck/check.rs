//! Running a check: the exhaustive search, its figures and its verdict.

use crate::model::{Config, Mc};
use stateright::{Checker, Expectation, HasDiscoveries, Model};
use std::time::{Duration, Instant};

/// How to search.
#[derive(Clone, Debug)]
pub struct Search {
    pub threads: usize,
    /// Depth-first (a stack instead of a queue: far less memory, but a counterexample
    /// found is not the shortest).
    pub dfs: bool,
    /// Stop after this long (the check is then incomplete).
    pub timeout: Option<Duration>,
    /// Print the states explored every 30 s on stderr.
    pub progress: bool,
}

/// What a check found.
pub struct Outcome {
    /// States generated (with repeats) and distinct states.
    pub states: usize,
    pub unique: usize,
    pub max_depth: usize,
    pub time: Duration,
    /// Every state within the bounds was explored (no timeout).
    pub complete: bool,
    /// The broken property, and its counterexample as a readable trace.
    pub counterexample: Option<(&'static str, String)>,
    /// Every `sometimes` property and whether a state showed it.
    pub reached: Vec<(&'static str, bool)>,
    /// Kernel steps taken from the step cache, and run (the cache's size).
    pub memo_hits: u64,
    pub memo_misses: u64,
    pub memo_fresh: u64,
}

/// Explores every state within the bounds (stopping at the first broken property).
pub fn run(cfg: Config, search: &Search) -> Result<Outcome, String> {
    let mc = Mc::new(cfg)?;
    let props = mc.properties();
    let start = Instant::now();
    let mut b = mc
        .checker()
        .threads(search.threads)
        .finish_when(HasDiscoveries::AnyFailures);
    if let Some(t) = search.timeout {
        b = b.timeout(t);
    }
    let mut checker = if search.dfs {
        Box::new(b.spawn_dfs()) as Box<dyn Checker<Mc>>
    } else {
        Box::new(b.spawn_bfs())
    };
    let mut last = Instant::now();
    while !checker.is_done() {
        std::thread::sleep(Duration::from_millis(50));
        if search.progress && last.elapsed() >= Duration::from_secs(30) {
            last = Instant::now();
            eprintln!(
                "  ... {} states ({} unique), depth {}, {:.0} s",
                checker.state_count(),
                checker.unique_state_count(),
                checker.max_depth(),
                start.elapsed().as_secs_f64()
            );
        }
    }
    let time = start.elapsed();
    let complete = search.timeout.is_none_or(|t| time < t);
    if complete {
        for h in checker.handles() {
            h.join().map_err(|_| "a checker thread panicked")?;
        }
    }
    // After a timeout the threads are not joined: stateright closes its job market, but a
    // thread only stops once its own block of pending states is empty, and with one thread
    // that is the whole search. The figures are read as they are; `main` then exits.
    let mut counterexample: Option<(&'static str, String, usize)> = None;
    let mut reached = Vec::new();
    let mut discoveries = checker.discoveries();
    for p in &props {
        let found = discoveries.remove(p.name);
        match p.expectation {
            Expectation::Sometimes => reached.push((p.name, found.is_some())),
            _ => {
                if let Some(path) = found {
                    let len = path.clone().into_actions().len();
                    if counterexample.as_ref().is_none_or(|c| len < c.2) {
                        counterexample = Some((p.name, crate::trace::path(&path), len));
                    }
                }
            }
        }
    }
    let memo = &checker.model().memo;
    Ok(Outcome {
        memo_hits: memo.hits.load(std::sync::atomic::Ordering::Relaxed),
        memo_misses: memo.misses.load(std::sync::atomic::Ordering::Relaxed),
        memo_fresh: memo.fresh.load(std::sync::atomic::Ordering::Relaxed),
        states: checker.state_count(),
        unique: checker.unique_state_count(),
        max_depth: checker.max_depth(),
        time,
        complete,
        counterexample: counterexample.map(|(p, t, _)| (p, t)),
        reached,
    })
}
