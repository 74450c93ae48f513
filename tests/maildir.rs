//! `import-maildir` and `export-maildir` on generated Maildir++ trees: folders (nested and
//! non-ASCII), flags, Dovecot keywords, `dovecot-uidlist` order, internal dates; a second
//! import imports nothing; an export imports back to the same messages, flags and order;
//! bad input changes nothing; the same through a running node, replicated; and
//! `--watch-maildir`. (A Maildir written by Dovecot itself: tests/maildir_dovecot.rs.)

mod cluster_support;
mod maildir_support;

use cluster_support::{ok, run, s, Cluster};
use maildir_support::{import, rows};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

/// One message the generated tree holds, as dovetail should show it.
#[derive(Clone, Debug)]
struct Expect {
    bytes: Vec<u8>,
    flags: Vec<&'static str>,
    date: i64,
}

fn write_msg(dir: &Path, name: &str, bytes: &[u8], date: i64) {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write message");
    let f = std::fs::File::options().write(true).open(&p).expect("open");
    f.set_modified(UNIX_EPOCH + Duration::from_secs(date as u64))
        .expect("set mtime");
}

fn maildir(dir: &Path) {
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
    }
}

fn message(tag: &str, n: usize) -> Vec<u8> {
    format!("From: a@example.org\r\nSubject: {tag} {n}\r\nMessage-ID: <{tag}.{n}@x>\r\n\r\nbody of {tag} {n}\r\n.leading dot\r\n").into_bytes()
}

/// Writes a Dovecot-style Maildir++ tree; returns, per mailbox, the messages in the order
/// dovetail must show them.
fn generate(root: &Path) -> BTreeMap<String, Vec<Expect>> {
    let mut want: BTreeMap<String, Vec<Expect>> = BTreeMap::new();
    maildir(root);
    std::fs::write(root.join("dovecot-keywords"), "0 $Work\n1 Junk\n").expect("keywords");
    // INBOX: the uidlist order (c, a, b) is neither name nor mtime order; `d` is not in the
    // uidlist (delivered since), so it comes after them; `e` sits in new/ (no flags).
    std::fs::write(
        root.join("dovecot-uidlist"),
        "3 V1700000000 N4 Gabc\n1 :1700000300.M3P1.host,S=1\n2 W120 :1700000100.M1P1.host\n3 :1700000200.M2P1.host\n",
    )
    .expect("uidlist");
    let inbox = [
        (
            "cur",
            "1700000300.M3P1.host,S=1:2,S",
            0,
            vec!["\\Seen"],
            1_700_000_300,
        ),
        (
            "cur",
            "1700000100.M1P1.host:2,FRSa",
            1,
            vec!["$Work", "\\Answered", "\\Flagged", "\\Seen"],
            1_700_000_100,
        ),
        (
            "cur",
            "1700000200.M2P1.host:2,DTb",
            2,
            vec!["Junk", "\\Deleted", "\\Draft"],
            1_700_000_200,
        ),
        ("cur", "1700000400.M4P1.host:2,", 3, vec![], 1_700_000_400),
        ("new", "1700000500.M5P1.host", 4, vec![], 1_700_000_500),
    ];
    for (sub, name, n, flags, date) in inbox {
        let b = message("inbox", n);
        write_msg(&root.join(sub), name, &b, date);
        want.entry("INBOX".into()).or_default().push(Expect {
            bytes: b,
            flags,
            date,
        });
    }
    // Folders without a uidlist: mtime order. `Work` holds the same message twice.
    let work = root.join(".Work");
    maildir(&work);
    std::fs::write(work.join("maildirfolder"), "").expect("marker");
    let dup = message("work", 0);
    for (name, bytes, flags, date) in [
        (
            "1600000002.M2.h:2,S",
            dup.clone(),
            vec!["\\Seen"],
            1_600_000_002,
        ),
        (
            "1600000001.M1.h:2,",
            message("work", 1),
            vec![],
            1_600_000_001,
        ),
        ("1600000003.M3.h:2,", dup.clone(), vec![], 1_600_000_003),
    ] {
        write_msg(&work.join("cur"), name, &bytes, date);
        want.entry("Work".into())
            .or_default()
            .push(Expect { bytes, flags, date });
    }
    want.get_mut("Work").expect("work").sort_by_key(|e| e.date);
    let nested = root.join(".Work.2026");
    maildir(&nested);
    write_msg(
        &nested.join("cur"),
        "1.M1.h:2,F",
        &message("nested", 0),
        1_650_000_000,
    );
    want.entry("Work/2026".into()).or_default().push(Expect {
        bytes: message("nested", 0),
        flags: vec!["\\Flagged"],
        date: 1_650_000_000,
    });
    // A parent that exists only as the prefix of its child, with a modified UTF-7 name.
    let utf = root.join(".Entw&APw-rfe.Alt");
    maildir(&utf);
    write_msg(
        &utf.join("cur"),
        "1.M9.h:2,S",
        &message("utf", 0),
        1_650_000_100,
    );
    want.entry("Entwürfe/Alt".into()).or_default().push(Expect {
        bytes: message("utf", 0),
        flags: vec!["\\Seen"],
        date: 1_650_000_100,
    });
    // Not a folder: no cur/ or new/.
    std::fs::create_dir_all(root.join(".notafolder")).expect("mkdir");
    want
}

