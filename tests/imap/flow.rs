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
