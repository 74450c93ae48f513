//! `latency`: replication latency in a live cluster. N nodes (3) on loopback; appends of
//! ~3 KB messages at a steady rate (100/s) spread round-robin over the nodes for `--secs`
//! (60) through their control sockets; every node's view events are followed
//! (`ControlRequest::Watch`, what `dovetail watch` and IMAP IDLE see). Latency = time from
//! the append's acknowledgement (durable on the writing node) to the `shown` event on each
//! other node. Prints p50/p90/p99/max, messages never seen, and CPU seconds of the nodes.

use super::procs::{self, pct};
use super::support::{cpu_secs, start_node, NodeProc};
use anyhow::{bail, Result};
use dovetail::node::control::{self, ControlRequest, ControlResponse};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Args {
    pub nodes: usize,
    pub rate: u64,
    pub secs: u64,
}

/// What one run measured.
pub struct Figures {
    pub appends: usize,
    pub samples: Vec<f64>,
    pub unseen: usize,
    pub cpu: f64,
    pub wall: f64,
}

type Seen = Arc<Mutex<HashMap<(String, usize), Instant>>>;

pub fn run(args: &Args) -> Result<Figures> {
    let tmp = tempfile::TempDir::new()?;
    let mut nodes: Vec<NodeProc> = Vec::new();
    for i in 0..args.nodes {
        let dir = tmp.path().join(format!("n{i}"));
        procs::init(&dir)?;
        let boot = nodes.first().map(|n| n.addr.clone());
        nodes.push(start_node(&dir, boot.as_deref(), 3)?);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while nodes
        .iter()
        .any(|n| procs::peers(&n.dir).unwrap_or(0) < args.nodes - 1)
    {
        if Instant::now() > deadline {
            bail!("the nodes did not all connect");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Followers: (guid, node) -> when that node showed it.
    let seen: Seen = Arc::default();
    for (i, n) in nodes.iter().enumerate() {
        let (seen, dir) = (seen.clone(), n.dir.clone());
        std::thread::spawn(move || {
            let _ = control::stream(&dir, &ControlRequest::Watch, &mut |r| {
                if let ControlResponse::Event(e) = r {
                    if e.kind == "shown" {
                        let mut s = seen.lock().expect("lock");
                        s.entry((e.guid, i)).or_insert_with(Instant::now);
                    }
                }
                true
            });
        });
    }
    // Let the watchers subscribe.
    std::thread::sleep(Duration::from_millis(300));
    let cpu0: f64 = nodes.iter().map(|n| cpu_secs(n.pid())).sum();
    let total = (args.rate * args.secs) as usize;
    let period = Duration::from_secs_f64(1.0 / args.rate as f64);
    let start = Instant::now();
    let mut acks: Vec<(String, usize, Instant)> = Vec::with_capacity(total);
    for k in 0..total {
        let at = start + period * k as u32;
        if let Some(d) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        let i = k % args.nodes;
        let guid = procs::append(
            &nodes[i].dir,
            &format!("m{k}"),
            super::support::message(3, k as u64, 3000).bytes,
        )?;
        acks.push((guid, i, Instant::now()));
    }
    let wall = start.elapsed().as_secs_f64();
    // Wait for the last ones (or give up after 10 s).
    let want = |s: &HashMap<(String, usize), Instant>| {
        acks.iter()
            .flat_map(|(g, w, _)| (0..args.nodes).filter(move |j| j != w).map(move |j| (g, j)))
            .filter(|(g, j)| !s.contains_key(&((*g).clone(), *j)))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while want(&seen.lock().expect("lock")) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let cpu: f64 = nodes.iter().map(|n| cpu_secs(n.pid())).sum::<f64>() - cpu0;
    let s = seen.lock().expect("lock");
    let mut samples = Vec::new();
    let mut unseen = 0;
    for (g, w, acked) in &acks {
        for j in (0..args.nodes).filter(|j| j != w) {
            match s.get(&(g.clone(), j)) {
                Some(t) => samples.push(t.saturating_duration_since(*acked).as_secs_f64() * 1e3),
                None => unseen += 1,
            }
        }
    }
    samples.sort_by(f64::total_cmp);
    Ok(Figures {
        appends: total,
        samples,
        unseen,
        cpu,
        wall,
    })
}

pub fn report(args: &Args, f: &Figures) -> String {
    let s = &f.samples;
    format!(
        "latency: {} nodes, {} appends at {}/s over {:.1} s: {} deliveries measured, {} never seen\n\
         ack -> shown on another node (ms): p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}\n\
         CPU of all nodes: {:.2} s ({:.1} ms per append)\n",
        args.nodes,
        f.appends,
        args.rate,
        f.wall,
        s.len(),
        f.unseen,
        pct(s, 50.0),
        pct(s, 90.0),
        pct(s, 99.0),
        s.last().copied().unwrap_or(f64::NAN),
        f.cpu,
        f.cpu * 1e3 / f.appends as f64
    )
}
