//! Scenarios that run the `dovetail` binary itself in fresh processes, as a user would, and
//! read its wall time and peak resident memory (`ru_maxrss` from `wait4`):
//!
//! - `cli-list [--n 100000|1000000]`: `dovetail list` and `list --json` to a file, and
//!   `status`.
//! - `sync-empty [--sizes 10000,100000]`: `dovetail sync` of a dataset into an empty data
//!   dir, side by side with two floors: `cp -r` + `sync` of the same messages as one file
//!   each (the floor, what a Maildir copy costs) and of the dataset's data dir (a
//!   few large pack files: the stricter floor).
//! - `crash-open [--n N]`: a child appends N messages in batches of 1,000 to a fresh dir and
//!   SIGKILLs itself after the last durable batch; then fresh processes open the dir.

use crate::gen::message;
use crate::support::*;
use anyhow::{bail, Context, Result};
use dovetail::node::Replica;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The `dovetail` binary built beside this example (`target/release/dovetail`).
fn dovetail_bin() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .context("exe dir")?
        .join("dovetail");
    if !bin.exists() {
        bail!(
            "{} missing: cargo build --release --bin dovetail",
            bin.display()
        );
    }
    Ok(bin)
}

/// What one child process took.
pub struct Run {
    pub secs: f64,
    pub cpu: f64,
    pub maxrss_mib: f64,
}

