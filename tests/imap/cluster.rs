//! Two nodes: the login replicates with the account, and an IDLE session on one node sees
//! a message appended through the other node's IMAP, with its exact bytes.

use super::cluster_support::{ok, run};
use super::common::{add_user, cluster, imap_addr, python, user, user_run, PASSWORD};

#[test]
fn login_replicates_with_offline_sync() {
    let mut c = cluster(2);
    // Node 1 does not know the password yet.
    c.start(1, &[]);
    let b = imap_addr(&c, 1);
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import imaplib,sys; m=imaplib.IMAP4(*sys.argv[1].rsplit(':',1)); m.login('alice', sys.argv[2])",
            &b,
            PASSWORD,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "login before the sync: {out:?}");
    c.stop(1);
    ok(&["sync", c.dir(0), c.dir(1)]);
    c.start(1, &[]);
    let b = imap_addr(&c, 1);
    python("login", &[&b]);
    c.stop(1);
    // passwd and del, on a stopped data dir and through a running node's control socket.
    let again = user_run(c.dir(0), &["add", "--account", "alice"], "x");
    assert!(!again.status.success(), "a second add is refused");
    user(c.dir(0), &["passwd", "--account", "alice"], "new password");
    c.start(0, &[]);
    user(c.dir(0), &["passwd", "--account", "alice"], PASSWORD);
    python("login", &[&imap_addr(&c, 0)]);
    user(c.dir(0), &["del", "--account", "alice"], "");
    let r = user_run(c.dir(0), &["del", "--account", "alice"], "");
    assert!(!r.status.success(), "del of a removed login is refused");
    let r = user_run(c.dir(0), &["add", "--account", "nobody"], "pw");
    assert!(
        !r.status.success(),
        "a login for an unknown account is refused"
    );
    c.stop(0);
    add_user(c.dir(0));
    let _ = run(&["--data-dir", c.dir(0), "status"]);
}

#[test]
fn idle_on_one_node_sees_an_append_on_the_other() {
    let mut c = cluster(2);
    ok(&["sync", c.dir(0), c.dir(1)]);
    c.start(0, &[]);
    c.start(1, &[0]);
    let (a, b) = (imap_addr(&c, 0), imap_addr(&c, 1));
    // The session on node 1 idles; the message is appended through node 0.
    python("idle", &[&b, &a]);
    assert!(c.converged(&[0, 1], 30), "the nodes converge");
    c.stop(1);
    c.stop(0);
}

#[test]
fn sessions_on_two_nodes_appending_at_once_see_every_message_once() {
    let mut c = cluster(2);
    ok(&["sync", c.dir(0), c.dir(1)]);
    c.start(0, &[]);
    c.start(1, &[0]);
    let (a, b) = (imap_addr(&c, 0), imap_addr(&c, 1));
    python("concurrent", &[&a, &b]);
    assert!(c.converged(&[0, 1], 30), "the nodes converge");
    c.stop(1);
    c.stop(0);
}

#[test]
fn condstore_on_one_node_and_a_client_moving_to_another() {
    let mut c = cluster(2);
    ok(&["sync", c.dir(0), c.dir(1)]);
    c.start(0, &[]);
    c.start(1, &[0]);
    let (a, b) = (imap_addr(&c, 0), imap_addr(&c, 1));
    python("condstore", &[&a, &b]);
    c.stop(1);
    c.stop(0);
}
