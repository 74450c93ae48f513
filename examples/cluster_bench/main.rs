//! Cluster benchmarks: real `dovetail node` processes on 127.0.0.1.
//!
//! ```text
//! cargo build --release --bin dovetail
//! cargo run --release --example cluster_bench -- <scenario> [options]
//! ```
//!
//! Scenarios (one file each; medians over `--reps` where they repeat):
//!
//! - `catchup` ([`catchup`]): a 100k-message mailbox on two nodes; one is away while the
//!   other takes 1,000 new messages and 10,000 flag changes; time, bytes and CPU seconds from
//!   its restart to convergence.
//! - `reconnect` ([`reconnect`]): two nodes with N accounts (INBOX + 2 folders, 10
//!   messages each, N from `--accounts`); one is away while 10 accounts change; the same
//!   figures.
//! - `latency` ([`latency`]): `--nodes` (3) nodes, appends at `--rate` (100) per second
//!   spread over them for `--secs` (60): acknowledgement → shown on every other node.
//! - `initial` ([`initial`]): a new node's initial sync from one peer of `--messages`
//!   (10000,100000) messages, beside `dovetail sync` into an empty dir and Dovecot's dsync
//!   (run `scripts/bench-deps.sh` first).
//!
//! Datasets are built once under `$DOVETAIL_BENCH_DIR` (default /tmp/dovetail-bench) with
//! the library, and reused while their `DONE` marker matches. `$DOVETAIL_BIN` overrides the
//! node binary (default: `dovetail` beside this example in the target dir).

mod catchup;
mod initial;
mod latency;
mod procs;
mod reconnect;
mod support;

use anyhow::{bail, Result};

/// Command-line options shared by the scenarios.
pub struct Args {
    pub reps: usize,
    pub accounts: Vec<usize>,
    pub nodes: usize,
    pub rate: u64,
    pub secs: u64,
    pub messages: Vec<usize>,
}

fn usage() -> ! {
    eprintln!(
        "usage: cluster_bench <catchup|reconnect|latency|initial> [--reps N] [--accounts 1000,10000] \
         [--nodes 3] [--rate 100] [--secs 60] [--messages 10000,100000]"
    );
    std::process::exit(2)
}

fn list(v: &str) -> Result<Vec<usize>> {
    Ok(v.split(',').map(|x| x.parse()).collect::<Result<_, _>>()?)
}

fn main() -> Result<()> {
    let mut it = std::env::args().skip(1);
    let scenario = it.next().unwrap_or_else(|| usage());
    let mut args = Args {
        reps: 3,
        accounts: vec![1000, 10_000],
        nodes: 3,
        rate: 100,
        secs: 60,
        messages: vec![10_000, 100_000],
    };
    while let Some(a) = it.next() {
        let v = it.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--reps" => args.reps = v.parse()?,
            "--accounts" => args.accounts = list(&v)?,
            "--nodes" => args.nodes = v.parse()?,
            "--rate" => args.rate = v.parse()?,
            "--secs" => args.secs = v.parse()?,
            "--messages" => args.messages = list(&v)?,
            _ => usage(),
        }
    }
    eprintln!("load average at start: {}", support::load_avg());
    match scenario.as_str() {
        "catchup" => catchup::run(&args),
        "reconnect" => reconnect::run(&args),
        "latency" => {
            let a = latency::Args {
                nodes: args.nodes,
                rate: args.rate,
                secs: args.secs,
            };
            let f = latency::run(&a)?;
            print!("{}", latency::report(&a, &f));
            Ok(())
        }
        "initial" => {
            for &n in &args.messages {
                print!("{}", initial::report(&initial::run(n)?));
                use std::io::Write;
                std::io::stdout().flush()?;
            }
            Ok(())
        }
        other => bail!("unknown scenario {other}"),
    }?;
    eprintln!("load average at end: {}", support::load_avg());
    Ok(())
}
