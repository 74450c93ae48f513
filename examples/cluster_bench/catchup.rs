//! Catch-up: a node away while 1,000 new messages and 10,000 flag changes happened in a
//! 100k-message mailbox. Target: converged ≤ 1 s after it comes back, bytes ≤ 3× the
//! changed records and blobs.
//!
//! Dataset (built once): `a0`, one account with a 100k-message INBOX (~3 KB messages, in
//! batches of 1,000); `b`, a copy of `a0` with a new network identity (the away node as it
//! left); `a1`, a copy of `a0` with the changes made while `b` was away: 1,000 appends in 10
//! batches of 100 and 10,000 flag changes (`+\Seen` on 100 disjoint UID ranges of 100,
//! one command each). Each run copies `a1` and `b`, starts `a1`'s node, then `b`'s,
//! joining it, and measures until INBOX's status (UIDNEXT, messages, digest) is the same
//! on both; `diff` then checks the whole dirs.
//!
//! "Changed records and blobs" = the bytes of the 1,000 new messages' blobs + the raw bytes
//! (`Change::raw_bytes`) of the automerge changes `a1` has beyond `a0`'s heads.

use crate::support::{self, *};
use crate::Args;
use anyhow::Result;
use dovetail::model::UidSet;
use dovetail::node::FlagOp;

const ACCOUNT: &str = "bench@example.net";
const MESSAGES: u64 = 100_000;
const NEW: u64 = 1_000;
const FLAG_CMDS: u64 = 100;
const FLAGS_PER_CMD: u64 = 100;
const SIZE: usize = 3000;

/// Builds the dataset once; returns (a1, b, changed bytes: blobs, raw changes).
fn dataset() -> Result<(std::path::PathBuf, std::path::PathBuf, u64, u64)> {
    let root = bench_root().join("cluster-catchup");
    let spec =
        format!("v3 messages={MESSAGES} new={NEW} flags={FLAG_CMDS}x{FLAGS_PER_CMD} size={SIZE}");
    let (a0, a1, b) = (root.join("a0"), root.join("a1"), root.join("b"));
    let changed = root.join("CHANGED");
    if !done(&root, &spec) {
        eprintln!("building {} ...", root.display());
        rm(&root)?;
        std::fs::create_dir_all(&root)?;
        let t = std::time::Instant::now();
        Replica::init(&a0)?;
        {
            let mut r = open_dir(&a0)?;
            let acct = account(ACCOUNT);
            r.create_account(&acct)?;
            append_n(&mut r, &acct, &mailbox("INBOX"), 1, 0..MESSAGES, 1000, SIZE)?;
        }
        // sled snapshots on open: do it now, not in the measured runs.
        drop(open_dir(&a0)?);
        eprintln!("  a0 built in {:.0} s", t.elapsed().as_secs_f64());
        copy_dir(&a0, &b)?;
        new_identity(&b)?;
        copy_dir(&a0, &a1)?;
        let (blobs, raw) = {
            let mut r = open_dir(&a1)?;
            let base: std::collections::BTreeMap<_, _> = r.doc_heads()?.into_iter().collect();
            let acct = account(ACCOUNT);
            let inbox = mailbox("INBOX");
            let blobs = append_n(&mut r, &acct, &inbox, 2, 0..NEW, 100, SIZE)?;
            let op = FlagOp::try_from("+\\Seen")?;
            for k in 0..FLAG_CMDS {
                let first = 1 + k * (MESSAGES / FLAG_CMDS);
                let set =
                    UidSet::try_from(format!("{first}:{}", first + FLAGS_PER_CMD - 1).as_str())?;
                let n = r.store_flags(&acct, &inbox, &set, &op, now())?;
                anyhow::ensure!(n.len() as u64 == FLAGS_PER_CMD, "flags changed {}", n.len());
            }
            let (n, raw, compressed) = changes_since(&r, &base)?;
            eprintln!("  a1: {n} changes, {raw} B raw, {compressed} B compressed; blobs {blobs} B");
            (blobs, raw)
        };
        drop(open_dir(&a1)?);
        std::fs::write(&changed, format!("{blobs} {raw}"))?;
        std::fs::write(root.join("DONE"), &spec)?;
        eprintln!("  built in {:.0} s", t.elapsed().as_secs_f64());
    }
    let c = std::fs::read_to_string(&changed)?;
    let mut p = c.split_whitespace().map(|x| x.parse::<u64>());
    Ok((
        a1,
        b,
        p.next().unwrap_or(Ok(0))?,
        p.next().unwrap_or(Ok(0))?,
    ))
}

use dovetail::node::Replica;

pub fn run(args: &Args) -> Result<()> {
    let (a1, b, blobs, raw) = dataset()?;
    let run_dir = bench_root().join("cluster-run");
    let mut runs = Vec::new();
    for rep in 0..args.reps {
        rm(&run_dir)?;
        std::fs::create_dir_all(&run_dir)?;
        let (ra, rb) = (run_dir.join("a"), run_dir.join("b"));
        copy_dir(&a1, &ra)?;
        copy_dir(&b, &rb)?;
        let r = support::reconnect(&ra, &rb, &[ACCOUNT.to_string()])?;
        eprintln!(
            "  catchup run {}: {:.3} s (away node start-up {:.3} s), {} B, {:.2} CPU s",
            rep + 1,
            r.total,
            r.startup,
            r.bytes,
            r.cpu
        );
        runs.push(r);
    }
    // DOVETAIL_BENCH_KEEP=1 keeps the last run's dirs and node logs (`a.log`, `b.log`).
    if std::env::var_os("DOVETAIL_BENCH_KEEP").is_none() {
        rm(&run_dir)?;
    }
    report("catchup", &runs, blobs + raw, blobs, raw, 0);
    Ok(())
}

/// Prints the medians and ratios to the targets; `allowance` is the bytes allowed besides
/// 3× the changed data.
pub fn report(
    name: &str,
    runs: &[support::Run],
    changed: u64,
    blobs: u64,
    raw: u64,
    allowance: u64,
) {
    let col = |f: fn(&support::Run) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
    let (t, st, by, cpu) = (
        col(|r| r.total),
        col(|r| r.startup),
        col(|r| r.bytes as f64),
        col(|r| r.cpu),
    );
    let bytes = median(&by);
    let limit = allowance as f64 + 3.0 * changed as f64;
    println!(
        "{name}: time {:.3} s (runs {}; away node start-up {:.3} s of it), bytes {:.0} (runs {}), CPU {:.2} s (runs {}); changed data {changed} B (blobs {blobs} + raw changes {raw}); time/target {:.2}, bytes/changed {:.2}×, bytes/limit {:.2}",
        median(&t),
        fmt_list(&t, 3),
        median(&st),
        bytes,
        fmt_list(&by, 0),
        median(&cpu),
        fmt_list(&cpu, 2),
        median(&t) / 1.0,
        bytes / changed.max(1) as f64,
        bytes / limit,
    );
}
