//! mbsync (Debian's isync) syncs a dovetail mailbox to a local Maildir and back, while
//! messages are appended through another node; the Maildir ends with exactly the
//! mailbox's messages and flags, and a second run changes nothing.

use super::cluster_support::{ok, Cluster};
use super::common::{cluster, imap_addr, PASSWORD};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// A message as both sides can show it: its bytes with LF line ends (mbsync writes
/// Maildir files with LF) and without mbsync's X-TUID header, and its system flags as
/// Maildir letters.
type Content = (Vec<u8>, String);

fn normalize(bytes: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(bytes).replace("\r\n", "\n");
    text.lines()
        .filter(|l| !l.starts_with("X-TUID: "))
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}

fn letters(flags: &[String]) -> String {
    let mut out: Vec<char> = flags
        .iter()
        .filter_map(|f| match f.as_str() {
            "\\Draft" => Some('D'),
            "\\Flagged" => Some('F'),
            "\\Answered" => Some('R'),
            "\\Seen" => Some('S'),
            "\\Deleted" => Some('T'),
            _ => None,
        })
        .collect();
    out.sort();
    out.into_iter().collect()
}

/// The Maildir's messages, counted by content.
fn maildir(dir: &Path) -> BTreeMap<Content, usize> {
    let mut out = BTreeMap::new();
    for sub in ["cur", "new"] {
        let Ok(rd) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let flags = name.rsplit_once(":2,").map_or("", |(_, f)| f);
            let mut f: Vec<char> = flags.chars().filter(|c| c.is_ascii_uppercase()).collect();
            f.sort();
            let key = (
                normalize(&std::fs::read(&p).unwrap()),
                f.into_iter().collect(),
            );
            *out.entry(key).or_insert(0) += 1;
        }
    }
    out
}

/// Node `i`'s INBOX, counted by content.
fn mailbox(c: &Cluster, i: usize) -> BTreeMap<Content, usize> {
    let mut out = BTreeMap::new();
    for (uid, _, flags) in c.list(i) {
        let body = super::cluster_support::cmd()
            .args(["--data-dir", c.dir(i), "fetch", "--account", "alice"])
            .args(["--mailbox", "INBOX", "--uid", &uid.to_string()])
            .output()
            .expect("fetch");
        assert!(body.status.success(), "{body:?}");
        *out.entry((normalize(&body.stdout), letters(&flags)))
            .or_insert(0) += 1;
    }
    out
}

fn mbsync(config: &Path) -> String {
    let out = Command::new("mbsync")
        .args(["-c", config.to_str().unwrap(), "-a"])
        .output()
        .expect("mbsync runs (apt-get install isync)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "mbsync failed: {text}");
    text
}

#[test]
fn mbsync_round_trip_while_another_node_writes() {
    let mut c = cluster(2);
    ok(&["sync", c.dir(0), c.dir(1)]);
    c.start(0, &[]);
    c.start(1, &[0]);
    let addr = imap_addr(&c, 0);
    let (host, port) = addr.rsplit_once(':').unwrap();
    c.append(0, "before", 3);
    let uid1 = c.list(0)[0].0.to_string();
    ok(&[
        "--data-dir",
        c.dir(0),
        "flags",
        "--account",
        "alice",
        "--mailbox",
        "INBOX",
        "--uid",
        &uid1,
        "+\\Flagged \\Seen",
    ]);
    let md = c.tmp.path().join("mail");
    std::fs::create_dir_all(&md).unwrap();
    let config = c.tmp.path().join("mbsyncrc");
    std::fs::write(
        &config,
        format!(
            "IMAPAccount dt\nHost {host}\nPort {port}\nUser alice\nPass \"{PASSWORD}\"\n\
             SSLType None\nAuthMechs LOGIN PLAIN\n\n\
             IMAPStore far\nAccount dt\n\n\
             MaildirStore near\nPath {md}/\nInbox {md}/INBOX\n\n\
             Channel ch\nFar :far:\nNear :near:\nPatterns INBOX\nCreate Both\nExpunge Both\n\
             SyncState *\nSync All\n",
            md = md.display()
        ),
    )
    .unwrap();
    // First run, with appends through node 1 at the same time.
    let writer = {
        let dir = c.dir(1).to_string();
        let tmp = c.tmp.path().to_path_buf();
        std::thread::spawn(move || {
            for k in 0..5 {
                let p = tmp.join(format!("during-{k}.eml"));
                std::fs::write(
                    &p,
                    format!("From: b@example.org\r\nSubject: during {k}\r\n\r\nbody {k}\r\n"),
                )
                .unwrap();
                ok(&[
                    "--data-dir",
                    &dir,
                    "append",
                    "--account",
                    "alice",
                    "--mailbox",
                    "INBOX",
                    p.to_str().unwrap(),
                ]);
            }
        })
    };
    mbsync(&config);
    writer.join().unwrap();
    // Changes made in the Maildir go back: a new message and a flag.
    let inbox = md.join("INBOX");
    std::fs::write(
        inbox.join("new").join("1700000000.local.host"),
        "From: me@example.org\nSubject: written locally\n\nlocal body\n",
    )
    .unwrap();
    // Mark one unflagged message answered (\Answered = R): a Maildir rename.
    let plain = ["new", "cur"]
        .iter()
        .flat_map(|d| std::fs::read_dir(inbox.join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.rsplit_once(":2,").is_none_or(|(_, f)| f.is_empty()) && !n.starts_with("1700000000.")
        })
        .expect("a message without flags");
    let base = plain.file_name().unwrap().to_string_lossy().into_owned();
    let base = base.split(":2,").next().unwrap().to_string();
    std::fs::rename(&plain, inbox.join("cur").join(format!("{base}:2,R"))).unwrap();
    assert!(c.converged(&[0, 1], 30), "the nodes converge");
    mbsync(&config);
    let want = mailbox(&c, 0);
    assert_eq!(
        want.values().sum::<usize>(),
        9,
        "3 + 5 + 1 messages: {want:?}"
    );
    assert_eq!(
        maildir(&inbox),
        want,
        "the Maildir holds exactly the mailbox"
    );
    assert!(
        want.keys().any(|(_, f)| f == "R"),
        "the local flag reached the node"
    );
    // A second run is a no-op.
    let files = |d: &Path| {
        let mut v: Vec<String> = ["cur", "new"]
            .iter()
            .flat_map(|s| std::fs::read_dir(d.join(s)).unwrap())
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let before = files(&inbox);
    // UIDNEXT, counts and the digest of every mailbox (the peer lines carry byte counters).
    let status = || {
        ok(&["--data-dir", c.dir(0), "status", "--account", "alice"])
            .lines()
            .filter(|l| l.starts_with("alice "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let before_status = status();
    let again = mbsync(&config);
    assert_eq!(files(&inbox), before, "the Maildir did not change: {again}");
    assert_eq!(
        status(),
        before_status,
        "the mailbox did not change: {again}"
    );
    assert_eq!(mailbox(&c, 1), want, "node 1 shows the same");
    c.stop(1);
    c.stop(0);
}
