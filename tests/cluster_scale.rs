//! Larger cluster runs: ten nodes joined in a chain, a message body far larger than one
//! network frame, and nodes killed with SIGKILL during an initial sync and during a storm
//! of writes.

mod cluster_support;

use cluster_support::Cluster;
use std::collections::BTreeSet;
use std::time::Duration;

/// Ten nodes, each given one earlier node's address: a change made on the last reaches the
/// first and the other way round.
#[test]
fn ten_nodes_in_a_chain_converge() {
    let mut c = Cluster::new(10);
    c.start(0, &[]);
    for i in 1..10 {
        c.start(i, &[i - 1]);
    }
    let a = c.append(9, "last", 1);
    let b = c.append(0, "first", 1);
    let all: Vec<usize> = (0..10).collect();
    assert!(c.converged(&all, 90), "ten nodes do not converge");
    for i in all {
        let l: BTreeSet<String> = c.list(i).into_iter().map(|r| r.1).collect();
        assert!(
            l.contains(&a[0].1) && l.contains(&b[0].1),
            "node {i}: {l:?}"
        );
        assert_eq!(l.len(), 2);
    }
}

/// A 12 MiB message crosses in parts (a frame holds at most 8 MiB).
#[test]
fn a_message_larger_than_a_frame_crosses() {
    let mut c = Cluster::new(2);
    let big = c.append_sized(0, "big", 1, 12 * 1024 * 1024);
    c.start(0, &[]);
    c.start(1, &[0]);
    assert!(c.converged(&[0, 1], 90), "no convergence");
    let l = c.list(1);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].1, big[0].1);
    let json = cluster_support::ok(&[
        "--data-dir",
        c.dir(1),
        "--json",
        "list",
        "--account",
        "alice",
        "--mailbox",
        "INBOX",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert!(v[0]["size"].as_u64().expect("size") > 12 * 1024 * 1024);
}

/// A new node killed with SIGKILL in the middle of its initial sync, then again during a
/// storm of writes on its peer, comes back and converges with nothing lost or duplicated.
#[test]
fn a_node_killed_during_initial_sync_and_a_write_storm_converges() {
    let mut c = Cluster::new(2);
    let mut all: BTreeSet<String> = c.append(0, "bulk", 1500).into_iter().map(|x| x.1).collect();
    c.start(0, &[]);
    c.start(1, &[0]);
    std::thread::sleep(Duration::from_millis(300));
    c.kill9(1);
    c.start(1, &[0]);
    // A storm of writes on node 0 while node 1 syncs; node 1 is killed in the middle.
    for k in 0..10 {
        all.extend(
            c.append(0, &format!("storm{k}"), 20)
                .into_iter()
                .map(|x| x.1),
        );
        if k == 4 {
            c.kill9(1);
            c.start(1, &[0]);
        }
    }
    assert!(c.converged(&[0, 1], 120), "no convergence after the kills");
    for i in 0..2 {
        let l = c.list(i);
        let guids: BTreeSet<String> = l.iter().map(|r| r.1.clone()).collect();
        assert_eq!(guids.len(), l.len(), "node {i}: a message shown twice");
        assert_eq!(guids, all, "node {i}: messages lost");
    }
}

/// Every sync message crosses in parts of 512 bytes (the testing knob): a thousand messages
/// with clashing UIDs on two nodes, their renumbering, flag changes; the parts are put back
/// together in order and both nodes converge.
#[test]
fn sync_messages_cross_in_many_parts() {
    let mut c = Cluster::new(2);
    c.node_env = vec![("DOVETAIL_SYNC_PART_BYTES".into(), "512".into())];
    let mut all: BTreeSet<String> = c.append(0, "p0", 500).into_iter().map(|x| x.1).collect();
    all.extend(c.append(1, "p1", 500).into_iter().map(|x| x.1));
    c.start(0, &[]);
    c.start(1, &[0]);
    assert!(c.converged(&[0, 1], 120), "no convergence with small parts");
    // Equal views can still hold clashing messages waiting for their renumbering (the
    // grace period runs per message): wait until every message is shown before flagging.
    let t0 = std::time::Instant::now();
    while (0..2).any(|i| c.list(i).len() < all.len()) {
        assert!(t0.elapsed().as_secs() < 60, "messages stay hidden");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let flagged = cluster_support::ok(&[
        "--data-dir",
        c.dir(1),
        "flags",
        "--account",
        "alice",
        "--mailbox",
        "INBOX",
        "--uid",
        "1:*",
        "+$Seen-everywhere",
    ]);
    eprintln!("flags printed {} lines", flagged.lines().count());
    assert!(c.converged(&[0, 1], 120), "no convergence after flags");
    for i in 0..2 {
        let l = c.list(i);
        assert_eq!(l.iter().map(|r| r.1.clone()).collect::<BTreeSet<_>>(), all);
        let missing: Vec<_> = l
            .iter()
            .filter(|r| !r.2.contains(&"$Seen-everywhere".to_string()))
            .collect();
        assert!(
            missing.is_empty(),
            "node {i}: {} of {} rows lack the flag: {:?}",
            missing.len(),
            l.len(),
            &missing[..missing.len().min(5)]
        );
    }
}