/// Runs `cmd` to completion (stdout to `out` or discarded) under `/usr/bin/time`: wall
/// time, CPU and peak RSS. (`wait4`'s `ru_maxrss` of a direct child would count this
/// process's own RSS, which the child has until its `exec`.)
pub fn measure(cmd: &mut Command, out: Option<&Path>) -> Result<Run> {
    let stats = bench_root().join("time.out");
    let mut timed = Command::new("/usr/bin/time");
    timed
        .args(["-f", "%e %U %S %M", "-o"])
        .arg(&stats)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    match out {
        Some(p) => timed.stdout(std::fs::File::create(p)?),
        None => timed.stdout(Stdio::null()),
    };
    let t = Instant::now();
    let st = timed.status()?;
    let secs = t.elapsed().as_secs_f64();
    if !st.success() {
        bail!("{cmd:?} failed: {st}");
    }
    let s = std::fs::read_to_string(&stats)?;
    let f: Vec<f64> = s
        .lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    if f.len() != 4 {
        bail!("unexpected /usr/bin/time output {s:?}");
    }
    Ok(Run {
        secs,
        cpu: f[1] + f[2],
        maxrss_mib: f[3] / 1024.0,
    })
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// `dovetail list`, `list --json` (to a file) and `status` on a 100k or 1M mailbox.
pub fn scen_cli_list(n: u64, reps: usize, rows: &mut Vec<Row>) -> Result<()> {
    let dir = if n >= 1_000_000 { ds_1m()? } else { ds_100k()? };
    let bin = dovetail_bin()?;
    let out = bench_root().join("list.out");
    println!(
        "== cli-list: {n} messages, {} (load {})",
        dir.display(),
        load()
    );
    let cases: [(&str, &[&str], f64); 3] = [
        ("list", &["list"], if n >= 1_000_000 { 1.0 } else { 0.1 }),
        (
            "list --json",
            &["--json", "list"],
            if n >= 1_000_000 { 2.0 } else { 0.2 },
        ),
        ("status", &["status"], 1.0),
    ];
    for (what, args, target) in cases {
        let mut cmd = Command::new(&bin);
        cmd.arg("--data-dir").arg(&dir).args(args);
        if what != "status" {
            cmd.args(["--account", ACCOUNT, "--mailbox", "INBOX"]);
        }
        measure(&mut cmd, Some(&out))?; // warm the page cache; not counted
        let (mut t, mut m, mut c) = (vec![], vec![], vec![]);
        for _ in 0..reps {
            let r = measure(&mut cmd, Some(&out))?;
            t.push(r.secs * 1e3);
            m.push(r.maxrss_mib);
            c.push(r.cpu * 1e3);
        }
        let lines = std::fs::read_to_string(&out)?.lines().count();
        let bytes = std::fs::metadata(&out)?.len();
        println!(
            "  dovetail {what}: median {:.0} ms (runs {}), CPU {:.0} ms, max RSS {:.0} MiB (runs {}); {lines} lines, {bytes} B",
            median(&t),
            fmt_list(&t, 0),
            median(&c),
            median(&m),
            fmt_list(&m, 0)
        );
        rows.push(Row {
            what: format!("fresh `dovetail {what}`, {}k messages", n / 1000),
            figure: format!(
                "{:.0} ms, {:.0} MiB max RSS (runs {})",
                median(&t),
                median(&m),
                fmt_list(&t, 0)
            ),
            target: format!("<= {:.0} ms", target * 1e3),
            pass: median(&t) <= target * 1e3,
        });
    }
    std::fs::remove_file(&out)?;
    Ok(())
}

/// Files per directory of [`files_sized`]: directories of 100k entries made this file
/// system create and copy files ~10x slower per file than directories of 10k.
const FILES_PER_DIR: u64 = 10_000;

/// The messages of `ds_sized(n)` as one file each, in directories of [`FILES_PER_DIR`]
/// (`cur/000/`, `cur/001/`, ... as Maildir folders would spread them; built once).
fn files_sized(n: u64) -> Result<PathBuf> {
    let d = bench_root().join(format!("files{}k", n / 1000));
    let spec = format!("files n={n} seed={} per_dir={FILES_PER_DIR}", seed_of(n));
    if built(&d, &spec) {
        return Ok(d);
    }
    rm(&d)?;
    eprintln!("writing {n} messages as files under {} ...", d.display());
    for i in 0..n {
        let dir = d.join("cur").join(format!("{:03}", i / FILES_PER_DIR));
        if i % FILES_PER_DIR == 0 {
            std::fs::create_dir_all(&dir)?;
        }
        let m = message(seed_of(n), i);
        std::fs::write(dir.join(format!("{i}.bench:2,")), &m.bytes)?;
    }
    mark_built(&d, &spec)?;
    Ok(d)
}

/// Removes `dir` and waits until the removal is on disk: with ext4's `discard` the trims of
/// a removed tree are issued at the next journal commit, which the next timed `sync` or
/// `fdatasync` would otherwise pay for.
fn rm_synced(dir: &Path) -> Result<()> {
    rm(dir)?;
    Command::new("sync").status()?;
    Ok(())
}

/// `cp -r FROM TO && sync`, timed.
fn cp_floor(from: &Path, to: &Path) -> Result<Run> {
    rm_synced(to)?;
    let r = measure(
        Command::new("sh").arg("-c").arg(format!(
            "cp -r '{}' '{}' && sync",
            from.display(),
            to.display()
        )),
        None,
    )?;
    rm(to)?;
    Ok(r)
}

fn ds_sized(n: u64) -> Result<PathBuf> {
    match n {
        100_000 => ds_100k(),
        1_000_000 => ds_1m(),
        _ => {
            let d = bench_root().join(format!("mb{}k", n / 1000));
            dataset(&d, &[("INBOX", n)], BUILD_BATCH, seed_of(n))?;
            Ok(d)
        }
    }
}

/// `dovetail sync DATASET EMPTY` against `cp -r` + `sync` of the messages as files and of
/// the dataset's dir, per size. The sizes take turns within each rep (10k, 100k, 1M, then
/// again), so that the growth from one size to the next compares runs minutes apart, not
/// runs on either side of half an hour of others (the machine's speed drifts by ±15 %).
pub fn scen_sync_empty(sizes: &[u64], reps: usize, rows: &mut Vec<Row>) -> Result<()> {
    let bin = dovetail_bin()?;
    let dst = bench_root().join("sync-dst");
    let mut runs: Vec<SizeRuns> = Vec::new();
    for &n in sizes {
        let (src, files) = (ds_sized(n)?, files_sized(n)?);
        println!(
            "== sync-empty: {n} messages, {} ({:.0} MiB; as files {:.0} MiB)",
            src.display(),
            du_mib(&src),
            du_mib(&files),
        );
        runs.push(SizeRuns {
            n,
            src,
            files,
            ..SizeRuns::default()
        });
    }
    for rep in 0..reps {
        for r in runs.iter_mut() {
            let fcp = cp_floor(&r.files.join("cur"), &dst)?.secs;
            let cp = cp_floor(&r.src, &dst)?;
            rm_synced(&dst)?;
            Replica::init(&dst)?;
            let s = measure(
                Command::new(&bin)
                    .arg("--json")
                    .arg("sync")
                    .arg(&r.src)
                    .arg(&dst),
                None,
            )?;
            let st = |d: &Path| -> Result<String> {
                let o = Command::new(&bin)
                    .arg("--data-dir")
                    .arg(d)
                    .arg("status")
                    .output()?;
                Ok(String::from_utf8(o.stdout)?)
            };
            if st(&r.src)? != st(&dst)? {
                bail!("sync-empty {}: status differs after sync", r.n);
            }
            println!(
                "  run {rep}, {}k (load {}): cp -r + sync: files {:.2} s, data dir {:.2} s; dovetail sync {:.2} s (CPU {:.2} s), max RSS {:.0} MiB",
                r.n / 1000,
                load(),
                fcp,
                cp.secs,
                s.secs,
                s.cpu,
                s.maxrss_mib
            );
            r.floor.push(fcp);
            r.dfloor.push(cp.secs);
            r.sync.push(s.secs);
            r.cpu.push(s.cpu);
            r.rss.push(s.maxrss_mib);
            rm(&dst)?;
        }
    }
    for r in &runs {
        let (f, d, s) = (median(&r.floor), median(&r.dfloor), median(&r.sync));
        println!(
            "  {}k median: floor (files) {f:.2} s, floor (data dir) {d:.2} s, sync {s:.2} s = {:.2}x the files floor, {:.2}x the data-dir floor, CPU {:.2} s, max RSS {:.0} MiB",
            r.n / 1000,
            s / f,
            s / d,
            median(&r.cpu),
            median(&r.rss)
        );
        rows.push(Row {
            what: format!("`dovetail sync` into an empty dir, {}k messages", r.n / 1000),
            figure: format!(
                "{s:.2} s = {:.2}x floor {f:.2} s (messages as files; {:.2}x the data-dir copy {d:.2} s); {:.0} MiB max RSS (runs {})",
                s / f,
                s / d,
                median(&r.rss),
                fmt_list(&r.sync, 2)
            ),
            target: "<= 3x floor, <= 300 MB".into(),
            pass: s <= 3.0 * f && median(&r.rss) * 1.048_576 <= 300.0,
        });
    }
    for w in runs.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        // Per rep: the two sizes' runs of one rep were minutes apart.
        let per_rep: Vec<f64> = a.sync.iter().zip(&b.sync).map(|(x, y)| y / x).collect();
        let cpu: Vec<f64> = a.cpu.iter().zip(&b.cpu).map(|(x, y)| y / x).collect();
        let growth = median(&b.sync) / median(&a.sync);
        println!(
            "  growth {}k -> {}k: {growth:.1}x time (medians) for {:.0}x messages; per rep {} (median {:.1}x); CPU per rep {} (median {:.1}x)",
            a.n / 1000,
            b.n / 1000,
            b.n as f64 / a.n as f64,
            fmt_list(&per_rep, 1),
            median(&per_rep),
            fmt_list(&cpu, 1),
            median(&cpu)
        );
        if b.n == 10 * a.n && a.n >= 100_000 {
            rows.push(Row {
                what: format!("growth {}k -> {}k", a.n / 1000, b.n / 1000),
                figure: format!("{growth:.1}x (medians); per rep {}", fmt_list(&per_rep, 1)),
                target: "<= 12x".into(),
                pass: growth <= 12.0,
            });
        }
    }
    Ok(())
}