fn mailboxes(dir: &str, account: &str) -> Vec<String> {
    let mut v: Vec<String> = ok(&["--data-dir", dir, "mailbox", "list", "--account", account])
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

fn assert_matches(dir: &str, account: &str, want: &BTreeMap<String, Vec<Expect>>) {
    let mut names: Vec<String> = want.keys().cloned().collect();
    names.sort();
    assert_eq!(mailboxes(dir, account), names, "mailboxes of {account}");
    for (mb, msgs) in want {
        let got = rows(dir, account, mb);
        let expect: Vec<(String, Vec<String>, i64)> = msgs
            .iter()
            .map(|e| {
                let mut f: Vec<String> = e.flags.iter().map(|x| x.to_string()).collect();
                f.sort();
                (hex::encode(Sha256::digest(&e.bytes)), f, e.date)
            })
            .collect();
        assert_eq!(
            got, expect,
            "{account}/{mb}: messages, order, flags or dates differ"
        );
    }
}

/// The messages of an exported folder in its `dovecot-uidlist` order: (bytes, flags).
fn exported(folder: &Path) -> Vec<(Vec<u8>, Vec<String>)> {
    let kw: BTreeMap<char, String> = std::fs::read_to_string(folder.join("dovecot-keywords"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (i, k) = l.split_once(' ')?;
            Some(((b'a' + i.parse::<u8>().ok()?) as char, k.to_string()))
        })
        .collect();
    let uidlist = std::fs::read_to_string(folder.join("dovecot-uidlist")).expect("uidlist");
    let files: Vec<PathBuf> = std::fs::read_dir(folder.join("cur"))
        .expect("cur")
        .map(|e| e.expect("entry").path())
        .collect();
    uidlist
        .lines()
        .skip(1)
        .map(|l| {
            let base = l.split_once(" :").expect("uidlist line").1;
            let f = files
                .iter()
                .find(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.split(':').next() == Some(base))
                })
                .unwrap_or_else(|| panic!("no file for {base}"));
            let name = f.file_name().and_then(|n| n.to_str()).expect("name");
            let letters = name.split_once(":2,").expect("info").1;
            let mut flags: Vec<String> = letters
                .chars()
                .map(|c| match c {
                    'D' => "\\Draft".to_string(),
                    'F' => "\\Flagged".into(),
                    'R' => "\\Answered".into(),
                    'S' => "\\Seen".into(),
                    'T' => "\\Deleted".into(),
                    k => kw
                        .get(&k)
                        .cloned()
                        .unwrap_or_else(|| panic!("letter {k} without keyword")),
                })
                .collect();
            flags.sort();
            (std::fs::read(f).expect("read"), flags)
        })
        .collect()
}

