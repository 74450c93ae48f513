//! Multi-process cluster tests on loopback: real `dovetail node` processes, written to
//! through their control sockets, compared with `dovetail diff --wait`.

mod cluster_support;

use cluster_support::{ok, Cluster};
use std::collections::{BTreeMap, BTreeSet};

/// Every node shows the same messages at unique UIDs, and `expected` is exactly the set of
/// GUIDs shown.
fn assert_same_messages(c: &Cluster, nodes: &[usize], expected: &BTreeSet<String>) {
    let first = c.list(nodes[0]);
    for &i in nodes {
        let l = c.list(i);
        assert_eq!(l, first, "node {i} lists different messages");
        let uids: BTreeSet<u32> = l.iter().map(|r| r.0).collect();
        assert_eq!(uids.len(), l.len(), "node {i}: UIDs not unique");
        let guids: BTreeSet<String> = l.iter().map(|r| r.1.clone()).collect();
        assert_eq!(&guids, expected, "node {i}: messages lost or extra");
    }
}

/// Three nodes append to INBOX concurrently (the same UIDs on all three), change flags on
/// two nodes and expunge on the third; they converge, every message is shown once, and a
/// message a node had not shown before appears at or above the UIDNEXT it had reported.
#[test]
fn three_nodes_converge_after_clashing_appends_flags_and_an_expunge() {
    let mut c = Cluster::new(3);
    // Split brain before the nodes ever met: UIDs 1..=4 taken on all three.
    let mut appended: Vec<Vec<(u32, String)>> = Vec::new();
    for i in 0..3 {
        appended.push(c.append(i, &format!("pre{i}"), 4));
    }
    for a in &appended {
        assert_eq!(a.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    }
    c.start(0, &[]);
    c.start(1, &[0]);
    c.start(2, &[0]);
    // While running, through the control sockets: more clashing appends, flags on the same
    // message from two nodes, and an expunge.
    let mut seen_before: Vec<(BTreeSet<String>, u32)> = Vec::new();
    for (i, mine) in appended.iter_mut().enumerate() {
        mine.extend(c.append(i, &format!("live{i}"), 3));
        // UIDNEXT first, then the list: a message the running node shows between the two
        // reads is in the list, not mistaken for one shown later below that UIDNEXT.
        let uidnext = c.uidnext(i);
        let shown: BTreeSet<String> = c.list(i).into_iter().map(|r| r.1).collect();
        seen_before.push((shown, uidnext));
    }
    assert!(
        c.converged(&[0, 1, 2], 60),
        "no convergence after the writes"
    );
    // The first message of node 0 gets \Seen on node 0 and \Flagged on node 1, at once.
    let target = appended[0][0].1.clone();
    let uid_of = |c: &Cluster, i: usize, g: &str| {
        c.list(i)
            .into_iter()
            .find(|r| r.1 == g)
            .map(|r| r.0)
            .expect("message shown")
    };
    let u0 = uid_of(&c, 0, &target).to_string();
    let u1 = uid_of(&c, 1, &target).to_string();
    ok(&[
        "--data-dir",
        c.dir(0),
        "flags",
        "--account",
        "alice",
        "--mailbox",
        "INBOX",
        "--uid",
        &u0,
        "+\\Seen",
    ]);
    ok(&[
        "--data-dir",
        c.dir(1),
        "flags",
        "--account",
        "alice",
        "--mailbox",
        "INBOX",
        "--uid",
        &u1,
        "+\\Flagged",
    ]);
    // Node 2 expunges one of node 1's messages.
    let gone = appended[1][1].1.clone();
    let u2 = uid_of(&c, 2, &gone).to_string();
    let out = ok(&[
        "--data-dir",
        c.dir(2),
        "expunge",
        "--account",
        "alice",
        "--mailbox",
        "INBOX",
        "--uid",
        &u2,
    ]);
    assert_eq!(out.trim(), u2);
    assert!(
        c.converged(&[0, 1, 2], 60),
        "no convergence after flags and expunge"
    );

    let mut expected: BTreeSet<String> = appended.iter().flatten().map(|x| x.1.clone()).collect();
    assert_eq!(expected.len(), 21);
    expected.remove(&gone);
    assert_same_messages(&c, &[0, 1, 2], &expected);
    let l = c.list(0);
    let flags = &l.iter().find(|r| r.1 == target).expect("target").2;
    assert!(
        flags.contains(&"\\Seen".to_string()) && flags.contains(&"\\Flagged".to_string()),
        "concurrent flag changes both survive: {flags:?}"
    );
    for (i, (shown, uidnext)) in seen_before.iter().enumerate() {
        for (uid, g, _) in c.list(i) {
            if !shown.contains(&g) {
                assert!(
                    uid >= *uidnext,
                    "node {i}: new message {g} at UID {uid} below UIDNEXT {uidnext} it reported"
                );
            }
        }
    }
    // `status` of a running node lists its peers, none behind once converged.
    let st = ok(&["--data-dir", c.dir(0), "status"]);
    assert!(st.contains("PEERS 2"), "status: {st}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let st = ok(&["--data-dir", c.dir(0), "--json", "status"]);
        let v: serde_json::Value = serde_json::from_str(&st).expect("json");
        let peers = v["peers"].as_array().expect("peers");
        assert_eq!(peers.len(), 2);
        if peers.iter().all(|p| p["behind"] == 0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "peers still behind: {st}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    for i in 0..3 {
        c.stop(i);
    }
    // Stopped data dirs agree too (the state was durable).
    let r = cluster_support::run(&["diff", c.dir(0), c.dir(1), c.dir(2)]);
    assert_eq!(r.code, 0, "{r:?}");
}

/// Node 3 is cut off; nodes 1 and 2 write, node 3 writes alone; once it is back every
/// message is on every node.
#[test]
fn a_partitioned_node_comes_back_and_nothing_is_lost() {
    let mut c = Cluster::new(3);
    c.start(0, &[]);
    c.start(1, &[0]);
    c.start(2, &[0]);
    let mut all: BTreeSet<String> = BTreeSet::new();
    for i in 0..3 {
        all.extend(c.append(i, &format!("a{i}"), 2).into_iter().map(|x| x.1));
    }
    assert!(c.converged(&[0, 1, 2], 60), "initial convergence");
    c.stop(2);
    all.extend(c.append(0, "b0", 3).into_iter().map(|x| x.1));
    all.extend(c.append(1, "b1", 3).into_iter().map(|x| x.1));
    // Node 3 restarted without peers: it writes alone.
    c.start(2, &[]);
    all.extend(c.append(2, "b2", 3).into_iter().map(|x| x.1));
    assert!(c.converged(&[0, 1], 60), "the majority side converges");
    let alone: BTreeSet<String> = c.list(2).into_iter().map(|r| r.1).collect();
    assert_eq!(alone.len(), 9, "node 3 alone sees its own writes only");
    c.stop(2);
    c.start(2, &[1]);
    assert!(
        c.converged(&[0, 1, 2], 60),
        "no convergence after the partition"
    );
    assert_eq!(all.len(), 15);
    assert_same_messages(&c, &[0, 1, 2], &all);
}

/// Nodes join in a chain (each given one earlier node's address); a new node given only
/// the first node's address finds every node and converges, and a change made on it
/// reaches all of them.
#[test]
fn a_node_given_one_address_finds_every_node() {
    let mut c = Cluster::new(4);
    c.start(0, &[]);
    c.start(1, &[0]);
    c.start(2, &[1]);
    for i in 0..3 {
        c.append(i, &format!("j{i}"), 2);
    }
    c.start(3, &[0]);
    // Node 4 learns of nodes 2 and 3 through node 1 (identify + kad).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let st = ok(&["--data-dir", c.dir(3), "--json", "status"]);
        let v: serde_json::Value = serde_json::from_str(&st).expect("json");
        let peers: BTreeMap<String, String> = v["peers"]
            .as_array()
            .expect("peers")
            .iter()
            .map(|p| {
                (
                    p["peer"].as_str().unwrap_or("").to_string(),
                    p["addr"].to_string(),
                )
            })
            .collect();
        if peers.len() == 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node 4 found only {peers:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let mine = c.append(3, "from4", 1);
    assert!(
        c.converged(&[0, 1, 2, 3], 60),
        "no convergence after the join"
    );
    let g = &mine[0].1;
    for i in 0..4 {
        assert!(
            c.list(i).iter().any(|r| &r.1 == g),
            "node {i} lacks node 4's message"
        );
        assert_eq!(c.list(i).len(), 7);
    }
}
