//! IMAP benchmark: dovetail against Debian's Dovecot, side by side in one run, on loopback.
//!
//! ```text
//! apt-get install dovecot-imapd      # Dovecot's IMAP server (its service need not run)
//! cargo build --release --bin dovetail --example imap_bench
//! target/release/examples/imap_bench [--appends 10000] [--conns 8] [--fetch-n 100000] [--reps 3]
//! ```
//!
//! - *append*: `--appends` ~3 KB messages APPENDed (LITERAL+) to one INBOX over `--conns`
//!   concurrent connections, each waiting for its tagged OK before the next APPEND, into a
//!   fresh server each rep. Wall time from the first APPEND to the last OK; server CPU.
//! - *fetch*: a `--fetch-n`-message INBOX (the same generated Maildir, imported into
//!   dovetail with `import-maildir` and copied into Dovecot's Maildir; both built once and
//!   kept under `$DOVETAIL_BENCH_DIR`, default /tmp/dovetail-bench); each rep is a fresh
//!   connection: LOGIN, then timed: SELECT and `UID FETCH 1:* (FLAGS)`; LOGOUT. Dovecot
//!   indexes the Maildir at its first SELECT: that one is reported apart, not in the medians.
//!
//! Reps alternate between the servers, so a change in the machine's load hits both.

#[allow(dead_code)]
#[path = "../bench/gen.rs"]
mod gen;
#[allow(dead_code)]
#[path = "../cluster_bench/support.rs"]
mod support;

mod client;
mod servers;

use anyhow::{ensure, Result};
use client::Client;
use dovetail::maildir::flags::{keywords_file, letters_of, Keywords};
use servers::{Server, PASS, USER};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use support::{bench_root, fmt_list, load_avg, median};

fn arg(name: &str, default: usize) -> Result<usize> {
    let args: Vec<String> = std::env::args().collect();
    Ok(match args.iter().position(|a| a == name) {
        Some(i) => args.get(i + 1).map_or(Ok(default), |s| s.parse())?,
        None => default,
    })
}

/// An INBOX-only Maildir of `n` generated messages with their flags (built once).
fn build_tree(root: &Path, n: usize) -> Result<()> {
    let done = root.join("DONE");
    if std::fs::read_to_string(&done).ok().as_deref() == Some(&n.to_string()) {
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(root);
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(root.join(sub))?;
    }
    let mut kw = Keywords::new();
    for i in 0..n as u64 {
        let m = gen::message(42, i);
        let (letters, _) = letters_of(&m.flags, &mut kw);
        let name = format!(
            "{}.M{i}P1.bench,S={}:2,{letters}",
            m.internal_date,
            m.bytes.len()
        );
        std::fs::write(root.join("cur").join(name), &m.bytes)?;
    }
    std::fs::write(root.join("dovecot-keywords"), keywords_file(&kw))?;
    // The DONE marker is written last and is not a Maildir entry (it sits beside cur/).
    std::fs::write(&done, n.to_string())?;
    Ok(())
}

struct Run {
    secs: f64,
    cpu: f64,
}

/// `n` APPENDs over `conns` connections; checks that the INBOX then holds exactly `n`.
async fn append_run(s: &Server, msgs: Arc<Vec<Vec<u8>>>, conns: usize) -> Result<Run> {
    let mut clients = Vec::new();
    for _ in 0..conns {
        let mut c = Client::connect(&s.addr).await?;
        c.login(USER, PASS).await?;
        clients.push(c);
    }
    let (t0, c0) = (Instant::now(), s.cpu());
    let mut tasks = Vec::new();
    for (k, mut c) in clients.into_iter().enumerate() {
        let msgs = msgs.clone();
        tasks.push(tokio::spawn(async move {
            for m in msgs.iter().skip(k).step_by(conns) {
                c.append("INBOX", m).await?;
            }
            Ok::<_, anyhow::Error>(c)
        }));
    }
    let mut done = Vec::new();
    for t in tasks {
        done.push(t.await??);
    }
    let secs = t0.elapsed().as_secs_f64();
    for c in done {
        c.logout().await?;
    }
    // Dovecot's per-connection processes are reaped (and counted) once they exit.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let cpu = s.cpu() - c0;
    let mut c = Client::connect(&s.addr).await?;
    c.login(USER, PASS).await?;
    let exists = c.select("INBOX").await?;
    c.logout().await?;
    ensure!(
        exists == msgs.len() as u64,
        "{}: INBOX holds {exists} messages after {} appends",
        s.name,
        msgs.len()
    );
    Ok(Run { secs, cpu })
}

/// One fresh connection: LOGIN, then timed SELECT and `UID FETCH 1:* (FLAGS)`, LOGOUT.
async fn fetch_run(s: &Server, n: usize) -> Result<Run> {
    // Timed from after the login: the work measured is SELECT + FETCH (a login costs a
    // password hash, argon2 on dovetail, whatever the mailbox).
    let mut c = Client::connect(&s.addr).await?;
    c.login(USER, PASS).await?;
    let (t0, c0) = (Instant::now(), s.cpu());
    let exists = c.select("INBOX").await?;
    let fetched = c.fetch_all_flags().await?;
    let secs = t0.elapsed().as_secs_f64();
    c.logout().await?;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let cpu = s.cpu() - c0;
    ensure!(
        exists == n as u64 && fetched == n,
        "{}: EXISTS {exists}, {fetched} FETCH responses, expected {n}",
        s.name
    );
    Ok(Run { secs, cpu })
}

