//! Cluster membership: a node holding another cluster key, or off the allowlist, gets no
//! data and changes nothing; garbage on the wire leaves a node serving.

mod cluster_support;

use cluster_support::{ok, run, s, Cluster};
use std::io::Write;
use std::time::Duration;

fn peers(c: &Cluster, i: usize) -> usize {
    let st = ok(&["--data-dir", c.dir(i), "--json", "status"]);
    let v: serde_json::Value = serde_json::from_str(&st).expect("json");
    v["peers"].as_array().expect("peers").len()
}

fn peer_id(addr: &str) -> String {
    addr.rsplit('/').next().expect("peer id").to_string()
}

#[test]
fn nodes_without_the_cluster_key_or_off_the_allowlist_get_nothing() {
    let mut c = Cluster::new(4);
    let key = c.tmp.path().join("cluster.key");
    let other = c.tmp.path().join("other.key");
    ok(&["keygen", s(&key)]);
    ok(&["keygen", s(&other)]);
    // keygen refuses to overwrite a key.
    assert_eq!(run(&["keygen", s(&key)]).code, 2);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let secret = c.append(0, "secret", 3);
    c.append(1, "one", 1);
    let k = key.to_str().expect("utf-8").to_string();
    c.node_args = vec!["--cluster-key".into(), k.clone()];
    c.start(1, &[]);
    let p1 = peer_id(c.nodes[1].addr.as_ref().expect("addr"));
    // Node 0 admits only node 1.
    c.node_args = vec!["--cluster-key".into(), k.clone(), "--allow-peer".into(), p1];
    c.start(0, &[1]);
    assert!(c.converged(&[0, 1], 60), "nodes with the key converge");
    // Node 2: another key. Node 3: the right key, but not on node 0's allowlist.
    c.node_args = vec![
        "--cluster-key".into(),
        other.to_str().expect("utf-8").into(),
    ];
    c.start(2, &[0]);
    c.node_args = vec!["--cluster-key".into(), k];
    c.start(3, &[0]);
    std::thread::sleep(Duration::from_secs(5));
    for outsider in [2, 3] {
        let l = c.list(outsider);
        assert!(
            !l.iter().any(|r| secret.iter().any(|s| s.1 == r.1)),
            "node {outsider} got node 0's messages"
        );
    }
    assert_eq!(c.list(2).len(), 0);
    assert_eq!(peers(&c, 0), 1, "node 0 keeps only its allowed peer");
    assert_eq!(
        peers(&c, 2),
        0,
        "the node with another key connects to nobody"
    );
    assert!(
        !c.log_lines(0, "refused").is_empty(),
        "node 0 logs the refused peers"
    );
    // Nothing the outsiders hold reached node 0.
    assert_eq!(c.list(0).len(), 4);
}

#[test]
fn garbage_on_the_wire_leaves_the_node_serving() {
    let mut c = Cluster::new(2);
    c.start(0, &[]);
    let addr = c.nodes[0].addr.clone().expect("addr");
    // /ip4/127.0.0.1/tcp/PORT/p2p/ID
    let port: u16 = addr
        .split('/')
        .nth(4)
        .and_then(|p| p.parse().ok())
        .expect("port");
    for junk in [
        vec![0xffu8; 4096],
        b"/multistream/1.0.0\n".to_vec(),
        (100_000_000u32).to_be_bytes().to_vec(),
    ] {
        if let Ok(mut sock) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = sock.write_all(&junk);
            let _ = sock.flush();
        }
    }
    c.append(1, "after", 2);
    c.start(1, &[0]);
    assert!(
        c.converged(&[0, 1], 60),
        "the node still syncs after garbage"
    );
    assert_eq!(c.list(0).len(), 2);
}
