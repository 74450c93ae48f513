//! `import-maildir` benchmark: a generated Maildir++ tree of `--n` (100,000) ~3 KB messages
//! (the `bench` example's deterministic generator) imported into a fresh data dir through
//! the library, as `dovetail import-maildir` does; then, when doveadm is installed, the same
//! tree copied into a fresh Dovecot Maildir by `doveadm backup -R` for comparison.
//!
//! ```text
//! cargo run --release --example import_bench -- [--n 100000] [--reps 1] [--no-dovecot]
//! ```
//!
//! The tree is built once under `$DOVETAIL_BENCH_DIR` (default `/tmp/dovetail-bench`) and
//! reused. Each run prints the time, messages/s, CPU seconds and the load average before
//! and after, since on a shared machine the load is what limits the figure most.

#[allow(dead_code)]
#[path = "../bench/gen.rs"]
mod gen;

use dovetail::maildir::flags::{keywords_file, letters_of, Keywords};
use dovetail::maildir::import::{import, ImportOptions};
use dovetail::maildir::target::Target;
use dovetail::model::AccountName;
use dovetail::node::{Options, Replica};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, UNIX_EPOCH};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// User + system CPU seconds of this process and its waited-for children.
fn cpu_secs() -> f64 {
    let mut total = 0.0;
    for who in [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN] {
        // SAFETY: getrusage fills the struct it is given.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut u) };
        let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
        total += t(u.ru_utime) + t(u.ru_stime);
    }
    total
}

/// Writes the tree: 70% INBOX, 20% `.Archive`, 10% `.Work.Lists`; flags and keywords in
/// the file names, the internal date as mtime.
fn build(root: &Path, n: u64) -> anyhow::Result<()> {
    let done = root.join("DONE");
    if std::fs::read_to_string(&done).ok().as_deref() == Some(&n.to_string()) {
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(root);
    let folders = [
        root.to_path_buf(),
        root.join(".Archive"),
        root.join(".Work.Lists"),
    ];
    for f in &folders {
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(f.join(sub))?;
        }
    }
    let mut keywords = vec![Keywords::new(); folders.len()];
    let t = Instant::now();
    for i in 0..n {
        let m = gen::message(42, i);
        let k = match i % 10 {
            0..=6 => 0,
            7 | 8 => 1,
            _ => 2,
        };
        let (letters, _) = letters_of(&m.flags, &mut keywords[k]);
        let name = format!(
            "{}.M{i}P1.bench,S={}:2,{letters}",
            m.internal_date,
            m.bytes.len()
        );
        let p = folders[k].join("cur").join(name);
        std::fs::write(&p, &m.bytes)?;
        std::fs::File::options()
            .write(true)
            .open(&p)?
            .set_modified(UNIX_EPOCH + Duration::from_secs(m.internal_date.max(0) as u64))?;
    }
    for (f, kw) in folders.iter().zip(&keywords) {
        std::fs::write(f.join("dovecot-keywords"), keywords_file(kw))?;
    }
    std::fs::write(&done, n.to_string())?;
    println!("built {n} messages in {:.1} s", t.elapsed().as_secs_f64());
    Ok(())
}

fn run_dovetail(tree: &Path, work: &Path) -> anyhow::Result<(usize, f64, f64)> {
    let dir = work.join("data");
    let _ = std::fs::remove_dir_all(&dir);
    Replica::init(&dir)?;
    let mut t = Target::Local(Box::new(Replica::open(&dir, Options::default())?));
    let a = AccountName::try_from("bench")?;
    let (t0, c0) = (Instant::now(), cpu_secs());
    let opts = ImportOptions::new(Options::default().max_message_size);
    let r = import(&mut t, &a, tree, &opts, 1_800_000_000, &mut |_| {})?;
    Ok((r.imported, t0.elapsed().as_secs_f64(), cpu_secs() - c0))
}

