//! TLS (`--imaps`, STARTTLS), the login policy and modified UTF-7 mailbox names, against
//! real clients: python3's imaplib and ssl (tests/imap/tls_client.py), curl, and the CLI.
//! The certificate is a self-signed one made for each test with rcgen.

use super::cluster_support::{ok, run, s, Cluster};
use super::common::{cluster, imap_addr, PASSWORD};
use std::net::IpAddr;
use std::path::PathBuf;

/// A self-signed certificate for `localhost`, 127.0.0.1 and `extra` (PEM files in the
/// cluster's temporary directory): (certificate, key).
fn certificate(c: &Cluster, extra: &[IpAddr]) -> (PathBuf, PathBuf) {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    names.extend(extra.iter().map(|ip| ip.to_string()));
    let ck = rcgen::generate_simple_self_signed(names).expect("a self-signed certificate");
    let (cert, key) = (c.tmp.path().join("cert.pem"), c.tmp.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).expect("write the certificate");
    std::fs::write(&key, ck.key_pair.serialize_pem()).expect("write the key");
    (cert, key)
}

fn tls_args(cert: &std::path::Path, key: &std::path::Path) -> Vec<String> {
    vec![
        "--tls-cert".into(),
        s(cert).into(),
        "--tls-key".into(),
        s(key).into(),
    ]
}

/// The first address node `i` wrote to `file` (`imap.addrs`, `imaps.addrs`).
fn addr_in(c: &Cluster, i: usize, file: &str) -> String {
    let f = c.nodes[i].dir.join(file);
    std::fs::read_to_string(&f)
        .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
        .lines()
        .next()
        .expect("an address")
        .trim()
        .to_string()
}

/// Runs a scenario of tests/imap/tls_client.py; panics with its output if it fails.
fn python(c: &Cluster, scenario: &str, cafile: &std::path::Path, addrs: &[&str]) {
    python_in(c, None, scenario, cafile, addrs)
}

/// [`python`], inside network namespace `netns` when given.
fn python_in(
    c: &Cluster,
    netns: Option<&str>,
    scenario: &str,
    cafile: &std::path::Path,
    addrs: &[&str],
) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/imap/tls_client.py");
    let mut p = std::process::Command::new(if netns.is_some() { "ip" } else { "python3" });
    if let Some(ns) = netns {
        p.args(["netns", "exec", ns, "python3"]);
    }
    let out = p
        .arg(script)
        .arg(scenario)
        .arg(cafile)
        .args(addrs)
        .output()
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "tls_client.py {scenario} failed:\n{text}\n--- node 0 log:\n{}",
        std::fs::read_to_string(&c.nodes[0].log).unwrap_or_default()
    );
    assert!(text.contains(&format!("ok {scenario}")), "{text}");
}

#[test]
fn imaps_starttls_and_plaintext_loopback_logins_with_imaplib() {
    let mut c = cluster(1);
    let (cert, key) = certificate(&c, &[]);
    c.node_args.extend(["--imaps".into(), "127.0.0.1:0".into()]);
    c.node_args.extend(tls_args(&cert, &key));
    c.start(0, &[]);
    let plain = imap_addr(&c, 0);
    let imaps = addr_in(&c, 0, "imaps.addrs");
    assert_ne!(plain, imaps);
    python(&c, "imaps", &cert, &[&imaps]);
    python(&c, "starttls", &cert, &[&plain]);
    python(&c, "plain", &cert, &[&plain]);
    python(&c, "injection", &cert, &[&plain]);
    // Each of imaps, starttls and plain appended one message.
    let list = ok(&[
        "--data-dir",
        c.dir(0),
        "list",
        "--account",
        "alice",
        "--mailbox",
        "INBOX",
    ]);
    assert_eq!(list.lines().count(), 3, "{list}");
    python(&c, "reset", &cert, &[&imaps]);
    c.stop(0);
}

#[test]
fn curl_fetches_over_imaps_with_the_exact_bytes() {
    let mut c = cluster(1);
    let (cert, key) = certificate(&c, &[]);
    c.node_args = vec!["--imaps".into(), "127.0.0.1:0".into()];
    c.node_args.extend(tls_args(&cert, &key));
    c.start(0, &[]);
    assert!(
        !c.nodes[0].dir.join("imap.addrs").exists(),
        "no --imap, no imap.addrs"
    );
    let a = addr_in(&c, 0, "imaps.addrs");
    let msg = b"From: a@example.org\r\nSubject: tls \xc3\xa9t\xc3\xa9\r\n\r\nline one  \r\nbare lf\nend\r\n";
    let file = c.tmp.path().join("m.eml");
    std::fs::write(&file, msg).unwrap();
    let out = ok(&[
        "--data-dir",
        c.dir(0),
        "append",
        "--account",
        "alice",
        "--mailbox",
        "INBOX",
        s(&file),
    ]);
    let uid = out.split_whitespace().next().expect("a UID").to_string();
    let curl = |extra: &[&str]| {
        std::process::Command::new("curl")
            .args(["-sS", "--max-time", "20"])
            .args(extra)
            .args([
                "-u",
                &format!("alice:{PASSWORD}"),
                &format!("imaps://{a}/INBOX;UID={uid}"),
            ])
            .output()
            .expect("curl runs")
    };
    let got = curl(&["--cacert", s(&cert)]);
    assert!(got.status.success(), "curl: {got:?}");
    assert_eq!(got.stdout, msg, "curl's bytes");
    // Without the certificate, curl refuses the server (exit 60: peer certificate).
    let got = curl(&[]);
    assert_eq!(
        got.status.code(),
        Some(60),
        "curl without --cacert: {got:?}"
    );
    c.stop(0);
}

