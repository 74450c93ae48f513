//! Helpers of the multi-process cluster tests: real `dovetail node` processes on loopback,
//! each killed when its guard drops, and the CLI run against their data dirs.

#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_dovetail");

/// A `dovetail` command that ignores the environment of the test runner.
pub fn cmd() -> Command {
    cmd_in(None)
}

/// [`cmd`], run inside network namespace `netns` (through `ip netns exec`) when given.
pub fn cmd_in(netns: Option<&str>) -> Command {
    let mut c = match netns {
        Some(ns) => {
            let mut w = Command::new("ip");
            w.args(["netns", "exec", ns, BIN]);
            w
        }
        None => Command::new(BIN),
    };
    c.env_remove("DOVETAIL_DATA_DIR")
        .env_remove("DOVETAIL_CONFIG")
        .env_remove("DOVETAIL_MAX_MESSAGE_SIZE")
        .env_remove("DOVETAIL_LOG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    c
}

/// Runs `ip ARGS` (iproute2), for tests that make network namespaces.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let o = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// What a finished command printed and returned.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub out: String,
    pub err: String,
}

pub fn run(args: &[&str]) -> Run {
    let o = cmd().args(args).output().expect("run dovetail");
    Run {
        code: o.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&o.stdout).into_owned(),
        err: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Runs a command that must succeed; returns its stdout.
pub fn ok(args: &[&str]) -> String {
    let r = run(args);
    assert_eq!(r.code, 0, "dovetail {args:?} failed: {r:?}");
    r.out
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A cluster of data dirs in one temporary directory.
pub struct Cluster {
    pub tmp: TempDir,
    pub nodes: Vec<Node>,
    /// Extra arguments of every `dovetail node` (a cluster key...).
    pub node_args: Vec<String>,
    /// Extra environment of every `dovetail node`.
    pub node_env: Vec<(String, String)>,
    /// A network namespace (made by the test) to run the nodes in, through
    /// `ip netns exec`; None: this one.
    pub netns: Option<String>,
}

/// One data dir and, while it runs, its node process.
pub struct Node {
    pub dir: PathBuf,
    pub log: PathBuf,
    pub child: Option<Child>,
    /// The address it listens on, with `/p2p/<id>`, once it runs.
    pub addr: Option<String>,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Cluster {
    /// `n` initialized data dirs, each with account `alice` (its INBOX created
    /// independently on every node: they derive the same mailbox).
    pub fn new(n: usize) -> Cluster {
        let tmp = TempDir::new().expect("tempdir");
        let mut c = Cluster {
            tmp,
            nodes: Vec::new(),
            node_args: Vec::new(),
            netns: None,
            node_env: Vec::new(),
        };
        for _ in 0..n {
            c.add_dir();
        }
        c
    }

    /// A new initialized data dir with account `alice`; returns its index.
    pub fn add_dir(&mut self) -> usize {
        let i = self.nodes.len();
        let dir = self.tmp.path().join(format!("n{i}"));
        ok(&["--data-dir", s(&dir), "init"]);
        ok(&["--data-dir", s(&dir), "account", "create", "alice"]);
        self.nodes.push(Node {
            log: self.tmp.path().join(format!("n{i}.log")),
            dir,
            child: None,
            addr: None,
        });
        i
    }

    pub fn dir(&self, i: usize) -> &str {
        s(&self.nodes[i].dir)
    }

    /// Starts node `i`, joining through the given nodes' addresses; waits until it listens
    /// and its control socket answers.
    pub fn start(&mut self, i: usize, bootstrap: &[usize]) {
        let mut args: Vec<String> = vec![
            "--data-dir".into(),
            self.dir(i).into(),
            "node".into(),
            "--listen".into(),
            "/ip4/127.0.0.1/tcp/0".into(),
            "--renumber-grace".into(),
            "2".into(),
            "--anti-entropy".into(),
            "1".into(),
        ];
        for b in bootstrap {
            let a = self.nodes[*b].addr.clone().expect("bootstrap node runs");
            args.push("--bootstrap".into());
            args.push(a);
        }
        args.extend(self.node_args.iter().cloned());
        self.start_with(i, &args);
    }

    /// Starts node `i` with exactly these arguments.
    pub fn start_with(&mut self, i: usize, args: &[String]) {
        let n = &mut self.nodes[i];
        assert!(n.child.is_none(), "node {i} already runs");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log)
            .expect("log file");
        let addrs = n.dir.join("node.addrs");
        let _ = std::fs::remove_file(&addrs);
        let mut c = cmd_in(self.netns.as_deref());
        let child = c
            .args(args)
            .envs(self.node_env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "info,dovetail=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn node");
        n.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(l) = dovetail::node::daemon::listen_addrs(&n.dir)
                .into_iter()
                .next()
            {
                if std::os::unix::net::UnixStream::connect(n.dir.join("control.sock")).is_ok() {
                    n.addr = Some(l);
                    break;
                }
            }
            if let Some(st) = n.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!(
                    "node {i} exited at start ({st}): {}",
                    std::fs::read_to_string(&n.log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "node {i} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops node `i` with SIGTERM; asserts it exits 0 within 20 s.
    pub fn stop(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        let mut c = n.child.take().expect("node runs");
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let st = loop {
            if let Some(st) = c.try_wait().expect("wait") {
                break st;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("node {i} did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        n.addr = None;
        assert!(st.success(), "node {i} exited with {st} on SIGTERM");
    }

    /// Kills node `i` with SIGKILL (no chance to flush or say goodbye).
    pub fn kill9(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        let mut c = n.child.take().expect("node runs");
        let _ = c.kill();
        let _ = c.wait();
        n.addr = None;
    }

    /// `dovetail diff --wait SECS` over the given nodes; true iff converged.
    pub fn converged(&self, nodes: &[usize], wait: u32) -> bool {
        let mut args = vec!["diff".to_string(), "--wait".into(), wait.to_string()];
        for i in nodes {
            args.push(self.dir(*i).to_string());
        }
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = run(&a);
        if r.code != 0 {
            eprintln!("diff: {}{}", r.out, r.err);
            for i in nodes {
                eprintln!(
                    "--- node {i} log (tail):\n{}",
                    tail(
                        &std::fs::read_to_string(&self.nodes[*i].log).unwrap_or_default(),
                        40
                    )
                );
            }
        }
        r.code == 0
    }

    /// Writes message files and appends them to INBOX of node `i`; returns (uid, guid).
    pub fn append(&self, i: usize, tag: &str, n: usize) -> Vec<(u32, String)> {
        self.append_sized(i, tag, n, 0)
    }

    /// [`Cluster::append`] with `pad` more bytes of body per message.
    pub fn append_sized(&self, i: usize, tag: &str, n: usize, pad: usize) -> Vec<(u32, String)> {
        let mut files = Vec::new();
        for k in 0..n {
            let p = self.tmp.path().join(format!("{tag}-{k}.eml"));
            let mut body =
                format!("From: a@example.org\r\nSubject: {tag} {k}\r\n\r\nbody {tag} {k}\r\n")
                    .into_bytes();
            body.extend(std::iter::repeat_n(b'x', pad));
            std::fs::write(&p, body).expect("write eml");
            files.push(p);
        }
        let mut args = vec![
            "--data-dir",
            self.dir(i),
            "append",
            "--account",
            "alice",
            "--mailbox",
            "INBOX",
        ];
        for f in &files {
            args.push(s(f));
        }
        ok(&args)
            .lines()
            .map(|l| {
                let mut p = l.split(' ');
                let uid = p.next().and_then(|u| u.parse().ok()).expect("uid");
                (uid, p.next().expect("guid").to_string())
            })
            .collect()
    }

    /// The INBOX of node `i` as (uid, guid, flags).
    pub fn list(&self, i: usize) -> Vec<(u32, String, Vec<String>)> {
        let out = ok(&[
            "--data-dir",
            self.dir(i),
            "--json",
            "list",
            "--account",
            "alice",
            "--mailbox",
            "INBOX",
        ]);
        let v: Value = serde_json::from_str(&out).expect("json");
        v.as_array()
            .expect("array")
            .iter()
            .map(|r| {
                (
                    r["uid"].as_u64().expect("uid") as u32,
                    r["guid"].as_str().expect("guid").to_string(),
                    r["flags"]
                        .as_array()
                        .expect("flags")
                        .iter()
                        .map(|f| f.as_str().expect("flag").to_string())
                        .collect(),
                )
            })
            .collect()
    }

    /// UIDNEXT of INBOX on node `i`.
    pub fn uidnext(&self, i: usize) -> u32 {
        let out = ok(&[
            "--data-dir",
            self.dir(i),
            "--json",
            "status",
            "--account",
            "alice",
        ]);
        let v: Value = serde_json::from_str(&out).expect("json");
        v.as_array()
            .expect("array")
            .iter()
            .find(|m| m["name"] == "INBOX")
            .and_then(|m| m["uidnext"].as_u64())
            .expect("INBOX uidnext") as u32
    }

    /// Lines of node `i`'s log containing `needle`.
    pub fn log_lines(&self, i: usize, needle: &str) -> Vec<String> {
        std::fs::read_to_string(&self.nodes[i].log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
