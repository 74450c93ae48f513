//! Reconnect at scale: two nodes with N accounts (INBOX + 2 folders, 10 messages each);
//! one is away while 10 accounts change. Target: converged ≤ 1 s, bytes ≤ 64 KB + 3× the
//! changed data.
//!
//! Dataset per N (built once): `a0` with the N accounts (messages of ~1 KB); `b`, a copy
//! with a new network identity; `a1`, a copy with the changes: in 10 accounts spread over
//! the id space, 2 new messages in INBOX and `+\Seen` on 3 messages. Each run copies `a1`
//! and `b`, starts `a1`'s node, then `b`'s, and measures until the 10 accounts' status is
//! the same on both; `diff` then checks the whole dirs. Changed data as in the catch-up.

use crate::catchup::report;
use crate::support::{self, *};
use crate::Args;
use anyhow::Result;
use dovetail::model::UidSet;
use dovetail::node::{FlagOp, Replica};
use std::path::PathBuf;

const FOLDERS: [&str; 3] = ["INBOX", "Archive", "Sent"];
const PER_FOLDER: u64 = 10;
const CHANGED: usize = 10;
const SIZE: usize = 1000;

fn acct_name(i: usize) -> String {
    format!("user{i:05}")
}

fn changed_accounts(n: usize) -> Vec<String> {
    (0..CHANGED)
        .map(|k| acct_name(k * n / CHANGED + 7))
        .collect()
}

fn dataset(n: usize) -> Result<(PathBuf, PathBuf, u64, u64)> {
    let root = bench_root().join(format!("cluster-reconnect-{n}"));
    let spec = format!("v3 accounts={n} folders={FOLDERS:?} per={PER_FOLDER} size={SIZE}");
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
            for i in 0..n {
                let acct = account(&acct_name(i));
                r.create_account(&acct)?;
                for (k, f) in FOLDERS.iter().enumerate() {
                    let mb = mailbox(f);
                    if k > 0 {
                        r.create_mailbox(&acct, &mb)?;
                    }
                    let seed = (i * FOLDERS.len() + k) as u64;
                    append_n(&mut r, &acct, &mb, seed, 0..PER_FOLDER, 10, SIZE)?;
                }
                if i % 100 == 99 {
                    r.close_docs();
                }
                if (i + 1) % (n / 10).max(1) == 0 {
                    eprintln!("  {} accounts, {:.0} s", i + 1, t.elapsed().as_secs_f64());
                }
            }
        }
        drop(open_dir(&a0)?);
        copy_dir(&a0, &b)?;
        new_identity(&b)?;
        copy_dir(&a0, &a1)?;
        let (blobs, raw) = {
            let mut r = open_dir(&a1)?;
            let base: std::collections::BTreeMap<_, _> = r.doc_heads()?.into_iter().collect();
            let mut blobs = 0;
            let op = FlagOp::try_from("+\\Seen")?;
            for (k, name) in changed_accounts(n).iter().enumerate() {
                let acct = account(name);
                let inbox = mailbox("INBOX");
                blobs += append_n(&mut r, &acct, &inbox, 1_000_000 + k as u64, 0..2, 2, SIZE)?;
                r.store_flags(&acct, &inbox, &UidSet::try_from("1:3")?, &op, now())?;
            }
            let (c, raw, compressed) = changes_since(&r, &base)?;
            eprintln!("  a1: {c} changes, {raw} B raw, {compressed} B compressed; blobs {blobs} B");
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

pub fn run(args: &Args) -> Result<()> {
    for &n in &args.accounts {
        let (a1, b, blobs, raw) = dataset(n)?;
        let run_dir = bench_root().join("cluster-run");
        let mut runs = Vec::new();
        for rep in 0..args.reps {
            rm(&run_dir)?;
            std::fs::create_dir_all(&run_dir)?;
            let (ra, rb) = (run_dir.join("a"), run_dir.join("b"));
            copy_dir(&a1, &ra)?;
            copy_dir(&b, &rb)?;
            let r = support::reconnect(&ra, &rb, &changed_accounts(n))?;
            eprintln!(
                "  reconnect {n} run {}: {:.3} s (away node start-up {:.3} s), {} B, {:.2} CPU s",
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
        report(
            &format!("reconnect {n} accounts"),
            &runs,
            blobs + raw,
            blobs,
            raw,
            64 * 1024,
        );
    }
    Ok(())
}