/// A throwaway network namespace whose only interfaces besides `lo` are a veth pair, one
/// end with 10.213.9.1/24: a client there reaching a server there is not on loopback, and nothing
/// leaves the namespace. Deleted on drop.
struct Netns(String);

/// `ip ARGS`, failing the test (never skipping it) where namespaces cannot be made.
fn ip(args: &[&str]) {
    if let Err(e) = super::cluster_support::ip(args) {
        panic!("{e} (this test needs root and iproute2)");
    }
}

impl Netns {
    fn create() -> Netns {
        let ns = Netns(format!("dtl{}", std::process::id() % 100_000));
        ip(&["netns", "add", &ns.0]);
        // A veth pair with both ends inside (the kernel may lack the dummy driver).
        ip(&[
            "-n", &ns.0, "link", "add", "d0", "type", "veth", "peer", "name", "d1",
        ]);
        ip(&["-n", &ns.0, "addr", "add", "10.213.9.1/24", "dev", "d0"]);
        ip(&["-n", &ns.0, "link", "set", "d0", "up"]);
        ip(&["-n", &ns.0, "link", "set", "d1", "up"]);
        ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .output();
    }
}

#[test]
fn non_loopback_clients_log_in_only_over_tls_unless_allowed() {
    let ns = Netns::create();
    let ip: IpAddr = "10.213.9.1".parse().expect("an address");
    let mut c = cluster(1);
    c.netns = Some(ns.0.clone());
    let (cert, key) = certificate(&c, &[ip]);
    c.node_args = vec!["--imap".into(), format!("{ip}:0")];
    c.node_args.extend(tls_args(&cert, &key));
    c.start(0, &[]);
    let a = imap_addr(&c, 0);
    assert!(a.starts_with("10.213.9.1:"), "{a}");
    python_in(&c, Some(&ns.0), "remote", &cert, &[&a]);
    c.stop(0);
    // The admin's flag: plaintext logins from anywhere (no certificate needed).
    c.node_args = vec![
        "--imap".into(),
        format!("{ip}:0"),
        "--imap-allow-plaintext-login".into(),
    ];
    c.start(0, &[]);
    let a = imap_addr(&c, 0);
    python_in(&c, Some(&ns.0), "remote_allowed", &cert, &[&a]);
    c.stop(0);
}

#[test]
fn bad_tls_settings_fail_the_start_with_exit_2_and_one_line() {
    let c = cluster(1);
    let (cert, key) = certificate(&c, &[]);
    let missing = c.tmp.path().join("missing.pem");
    let garbage = c.tmp.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let node = |extra: &[&str]| {
        let mut a: Vec<&str> = vec!["--data-dir", c.dir(0), "node", "--imap", "127.0.0.1:0"];
        a.extend(extra.iter().copied());
        run(&a)
    };
    let one_line = |r: &super::cluster_support::Run, needle: &str| {
        assert_eq!(r.code, 2, "{r:?}");
        assert_eq!(r.err.trim_end().lines().count(), 1, "one line: {r:?}");
        assert!(r.err.starts_with("dovetail: error: "), "{r:?}");
        assert!(r.err.contains(needle), "{needle:?} in {r:?}");
    };
    let r = node(&["--tls-cert", s(&missing), "--tls-key", s(&key)]);
    one_line(
        &r,
        &format!("--tls-cert {}: No such file", missing.display()),
    );
    let r = node(&["--tls-cert", s(&garbage), "--tls-key", s(&key)]);
    one_line(&r, "no CERTIFICATE");
    let r = node(&["--tls-cert", s(&cert), "--tls-key", s(&cert)]);
    one_line(&r, "--tls-key");
    let r = node(&["--imaps", "127.0.0.1:0"]);
    one_line(&r, "--imaps needs --tls-cert");
    // clap's own usage error for a lone --tls-cert: exit 2 too.
    let r = node(&["--tls-cert", s(&cert)]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.err.contains("--tls-key"), "{r:?}");
    assert!(!c.nodes[0].dir.join("imap.addrs").exists(), "nothing bound");
}

#[test]
fn modified_utf7_names_round_trip_between_imap_and_the_cli() {
    let mut c = cluster(1);
    let (cert, _) = certificate(&c, &[]);
    // Made by the CLI, in UTF-8, before the node runs.
    ok(&[
        "--data-dir",
        c.dir(0),
        "mailbox",
        "create",
        "--account",
        "alice",
        "Entwürfe",
    ]);
    c.start(0, &[]);
    let a = imap_addr(&c, 0);
    python(&c, "mutf7", &cert, &[&a]);
    // What imaplib made in modified UTF-7 the CLI shows in UTF-8.
    let list = ok(&[
        "--data-dir",
        c.dir(0),
        "mailbox",
        "list",
        "--account",
        "alice",
    ]);
    let mut names: Vec<&str> = list.lines().collect();
    names.sort();
    assert_eq!(
        names,
        ["Café/日本語", "Entwürfe", "INBOX", "Äpfel", "Ärger"],
        "{list}"
    );
    c.stop(0);
}
