//! Operations: the config file (it drives a node, a flag overrides a key, an unknown key
//! is a one-line error with exit 2, the default lookup), the example configs, and
//! `--replicate-accounts`.

mod cluster_support;

use cluster_support::{cmd, ok, run, s, Cluster};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// The first line an LMTP server sends on `port` (`None`: nothing listens).
fn lmtp_greeting(port: u16) -> Option<String> {
    let s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    Some(line)
}

#[test]
fn a_config_file_drives_a_node_and_flags_override_it() {
    let mut c = Cluster::new(1);
    let (lmtp_file, lmtp_flag, http) = (free_port(), free_port(), free_port());
    let conf = c.tmp.path().join("dovetail.toml");
    std::fs::write(
        &conf,
        format!(
            "# a node from its config file\n\
             data-dir = \"{}\"\n\
             listen = [\"/ip4/127.0.0.1/tcp/0\"]\n\
             imap = [\"127.0.0.1:0\"]\n\
             lmtp = \"127.0.0.1:{lmtp_file}\"\n\
             http = \"127.0.0.1:{http}\"\n\
             anti-entropy = 1\n\
             renumber-grace = 2\n\
             max-message-size = 20000000\n",
            c.dir(0)
        ),
    )
    .expect("write config");
    let f = s(&conf).to_string();
    c.start_with(0, &["--config".into(), f.clone(), "node".into()]);
    let imap = std::fs::read_to_string(c.nodes[0].dir.join("imap.addrs")).expect("imap.addrs");
    assert!(imap.starts_with("127.0.0.1:"), "IMAP from the file: {imap}");
    let g = lmtp_greeting(lmtp_file).expect("LMTP on the file's address");
    assert!(g.starts_with("220 "), "{g}");
    assert!(
        TcpStream::connect(("127.0.0.1", http)).is_ok(),
        "HTTP on the file's address"
    );
    c.stop(0);

    // The flag wins over the key: LMTP on the flag's port only.
    c.start_with(
        0,
        &[
            "--config".into(),
            f.clone(),
            "node".into(),
            "--lmtp".into(),
            format!("127.0.0.1:{lmtp_flag}"),
        ],
    );
    assert!(lmtp_greeting(lmtp_flag).is_some_and(|g| g.starts_with("220 ")));
    assert!(
        lmtp_greeting(lmtp_file).is_none(),
        "the key's address is unused"
    );
    c.stop(0);

    // Other commands take the global keys (here data-dir) from the same file.
    let out = ok(&["--config", &f, "--json", "account", "list"]);
    assert!(out.contains("\"alice\""), "{out}");
}

