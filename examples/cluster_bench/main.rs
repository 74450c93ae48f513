//! Cluster benchmarks: real `dovetail node` processes on 127.0.0.1.
//!
//! ```text
//! cargo build --release --bin dovetail
//! cargo run --release --example cluster_bench -- <scenario> [--reps N] [--accounts 1000,10000]
//! ```
//!
//! Scenarios (one file each; medians over `--reps`):
//!
//! - `catchup` ([`catchup`]): a 100k-message mailbox on two nodes; one is away while the
//!   other takes 1,000 new messages and 10,000 flag changes; time, bytes and CPU seconds from
//!   its restart to convergence.
//! - `reconnect` ([`reconnect`]): two nodes with N accounts (INBOX + 2 folders, 10
//!   messages each, N from `--accounts`); one is away while 10 accounts change; the same
//!   figures.
//!
//! Datasets are built once under `$DOVETAIL_BENCH_DIR` (default /tmp/dovetail-bench) with
//! the library, and reused while their `DONE` marker matches. `$DOVETAIL_BIN` overrides the
//! node binary (default: `dovetail` beside this example in the target dir).

mod catchup;
mod reconnect;
mod support;

use anyhow::{bail, Result};

/// Command-line options shared by the scenarios.
pub struct Args {
    pub reps: usize,
    pub accounts: Vec<usize>,
}

fn usage() -> ! {
    eprintln!("usage: cluster_bench <catchup|reconnect> [--reps N] [--accounts 1000,10000]");
    std::process::exit(2)
}

fn main() -> Result<()> {
    let mut it = std::env::args().skip(1);
    let scenario = it.next().unwrap_or_else(|| usage());
    let mut args = Args {
        reps: 3,
        accounts: vec![1000, 10_000],
    };
    while let Some(a) = it.next() {
        let v = it.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--reps" => args.reps = v.parse()?,
            "--accounts" => {
                args.accounts = v.split(',').map(|x| x.parse()).collect::<Result<_, _>>()?
            }
            _ => usage(),
        }
    }
    eprintln!("load average at start: {}", support::load_avg());
    match scenario.as_str() {
        "catchup" => catchup::run(&args),
        "reconnect" => reconnect::run(&args),
        other => bail!("unknown scenario {other}"),
    }?;
    eprintln!("load average at end: {}", support::load_avg());
    Ok(())
}