/// `doveadm backup -R` of the tree into a fresh Maildir (as `nobody` when root, since
/// Dovecot will not touch mail as root; USER/HOME in the environment, no auth server).
fn run_dovecot(tree: &Path, work: &Path) -> anyhow::Result<Option<(usize, f64, f64)>> {
    if Command::new("doveadm").arg("help").output().is_err() {
        return Ok(None);
    }
    let base = work.join("dovecot");
    let _ = std::fs::remove_dir_all(&base);
    let (mail, home) = (base.join("Maildir"), base.join("home"));
    for d in [&mail, &home, &base.join("run"), &base.join("state")] {
        std::fs::create_dir_all(d)?;
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let (user, group) = if root {
        ("nobody".to_string(), "nogroup".to_string())
    } else {
        // SAFETY: as above.
        unsafe { (libc::geteuid().to_string(), libc::getegid().to_string()) }
    };
    if root {
        Command::new("chown")
            .arg("-R")
            .arg(format!("{user}:{group}"))
            .arg(&base)
            .arg(tree)
            .status()?;
    }
    let conf = base.join("dovecot.conf");
    std::fs::write(
        &conf,
        format!(
            "protocols =\nssl = no\nbase_dir = {b}/run\nstate_dir = {b}/state\nlog_path = {b}/dovecot.log\n\
             first_valid_uid = 1\nfirst_valid_gid = 1\nmail_location = maildir:{m}\n\
             mail_uid = {user}\nmail_gid = {group}\n\
             namespace inbox {{\n  inbox = yes\n  separator = /\n}}\n",
            b = base.display(),
            m = mail.display()
        ),
    )?;
    let (t0, c0) = (Instant::now(), cpu_secs());
    let o = Command::new("doveadm")
        .arg("-c")
        .arg(&conf)
        .args(["backup", "-R"])
        .arg(format!("maildir:{}", tree.display()))
        .env("USER", "bench")
        .env("HOME", &home)
        .output()?;
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_secs() - c0;
    anyhow::ensure!(
        o.status.success(),
        "doveadm backup: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut count = 0;
    for f in ["", ".Archive", ".Work.Lists"] {
        for sub in ["cur", "new"] {
            count += std::fs::read_dir(mail.join(f).join(sub))
                .map(|d| d.count())
                .unwrap_or(0);
        }
    }
    Ok(Some((count, secs, cpu)))
}

fn main() -> anyhow::Result<()> {
    let n: u64 = arg("--n").map_or(Ok(100_000), |s| s.parse())?;
    let reps: usize = arg("--reps").map_or(Ok(1), |s| s.parse())?;
    let no_dovecot = std::env::args().any(|a| a == "--no-dovecot");
    let root = std::env::var_os("DOVETAIL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/dovetail-bench"));
    let tree = root.join(format!("maildir-{n}"));
    let work = root.join("import-work");
    std::fs::create_dir_all(&work)?;
    build(&tree, n)?;
    let rw = |ms: usize, s: f64| ms as f64 / s.max(1e-9);
    for rep in 1..=reps {
        let before = load();
        let (m, s, cpu) = run_dovetail(&tree, &work)?;
        println!(
            "run {rep} dovetail import-maildir: {m} messages in {s:.2} s = {:.0} msg/s, {cpu:.1} CPU s; load {before} -> {}",
            rw(m, s),
            load()
        );
        if !no_dovecot {
            let before = load();
            match run_dovecot(&tree, &work)? {
                Some((m2, s2, cpu2)) => println!(
                    "run {rep} doveadm backup -R:       {m2} messages in {s2:.2} s = {:.0} msg/s, {cpu2:.1} CPU s; load {before} -> {}; dovetail/doveadm = {:.2}x",
                    rw(m2, s2),
                    load(),
                    rw(m, s) / rw(m2, s2).max(1e-9)
                ),
                None => println!("doveadm not installed: no Dovecot comparison"),
            }
        }
    }
    Ok(())
}
