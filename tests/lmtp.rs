//! LMTP delivery into running nodes: swaks (Debian's `swaks`) as an independent client,
//! several recipients in one transaction, replication of what was delivered, and raw
//! sessions for bad input, the size limit, pipelining, a unix socket and an abandoned DATA.

mod cluster_support;

use cluster_support::{cmd, ok, run, s, Cluster};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

/// A message with a line that must be dot-stuffed on the wire, CRLF line ends, and 8-bit
/// bytes in the body.
const MESSAGE: &[u8] = b"From: Sender <sender@example.org>\r\nTo: alice@example.org\r\nSubject: over LMTP\r\nMessage-ID: <lmtp-1@example.org>\r\n\r\nfirst line\r\n.a line starting with a dot\r\n..two dots\r\nCaf\xc3\xa9 8-bit\r\nlast line\r\n";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Starts node `i` with `--lmtp ADDR` (and the given bootstrap nodes).
fn start_lmtp(c: &mut Cluster, i: usize, bootstrap: &[usize], lmtp: &str) {
    c.node_args = vec!["--lmtp".into(), lmtp.into()];
    c.start(i, bootstrap);
    c.node_args.clear();
}

/// The messages of a mailbox on node dir `dir`: (uid, flags, bytes).
fn messages(dir: &str, account: &str, mailbox: &str) -> Vec<(u64, Vec<u8>)> {
    let out = ok(&[
        "--data-dir",
        dir,
        "--json",
        "list",
        "--account",
        account,
        "--mailbox",
        mailbox,
    ]);
    let rows: Value = serde_json::from_str(&out).expect("json");
    rows.as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            let uid = r["uid"].as_u64().expect("uid");
            let o = cmd()
                .args([
                    "--data-dir",
                    dir,
                    "fetch",
                    "--account",
                    account,
                    "--mailbox",
                    mailbox,
                    "--uid",
                    &uid.to_string(),
                ])
                .output()
                .expect("fetch");
            assert!(o.status.success(), "fetch failed");
            (uid, o.stdout)
        })
        .collect()
}

/// Asserts `stored` is `original` behind exactly the two trace headers dovetail adds, with
/// `from` as the Return-Path.
fn assert_delivered(stored: &[u8], original: &[u8], from: &str) {
    assert!(
        stored.ends_with(original),
        "the delivered message does not end with the original bytes:\n{}",
        String::from_utf8_lossy(stored)
    );
    let added = std::str::from_utf8(&stored[..stored.len() - original.len()]).expect("ascii");
    let expect_start = format!("Return-Path: <{from}>\r\nReceived: from ");
    assert!(added.starts_with(&expect_start), "added headers: {added:?}");
    assert!(added.contains("(dovetail) with LMTP;\r\n\t"), "{added:?}");
    assert!(added.ends_with(" +0000\r\n"), "{added:?}");
    // Return-Path and one Received field (with its two continuation lines), nothing else.
    assert_eq!(added.matches("\r\n").count(), 4, "{added:?}");
}

fn swaks() -> Command {
    // The test must fail, not skip, without swaks: scripts/test.sh installs it.
    let found = Command::new("swaks").arg("--version").output();
    assert!(
        found.is_ok(),
        "swaks is not installed (apt-get install swaks; scripts/test.sh does it)"
    );
    Command::new("swaks")
}

#[test]
fn swaks_delivers_to_several_recipients_and_it_replicates() {
    let mut c = Cluster::new(2);
    for i in 0..2 {
        ok(&[
            "--data-dir",
            c.dir(i),
            "account",
            "create",
            "bob@example.org",
        ]);
    }
    ok(&[
        "--data-dir",
        c.dir(0),
        "mailbox",
        "create",
        "--account",
        "alice",
        "Work",
    ]);
    let port = free_port();
    start_lmtp(&mut c, 0, &[], &format!("127.0.0.1:{port}"));
    c.start(1, &[0]);
    let data = c.tmp.path().join("message.eml");
    // swaks ends the data with CRLF . CRLF itself: a file ending in CRLF would gain an
    // empty line.
    std::fs::write(&data, &MESSAGE[..MESSAGE.len() - 2]).expect("write message");
    let out = swaks()
        .args([
            "--protocol",
            "LMTP",
            "--server",
            &format!("127.0.0.1:{port}"),
            "--helo",
            "mx.example.org",
            "--from",
            "sender@example.org",
            "--to",
            "alice@example.org,nobody@example.org,bob@example.org,alice+Work@example.org",
            "--data",
            &format!("@{}", s(&data)),
        ])
        .output()
        .expect("run swaks");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // swaks exits non-zero when a recipient is refused, with the transaction going on for
    // the others: the transcript is what counts.
    assert!(
        text.contains("<** 550 5.1.1 <nobody@example.org> no such user"),
        "{text}"
    );
    for who in [
        "alice@example.org",
        "bob@example.org",
        "alice+Work@example.org",
    ] {
        assert!(
            text.contains(&format!("<~  250 2.0.0 <{who}> delivered"))
                || text.contains(&format!("<-  250 2.0.0 <{who}> delivered")),
            "no 250 for {who} after DATA:\n{text}"
        );
    }
    let from = "sender@example.org";
    for (account, mailbox) in [
        ("alice", "INBOX"),
        ("bob@example.org", "INBOX"),
        ("alice", "Work"),
    ] {
        let m = messages(c.dir(0), account, mailbox);
        assert_eq!(m.len(), 1, "{account}/{mailbox} on node 0");
        assert_delivered(&m[0].1, MESSAGE, from);
    }
    // All three copies are one blob: the trace headers are the same for every recipient.
    let a = &messages(c.dir(0), "alice", "INBOX")[0].1;
    assert_eq!(a, &messages(c.dir(0), "bob@example.org", "INBOX")[0].1);
    assert!(c.converged(&[0, 1], 30), "nodes did not converge");
    for (account, mailbox) in [
        ("alice", "INBOX"),
        ("bob@example.org", "INBOX"),
        ("alice", "Work"),
    ] {
        let m = messages(c.dir(1), account, mailbox);
        assert_eq!(m.len(), 1, "{account}/{mailbox} on node 1");
        assert_eq!(&m[0].1, a, "node 1 holds other bytes");
    }
    c.stop(0);
    c.stop(1);
}

