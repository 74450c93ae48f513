//! One node, imaplib: every command of the first slice with exact response checks, and
//! IDLE seeing another session's writes.

use super::common::{cluster, imap_addr, python};

#[test]
fn imaplib_session_on_one_node() {
    let mut c = cluster(1);
    c.start(0, &[]);
    let a = imap_addr(&c, 0);
    python("flow", &[&a]);
    // The IMAP writes are the node's: the CLI sees what imaplib left.
    let st = super::cluster_support::ok(&["--data-dir", c.dir(0), "status", "--account", "alice"]);
    assert!(st.contains("alice INBOX"), "{st}");
    assert!(st.contains("alice Work "), "{st}");
    c.stop(0);
}

#[test]
fn idle_sees_another_sessions_writes() {
    let mut c = cluster(1);
    c.start(0, &[]);
    let a = imap_addr(&c, 0);
    python("idle", &[&a, &a]);
    c.stop(0);
}

#[test]
fn curl_fetches_a_message_by_uid_with_its_exact_bytes() {
    let mut c = cluster(1);
    c.start(0, &[]);
    let a = imap_addr(&c, 0);
    // Bytes that a re-encoding would change: a bare LF line, 8-bit text, trailing spaces.
    let msg = b"From: a@example.org\r\nSubject: curl \xc3\xa9t\xc3\xa9\r\n\r\nline one  \r\nbare lf\nend\r\n";
    let file = c.tmp.path().join("m.eml");
    std::fs::write(&file, msg).unwrap();
    let out = super::cluster_support::ok(&[
        "--data-dir",
        c.dir(0),
        "append",
        "--account",
        "alice",
        "--mailbox",
        "INBOX",
        file.to_str().unwrap(),
    ]);
    let uid = out.split_whitespace().next().expect("a UID").to_string();
    let got = std::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "-u",
            &format!("alice:{}", super::common::PASSWORD),
            &format!("imap://{a}/INBOX;UID={uid}"),
        ])
        .output()
        .expect("curl runs");
    assert!(got.status.success(), "curl: {got:?}");
    assert_eq!(got.stdout, msg, "curl's bytes");
    c.stop(0);
}