fn report(what: &str, unit: f64, unit_name: &str, d: &[Run], v: &[Run]) {
    let md = median(&d.iter().map(|r| r.secs).collect::<Vec<_>>());
    let mv = median(&v.iter().map(|r| r.secs).collect::<Vec<_>>());
    let cd = median(&d.iter().map(|r| r.cpu).collect::<Vec<_>>());
    let cv = median(&v.iter().map(|r| r.cpu).collect::<Vec<_>>());
    println!("{what}:");
    for (name, runs, m, c) in [("dovetail", d, md, cd), ("Dovecot", v, mv, cv)] {
        println!(
            "  {name:<8} wall s [{}] median {m:.3} s = {:.0} {unit_name}/s; server CPU median {c:.3} s = {:.1} ms per 1,000 {unit_name}",
            fmt_list(&runs.iter().map(|r| r.secs).collect::<Vec<_>>(), 3),
            unit / m,
            c * 1000.0 / (unit / 1000.0),
        );
    }
    println!(
        "  dovetail/Dovecot throughput = {:.2}x; CPU per unit dovetail/Dovecot = {:.2}x",
        mv / md,
        cd / cv
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let appends = arg("--appends", 10_000)?;
    let conns = arg("--conns", 8)?;
    let fetch_n = arg("--fetch-n", 100_000)?;
    let reps = arg("--reps", 3)?;
    let root = bench_root().join("imap");
    std::fs::create_dir_all(&root)?;
    println!("load before: {}", load_avg());

    if appends > 0 {
        let msgs: Arc<Vec<Vec<u8>>> = Arc::new(
            (0..appends as u64)
                .map(|i| gen::message(7, i).bytes)
                .collect(),
        );
        let bytes: usize = msgs.iter().map(Vec::len).sum();
        println!(
            "append: {appends} messages ({:.1} KB mean) over {conns} connections, {reps} reps",
            bytes as f64 / appends as f64 / 1000.0
        );
        let (mut d, mut v) = (Vec::new(), Vec::new());
        for rep in 1..=reps {
            let dir = root.join("append-dovetail");
            let _ = std::fs::remove_dir_all(&dir);
            servers::dovetail_dir(&dir, None)?;
            let s = servers::start_dovetail(&dir)?;
            let r = append_run(&s, msgs.clone(), conns).await?;
            println!(
                "  rep {rep} dovetail {:.3} s, CPU {:.2} s; load {}",
                r.secs,
                r.cpu,
                load_avg()
            );
            d.push(r);
            drop(s);
            let base = root.join("append-dovecot");
            let _ = std::fs::remove_dir_all(&base);
            let s = servers::start_dovecot(&base, None)?;
            let r = append_run(&s, msgs.clone(), conns).await?;
            println!(
                "  rep {rep} Dovecot  {:.3} s, CPU {:.2} s; load {}",
                r.secs,
                r.cpu,
                load_avg()
            );
            v.push(r);
        }
        report("APPEND", appends as f64, "msg", &d, &v);
    }

    if fetch_n > 0 {
        let tree = root.join(format!("maildir-{fetch_n}"));
        let t = Instant::now();
        build_tree(&tree, fetch_n)?;
        let ddir = root.join(format!("fetch-dovetail-{fetch_n}"));
        servers::dovetail_dir(&ddir, Some(&tree))?;
        let vbase = root.join(format!("fetch-dovecot-{fetch_n}"));
        let dovecot = servers::start_dovecot(&vbase, Some(&tree))?;
        let dovetail = servers::start_dovetail(&ddir)?;
        println!(
            "fetch: INBOX of {fetch_n} messages (datasets ready in {:.1} s), {reps} reps",
            t.elapsed().as_secs_f64()
        );
        let first = fetch_run(&dovecot, fetch_n).await?;
        println!(
            "  Dovecot's first SELECT + FETCH (indexes the Maildir; not in the medians): {:.3} s, CPU {:.2} s",
            first.secs, first.cpu
        );
        let first = fetch_run(&dovetail, fetch_n).await?;
        println!(
            "  dovetail's first SELECT + FETCH (not in the medians): {:.3} s, CPU {:.2} s",
            first.secs, first.cpu
        );
        let (mut d, mut v) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            d.push(fetch_run(&dovetail, fetch_n).await?);
            v.push(fetch_run(&dovecot, fetch_n).await?);
        }
        report(
            "SELECT + UID FETCH 1:* (FLAGS)",
            fetch_n as f64,
            "msg",
            &d,
            &v,
        );
    }
    println!("load after: {}", load_avg());
    Ok(())
}
