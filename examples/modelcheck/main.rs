//! Exhaustive model check of the dovetail kernel (issue 10): every interleaving of a small
//! cluster of real replicas (`Replica` on the in-memory store), explored with `stateright`.
//!
//!     cargo run --release --example modelcheck -- --nodes 3 --appends 3 --expunges 1
//!
//! Prints the states explored, the time, and "all properties hold" (exit 0) or the
//! shortest counterexample as a trace, one action per line (exit 1). See docs/design.md,
//! "Exhaustive model check", for what is modelled and the figures.

mod check;
mod memo;
mod model;
mod props;
mod step;
mod trace;
mod world;

use anyhow::{bail, Context};
use model::Config;
use std::time::Duration;

const USAGE: &str = "usage: modelcheck [--nodes N] [--appends A] [--expunges E] [--flags F]
       [--renumbers R] [--dups D] [--atomic-sync] [--segment-capacity S] [--mailbox-race]
       [--no-causal] [--no-memo] [--memo-cap ENTRIES]
       [--threads T] [--dfs] [--timeout SECS]";

fn main() -> anyhow::Result<()> {
    let mut cfg = Config::default();
    let mut search = check::Search {
        threads: 2,
        dfs: false,
        timeout: None,
        progress: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |what: &str| -> anyhow::Result<u64> {
            let v = args
                .next()
                .with_context(|| format!("{what} needs a number\n{USAGE}"))?;
            v.parse()
                .with_context(|| format!("{what} {v}: not a number\n{USAGE}"))
        };
        match a.as_str() {
            "--nodes" => cfg.nodes = num("--nodes")? as usize,
            "--appends" => cfg.appends = num("--appends")? as u32,
            "--expunges" => cfg.expunges = num("--expunges")? as u32,
            "--flags" => cfg.flags = num("--flags")? as u32,
            "--renumbers" => cfg.renumbers = num("--renumbers")? as u32,
            "--dups" => cfg.dups = num("--dups")? as u32,
            "--segment-capacity" => cfg.segment_capacity = num("--segment-capacity")?,
            "--threads" => search.threads = num("--threads")? as usize,
            "--mailbox-race" => cfg.mailbox_race = true,
            "--atomic-sync" => cfg.in_flight = false,
            "--no-causal" => cfg.causal = false,
            "--no-memo" => cfg.memo = false,
            "--memo-cap" => cfg.memo_cap = num("--memo-cap")? as usize,
            "--dfs" => search.dfs = true,
            "--timeout" => search.timeout = Some(Duration::from_secs(num("--timeout")?)),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    if !(2..=5).contains(&cfg.nodes) {
        bail!("--nodes must be 2 to 5");
    }
    println!(
        "checking {cfg:?} ({})",
        if search.dfs {
            "depth-first"
        } else {
            "breadth-first"
        }
    );
    let out = check::run(cfg, &search).map_err(anyhow::Error::msg)?;
    println!(
        "states explored: {} ({} unique), max depth {}, time {:.1} s",
        out.states,
        out.unique,
        out.max_depth,
        out.time.as_secs_f64()
    );
    println!(
        "kernel steps: {} run ({:.1} MB of store written), {} from the step cache",
        out.memo_misses,
        out.memo_fresh as f64 / 1e6,
        out.memo_hits
    );
    for (p, ok) in &out.reached {
        println!("  {} {p}", if *ok { "reached" } else { "NOT reached" });
    }
    if !out.complete {
        println!("INCOMPLETE: stopped by --timeout before every state was explored");
    }
    match out.counterexample {
        Some((p, trace)) => {
            println!("counterexample to \"{p}\":\n{trace}");
            std::process::exit(1);
        }
        None => {
            if out.reached.iter().any(|(_, ok)| !ok) {
                println!("all properties hold, but some states were never reached (vacuous?)");
                std::process::exit(1);
            }
            if !out.complete {
                std::process::exit(2);
            }
            println!("all properties hold");
        }
    }
    Ok(())
}
