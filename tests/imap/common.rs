//! Helpers: nodes with `--imap 127.0.0.1:0`, the `alice` login, the python client.

use super::cluster_support::{cmd, Cluster};
use std::io::Write;
use std::process::Stdio;

pub const PASSWORD: &str = "correct horse";

/// `dovetail user add --account alice` on a stopped data dir, the password on stdin.
pub fn add_user(dir: &str) {
    user(
        dir,
        &["add", "--account", "alice", "--password-stdin"],
        PASSWORD,
    );
}

/// Runs `dovetail user ...` with `stdin`; asserts success.
pub fn user(dir: &str, args: &[&str], stdin: &str) {
    let out = user_run(dir, args, stdin);
    assert!(out.status.success(), "dovetail user {args:?}: {out:?}");
}

pub fn user_run(dir: &str, args: &[&str], stdin: &str) -> std::process::Output {
    let mut c = cmd()
        .args(["--data-dir", dir, "user"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dovetail user");
    // A command that fails before it reads the password (a second `add`) or never reads
    // one (`del`) may have exited already: its pipe is then closed, and that is no error.
    if let Err(e) = c
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{stdin}\n").as_bytes())
    {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe,
            "write password: {e}"
        );
    }
    c.wait_with_output().expect("wait")
}

/// A cluster of `n` nodes, each serving IMAP on a free loopback port, with the `alice`
/// login added on node 0 only (the others get it by replication).
pub fn cluster(n: usize) -> Cluster {
    let mut c = Cluster::new(n);
    add_user(c.dir(0));
    c.node_args = vec!["--imap".into(), "127.0.0.1:0".into()];
    c
}

/// The IMAP address node `i` listens on.
pub fn imap_addr(c: &Cluster, i: usize) -> String {
    let f = c.nodes[i].dir.join("imap.addrs");
    std::fs::read_to_string(&f)
        .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
        .lines()
        .next()
        .expect("an IMAP address")
        .trim()
        .to_string()
}

/// Runs a scenario of tests/imap/client.py; panics with its output if it fails.
pub fn python(scenario: &str, addrs: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/imap/client.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(scenario)
        .args(addrs)
        .output()
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "client.py {scenario} failed:\n{text}");
    println!("client.py {scenario}: {text}");
    assert!(text.contains(&format!("ok {scenario}")), "{text}");
}