#[test]
fn import_reimport_export_round_trip_on_a_stopped_data_dir() {
    let c = Cluster::new(1);
    let dir = c.dir(0);
    let src = c.tmp.path().join("Maildir");
    let want = generate(&src);
    let out = import(dir, "carol", &src);
    assert!(
        out.contains("imported 10 messages, 0 already there"),
        "{out}"
    );
    assert_matches(dir, "carol", &want);
    let again = import(dir, "carol", &src);
    assert!(
        again.contains("imported 0 messages, 10 already there"),
        "{again}"
    );
    assert_matches(dir, "carol", &want);

    let dst = c.tmp.path().join("export");
    let out = ok(&[
        "--data-dir",
        dir,
        "export-maildir",
        "--account",
        "carol",
        s(&dst),
    ]);
    assert!(out.contains("exported 10 messages in 4 mailboxes"), "{out}");
    for (mb, folder) in [
        ("INBOX", dst.clone()),
        ("Work", dst.join(".Work")),
        ("Work/2026", dst.join(".Work.2026")),
        ("Entwürfe/Alt", dst.join(".Entw&APw-rfe.Alt")),
    ] {
        let got = exported(&folder);
        let expect: Vec<(Vec<u8>, Vec<String>)> = want[mb]
            .iter()
            .map(|e| {
                let mut f: Vec<String> = e.flags.iter().map(|x| x.to_string()).collect();
                f.sort();
                (e.bytes.clone(), f)
            })
            .collect();
        assert_eq!(got, expect, "exported {mb}");
    }
    // And back: the export imports to the same messages, flags, dates and order.
    let out = import(dir, "dave", &dst);
    assert!(out.contains("imported 10 messages"), "{out}");
    assert_matches(dir, "dave", &want);
    // An export never writes into a non-empty directory.
    let r = run(&[
        "--data-dir",
        dir,
        "export-maildir",
        "--account",
        "carol",
        s(&dst),
    ]);
    assert_eq!(r.code, 2);
    assert!(r.err.contains("is not empty"), "{r:?}");
}

#[test]
fn bad_input_is_a_clear_error_and_changes_nothing() {
    let c = Cluster::new(1);
    let dir = c.dir(0);
    let status = || ok(&["--data-dir", dir, "--json", "status"]);
    let before = status();
    let missing = c.tmp.path().join("missing");
    let r = run(&[
        "--data-dir",
        dir,
        "import-maildir",
        "--account",
        "alice",
        s(&missing),
    ]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.err.contains("missing") && r.err.contains("No such file"),
        "{r:?}"
    );
    let plain = c.tmp.path().join("plain");
    std::fs::create_dir_all(plain.join("stuff")).expect("mkdir");
    let r = run(&[
        "--data-dir",
        dir,
        "import-maildir",
        "--account",
        "alice",
        s(&plain),
    ]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.err.contains("is not a Maildir"), "{r:?}");
    // One file over the size limit in a subfolder: nothing at all is imported.
    let src = c.tmp.path().join("Maildir");
    generate(&src);
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    big.resize(5000, b'x');
    write_msg(
        &src.join(".Work").join("cur"),
        "2000000000.big.h:2,S",
        &big,
        2_000_000_000,
    );
    let r = run(&[
        "--data-dir",
        dir,
        "--max-message-size",
        "4000",
        "import-maildir",
        "--account",
        "alice",
        s(&src),
    ]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.err.contains("2000000000.big.h") && r.err.contains("exceeds the limit of 4000 bytes"),
        "{r:?}"
    );
    // A file that is not a mail message: the same.
    std::fs::remove_file(src.join(".Work/cur/2000000000.big.h:2,S")).expect("rm");
    write_msg(&src.join("new"), "junk", b"this is not mail\n", 1);
    let r = run(&[
        "--data-dir",
        dir,
        "import-maildir",
        "--account",
        "alice",
        s(&src),
    ]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.err.contains("junk") && r.err.contains("not a mail message"),
        "{r:?}"
    );
    assert_eq!(status(), before, "a failed import changed the data dir");
}

