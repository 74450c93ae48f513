//! Shared by the cluster scenarios: real `dovetail node` processes on 127.0.0.1, the CLI
//! against their control sockets, CPU time from /proc, datasets built once with the library
//! (`Replica`, much faster than one CLI process per write) and reused while their `DONE`
//! marker matches.

use anyhow::{bail, Context, Result};
use dovetail::model::{AccountName, FlagSet, MailboxName};
use dovetail::node::{NewMessage, Options, Replica};
use dovetail::store::{Kv, SledKv, Tx};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `dovetail` binary: `$DOVETAIL_BIN`, or the one built beside this example
/// (`cargo build --release --bin dovetail`; cargo does not build it for an example, nor
/// rebuild it when the sources change: build it with the example).
pub fn bin() -> Result<PathBuf> {
    if let Some(b) = std::env::var_os("DOVETAIL_BIN") {
        return Ok(PathBuf::from(b));
    }
    let exe = std::env::current_exe()?;
    let b = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("dovetail"))
        .context("no target dir")?;
    if !b.exists() {
        bail!("no {}: cargo build --release --bin dovetail", b.display());
    }
    Ok(b)
}

/// Where datasets live: `$DOVETAIL_BENCH_DIR`, default /tmp/dovetail-bench.
pub fn bench_root() -> PathBuf {
    std::env::var_os("DOVETAIL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/dovetail-bench"))
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub fn fmt_list(xs: &[f64], digits: usize) -> String {
    xs.iter()
        .map(|x| format!("{x:.digits$}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// CPU seconds (user + system, all threads) of process `pid` so far.
pub fn cpu_secs(pid: u32) -> f64 {
    stat_secs(pid, 11, 12)
}

/// The sum of two clock-tick fields of /proc/PID/stat, counted after the command name
/// (11, 12: utime, stime; 13, 14: the waited-for children's), in seconds.
pub fn stat_secs(pid: u32, a: usize, b: usize) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok());
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    match (field(a), field(b)) {
        (Some(u), Some(s)) => (u + s) / hz,
        _ => f64::NAN,
    }
}

pub fn rm(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(())
}

/// `cp -a src dst` (dst removed first). The copy gets a fresh writer id when opened (the
/// restore rule), which is harmless here.
pub fn copy_dir(src: &Path, dst: &Path) -> Result<()> {
    rm(dst)?;
    let st = Command::new("cp").arg("-a").arg(src).arg(dst).status()?;
    if !st.success() {
        bail!("cp -a {} {} failed", src.display(), dst.display());
    }
    Ok(())
}

/// Gives a copied data dir a new network identity, so it can run beside its original (a
/// copy keeps the identity: two nodes with one peer id cannot connect).
pub fn new_identity(dir: &Path) -> Result<()> {
    {
        let kv = SledKv::open(dir)?;
        kv.apply(vec![(dovetail::store::tables::KEY_IDENTITY.to_vec(), None)])?;
        kv.flush()?;
    }
    // Opening creates the identity anew.
    drop(open_dir(dir)?);
    Ok(())
}

/// `Replica::open`, retried while sled's lock of a just-closed handle is released.
pub fn open_dir(dir: &Path) -> Result<Replica> {
    let mut tries = 0;
    loop {
        match Replica::open(dir, Options::default()) {
            Ok(r) => return Ok(r),
            Err(e) if tries < 200 && e.to_string().contains("could not acquire lock") => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(25));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

pub fn account(s: &str) -> AccountName {
    AccountName::try_from(s).expect("account name")
}

pub fn mailbox(s: &str) -> MailboxName {
    MailboxName::try_from(s).expect("mailbox name")
}

/// splitmix64.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const WORDS: &[&str] = &[
    "meeting",
    "report",
    "quarter",
    "budget",
    "review",
    "the",
    "and",
    "with",
    "for",
    "draft",
    "please",
    "attached",
    "schedule",
    "update",
    "project",
    "team",
    "thanks",
    "regards",
    "next",
    "week",
    "deadline",
    "invoice",
    "customer",
    "release",
    "notes",
    "server",
    "migration",
];

/// A deterministic message of about `size` bytes (headers + wrapped words), unique per
/// (seed, i).
pub fn message(seed: u64, i: u64, size: usize) -> NewMessage {
    let mut r = mix(seed.wrapping_mul(1_000_003) ^ i);
    let mut s = format!(
        "Message-ID: <{seed}.{i}.{r:016x}@bench.example>\r\nDate: Mon, 2 Jan 2023 10:00:00 +0000\r\nFrom: Bench <bench@example.org>\r\nTo: User <user@example.net>\r\nSubject: bench message {i}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    );
    let mut line = 0;
    while s.len() < size {
        r = mix(r);
        let w = WORDS[(r % WORDS.len() as u64) as usize];
        s.push_str(w);
        line += w.len() + 1;
        if line > 70 {
            s.push_str("\r\n");
            line = 0;
        } else {
            s.push(' ');
        }
    }
    s.push_str("\r\n");
    NewMessage {
        name: format!("bench-{seed}-{i}"),
        bytes: s.into_bytes(),
        flags: FlagSet::default(),
        internal_date: 1_672_531_200 + i as i64,
    }
}

/// Bytes of the automerge changes `r` holds beyond `base` (document -> heads): (changes,
/// raw bytes, compressed bytes).
pub fn changes_since(
    r: &Replica,
    base: &BTreeMap<String, Vec<[u8; 32]>>,
) -> Result<(usize, u64, u64)> {
    let tx = Tx::new(r.kv());
    let (mut n, mut raw, mut compressed) = (0usize, 0u64, 0u64);
    for (id, _) in r.doc_heads()? {
        let Some((mut am, _)) = tx.load_doc(&id)? else {
            continue;
        };
        let have: Vec<automerge::ChangeHash> = base
            .get(&id)
            .map(|hs| hs.iter().map(|h| automerge::ChangeHash(*h)).collect())
            .unwrap_or_default();
        for mut c in am.get_changes(&have) {
            n += 1;
            raw += c.raw_bytes().len() as u64;
            compressed += c.bytes().len() as u64;
        }
    }
    Ok((n, raw, compressed))
}

/// Whether `dir/DONE` holds `spec`.
pub fn done(dir: &Path, spec: &str) -> bool {
    std::fs::read_to_string(dir.join("DONE")).ok().as_deref() == Some(spec)
}

/// A running `dovetail node`.
pub struct NodeProc {
    pub child: Child,
    pub dir: PathBuf,
    /// Its listen address with `/p2p/<id>`.
    pub addr: String,
    /// From spawn to listening with the control socket up.
    pub startup: Duration,
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a node on `dir` (anti-entropy every `ae` seconds), joining `bootstrap`; waits
/// until it listens and its control socket answers. Logs go to `dir/../<name>.log`.
pub fn start_node(dir: &Path, bootstrap: Option<&str>, ae: u32) -> Result<NodeProc> {
    let log = dir.with_extension("log");
    let logf = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)?;
    let addrs = dir.join("node.addrs");
    let _ = std::fs::remove_file(&addrs);
    let mut c = Command::new(bin()?);
    c.arg("--data-dir")
        .arg(dir)
        .args(["node", "--listen", "/ip4/127.0.0.1/tcp/0", "--anti-entropy"])
        .arg(ae.to_string())
        .env_remove("DOVETAIL_DATA_DIR")
        .env(
            "DOVETAIL_LOG",
            std::env::var("DOVETAIL_BENCH_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(logf);
    if let Some(b) = bootstrap {
        c.args(["--bootstrap", b]);
    }
    let t = Instant::now();
    let mut child = c.spawn()?;
    let deadline = t + Duration::from_secs(120);
    loop {
        if let Some(l) = dovetail::node::daemon::listen_addrs(dir).into_iter().next() {
            if std::os::unix::net::UnixStream::connect(dir.join("control.sock")).is_ok() {
                return Ok(NodeProc {
                    child,
                    dir: dir.to_path_buf(),
                    addr: l,
                    startup: t.elapsed(),
                });
            }
        }
        if let Some(st) = child.try_wait()? {
            bail!("node {} exited at start: {st}", dir.display());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("node {} did not start", dir.display());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

impl NodeProc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM and wait.
    pub fn stop(mut self) -> Result<()> {
        // SAFETY: a signal to our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let st = self.child.wait()?;
        if !st.success() {
            bail!("node {} exited with {st}", self.dir.display());
        }
        Ok(())
    }
}

/// Runs the CLI; returns stdout, or the error with stderr.
pub fn cli(args: &[&str]) -> Result<String> {
    let o = Command::new(bin()?)
        .args(args)
        .env_remove("DOVETAIL_DATA_DIR")
        .stdin(Stdio::null())
        .output()?;
    if !o.status.success() {
        bail!(
            "dovetail {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `status --json` of a running node's peers: (sent, received) request-response bytes with
/// each peer, summed.
pub fn peer_bytes(dir: &Path) -> Result<(u64, u64)> {
    let out = cli(&["--data-dir", s(dir), "--json", "status"])?;
    let v: Value = serde_json::from_str(&out)?;
    let peers = v["peers"].as_array().context("no peers in status")?;
    let get = |k: &str| peers.iter().map(|p| p[k].as_u64().unwrap_or(0)).sum();
    Ok((get("sent"), get("received")))
}

/// The (mailbox, uidnext, messages, digest) of `acct` on a running node.
fn account_state(dir: &Path, acct: &str) -> Result<Vec<(String, u64, u64, String)>> {
    let out = cli(&["--data-dir", s(dir), "--json", "status", "--account", acct])?;
    let v: Value = serde_json::from_str(&out)?;
    let mut rows: Vec<_> = v
        .as_array()
        .context("status is not a list")?
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap_or_default().to_string(),
                m["uidnext"].as_u64().unwrap_or(0),
                m["messages"].as_u64().unwrap_or(0),
                m["digest"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    rows.sort();
    Ok(rows)
}

/// Polls the status of `accounts` (those that changed) on both running nodes every `poll`
/// until they are equal; returns when that was first seen. The caller confirms the whole
/// data dirs with [`diff`].
pub fn wait_accounts_equal(
    a: &Path,
    b: &Path,
    accounts: &[String],
    t0: Instant,
    timeout: Duration,
) -> Result<Duration> {
    loop {
        let mut same = true;
        for acct in accounts {
            // An account the away node does not have yet fails on it: not converged.
            let x = account_state(a, acct)?;
            let y = account_state(b, acct).unwrap_or_default();
            if x != y {
                same = false;
                break;
            }
        }
        if same {
            return Ok(t0.elapsed());
        }
        if t0.elapsed() > timeout {
            bail!("not converged after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `dovetail diff --wait SECS a b`: whether the whole data dirs converged.
pub fn diff(a: &Path, b: &Path, wait: u32) -> Result<bool> {
    let o = Command::new(bin()?)
        .args(["diff", "--wait", &wait.to_string(), s(a), s(b)])
        .stdin(Stdio::null())
        .output()?;
    if !o.status.success() {
        eprintln!(
            "diff: {}",
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .take(10)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    Ok(o.status.success())
}

/// What one measured reconnect gave.
#[derive(Clone, Debug, Default)]
pub struct Run {
    /// From spawning the away node to the changed accounts being equal on both, seconds.
    pub total: f64,
    /// The away node's start-up (spawn to listening) within it.
    pub startup: f64,
    /// Request-response bytes both directions (as the staying node counted them).
    pub bytes: u64,
    /// CPU seconds of both node processes over the measurement.
    pub cpu: f64,
}

/// One reconnect: starts the staying node on `a`, then the away node on `b` joining it;
/// measures until the changed `accounts` are equal, then checks the whole dirs converge.
pub fn reconnect(a: &Path, b: &Path, accounts: &[String]) -> Result<Run> {
    // Anti-entropy every 3 s (the default): the reconnect itself starts the comparison.
    let na = start_node(a, None, 3)?;
    let cpu_a0 = cpu_secs(na.pid());
    let t0 = Instant::now();
    let nb = start_node(b, Some(&na.addr), 3)?;
    let startup = nb.startup.as_secs_f64();
    let total = wait_accounts_equal(a, b, accounts, t0, Duration::from_secs(600))?;
    let cpu = cpu_secs(na.pid()) - cpu_a0 + cpu_secs(nb.pid());
    let (sent, received) = peer_bytes(a)?;
    if !diff(a, b, 120)? {
        bail!("{} and {} did not converge", a.display(), b.display());
    }
    nb.stop()?;
    na.stop()?;
    Ok(Run {
        total: total.as_secs_f64(),
        startup,
        bytes: sent + received,
        cpu,
    })
}

/// Messages appended to a mailbox in batches.
pub fn append_n(
    r: &mut Replica,
    acct: &AccountName,
    mb: &MailboxName,
    seed: u64,
    range: std::ops::Range<u64>,
    batch: usize,
    size: usize,
) -> Result<u64> {
    let mut bytes = 0;
    let mut i = range.start;
    while i < range.end {
        let k = (range.end - i).min(batch as u64);
        let msgs: Vec<NewMessage> = (i..i + k).map(|j| message(seed, j, size)).collect();
        bytes += msgs.iter().map(|m| m.bytes.len() as u64).sum::<u64>();
        r.append(acct, mb, msgs, now())?;
        i += k;
    }
    Ok(bytes)
}
