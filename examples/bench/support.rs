//! Shared support of the scenarios: statistics, process figures (CPU, memory, disk), the
//! replica options, datasets built once and reused, child processes and the summary table.

use crate::gen::message;
use anyhow::{bail, Context, Result};
use dovetail::model::{AccountName, MailboxName};
use dovetail::node::{NewMessage, Options, Replica};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

pub const ACCOUNT: &str = "bench@example.net";
/// Messages per durable batch in the measured appends.
pub const BATCH: usize = 100;
/// Messages per batch when building the large datasets (the CLI's `append` batch).
pub const BUILD_BATCH: usize = 1000;
/// Bumped when the generator or the dataset layout changes, to rebuild old datasets.
pub const DATASET_VERSION: u32 = 6;

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub fn account() -> AccountName {
    AccountName::try_from(ACCOUNT).expect("account name")
}

pub fn mailbox(s: &str) -> MailboxName {
    MailboxName::try_from(s).expect("mailbox name")
}

pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn percentile(xs: &[f64], p: f64) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

pub fn fmt_list(xs: &[f64], digits: usize) -> String {
    xs.iter()
        .map(|x| format!("{x:.digits$}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// CPU time (user + system, all threads) this process has used, in seconds.
/// CPU seconds of the calling thread.
pub fn thread_cpu_secs() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the struct it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// CPU nanoseconds spent generating messages in [`append_stream`] (to take out of a run's
/// CPU time: the generator is not the work measured).
pub static GEN_CPU_NS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub fn cpu_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which ends with ')'), from `state` on: utime is
    // the 12th and stime the 13th, in clock ticks (100 per second).
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok());
    match (field(11), field(12)) {
        (Some(u), Some(s)) => (u + s) / 100.0,
        _ => f64::NAN,
    }
}

/// (VmRSS, VmHWM) of this process in MiB.
pub fn mem_mib() -> (f64, f64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

pub fn du_mib(dir: &Path) -> f64 {
    fn walk(p: &Path) -> u64 {
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => std::fs::read_dir(p)
                .map(|rd| rd.flatten().map(|e| walk(&e.path())).sum())
                .unwrap_or(0),
            Ok(m) => {
                use std::os::unix::fs::MetadataExt;
                m.blocks() * 512
            }
            Err(_) => 0,
        }
    }
    walk(dir) as f64 / (1024.0 * 1024.0)
}

pub fn bench_root() -> PathBuf {
    std::env::var_os("DOVETAIL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/dovetail-bench"))
}

pub fn rm(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(())
}

/// The replica options: the defaults, except `segment_capacity` when
/// `$DOVETAIL_BENCH_SEGMENT_CAPACITY` is set (to compare segment sizes).
pub fn options() -> Options {
    let mut o = Options::default();
    if let Some(c) = std::env::var("DOVETAIL_BENCH_SEGMENT_CAPACITY")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        o.segment_capacity = c;
    }
    o
}