#[test]
fn unknown_keys_and_bad_values_exit_2_with_one_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let conf = tmp.path().join("bad.toml");
    std::fs::write(&conf, "listen = []\nlmpt = \"127.0.0.1:2424\"\n").expect("write");
    let r = run(&["--config", s(&conf), "node"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(r.err.trim_end().lines().count(), 1, "one line: {:?}", r.err);
    assert!(r.err.contains("unknown key \"lmpt\""), "{:?}", r.err);
    assert!(r.err.contains("bad.toml"), "names the file: {:?}", r.err);

    std::fs::write(&conf, "anti-entropy = \"often\"\n").expect("write");
    let r = run(&["--config", s(&conf), "node"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(r.err.trim_end().lines().count(), 1, "one line: {:?}", r.err);
    assert!(r.err.contains("anti-entropy"), "{:?}", r.err);

    let r = run(&["--config", s(&tmp.path().join("missing.toml")), "node"]);
    assert_eq!(r.code, 2, "{r:?}");
}

#[test]
fn the_config_is_found_by_env_and_in_the_data_dir() {
    let c = Cluster::new(1);
    let dir = c.dir(0).to_string();
    // <data-dir>/dovetail.toml applies without --config.
    std::fs::write(c.nodes[0].dir.join("dovetail.toml"), "json = true\n").expect("write");
    let out = ok(&["--data-dir", &dir, "account", "list"]);
    assert_eq!(
        out.trim(),
        "[\n  \"alice\"\n]",
        "JSON from the data dir's file"
    );
    // $DOVETAIL_CONFIG names another file, which replaces it.
    let other = c.tmp.path().join("other.toml");
    std::fs::write(&other, format!("data-dir = \"{dir}\"\n")).expect("write");
    let o = cmd()
        .env("DOVETAIL_CONFIG", &other)
        .args(["account", "list"])
        .output()
        .expect("run");
    assert!(o.status.success(), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "alice");
}

#[test]
fn the_example_cluster_configs_parse() {
    let root = env!("CARGO_MANIFEST_DIR");
    for i in 1..=3 {
        let p = format!("{root}/examples/cluster/node{i}.toml");
        let cli = dovetail::cli::config::load(["dovetail", "--config", &p, "node"])
            .unwrap_or_else(|e| panic!("{p}: {e}"));
        assert_eq!(
            cli.data_dir.as_deref(),
            Some(std::path::Path::new("/var/lib/dovetail"))
        );
        let dovetail::cli::Cmd::Node(n) = cli.cmd else {
            panic!("node")
        };
        assert_eq!(n.listen.len(), 1, "{p}");
        assert_eq!(n.bootstrap.len(), 2, "{p}");
        assert!(
            n.lmtp.is_some() && n.http.is_some() && !n.imap.is_empty(),
            "{p}"
        );
        assert!(n.cluster_key.is_some(), "{p}");
    }
}

/// Appends `n` small messages to `account`'s INBOX on the stopped data dir `dir`.
fn append(dir: &str, tmp: &std::path::Path, account: &str, n: usize) {
    let mut files = Vec::new();
    for k in 0..n {
        let f = tmp.join(format!("{account}-{k}.eml"));
        std::fs::write(
            &f,
            format!("Subject: {account} {k}\r\nMessage-ID: <{account}.{k}@x>\r\n\r\nbody {k}\r\n"),
        )
        .expect("write");
        files.push(s(&f).to_string());
    }
    let mut args = vec![
        "--data-dir",
        dir,
        "append",
        "--account",
        account,
        "--mailbox",
        "INBOX",
    ];
    args.extend(files.iter().map(String::as_str));
    ok(&args);
}

fn accounts(dir: &str) -> Vec<String> {
    let out = ok(&["--data-dir", dir, "--json", "account", "list"]);
    serde_json::from_str(&out).expect("json")
}

fn count(dir: &str, account: &str) -> usize {
    let out = ok(&[
        "--data-dir",
        dir,
        "--json",
        "list",
        "--account",
        account,
        "--mailbox",
        "INBOX",
    ]);
    serde_json::from_str::<Vec<serde_json::Value>>(&out)
        .expect("json")
        .len()
}

#[test]
fn a_node_replicating_some_accounts_holds_only_those() {
    // Nodes 0 and 1 hold everything; node 2 only the accounts matching 'a*'.
    let mut c = Cluster::new(3);
    let tmp = c.tmp.path().to_path_buf();
    for a in ["anna", "bob"] {
        ok(&["--data-dir", c.dir(0), "account", "create", a]);
    }
    append(c.dir(0), &tmp, "anna", 3);
    append(c.dir(0), &tmp, "bob", 4);
    c.start(0, &[]);
    c.start(1, &[0]);
    c.node_args = vec!["--replicate-accounts".into(), "a*".into()];
    c.start(2, &[0, 1]);
    c.node_args.clear();
    // Node 2 gets anna's messages.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(accounts(c.dir(2)).contains(&"anna".to_string()) && count(c.dir(2), "anna") == 3) {
        assert!(Instant::now() < deadline, "anna did not reach node 2");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A write on the partial node reaches the full ones, which converge with each other.
    append_running(c.dir(2), &tmp, "alice");
    assert!(c.converged(&[0, 1], 60), "the full nodes converge");
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(c.dir(0), "alice") != 1 {
        assert!(
            Instant::now() < deadline,
            "alice's message did not leave node 2"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A few anti-entropy rounds later, node 2 still has no bob, and was never offered it.
    std::thread::sleep(Duration::from_secs(3));
    let mut held = accounts(c.dir(2));
    held.sort();
    assert_eq!(held, ["alice", "anna"]);
    assert_eq!(count(c.dir(1), "bob"), 4, "the full node has bob");
    assert!(
        c.log_lines(2, "not replicated here").is_empty(),
        "peers offered node 2 an account it does not replicate"
    );
    let st = ok(&["--data-dir", c.dir(2), "--json", "status"]);
    let v: serde_json::Value = serde_json::from_str(&st).expect("json");
    assert_eq!(v["sync"]["documents_behind"], 0, "not behind for bob: {st}");
    for i in 0..3 {
        c.stop(i);
    }
}

/// Appends one message to `account`'s INBOX through the running node on `dir`.
fn append_running(dir: &str, tmp: &std::path::Path, account: &str) {
    let f = tmp.join(format!("{account}-running.eml"));
    std::fs::write(&f, "Subject: from the partial node\r\n\r\nhello\r\n").expect("write");
    ok(&[
        "--data-dir",
        dir,
        "append",
        "--account",
        account,
        "--mailbox",
        "INBOX",
        s(&f),
    ]);
}
