//! mDNS discovery: two nodes in two throwaway network namespaces joined by a veth pair (mDNS
//! ignores loopback) find each other without any address given, and converge. The
//! namespaces hold only the veth pair: nothing reaches a host interface. Needs root and `ip`
//! (iproute2, which scripts/test.sh installs); without them the test fails rather than pass
//! without having run.

mod cluster_support;

use cluster_support::{ip, ok, run, s, Cluster};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Two namespaces and the veth pair between them; deleted on drop.
struct Netns {
    a: String,
    b: String,
}

impl Netns {
    fn create() -> Result<Netns, String> {
        let tag = std::process::id() % 100_000;
        let n = Netns {
            a: format!("dta{tag}"),
            b: format!("dtb{tag}"),
        };
        ip(&["netns", "add", &n.a])?;
        ip(&["netns", "add", &n.b])?;
        let (va, vb) = (format!("va{tag}"), format!("vb{tag}"));
        ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb])?;
        ip(&["link", "set", &va, "netns", &n.a])?;
        ip(&["link", "set", &vb, "netns", &n.b])?;
        for (ns, dev, addr) in [(&n.a, &va, "10.213.7.1/24"), (&n.b, &vb, "10.213.7.2/24")] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(n)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end inside it, and with it the pair.
        let _ = ip(&["netns", "del", &self.a]);
        let _ = ip(&["netns", "del", &self.b]);
    }
}

#[test]
fn two_nodes_on_a_lan_find_each_other_by_mdns() {
    let ns = Netns::create().unwrap_or_else(|why| {
        panic!("the mDNS test needs network namespaces (run as root with iproute2): {why}")
    });
    let mut c = Cluster::new(2);
    let a = c.append(0, "lan-a", 2);
    let b = c.append(1, "lan-b", 2);
    for (i, (nsname, addr)) in [(&ns.a, "10.213.7.1"), (&ns.b, "10.213.7.2")]
        .into_iter()
        .enumerate()
    {
        // `ip netns exec` runs the real binary inside the namespace; its control socket
        // is a path in the data dir, reachable from here.
        let node = c.dir(i).to_string();
        let args: Vec<String> = vec![
            "netns".into(),
            "exec".into(),
            nsname.clone(),
            cluster_support::BIN.into(),
            "--data-dir".into(),
            node,
            "node".into(),
            "--mdns".into(),
            "--listen".into(),
            format!("/ip4/{addr}/tcp/0"),
            "--renumber-grace".into(),
            "2".into(),
        ];
        let log = std::fs::File::create(&c.nodes[i].log).expect("log");
        let child = Command::new("ip")
            .args(&args)
            .env("RUST_LOG", "info,dovetail=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn");
        c.nodes[i].child = Some(child);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0..2 {
        while std::os::unix::net::UnixStream::connect(c.nodes[i].dir.join("control.sock")).is_err()
        {
            assert!(Instant::now() < deadline, "node {i} did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert!(
        c.converged(&[0, 1], 60),
        "the nodes did not find each other"
    );
    let l = c.list(0);
    assert_eq!(l.len(), 4);
    for g in a.iter().chain(b.iter()) {
        assert!(l.iter().any(|r| r.1 == g.1));
    }
    let st = ok(&["--data-dir", c.dir(0), "status"]);
    assert!(st.contains("PEERS 1"), "{st}");
    // `ip netns exec` passes SIGTERM on to the node (it execs it).
    for i in 0..2 {
        c.stop(i);
    }
    assert_eq!(
        run(&["diff", s(&c.nodes[0].dir), s(&c.nodes[1].dir)]).code,
        0
    );
}
