//! `initial`: a brand-new node's initial sync from one peer, next to Dovecot's dsync of the
//! same messages between two local Dovecot instances, and next to dovetail's offline
//! `dovetail sync` into an empty dir.
//!
//! - dovetail over the network: node A serves a data dir of N ~3 KB messages in alice's
//!   INBOX; node B starts on a fresh data dir (no account) with `--bootstrap` A. Timed from
//!   B's start until B's `status` shows N messages with nothing waiting (every message
//!   durable and shown). CPU of both processes, peak RSS (VmHWM) of each.
//! - dovetail offline: `dovetail sync A EMPTY` of the same (both stopped).
//! - dsync: Dovecot 2.3 (Debian's dovecot-core, installed by `scripts/bench-deps.sh`) instance
//!   A holds the same N messages in a Maildir, indexed beforehand; instance B is empty;
//!   `doveadm -c B sync -u alice tcp:127.0.0.1:PORT` (A's doveadm server over loopback).
//!   CPU of the doveadm client plus A's doveadm server.

use super::procs::{self, hwm_mib};
use super::support::{bench_root, bin, cpu_secs, start_node};
use anyhow::{bail, Context, Result};
use dovetail::model::{AccountName, FlagSet, MailboxName};
use dovetail::node::control::{self, ControlRequest, ControlResponse};
use dovetail::node::{NewMessage, Options, Replica};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Figures of one size.
pub struct Figures {
    pub n: usize,
    pub net_wall: f64,
    pub net_cpu: f64,
    pub rss_a: f64,
    pub rss_b: f64,
    pub offline_wall: f64,
    pub dsync_wall: f64,
    pub dsync_cpu: f64,
}

/// The dovetail source dir and the Dovecot source maildir of `n` messages, built once.
fn dataset(n: usize) -> Result<PathBuf> {
    let root = bench_root().join(format!("initial-{n}"));
    let done = root.join("DONE");
    // "3": store format 4 (packed changes, claim and change-index blocks).
    if std::fs::read_to_string(&done).ok().as_deref() == Some("3") {
        return Ok(root);
    }
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;
    let a = root.join("dt-a");
    procs::init(&a)?;
    let mut r = Replica::open(&a, Options::default())?;
    let alice = AccountName::try_from("alice")?;
    let inbox = MailboxName::inbox();
    let cur = root.join("dc-a/mail/alice/Maildir/cur");
    std::fs::create_dir_all(&cur)?;
    std::fs::create_dir_all(root.join("dc-a/mail/alice/Maildir/new"))?;
    std::fs::create_dir_all(root.join("dc-a/mail/alice/Maildir/tmp"))?;
    for start in (0..n).step_by(1000) {
        let mut batch = Vec::new();
        for i in start..(start + 1000).min(n) {
            let bytes = super::support::message(7, i as u64, 3000).bytes;
            std::fs::write(
                cur.join(format!("1764500000.M{i}P1.bench,S={}:2,", bytes.len())),
                &bytes,
            )?;
            batch.push(NewMessage {
                name: format!("m{i}"),
                bytes,
                flags: FlagSet::new(),
                internal_date: 1_764_500_000,
            });
        }
        r.append(&alice, &inbox, batch, 1_764_500_000)?;
    }
    drop(r);
    dovecot_conf(&root, "a", 12_101)?;
    // Index A's maildir before timing, as a server that has run for a while would have
    // (doveadm looks the user up through the running instance's auth service).
    dc_start(&root, "a")?;
    let st = Command::new("doveadm")
        .args(["-c"])
        .arg(root.join("a.conf"))
        .args(["index", "-u", "alice", "INBOX"])
        .status()
        .context("doveadm (install dovecot-core: scripts/bench-deps.sh)")?;
    dc_stop(&root, "a");
    if !st.success() {
        bail!("doveadm index failed");
    }
    std::fs::write(&done, "3")?;
    Ok(root)
}

/// Writes `<root>/<name>.conf`: a Dovecot instance with its own base dir, its mail under
/// `<root>/dc-<name>/mail/%u/Maildir`, and a doveadm server on 127.0.0.1:`port`.
fn dovecot_conf(root: &Path, name: &str, port: u16) -> Result<()> {
    let base = root.join(format!("dc-{name}"));
    std::fs::create_dir_all(base.join("run"))?;
    let conf = format!(
        "instance_name = bench-{name}\n\
         base_dir = {base}/run\n\
         state_dir = {base}/state\n\
         log_path = {base}/dovecot.log\n\
         protocols =\n\
         listen = 127.0.0.1\n\
         ssl = no\n\
         mail_location = maildir:{base}/mail/%u/Maildir\n\
         mail_uid = dsyncbench\n\
         mail_gid = dsyncbench\n\
         first_valid_uid = 1\n\
         doveadm_password = bench\n\
         userdb {{\n  driver = static\n  args = uid=dsyncbench gid=dsyncbench home={base}/home/%u\n}}\n\
         passdb {{\n  driver = static\n  args = nopassword=y\n}}\n\
         service doveadm {{\n  inet_listener {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n  service_count = 1\n}}\n",
        base = base.display()
    );
    std::fs::create_dir_all(base.join("state"))?;
    std::fs::write(root.join(format!("{name}.conf")), conf)?;
    let st = Command::new("chown")
        .args(["-R", "dsyncbench:dsyncbench"])
        .arg(&base)
        .status()?;
    if !st.success() {
        bail!("chown failed (scripts/bench-deps.sh creates the dsyncbench user)");
    }
    Ok(())
}