/// The runs of one size in [`scen_sync_empty`].
#[derive(Default)]
struct SizeRuns {
    n: u64,
    src: PathBuf,
    files: PathBuf,
    floor: Vec<f64>,
    dfloor: Vec<f64>,
    sync: Vec<f64>,
    cpu: Vec<f64>,
    rss: Vec<f64>,
}

/// `crash-write DIR N`: appends N messages in batches of 1,000, then SIGKILLs itself.
pub fn run_crash_write(dir: &str, n: u64) -> Result<()> {
    let dir = Path::new(dir);
    let mut r = fresh_replica(dir)?;
    r.create_account(&account())?;
    let mb = mailbox("INBOX");
    let mut i = 0;
    while i < n {
        let k = (n - i).min(BUILD_BATCH as u64);
        let msgs = (i..i + k).map(|j| message(500, j)).collect();
        r.append(&account(), &mb, msgs, 0)?;
        i += k;
    }
    // The last batch is durable: die without any orderly shutdown.
    // SAFETY: kill(2) on our own pid.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    unreachable!("SIGKILL")
}

/// Open time of a data dir right after a SIGKILL that followed N appended messages.
pub fn scen_crash_open(n: u64, rows: &mut Vec<Row>) -> Result<()> {
    let dir = bench_root().join("crash");
    let d = dir.to_str().context("path")?;
    println!("== crash-open: {n} messages then SIGKILL (load {})", load());
    let t = Instant::now();
    let st = Command::new(std::env::current_exe()?)
        .args(["crash-write", d, &n.to_string()])
        .status()?;
    println!(
        "  wrote {n} messages in {:.0} s, {:.0} MiB; writer ended with {st}",
        t.elapsed().as_secs_f64(),
        du_mib(&dir)
    );
    let sled_log = du_mib(&dir.join("db"));
    let mut opens = vec![];
    for i in 0..3 {
        let out = child(&["open-list", d, "INBOX"])?;
        let v = kv_line(&out);
        if v.get("rows").copied() != Some(n as f64) {
            bail!("expected {n} rows after the crash, got {out}");
        }
        println!("  open #{} after the crash: {}", i + 1, out.trim());
        opens.push(v["open_ms"]);
    }
    rows.push(Row {
        what: format!(
            "open after SIGKILL following {}k appended messages",
            n / 1000
        ),
        figure: format!(
            "first {:.0} ms, then {} ms (sled dir {sled_log:.0} MiB)",
            opens[0],
            fmt_list(&opens[1..], 0)
        ),
        target: "<= 1000 ms".into(),
        pass: opens[0] <= 1000.0,
    });
    if std::env::var_os("DOVETAIL_BENCH_KEEP").is_none() {
        rm(&dir)?;
    }
    Ok(())
}
