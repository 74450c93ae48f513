//! `dovetail demo`: N local nodes on loopback in temporary data dirs; concurrent writes on
//! every node (clashing UIDs, a flag race, an expunge), one node cut off and brought back,
//! a new node joining through one address; then what happened and the `diff` verdict.

use super::CliError;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Arguments of `dovetail demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Nodes started at first (one more joins later).
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Messages appended, spread over the nodes.
    #[arg(long, default_value_t = 1000)]
    pub messages: usize,
    /// Keep the data dirs in this directory instead of a temporary one.
    #[arg(long)]
    pub keep: Option<PathBuf>,
}

fn fail(why: String) -> CliError {
    CliError::Remote(why)
}

struct Proc {
    dir: PathBuf,
    child: Option<Child>,
    addr: Option<String>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(c) = self.child.take() {
            stop_child(c);
        }
    }
}

fn stop_child(mut c: Child) {
    // SAFETY: a signal to our own child.
    unsafe {
        libc::kill(c.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = c.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = c.kill();
    let _ = c.wait();
}

fn exe() -> Result<PathBuf, CliError> {
    std::env::current_exe().map_err(|e| fail(format!("cannot find the dovetail binary: {e}")))
}

fn dt(args: &[&str]) -> Result<String, CliError> {
    let o = Command::new(exe()?)
        .args(args)
        .env_remove("DOVETAIL_DATA_DIR")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| fail(e.to_string()))?;
    if !o.status.success() {
        return Err(fail(format!(
            "dovetail {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

fn p(d: &Path) -> &str {
    d.to_str().unwrap_or_default()
}

fn start(n: &mut Proc, bootstrap: Option<&str>, stop: &AtomicBool) -> Result<(), CliError> {
    let addrs = n.dir.join(crate::node::daemon::ADDRS_FILE);
    let _ = std::fs::remove_file(&addrs);
    let mut c = Command::new(exe()?);
    c.args(["--data-dir", p(&n.dir), "node", "--renumber-grace", "2"])
        .args(["--anti-entropy", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(b) = bootstrap {
        c.args(["--bootstrap", b]);
    }
    n.child = Some(c.spawn().map_err(|e| fail(e.to_string()))?);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
        if let Some(l) = crate::node::daemon::listen_addrs(&n.dir).into_iter().next() {
            if crate::node::control::running(&n.dir) {
                n.addr = Some(l);
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(fail(format!("node {} did not start", n.dir.display())))
}

fn append(dir: &Path, tmp: &Path, tag: &str, n: usize) -> Result<usize, CliError> {
    let mut files = Vec::new();
    for k in 0..n {
        let f = tmp.join(format!("{tag}-{k}.eml"));
        std::fs::write(
            &f,
            format!(
                "From: demo@example.org\r\nSubject: {tag} #{k}\r\nMessage-ID: <{tag}.{k}@demo>\r\n\r\nHello from {tag}, message {k}.\r\n"
            ),
        )
        .map_err(|e| fail(e.to_string()))?;
        files.push(f);
    }
    let mut args = vec![
        "--data-dir",
        p(dir),
        "append",
        "--account",
        "demo",
        "--mailbox",
        "INBOX",
    ];
    args.extend(files.iter().map(|f| p(f)));
    let out = dt(&args)?;
    for f in files {
        let _ = std::fs::remove_file(f);
    }
    Ok(out.lines().count())
}

fn inbox_line(dir: &Path) -> Result<String, CliError> {
    let out = dt(&["--data-dir", p(dir), "status", "--account", "demo"])?;
    Ok(out
        .lines()
        .find(|l| l.starts_with("demo INBOX "))
        .unwrap_or_default()
        .to_string())
}

fn diff_wait(dirs: &[PathBuf], secs: u32) -> Result<(bool, Duration), CliError> {
    let t = Instant::now();
    let mut args = vec!["diff".to_string(), "--wait".into(), secs.to_string()];
    args.extend(dirs.iter().map(|d| p(d).to_string()));
    let o = Command::new(exe()?)
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| fail(e.to_string()))?;
    let txt = String::from_utf8_lossy(&o.stdout);
    print!("{txt}");
    Ok((o.status.success(), t.elapsed()))
}

/// Runs the demo; Ctrl-C stops every node cleanly.
pub fn run(args: &DemoArgs) -> Result<i32, CliError> {
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        // The nodes are in our process group: Ctrl-C reaches them too, and each stops
        // cleanly on its own. The demo only has to stop starting new steps.
        let _ = ctrlc_flag(stop);
    }
    let tmp_holder;
    let base = match &args.keep {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| fail(e.to_string()))?;
            d.clone()
        }
        None => {
            tmp_holder = tempfile_dir()?;
            tmp_holder.0.clone()
        }
    };
    let n = args.nodes.max(2);
    let mut nodes: Vec<Proc> = Vec::new();
    println!("== {n} nodes in {}", base.display());
    for i in 0..=n {
        let dir = base.join(format!("node{}", i + 1));
        dt(&["--data-dir", p(&dir), "init"])?;
        dt(&["--data-dir", p(&dir), "account", "create", "demo"])?;
        nodes.push(Proc {
            dir,
            child: None,
            addr: None,
        });
    }
    let per = (args.messages / n).max(1);
    println!("== split brain: {per} messages appended on each node before they meet (same UIDs everywhere)");
    for (i, node) in nodes.iter().take(n).enumerate() {
        append(&node.dir, &base, &format!("node{}-offline", i + 1), per / 2)?;
        println!("   node{}: {}", i + 1, inbox_line(&node.dir)?);
    }
    for i in 0..n {
        let boot = if i == 0 { None } else { nodes[0].addr.clone() };
        start(&mut nodes[i], boot.as_deref(), &stop)?;
        println!(
            "   node{} listening on {}",
            i + 1,
            nodes[i].addr.as_deref().unwrap_or("?")
        );
    }
    println!("== concurrent appends on every running node");
    let t = Instant::now();
    let handles: Vec<_> = nodes
        .iter()
        .take(n)
        .enumerate()
        .map(|(i, node)| {
            let (dir, base) = (node.dir.clone(), base.clone());
            let rest = per - per / 2;
            std::thread::spawn(move || append(&dir, &base, &format!("node{}-live", i + 1), rest))
        })
        .collect();
    for h in handles {
        h.join()
            .map_err(|_| fail("append thread panicked".into()))??;
    }
    println!("   appended in {:.1?}", t.elapsed());
    let dirs: Vec<PathBuf> = nodes.iter().take(n).map(|x| x.dir.clone()).collect();
    let (ok0, t0) = diff_wait(&dirs, 120)?;
    println!("   converged: {ok0} after {t0:.1?} (clashing UIDs renumbered)");
    // Now that every node shows the same UIDs: two nodes flag the same message at once,
    // a third expunges another.
    let listed = dt(&[
        "--data-dir",
        p(&nodes[0].dir),
        "list",
        "--account",
        "demo",
        "--mailbox",
        "INBOX",
    ])?;
    let uids: Vec<&str> = listed.lines().filter_map(|l| l.split(' ').next()).collect();
    let (u1, u2) = match uids.as_slice() {
        [a, b, ..] => (a.to_string(), b.to_string()),
        _ => return Err(fail("too few messages for the flag race".into())),
    };
    println!("== a flag race on UID {u1} (node1 +\\Seen, node2 +\\Flagged) and an expunge of UID {u2} on node{n}");
    let flag = |dir: &Path, f: &str| {
        dt(&[
            "--data-dir",
            p(dir),
            "flags",
            "--account",
            "demo",
            "--mailbox",
            "INBOX",
            "--uid",
            &u1,
            f,
        ])
    };
    flag(&nodes[0].dir, "+\\Seen")?;
    flag(&nodes[1].dir, "+\\Flagged")?;
    dt(&[
        "--data-dir",
        p(&nodes[n - 1].dir),
        "expunge",
        "--account",
        "demo",
        "--mailbox",
        "INBOX",
        "--uid",
        &u2,
    ])?;
    let (ok1, t1) = diff_wait(&dirs, 120)?;
    let shown = dt(&[
        "--data-dir",
        p(&nodes[n - 1].dir),
        "list",
        "--account",
        "demo",
        "--mailbox",
        "INBOX",
    ])?;
    if let Some(l) = shown.lines().find(|l| l.starts_with(&format!("{u1} "))) {
        println!("   UID {u1} on node{n}: {l}");
    }
    println!("   converged: {ok1} after {t1:.1?}");
    if stop.load(Ordering::SeqCst) {
        return Ok(130);
    }
    println!("== node{n} cut off; writes on both sides");
    if let Some(c) = nodes[n - 1].child.take() {
        stop_child(c);
    }
    append(&nodes[0].dir, &base, "while-away", 10)?;
    start(&mut nodes[n - 1], None, &stop)?;
    append(&nodes[n - 1].dir, &base, "alone", 10)?;
    if let Some(c) = nodes[n - 1].child.take() {
        stop_child(c);
    }
    let boot = nodes[0].addr.clone();
    start(&mut nodes[n - 1], boot.as_deref(), &stop)?;
    let (ok2, t2) = diff_wait(&dirs, 120)?;
    println!("   back: converged {ok2} after {t2:.1?}");
    println!("== node{} joins through node1's address only", n + 1);
    let boot = nodes[0].addr.clone();
    start(&mut nodes[n], boot.as_deref(), &stop)?;
    let all: Vec<PathBuf> = nodes.iter().map(|x| x.dir.clone()).collect();
    let (ok3, t3) = diff_wait(&all, 120)?;
    println!("   joined: converged {ok3} after {t3:.1?}");
    println!("== final state");
    for (i, node) in nodes.iter().enumerate() {
        println!("   node{}: {}", i + 1, inbox_line(&node.dir)?);
    }
    let renumbered: usize = nodes
        .iter()
        .map(|x| {
            dt(&[
                "--data-dir",
                p(&x.dir),
                "list",
                "--account",
                "demo",
                "--mailbox",
                "INBOX",
            ])
            .map(|o| o.lines().count())
            .unwrap_or(0)
        })
        .max()
        .unwrap_or(0);
    println!("   messages shown: {renumbered} (each exactly once, clashing UIDs renumbered above every UIDNEXT)");
    let verdict = ok0 && ok1 && ok2 && ok3;
    println!(
        "== diff verdict: {}",
        if verdict {
            "CONVERGED"
        } else {
            "NOT CONVERGED"
        }
    );
    drop(nodes);
    Ok(if verdict { 0 } else { 1 })
}

/// A temporary directory removed on drop.
struct TmpDir(PathBuf);

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempfile_dir() -> Result<TmpDir, CliError> {
    let d = std::env::temp_dir().join(format!("dovetail-demo-{}", std::process::id()));
    std::fs::create_dir_all(&d).map_err(|e| fail(e.to_string()))?;
    Ok(TmpDir(d))
}

/// Sets `flag` on SIGINT/SIGTERM.
fn ctrlc_flag(flag: Arc<AtomicBool>) -> std::io::Result<()> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    let _ = FLAG.set(flag);
    extern "C" fn on_signal(_: libc::c_int) {
        if let Some(f) = FLAG.get() {
            f.store(true, Ordering::SeqCst);
        }
    }
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    Ok(())
}
