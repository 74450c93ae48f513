//! QRESYNC (RFC 7162 3.2) against the real binary: exact responses on one node, and the
//! issue's cross-node property: a client with a cache from node A comes back, after
//! changes on A and on a node C partitioned from A (flags, expunges, appends whose UIDs
//! clash and get renumbered), to node B holding both, or to A itself; applying VANISHED
//! and FETCH to its cache gives exactly what a full `UID FETCH 1:* (FLAGS)` shows there.
//! Seeded random schedules: `DOVETAIL_QRESYNC_SEED=n` replays one (the seed is printed).

use super::cluster_support::{ok, Cluster};
use super::common::{cluster, imap_addr};

/// Runs a scenario of tests/imap/qresync.py; panics with its output if it fails.
fn py(args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/imap/qresync.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "qresync.py {args:?} failed:\n{text}");
    assert!(text.contains(&format!("ok {}", args[0])), "{text}");
    text
}

#[test]
fn qresync_exact_responses_on_one_node() {
    let mut c = cluster(1);
    c.start(0, &[]);
    py(&["exact", &imap_addr(&c, 0)]);
    c.stop(0);
}

/// A small deterministic generator (splitmix64): the schedule is a function of the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Node `i` alone (no peers: a partition), serving IMAP while `f` runs.
fn alone(c: &mut Cluster, i: usize, f: impl FnOnce(&str)) {
    c.start(i, &[]);
    let addr = imap_addr(c, i);
    f(&addr);
    c.stop(i);
}

fn schedule(seed: u64, rounds: usize) {
    let mut rng = Rng(seed);
    let mut c = cluster(3);
    ok(&["sync", c.dir(0), c.dir(1)]);
    ok(&["sync", c.dir(1), c.dir(2)]);
    let cache = c.tmp.path().join("cache.json");
    let cache = cache.to_str().expect("utf-8").to_string();
    let mut log = Vec::new();
    alone(&mut c, 0, |a| {
        py(&["ops", a, &seed.to_string(), "6", "init"]);
    });
    ok(&["sync", c.dir(0), c.dir(1)]);
    ok(&["sync", c.dir(1), c.dir(2)]);
    for round in 0..rounds {
        // Roles: the client's node A, node C partitioned from A, node B that gets both.
        let a = rng.below(3) as usize;
        let cc = (a + 1 + rng.below(2) as usize) % 3;
        let b = 3 - a - cc;
        let (n1, n2, n3) = (1 + rng.below(4), 1 + rng.below(4), 1 + rng.below(5));
        let (s1, s2, s3, s4) = (
            rng.next() % 1000,
            rng.next() % 1000,
            rng.next() % 1000,
            rng.next() % 1000,
        );
        let tag = |t: &str| format!("r{round}{t}");
        // The client syncs with A (checking that resync too), A changes, the client
        // takes its cache, A changes more while the client is away.
        alone(&mut c, a, |addr| {
            log.push(py(&["resync", addr, &cache, &s1.to_string()]));
            log.push(py(&[
                "ops",
                addr,
                &s2.to_string(),
                &n1.to_string(),
                &tag("a1"),
            ]));
            log.push(py(&["resync", addr, &cache, &s1.to_string()]));
            log.push(py(&[
                "ops",
                addr,
                &s3.to_string(),
                &n2.to_string(),
                &tag("a2"),
            ]));
        });
        // C, partitioned from A: its appends take the same UIDs as A's (a clash).
        alone(&mut c, cc, |addr| {
            log.push(py(&[
                "ops",
                addr,
                &s4.to_string(),
                &n3.to_string(),
                &tag("c"),
            ]));
        });
        // B gets both (offline syncs renumber the clashes until nothing is homeless); A
        // sometimes gets C's changes back through B, so its own resync meets the clash.
        ok(&["sync", c.dir(a), c.dir(b)]);
        ok(&["sync", c.dir(cc), c.dir(b)]);
        let a_heals = rng.below(2) == 0;
        if a_heals {
            ok(&["sync", c.dir(a), c.dir(b)]);
        }
        // The client comes back: to B (a value another node issued: the full answer),
        // or to A itself (its own value: the incremental answer).
        let target = if rng.below(2) == 0 { b } else { a };
        log.push(format!(
            "round {round}: A={a} B={b} C={cc} a_heals={a_heals} target={target}\n"
        ));
        alone(&mut c, target, |addr| {
            log.push(py(&["resync", addr, &cache, &s4.to_string()]));
        });
    }
    let uidnext = c.uidnext(0).max(c.uidnext(1)).max(c.uidnext(2));
    println!(
        "seed {seed}: {rounds} rounds, UIDNEXT up to {uidnext}\n{}",
        log.concat()
    );
}

#[test]
fn qresync_across_nodes_after_partitions_and_clashes_random_schedules() {
    let fixed = std::env::var("DOVETAIL_QRESYNC_SEED")
        .ok()
        .and_then(|s| s.parse().ok());
    let seeds: Vec<u64> = match fixed {
        Some(s) => vec![s],
        None => {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos() as u64;
            vec![t % 1_000_000, (t / 7) % 1_000_000]
        }
    };
    for seed in seeds {
        let run = std::panic::catch_unwind(|| schedule(seed, 3));
        if let Err(e) = run {
            eprintln!("QRESYNC schedule failed: replay with DOVETAIL_QRESYNC_SEED={seed}");
            std::panic::resume_unwind(e);
        }
    }
}