/// A raw LMTP client: sends lines, reads replies.
struct Client {
    r: BufReader<Box<dyn Read>>,
    w: Box<dyn Write>,
}

impl Client {
    fn tcp(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let r = s.try_clone().expect("clone");
        Client::new(Box::new(r), Box::new(s))
    }

    fn unix(path: &std::path::Path) -> Client {
        let s = std::os::unix::net::UnixStream::connect(path).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let r = s.try_clone().expect("clone");
        Client::new(Box::new(r), Box::new(s))
    }

    fn new(r: Box<dyn Read>, w: Box<dyn Write>) -> Client {
        let mut c = Client {
            r: BufReader::new(r),
            w,
        };
        assert!(c.reply().starts_with("220 "));
        c
    }

    /// One whole reply (the last line of a multi-line one), or "" at EOF.
    fn reply(&mut self) -> String {
        loop {
            let mut l = String::new();
            if self.r.read_line(&mut l).expect("read reply") == 0 {
                return String::new();
            }
            if l.as_bytes().get(3) != Some(&b'-') {
                return l.trim_end().to_string();
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).expect("send");
        self.w.flush().expect("flush");
    }

    /// Sends a command line, returns its reply.
    fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }
}

#[test]
fn raw_sessions_bad_input_size_limit_pipelining_and_unix_socket() {
    let mut c = Cluster::new(1);
    let port = free_port();
    // The limit counts the stored message, trace headers included.
    start_lmtp(&mut c, 0, &[], &format!("127.0.0.1:{port}"));
    let mut k = Client::tcp(port);
    // Bad commands: an error each, and the session goes on.
    assert!(k.cmd("MAIL FROM:<a@b>").starts_with("503 5.5.1"));
    assert!(k.cmd("HELO x").starts_with("500 "));
    assert!(k.cmd("LHLO test.example").starts_with("250 SIZE 67108864"));
    assert!(k.cmd("FROB").starts_with("500 5.5.2"));
    assert!(k.cmd("RCPT TO:<alice@x>").starts_with("503 5.5.1"));
    assert!(k.cmd("DATA").starts_with("503 5.5.1"));
    assert!(k.cmd("MAIL FROM:alice").starts_with("501 5.5.4"));
    assert!(k
        .cmd(&format!("NOOP {}", "x".repeat(10_000)))
        .starts_with("500 5.5.2"));
    k.send(b"\xff\xfe\r\n");
    assert!(k.reply().starts_with("501 "));
    assert!(k
        .cmd("MAIL FROM:<a@b> SIZE=99999999999")
        .starts_with("552 5.3.4"));
    assert!(k.cmd("MAIL FROM:<a@b>").starts_with("250 2.1.0"));
    assert!(k.cmd("RCPT TO:<nobody@x>").starts_with("550 5.1.1"));
    assert!(
        k.cmd("DATA").starts_with("503 5.5.1"),
        "DATA with no valid recipient"
    );
    assert!(k.cmd("RSET").starts_with("250 "));
    // A body that is not a mail message: refused per recipient, nothing stored.
    assert!(k.cmd("MAIL FROM:<a@b>").starts_with("250"));
    assert!(k.cmd("RCPT TO:<alice@x>").starts_with("250"));
    assert!(k.cmd("DATA").starts_with("354"));
    assert!(k.cmd("just text, no header\r\n.").starts_with("554 5.6.0"));
    // Pipelined: a whole transaction in one write, replies in order.
    k.send(b"MAIL FROM:<p@example.org>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<ghost@example.org>\r\nRCPT TO:<ALICE@example.org>\r\nDATA\r\n");
    assert!(k.reply().starts_with("250 2.1.0"));
    assert!(k.reply().starts_with("250 2.1.5"));
    assert!(k.reply().starts_with("550 5.1.1"));
    assert!(k.reply().starts_with("250 2.1.5"));
    assert!(k.reply().starts_with("354"));
    k.send(b"Subject: pipelined\r\n\r\nbody\r\n.\r\nNOOP\r\n");
    // One reply per accepted recipient (two naming the same mailbox share one copy).
    assert!(k
        .reply()
        .starts_with("250 2.0.0 <alice@example.org> delivered"));
    assert!(k
        .reply()
        .starts_with("250 2.0.0 <ALICE@example.org> delivered"));
    assert!(k.reply().starts_with("250 2.0.0 OK"));
    assert_eq!(messages(c.dir(0), "alice", "INBOX").len(), 1);
    // The same split into one-byte writes: commands and the DATA block are reassembled.
    {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let r = s.try_clone().expect("clone");
        let mut slow = Client::new(Box::new(r), Box::new(s));
        let script = b"LHLO slow\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<alice>\r\nDATA\r\nSubject: slow\r\n\r\n..dot\r\n.\r\n";
        for b in script {
            slow.send(&[*b]);
        }
        for want in [
            "250 SIZE",
            "250 2.1.0",
            "250 2.1.5",
            "354",
            "250 2.0.0 <alice> delivered",
        ] {
            let got = slow.reply();
            assert!(got.starts_with(want), "{got:?} instead of {want:?}");
        }
        let m = messages(c.dir(0), "alice", "INBOX");
        assert!(
            m[1].1.ends_with(b"\r\nSubject: slow\r\n\r\n.dot\r\n"),
            "{:?}",
            String::from_utf8_lossy(&m[1].1)
        );
    }
    // A client that goes away mid-DATA leaves nothing behind.
    {
        let mut gone = Client::tcp(port);
        gone.cmd("LHLO x");
        gone.cmd("MAIL FROM:<a@b>");
        gone.cmd("RCPT TO:<alice@x>");
        assert!(gone.cmd("DATA").starts_with("354"));
        gone.send(b"Subject: half\r\n\r\nhalf a message\r\n");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(messages(c.dir(0), "alice", "INBOX").len(), 2);
    assert!(k.cmd("QUIT").starts_with("221"));
    c.stop(0);

    // The size limit: with --max-message-size (a global flag), a larger message is
    // refused with 552 5.3.4 and the session goes on.
    let sock = c.tmp.path().join("lmtp.sock");
    let limit = 20_000;
    let node = cmd()
        .args([
            "--data-dir",
            c.dir(0),
            "--max-message-size",
            &limit.to_string(),
            "node",
            "--lmtp",
            &format!("unix:{}", s(&sock)),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start node");
    let mut node = KillOnDrop(node);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "LMTP socket never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut u = Client::unix(&sock);
    assert!(u
        .cmd("LHLO local")
        .starts_with(&format!("250 SIZE {limit}")));
    assert!(u.cmd("MAIL FROM:<big@example.org>").starts_with("250"));
    assert!(u.cmd("RCPT TO:<alice>").starts_with("250"));
    assert!(u.cmd("DATA").starts_with("354"));
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    for _ in 0..2000 {
        big.extend_from_slice(b"0123456789012345678901234567890123456789\r\n");
    }
    u.send(&big);
    assert!(u.cmd(".").starts_with("552 5.3.4"));
    assert!(u.cmd("MAIL FROM:<small@example.org>").starts_with("250"));
    assert!(u.cmd("RCPT TO:<alice>").starts_with("250"));
    assert!(u.cmd("DATA").starts_with("354"));
    // On the wire a line starting with a dot gets one more (dot-stuffing).
    let stuffed = String::from_utf8_lossy(MESSAGE).replace("\r\n.", "\r\n..");
    u.send(stuffed.as_bytes());
    assert!(u.cmd(".").starts_with("250 2.0.0 <alice> delivered"));
    // Shutdown while a session is open: the node says 421 and exits 0.
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(node.0.id() as i32, libc::SIGTERM);
    }
    assert!(u.reply().starts_with("421 4.3.2"));
    let st = node.0.wait().expect("wait");
    assert!(st.success(), "node exited with {st}");
    assert!(!sock.exists(), "the LMTP socket file was not removed");
    let m = messages(c.dir(0), "alice", "INBOX");
    assert_eq!(m.len(), 3, "the oversized message was stored");
    assert_delivered(&m[2].1, MESSAGE, "small@example.org");
    let r = run(&["--data-dir", c.dir(0), "node", "--lmtp", "nonsense"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.err.contains("--lmtp \"nonsense\""), "{r:?}");
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