/// Starts Dovecot instance `name` of `root`; returns its master's pid once it runs.
fn dc_start(root: &Path, name: &str) -> Result<u32> {
    let st = Command::new("dovecot")
        .arg("-c")
        .arg(root.join(format!("{name}.conf")))
        .status()?;
    if !st.success() {
        bail!("dovecot {name} did not start");
    }
    let pidf = root.join(format!("dc-{name}/run/master.pid"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(p) = std::fs::read_to_string(&pidf) {
            if let Ok(pid) = p.trim().parse() {
                // The auth and doveadm listeners come up right after the pid file.
                std::thread::sleep(Duration::from_millis(300));
                return Ok(pid);
            }
        }
        if Instant::now() > deadline {
            bail!("dovecot {name} wrote no pid file");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn dc_stop(root: &Path, name: &str) {
    let _ = Command::new("doveadm")
        .arg("-c")
        .arg(root.join(format!("{name}.conf")))
        .arg("stop")
        .status();
    // Let the master release its listeners before the next start.
    std::thread::sleep(Duration::from_millis(500));
}

/// Children's CPU seconds of a process (its waited-for children: Dovecot's master reaps
/// the doveadm server that served the sync): cutime + cstime.
fn child_cpu_secs(pid: u32) -> f64 {
    super::support::stat_secs(pid, 13, 14)
}

fn self_children_cpu() -> f64 {
    // SAFETY: getrusage writes into the struct we give it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// Messages alice's INBOX shows on a running node, and changes still waiting.
fn shown(dir: &Path) -> (u64, u64) {
    match control::call(dir, &ControlRequest::Status { account: None }) {
        Ok(Some(ControlResponse::Status {
            mailboxes, sync, ..
        })) => (
            mailboxes
                .iter()
                .filter(|m| m.name == "INBOX")
                .map(|m| m.messages)
                .sum(),
            sync.changes_waiting,
        ),
        _ => (0, u64::MAX),
    }
}

pub fn run(n: usize) -> Result<Figures> {
    let bin = bin()?;
    let root = dataset(n)?;
    let a = root.join("dt-a");
    let work = root.join("work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;

    // Offline: `dovetail sync A EMPTY`.
    let empty = work.join("offline");
    Command::new(&bin)
        .args(["--data-dir"])
        .arg(&empty)
        .arg("init")
        .output()?;
    let t = Instant::now();
    let st = Command::new(&bin)
        .arg("sync")
        .arg(&a)
        .arg(&empty)
        .stdout(std::process::Stdio::null())
        .status()?;
    let offline_wall = t.elapsed().as_secs_f64();
    if !st.success() {
        bail!("dovetail sync failed");
    }
    std::fs::remove_dir_all(&empty)?;

    // Network: node A serving, new node B joining.
    let node_a = start_node(&a, None, 3)?;
    let b = work.join("b");
    Command::new(&bin)
        .args(["--data-dir"])
        .arg(&b)
        .arg("init")
        .output()?;
    let cpu_a0 = cpu_secs(node_a.pid());
    let t = Instant::now();
    let node_b = start_node(&b, Some(node_a.addr.as_str()), 3)?;
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let (m, waiting) = shown(&b);
        if m as usize == n && waiting == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("node B holds {m} of {n} messages after 30 minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let net_wall = t.elapsed().as_secs_f64();
    let net_cpu = cpu_secs(node_a.pid()) - cpu_a0 + cpu_secs(node_b.pid());
    let (rss_a, rss_b) = (hwm_mib(node_a.pid()), hwm_mib(node_b.pid()));
    node_b.stop()?;
    node_a.stop()?;
    std::fs::remove_dir_all(&b)?;

    // dsync between two Dovecot instances.
    let dc_b = root.join("dc-b");
    let _ = std::fs::remove_dir_all(&dc_b);
    dovecot_conf(&root, "b", 12_102)?;
    let master_a = dc_start(&root, "a")?;
    dc_start(&root, "b")?;
    let (ca0, cc0) = (child_cpu_secs(master_a), self_children_cpu());
    let t = Instant::now();
    let st = Command::new("doveadm")
        .arg("-c")
        .arg(root.join("b.conf"))
        .args(["sync", "-u", "alice", "tcp:127.0.0.1:12101"])
        .status()?;
    let dsync_wall = t.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(300));
    let dsync_cpu = child_cpu_secs(master_a) - ca0 + self_children_cpu() - cc0;
    dc_stop(&root, "a");
    dc_stop(&root, "b");
    if !st.success() {
        bail!("doveadm sync failed");
    }
    let got = ["cur", "new"]
        .iter()
        .map(|d| {
            std::fs::read_dir(dc_b.join("mail/alice/Maildir").join(d))
                .map(|r| r.count())
                .unwrap_or(0)
        })
        .sum::<usize>();
    if got != n {
        bail!("dsync copied {got} of {n} messages");
    }
    std::fs::remove_dir_all(&dc_b)?;
    Ok(Figures {
        n,
        net_wall,
        net_cpu,
        rss_a,
        rss_b,
        offline_wall,
        dsync_wall,
        dsync_cpu,
    })
}

pub fn report(f: &Figures) -> String {
    format!(
        "initial sync of {} messages (~3 KB): dovetail network {:.2} s wall, {:.2} s CPU (both nodes), \
         VmHWM A {:.0} MiB / B {:.0} MiB; dovetail offline sync {:.2} s; \
         dsync {:.2} s wall, {:.2} s CPU; dovetail/dsync time {:.3}\n",
        f.n,
        f.net_wall,
        f.net_cpu,
        f.rss_a,
        f.rss_b,
        f.offline_wall,
        f.dsync_wall,
        f.dsync_cpu,
        f.net_wall / f.dsync_wall
    )
}
