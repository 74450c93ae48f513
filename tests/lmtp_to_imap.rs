//! The whole path of a delivery: swaks delivers over LMTP into node A, and Python's
//! imaplib fetches the message from node B's IMAP server: the same bytes as stored on A
//! (the original behind the two trace headers), byte for byte.

mod cluster_support;

use cluster_support::{cmd, ok, s, Cluster};
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PASSWORD: &str = "correct horse";

/// CRLF lines, a dot-stuffed line, 8-bit bytes: what an MTA may hand over.
const MESSAGE: &[u8] = b"From: Sender <sender@example.org>\r\nTo: alice@example.org\r\nSubject: A to B\r\nMessage-ID: <a-to-b@example.org>\r\n\r\nfirst line\r\n.a line starting with a dot\r\nCaf\xc3\xa9\r\nlast line\r\n";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Fetches INBOX message `uid` from the IMAP server at `addr` with imaplib; its bytes.
const FETCH: &str = r#"
import imaplib, sys
host, port = sys.argv[1].rsplit(":", 1)
m = imaplib.IMAP4(host, int(port))
m.login("alice", sys.argv[2])
m.select("INBOX", readonly=True)
typ, data = m.uid("FETCH", sys.argv[3], "(BODY.PEEK[])")
assert typ == "OK", (typ, data)
sys.stdout.buffer.write(data[0][1])
m.logout()
"#;

fn add_login(dir: &str) {
    let mut c = cmd()
        .args([
            "--data-dir",
            dir,
            "user",
            "add",
            "--account",
            "alice",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .expect("dovetail user add");
    c.stdin
        .take()
        .expect("stdin")
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .expect("password");
    assert!(c.wait().expect("wait").success());
}

/// (uid, stored bytes) of alice's INBOX messages on `dir`.
fn stored(dir: &str) -> Vec<(u64, Vec<u8>)> {
    let out = ok(&[
        "--data-dir",
        dir,
        "--json",
        "list",
        "--account",
        "alice",
        "--mailbox",
        "INBOX",
    ]);
    let rows: Vec<Value> = serde_json::from_str(&out).expect("json");
    rows.iter()
        .map(|r| {
            let uid = r["uid"].as_u64().expect("uid");
            let o = cmd()
                .args([
                    "--data-dir",
                    dir,
                    "fetch",
                    "--account",
                    "alice",
                    "--mailbox",
                    "INBOX",
                    "--uid",
                    &uid.to_string(),
                ])
                .output()
                .expect("fetch");
            assert!(o.status.success(), "fetch: {o:?}");
            (uid, o.stdout)
        })
        .collect()
}

#[test]
fn swaks_into_node_a_is_fetched_byte_identical_over_imap_on_node_b() {
    let mut c = Cluster::new(2);
    add_login(c.dir(0));
    let lmtp = free_port();
    c.node_args = vec!["--lmtp".into(), format!("127.0.0.1:{lmtp}")];
    c.start(0, &[]);
    c.node_args = vec!["--imap".into(), "127.0.0.1:0".into()];
    c.start(1, &[0]);
    c.node_args.clear();

    let data = c.tmp.path().join("message.eml");
    // swaks ends the DATA with CRLF "." CRLF after the file's bytes, CRLF included: the
    // file leaves out the message's last CRLF, which that one supplies.
    std::fs::write(&data, &MESSAGE[..MESSAGE.len() - 2]).expect("write");
    let o = Command::new("swaks")
        .args([
            "--protocol",
            "LMTP",
            "--server",
            &format!("127.0.0.1:{lmtp}"),
            "--from",
            "sender@example.org",
            "--to",
            "alice@example.org",
            "--data",
            &format!("@{}", s(&data)),
        ])
        .output()
        .expect("swaks runs (scripts/test.sh installs it)");
    let transcript = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "swaks: {transcript}");
    assert!(transcript.contains("<-  250 "), "{transcript}");

    // On A at once (250 means durable there), on B once replicated.
    let on_a = stored(c.dir(0));
    assert_eq!(on_a.len(), 1);
    let (uid, bytes_a) = &on_a[0];
    assert!(
        bytes_a.ends_with(MESSAGE),
        "A keeps the original bytes: {:?}",
        String::from_utf8_lossy(bytes_a)
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while stored(c.dir(1)).len() != 1 {
        assert!(
            Instant::now() < deadline,
            "the message did not reach node B"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let imap_b = std::fs::read_to_string(c.nodes[1].dir.join("imap.addrs")).expect("imap.addrs");
    let imap_b = imap_b.lines().next().expect("an IMAP address").trim();
    let o = Command::new("python3")
        .args(["-c", FETCH, imap_b, PASSWORD, &uid.to_string()])
        .output()
        .expect("python3 runs");
    assert!(
        o.status.success(),
        "imaplib on B: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        o.stdout,
        *bytes_a,
        "IMAP on B serves exactly the bytes A stored:\n{}",
        String::from_utf8_lossy(&o.stdout)
    );
    c.stop(1);
    c.stop(0);
}
