//! dovetail benchmarks: plain `fn main`, `std::time::Instant`, no harness.
//!
//! ```text
//! cargo run --release --example bench -- <scenario> [--reps N] [--n N]
//! ```
//!
//! Scenarios (each prints its figures and a summary table; medians over `--reps`):
//!
//! - `append`: appends `--n` (100,000) ~3 KB messages into one fresh mailbox through
//!   [`Replica::append`] in batches of 100, each batch durable (one flush): messages/s.
//! - `list`: opens a 100k-message and a 1M-message mailbox (in a fresh process, and with a
//!   fresh `Replica::open` in this process) and lists it: ms.
//! - `rss`: a fresh process opens a 1M-message account (10 mailboxes of 100k), runs `status`
//!   and lists every mailbox: VmRSS and VmHWM.
//! - `sync`: `sync_pair` of two dirs with 100k messages each sharing 99k: time, and bytes
//!   exchanged against the size of the changed records.
//! - `cli-list [--n 100000|1000000]`: fresh `dovetail list`, `list --json` (to a file) and
//!   `status` processes: wall time and peak RSS.
//! - `sync-empty [--sizes 10000,100000,1000000]`: `dovetail sync` into an empty dir against
//!   the `cp -r` + `sync` floor, at each size.
//! - `crash-open [--n N]`: open time after a SIGKILL that follows N appended messages.
//! - `all`: every scenario above, one after the other (the figures of docs/benchmarks.md).
//! - `build`: only builds the datasets.
//!
//! Diagnostics, to see what limits the figures above:
//!
//! - `append-phases`: the steps of `append` (checks, blob puts, automerge commit, chunk save,
//!   compaction, view update, batch apply, flush) done one by one on the public layers and
//!   timed, then the cost of loading the resulting segment back.
//! - `exp-rows`: scanning `--n` view rows from sled stored one per key or packed in blocks.
//! - `exp-blobs`: putting `--n` messages into sled keyed by sha256, or by number + index.
//! - `sample [--i N]`: prints one generated message and the size distribution.
//!
//! Datasets are built once under `$DOVETAIL_BENCH_DIR` (default `/tmp/dovetail-bench`) and
//! reused while their `DONE` marker matches (format version, contents, segment capacity).
//! `$DOVETAIL_BENCH_SEGMENT_CAPACITY` overrides `Options::segment_capacity`. Internal
//! scenarios, run in a child process: `open-list DIR MAILBOX` and `measure-rss DIR`.
//!
//! Messages are deterministic from a seed: RFC 5322 headers (Received, DKIM-Signature,
//! Message-ID, Date, From, To, Subject, MIME), a size of 2.1-4.0 KB in all (3.0 KB mean) of
//! wrapped prose, sometimes a quoted reply and a signature; some carry `\Seen`, `\Flagged`
//! or `$Work`. GUIDs are minted by the replica (clock and random bits).

mod append;
mod cli;
mod exp;
mod gen;
mod list;
mod support;
mod sync;

use anyhow::Result;
use append::{scen_append, scen_append_phases};
use cli::{run_crash_write, scen_cli_list, scen_crash_open, scen_sync_empty};
use exp::{scen_exp_blobs, scen_exp_rows};
use gen::message;
use list::{run_load_docs, run_measure_rss, run_open_list, scen_list, scen_rss};
use support::{ds_100k, ds_1m, ds_acct1m, median, percentile, print_summary};
use sync::scen_sync;

fn usage() -> ! {
    eprintln!(
        "usage: bench <append|append-phases|list|rss|sync|cli-list|sync-empty|crash-open|all|build|sample> \
         [--reps N] [--n N] [--sizes N,N]\n\
         (internal: open-list DIR MAILBOX, measure-rss DIR, crash-write DIR N; diagnostic: load-docs DIR)"
    );
    std::process::exit(2)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(scenario) = args.first().cloned() else {
        usage()
    };
    let opt = |name: &str, default: u64| -> u64 {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let reps = opt("--reps", 5) as usize;
    // 100k appends take a while: three runs unless asked otherwise.
    let append_reps = opt("--reps", 3) as usize;
    let n = opt("--n", 100_000);
    let mut rows = Vec::new();
    match scenario.as_str() {
        "open-list" => {
            let (Some(d), Some(m)) = (args.get(1), args.get(2)) else {
                usage()
            };
            return run_open_list(d, m);
        }
        "crash-write" => {
            let (Some(d), Some(k)) = (args.get(1), args.get(2).and_then(|k| k.parse().ok())) else {
                usage()
            };
            return run_crash_write(d, k);
        }
        "exp-sizes" => {
            let Some(d) = args.get(1) else { usage() };
            return exp::run_exp_sizes(d);
        }
        "load-docs" => {
            let Some(d) = args.get(1) else { usage() };
            return run_load_docs(d);
        }
        "measure-rss" => {
            let Some(d) = args.get(1) else { usage() };
            return run_measure_rss(d);
        }
        "sample" => {
            // One generated message, and the size distribution of the first 1,000.
            let m = message(1, opt("--i", 0));
            print!("{}", String::from_utf8_lossy(&m.bytes));
            let sizes: Vec<f64> = (0..1000)
                .map(|i| message(1, i).bytes.len() as f64)
                .collect();
            eprintln!(
                "flags {:?}; sizes of 1,000: mean {:.0} B, min {:.0}, median {:.0}, max {:.0}",
                m.flags,
                sizes.iter().sum::<f64>() / 1000.0,
                percentile(&sizes, 0.0),
                median(&sizes),
                percentile(&sizes, 1.0)
            );
            return Ok(());
        }
        "build" => {
            ds_100k()?;
            ds_1m()?;
            ds_acct1m()?;
            return Ok(());
        }
        "append" => scen_append(n, append_reps, &mut rows)?,
        "append-phases" => return scen_append_phases(n),
        "exp-rows" => return scen_exp_rows(n),
        "exp-blobs" => return scen_exp_blobs(n),
        "list" => scen_list(reps, &mut rows)?,
        "rss" => scen_rss(reps, &mut rows)?,
        "sync" => scen_sync(reps, &mut rows)?,
        "cli-list" => scen_cli_list(n, reps, &mut rows)?,
        "sync-empty" => {
            let sizes: Vec<u64> = args
                .iter()
                .position(|a| a == "--sizes")
                .and_then(|i| args.get(i + 1))
                .map_or(vec![10_000, 100_000], |v| {
                    v.split(',').filter_map(|x| x.parse().ok()).collect()
                });
            scen_sync_empty(&sizes, opt("--reps", 3) as usize, &mut rows)?
        }
        "crash-open" => scen_crash_open(n, &mut rows)?,
        "all" => {
            scen_append(n, append_reps, &mut rows)?;
            scen_list(reps, &mut rows)?;
            scen_rss(reps, &mut rows)?;
            scen_sync(reps, &mut rows)?;
        }
        _ => usage(),
    }
    print_summary(&rows);
    Ok(())
}
