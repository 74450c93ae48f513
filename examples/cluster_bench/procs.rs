//! Real `dovetail node` processes on 127.0.0.1 for the latency and initial-sync scenarios:
//! started on fresh data dirs, talked to through their control sockets, their CPU time read
//! from /proc.

use anyhow::{bail, Context, Result};
use dovetail::node::control::{self, ControlRequest, ControlResponse, MessageFile};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `dovetail` binary beside this example (target/<profile>/dovetail), built if missing.
pub fn binary() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("DOVETAIL_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("no target dir")?;
    let bin = dir.join("dovetail");
    let release = dir.ends_with("release");
    // Always (re)build: cargo is quick when nothing changed, and a stale binary would
    // measure old code.
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.args(["build", "--bin", "dovetail"]);
    if release {
        c.arg("--release");
    }
    let st = c.status().context("cargo build --bin dovetail")?;
    if !st.success() || !bin.exists() {
        bail!("could not build {}", bin.display());
    }
    Ok(bin)
}

/// One node process.
pub struct Proc {
    pub dir: PathBuf,
    pub child: Option<Child>,
    pub addr: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: a signal to our own child.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let _ = c.wait();
        }
    }
}

pub fn dt(bin: &Path, args: &[&str]) -> Result<String> {
    let o = Command::new(bin)
        .args(args)
        .env_remove("DOVETAIL_DATA_DIR")
        .stdin(Stdio::null())
        .output()?;
    if !o.status.success() {
        bail!(
            "dovetail {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Creates a data dir with account `alice` (its INBOX).
pub fn init(bin: &Path, dir: &Path) -> Result<()> {
    let d = dir.to_str().context("utf-8 path")?;
    dt(bin, &["--data-dir", d, "init"])?;
    dt(bin, &["--data-dir", d, "account", "create", "alice"])?;
    Ok(())
}

/// Starts a node on `dir`, joining through `bootstrap`; waits until it listens.
pub fn start(bin: &Path, dir: &Path, bootstrap: &[&str], extra: &[&str]) -> Result<Proc> {
    let d = dir.to_str().context("utf-8 path")?;
    let mut args = vec!["--data-dir", d, "node", "--listen", "/ip4/127.0.0.1/tcp/0"];
    for b in bootstrap {
        args.push("--bootstrap");
        args.push(b);
    }
    args.extend_from_slice(extra);
    let log = std::fs::File::create(dir.with_extension("log"))?;
    let child = Command::new(bin)
        .args(&args)
        .env_remove("DOVETAIL_DATA_DIR")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    let addrs = dir.join(dovetail::node::daemon::ADDRS_FILE);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(s) = std::fs::read_to_string(&addrs) {
            if let Some(a) = s.lines().find(|l| l.contains("/p2p/")) {
                if control::running(dir) {
                    return Ok(Proc {
                        dir: dir.to_path_buf(),
                        child: Some(child),
                        addr: a.to_string(),
                    });
                }
            }
        }
        if Instant::now() > deadline {
            bail!("node on {} did not start", dir.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// Connected peers, from `status`.
    pub fn peers(&self) -> Result<usize> {
        match control::call(&self.dir, &ControlRequest::Status { account: None })? {
            Some(ControlResponse::Status { peers, .. }) => Ok(peers.len()),
            other => bail!("status: {other:?}"),
        }
    }

    /// Appends one message to alice's INBOX; returns its GUID once durable.
    pub fn append(&self, name: &str, bytes: Vec<u8>) -> Result<String> {
        let req = ControlRequest::Append {
            account: "alice".into(),
            mailbox: "INBOX".into(),
            flags: None,
            messages: vec![MessageFile {
                name: name.into(),
                bytes,
                internal_date: 0,
            }],
        };
        match control::call(&self.dir, &req)? {
            Some(ControlResponse::Appended(v)) if v.len() == 1 => Ok(v[0].1.clone()),
            other => bail!("append: {other:?}"),
        }
    }
}

/// utime + stime of a process, in seconds.
pub fn cpu_secs(pid: u32) -> f64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = s.rsplit_once(')').map_or("", |x| x.1);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

/// Peak resident memory (VmHWM) of a process, in MiB.
pub fn hwm_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A ~3 KB mail message, different for every `i`.
pub fn message(i: u64) -> Vec<u8> {
    let mut m = format!(
        "Received: from mx{0}.example.org (mx{0}.example.org [192.0.2.{1}])\r\n\tby mail.example.net with ESMTPS id {2:016x}\r\n\
         Message-ID: <{2:016x}.{i}@example.org>\r\nDate: Mon, 30 Nov 2026 12:00:00 +0000\r\n\
         From: Sender {i} <sender{i}@example.org>\r\nTo: alice@example.net\r\n\
         Subject: latency probe {i}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
        i % 7,
        i % 250,
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    )
    .into_bytes();
    let line = b"The quick brown fox jumps over the lazy dog while the mail is replicated.\r\n";
    while m.len() < 3000 {
        m.extend_from_slice(line);
    }
    m
}

/// Percentile (0..=100) of sorted values.
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