#[test]
fn import_and_export_through_a_running_node_replicate() {
    let mut c = Cluster::new(2);
    c.start(0, &[]);
    c.start(1, &[0]);
    let src = c.tmp.path().join("Maildir");
    let want = generate(&src);
    let out = import(c.dir(0), "alice", &src);
    assert!(
        out.contains("imported 10 messages, 0 already there"),
        "{out}"
    );
    assert!(c.converged(&[0, 1], 30), "nodes did not converge");
    assert_matches(c.dir(0), "alice", &want);
    assert_matches(c.dir(1), "alice", &want);
    // Again, through the other node: everything is already there.
    let again = import(c.dir(1), "alice", &src);
    assert!(
        again.contains("imported 0 messages, 10 already there"),
        "{again}"
    );
    let dst = c.tmp.path().join("export");
    let out = ok(&[
        "--data-dir",
        c.dir(1),
        "export-maildir",
        "--account",
        "alice",
        s(&dst),
    ]);
    assert!(out.contains("exported 10 messages"), "{out}");
    assert_eq!(exported(&dst).len(), 5);
    c.stop(0);
    c.stop(1);
    // Stopped now: the export imports back into a new account, offline.
    let out = import(c.dir(0), "erin", &dst);
    assert!(out.contains("imported 10 messages"), "{out}");
    assert_matches(c.dir(0), "erin", &want);
}

#[test]
fn watch_maildir_takes_in_dropped_mail_and_it_replicates() {
    let mut c = Cluster::new(2);
    let spool = c.tmp.path().join("spool");
    maildir(&spool);
    maildir(&spool.join(".Lists"));
    c.node_args = vec!["--watch-maildir".into(), format!("alice={}", s(&spool))];
    c.start(0, &[]);
    c.node_args.clear();
    c.start(1, &[0]);
    // Written in tmp/ and renamed into new/, as Maildir writers do.
    let drop = |folder: &Path, name: &str, bytes: &[u8]| {
        let tmp = folder.join("tmp").join(name);
        std::fs::write(&tmp, bytes).expect("write");
        std::fs::rename(&tmp, folder.join("new").join(name)).expect("rename");
    };
    drop(&spool, "1.M1.h", &message("spool", 1));
    drop(&spool.join(".Lists"), "2.M2.h:2,S", &message("spool", 2));
    drop(&spool, "3.M3.h", b"not a mail message\n");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let st = ok(&[
            "--data-dir",
            c.dir(0),
            "mailbox",
            "list",
            "--account",
            "alice",
        ]);
        if st.contains("Lists")
            && rows(c.dir(0), "alice", "Lists").len() == 1
            && rows(c.dir(0), "alice", "INBOX").len() == 1
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the dropped mail was not taken in"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let inbox = rows(c.dir(0), "alice", "INBOX");
    assert_eq!(inbox[0].0, hex::encode(Sha256::digest(message("spool", 1))));
    let lists = rows(c.dir(0), "alice", "Lists");
    assert_eq!(lists[0].1, ["\\Seen"]);
    // Taken in: gone from the spool; the bad file is set aside, not lost.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!spool.join("new/1.M1.h").exists());
    assert!(!spool.join(".Lists/new/2.M2.h:2,S").exists());
    assert!(spool.join("dovetail-rejected/3.M3.h").exists());
    assert!(c.converged(&[0, 1], 30), "nodes did not converge");
    assert_eq!(rows(c.dir(1), "alice", "Lists").len(), 1);
    c.stop(0);
    c.stop(1);
    let r = run(&[
        "--data-dir",
        c.dir(0),
        "node",
        "--watch-maildir",
        &format!("alice={}", s(&c.tmp.path().join("nowhere"))),
    ]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.err.contains("is not a Maildir"), "{r:?}");
}