/// `Replica::open`, retried for a while: sled releases its file lock in a background thread
/// after the previous handle on the same dir is dropped.
pub fn open_dir(dir: &Path) -> Result<Replica> {
    let mut tries = 0;
    loop {
        match Replica::open(dir, options()) {
            Ok(r) => return Ok(r),
            Err(e)
                if tries < 200
                    && (e.to_string().contains("could not acquire lock")
                        || e.to_string().contains("in use by another")) =>
            {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

pub fn fresh_replica(dir: &Path) -> Result<Replica> {
    rm(dir)?;
    Replica::init(dir)?;
    open_dir(dir)
}

/// Appends `n` messages of stream `seed` (numbered from `first`) to `mb` in batches.
/// Returns the duration of every `append` call, in seconds (generation excluded).
pub fn append_stream(
    r: &mut Replica,
    mb: &MailboxName,
    seed: u64,
    first: u64,
    n: u64,
    batch: usize,
    progress: Option<&str>,
) -> Result<(Vec<f64>, u64)> {
    let a = account();
    let mut lat = Vec::with_capacity(n as usize / batch + 1);
    let mut bytes = 0u64;
    let mut i = first;
    let end = first + n;
    let mut next_report = first + n / 10;
    let t0 = Instant::now();
    while i < end {
        let k = (end - i).min(batch as u64);
        let g0 = thread_cpu_secs();
        let msgs: Vec<NewMessage> = (i..i + k).map(|j| message(seed, j)).collect();
        GEN_CPU_NS.fetch_add(
            ((thread_cpu_secs() - g0) * 1e9) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        bytes += msgs.iter().map(|m| m.bytes.len() as u64).sum::<u64>();
        let t = Instant::now();
        let out = r.append(&a, mb, msgs, now())?;
        lat.push(t.elapsed().as_secs_f64());
        if out.len() as u64 != k {
            bail!("append returned {} UIDs for {k} messages", out.len());
        }
        i += k;
        if let Some(what) = progress {
            if i >= next_report && n >= 10_000 {
                next_report += n / 10;
                eprintln!(
                    "  [{what}] {}/{} messages, {:.0} s",
                    i - first,
                    n,
                    t0.elapsed().as_secs_f64()
                );
            }
        }
    }
    Ok((lat, bytes))
}

/// Builds (once) a data dir holding `mailboxes` (name, message count) in one account.
pub fn dataset(dir: &Path, mailboxes: &[(&str, u64)], batch: usize, seed: u64) -> Result<()> {
    let spec = format!(
        "v{DATASET_VERSION} {mailboxes:?} batch={batch} seed={seed} segment_capacity={}",
        options().segment_capacity
    );
    if built(dir, &spec) {
        // Opened once, so that a data dir written in an older format is upgraded here
        // and not inside the first timed run that opens it.
        drop(open_dir(dir)?);
        return Ok(());
    }
    eprintln!("building dataset {} ({spec}) ...", dir.display());
    let t = Instant::now();
    let mut r = fresh_replica(dir)?;
    let a = account();
    r.create_account(&a)?;
    for (k, (name, n)) in mailboxes.iter().enumerate() {
        let mb = mailbox(name);
        if !mb.is_inbox() {
            r.create_mailbox(&a, &mb)?;
        }
        // Each mailbox gets its own stream so that no two messages share a blob.
        append_stream(&mut r, &mb, seed + k as u64, 0, *n, batch, Some(name))?;
        // Bound the builder's memory: old segment documents are not needed any more.
        r.close_docs();
    }
    drop(r);
    let built = t.elapsed().as_secs_f64();
    // sled writes its snapshot only when it opens a db, replaying the log written since the
    // last open: the first open after building pays for all of it. Do it here, and record it.
    let t = Instant::now();
    drop(open_dir(dir)?);
    let first_open = t.elapsed().as_secs_f64();
    let info = format!(
        "built in {built:.0} s, {:.0} MiB on disk; first open after building {first_open:.1} s",
        du_mib(dir)
    );
    eprintln!("{}: {info}", dir.display());
    std::fs::write(dir.join("INFO"), &info)?;
    mark_built(dir, &spec)
}

/// Whether `dir` was built to `spec` (its `DONE` marker says so).
pub fn built(dir: &Path, spec: &str) -> bool {
    std::fs::read_to_string(dir.join("DONE")).ok().as_deref() == Some(spec)
}

/// Marks `dir` as built to `spec`.
pub fn mark_built(dir: &Path, spec: &str) -> Result<()> {
    std::fs::write(dir.join("DONE"), spec)?;
    Ok(())
}

/// The seed of the INBOX of the one-mailbox dataset of `n` messages.
pub fn seed_of(n: u64) -> u64 {
    if n == 1_000_000 {
        200
    } else {
        100
    }
}

pub fn ds_100k() -> Result<PathBuf> {
    let d = bench_root().join("mb100k");
    dataset(&d, &[("INBOX", 100_000)], BUILD_BATCH, seed_of(100_000))?;
    Ok(d)
}

pub fn ds_1m() -> Result<PathBuf> {
    let d = bench_root().join("mb1m");
    dataset(&d, &[("INBOX", 1_000_000)], BUILD_BATCH, seed_of(1_000_000))?;
    Ok(d)
}

pub const ACCT_MAILBOXES: [&str; 10] = [
    "INBOX",
    "Archive",
    "Sent",
    "Drafts",
    "Lists/rust-users",
    "Lists/postgres",
    "Work/Projects",
    "Work/Invoices",
    "Family",
    "Travel",
];

pub fn ds_acct1m() -> Result<PathBuf> {
    let d = bench_root().join("acct1m");
    let mbs: Vec<(&str, u64)> = ACCT_MAILBOXES.iter().map(|m| (*m, 100_000)).collect();
    dataset(&d, &mbs, BUILD_BATCH, 300)?;
    Ok(d)
}

/// Runs this program again with `args`; returns its stdout.
pub fn child(args: &[&str]) -> Result<String> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe).args(args).output()?;
    if !out.status.success() {
        bail!(
            "child {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Parses `key=value` pairs of a child's last output line.
pub fn kv_line(s: &str) -> BTreeMap<String, f64> {
    s.lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// One line of the final summary.
pub struct Row {
    pub what: String,
    pub figure: String,
    pub target: String,
    pub pass: bool,
}

pub fn print_summary(rows: &[Row]) {
    println!();
    println!("| measurement | median (runs) | target | result |");
    println!("|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} |",
            r.what,
            r.figure,
            r.target,
            if r.pass { "pass" } else { "MISS" }
        );
    }
}
