//! The two servers under test, each started fresh in a directory of its own on loopback:
//! a `dovetail node --imap` (the release binary) and Debian's Dovecot (`dovecot -F` with a
//! generated config: Maildir, a passwd-file login, `mail_fsync` at its default).

use super::support::{bin, cli, stat_secs};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const USER: &str = "bench";
pub const PASS: &str = "bench-password";

/// A running server: where it listens and how to read its CPU time.
pub struct Server {
    pub name: &'static str,
    pub addr: String,
    child: Child,
    tree: bool,
}

impl Server {
    /// User + system CPU seconds of the server so far: the node process; for Dovecot the
    /// master, the children it already reaped (each connection's `imap` and `imap-login`
    /// process) and every live process under it.
    pub fn cpu(&self) -> f64 {
        let pid = self.child.id();
        let mut total = stat_secs(pid, 11, 12);
        if self.tree {
            total += stat_secs(pid, 13, 14);
            // A process that exits between the listing and the read has no stat (NaN):
            // its time shows in the master's children's time once it is reaped.
            total += descendants(pid)
                .into_iter()
                .map(|p| stat_secs(p, 11, 12))
                .filter(|t| t.is_finite())
                .sum::<f64>();
        }
        total
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: kill has no memory preconditions; the pid is our child's.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every live process below `root`.
fn descendants(root: u32) -> Vec<u32> {
    let mut parent: HashMap<u32, u32> = HashMap::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let s = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let ppid = s
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1)?.parse().ok());
        if let Some(pp) = ppid {
            parent.insert(pid, pp);
        }
    }
    parent
        .keys()
        .copied()
        .filter(|&p| {
            let mut q = p;
            while let Some(&pp) = parent.get(&q) {
                if pp == root {
                    return true;
                }
                if pp <= 1 {
                    return false;
                }
                q = pp;
            }
            false
        })
        .collect()
}

fn run(cmd: &mut Command, stdin: &str) -> Result<()> {
    let mut c = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    c.stdin
        .take()
        .context("stdin")?
        .write_all(stdin.as_bytes())?;
    let o = c.wait_with_output()?;
    if !o.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&o.stderr).trim());
    }
    Ok(())
}

fn dt(dir: &Path) -> Result<Command> {
    let mut c = Command::new(bin()?);
    c.arg("--data-dir").arg(dir);
    Ok(c)
}

/// A dovetail data dir with account `bench` and its login; with `tree`, its INBOX holds
/// that Maildir's messages (`import-maildir`). Kept while `DONE` says it is complete.
pub fn dovetail_dir(dir: &Path, tree: Option<&Path>) -> Result<()> {
    let done = dir.join("DONE");
    if done.exists() {
        return Ok(());
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    let d = dir.to_str().context("utf-8 path")?;
    cli(&["--data-dir", d, "init"])?;
    cli(&["--data-dir", d, "account", "create", USER])?;
    // The password goes on standard input, which `cli` does not give.
    run(
        dt(dir)?.args(["user", "add", "--account", USER, "--password-stdin"]),
        &format!("{PASS}\n"),
    )?;
    if let Some(t) = tree {
        let t = t.to_str().context("utf-8 path")?;
        cli(&["--data-dir", d, "import-maildir", "--account", USER, t])?;
    }
    std::fs::write(done, "")?;
    Ok(())
}

/// `dovetail node --imap 127.0.0.1:0` on `dir`; waits for its `imap.addrs`.
pub fn start_dovetail(dir: &Path) -> Result<Server> {
    let addrs = dir.join("imap.addrs");
    let _ = std::fs::remove_file(&addrs);
    let log = std::fs::File::create(dir.join("node.log"))?;
    let child = dt(dir)?
        .args([
            "node",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--imap",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    let mut s = Server {
        name: "dovetail",
        addr: String::new(),
        child,
        tree: false,
    };
    let t = Instant::now();
    loop {
        let text = std::fs::read_to_string(&addrs).unwrap_or_default();
        if let Some(l) = text.split_inclusive('\n').find(|l| l.ends_with('\n')) {
            s.addr = l.trim().to_string();
            return Ok(s);
        }
        if let Ok(Some(st)) = s.child.try_wait() {
            bail!(
                "dovetail node exited at start ({st}); see {}/node.log",
                dir.display()
            );
        }
        if t.elapsed() > Duration::from_secs(60) {
            bail!("dovetail node did not start in 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A Dovecot instance under `base`: user `bench`'s Maildir is `base/mail`, a copy of
/// `tree` when given (kept while `DONE` says it is complete).
pub fn start_dovecot(base: &Path, tree: Option<&Path>) -> Result<Server> {
    let dovecot = PathBuf::from("/usr/sbin/dovecot");
    if !dovecot.exists() || !Path::new("/usr/lib/dovecot/imap").exists() {
        bail!("Dovecot's IMAP server is not installed: apt-get install dovecot-imapd");
    }
    let mail = base.join("mail");
    let done = base.join("DONE");
    if !done.exists() {
        if base.exists() {
            std::fs::remove_dir_all(base)?;
        }
        std::fs::create_dir_all(base)?;
        match tree {
            Some(t) => {
                let st = Command::new("cp").arg("-a").arg(t).arg(&mail).status()?;
                if !st.success() {
                    bail!("cp -a {} {}", t.display(), mail.display());
                }
            }
            None => {
                for sub in ["cur", "new", "tmp"] {
                    std::fs::create_dir_all(mail.join(sub))?;
                }
            }
        }
        std::fs::create_dir_all(base.join("home"))?;
        // Dovecot will not touch mail as root: the mail belongs to `nobody`.
        let st = Command::new("chown")
            .args(["-R", "nobody:nogroup"])
            .arg(&mail)
            .arg(base.join("home"))
            .status()?;
        if !st.success() {
            bail!("chown");
        }
        std::fs::write(&done, "")?;
    }
    let port = free_port()?;
    let b = base.display();
    std::fs::write(base.join("passwd"), format!("{USER}:{{PLAIN}}{PASS}\n"))?;
    let conf = base.join("dovecot.conf");
    std::fs::write(
        &conf,
        format!(
            "protocols = imap\nlisten = 127.0.0.1\nssl = no\ndisable_plaintext_auth = no\n\
             base_dir = {b}/run\nstate_dir = {b}/state\nlog_path = {b}/dovecot.log\n\
             first_valid_uid = 1\nfirst_valid_gid = 1\n\
             mail_location = maildir:{b}/mail\n\
             passdb {{\n  driver = passwd-file\n  args = {b}/passwd\n}}\n\
             userdb {{\n  driver = static\n  args = uid=nobody gid=nogroup home={b}/home\n}}\n\
             namespace inbox {{\n  inbox = yes\n  separator = /\n}}\n\
             service imap-login {{\n  inet_listener imap {{\n    port = {port}\n  }}\n  \
             inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
             service anvil {{\n  chroot =\n}}\nservice imap-login {{\n  chroot =\n}}\n"
        ),
    )?;
    let child = Command::new(dovecot)
        .arg("-F")
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let mut s = Server {
        name: "Dovecot",
        addr: format!("127.0.0.1:{port}"),
        child,
        tree: true,
    };
    let t = Instant::now();
    while std::net::TcpStream::connect(&s.addr).is_err() {
        if let Ok(Some(st)) = s.child.try_wait() {
            bail!("dovecot exited at start ({st}); see {b}/dovecot.log");
        }
        if t.elapsed() > Duration::from_secs(30) {
            bail!("dovecot did not listen in 30 s; see {b}/dovecot.log");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(s)
}
