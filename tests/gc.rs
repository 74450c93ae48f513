//! `dovetail gc` through the real binary: bodies of expunged messages are dropped and their
//! pack space reclaimed; a body shared with a copy in another mailbox stays; every message
//! still listed reads back byte for byte; a second gc finds nothing.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

fn run(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_dovetail"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run dovetail");
    assert!(out.status.success(), "dovetail {args:?}: {out:?}");
    String::from_utf8(out.stdout).expect("utf8")
}

fn pack_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("blobs"))
        .expect("blobs dir")
        .map(|e| e.expect("entry").metadata().expect("meta").len())
        .sum()
}

/// (UID, blob) of every listed message.
fn listed(dir: &Path, mailbox: &str) -> Vec<(String, String)> {
    run(dir, &["list", "--account", "alice", "--mailbox", mailbox])
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[0].to_string(), f[f.len() - 1].to_string())
        })
        .collect()
}

#[test]
fn gc_drops_expunged_bodies_keeps_shared_ones_and_reclaims_space() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    run(&dir, &["init"]);
    run(&dir, &["mailbox", "create", "--account", "alice", "INBOX"]);
    run(&dir, &["mailbox", "create", "--account", "alice", "Work"]);
    let files: Vec<PathBuf> = (0..40)
        .map(|i| {
            let p = tmp.path().join(format!("m{i}.eml"));
            let body = format!("{i:05} ").repeat(6_000);
            std::fs::write(&p, format!("Subject: big {i}\r\n\r\n{body}\r\n")).expect("write");
            p
        })
        .collect();
    let mut args = vec!["append", "--account", "alice", "--mailbox", "INBOX"];
    args.extend(files.iter().map(|p| p.to_str().expect("utf8")));
    run(&dir, &args);
    run(
        &dir,
        &[
            "copy",
            "--account",
            "alice",
            "--mailbox",
            "INBOX",
            "--uid",
            "1:5",
            "--to",
            "Work",
        ],
    );
    run(
        &dir,
        &[
            "expunge",
            "--account",
            "alice",
            "--mailbox",
            "INBOX",
            "--uid",
            "1:30",
        ],
    );
    let before = pack_bytes(&dir);
    let out = run(&dir, &["--json", "gc"]);
    let st: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(st["kept"], 15, "{st}");
    assert_eq!(st["dropped"], 25, "{st}");
    let after = pack_bytes(&dir);
    assert!(
        after * 2 < before,
        "pack space reclaimed: {before} -> {after} bytes"
    );
    let (inbox, work) = (listed(&dir, "INBOX"), listed(&dir, "Work"));
    assert_eq!((inbox.len(), work.len()), (10, 5));
    for (mb, rows) in [("INBOX", &inbox), ("Work", &work)] {
        for (uid, blob) in rows.iter() {
            let out = Command::new(env!("CARGO_BIN_EXE_dovetail"))
                .arg("--data-dir")
                .arg(&dir)
                .args(["fetch", "--account", "alice", "--mailbox", mb, "--uid", uid])
                .output()
                .expect("fetch");
            assert!(out.status.success(), "{mb} {uid}: {out:?}");
            assert_eq!(&hex::encode(Sha256::digest(&out.stdout)), blob);
        }
    }
    let again: serde_json::Value =
        serde_json::from_str(&run(&dir, &["--json", "gc"])).expect("json");
    assert_eq!(
        (again["kept"].clone(), again["dropped"].clone()),
        (15.into(), 0.into())
    );
    // New mail still goes in after a compaction.
    let extra = tmp.path().join("extra.eml");
    std::fs::write(&extra, "Subject: after gc\r\n\r\nstill here\r\n").expect("write");
    let line = run(
        &dir,
        &[
            "append",
            "--account",
            "alice",
            "--mailbox",
            "INBOX",
            extra.to_str().expect("utf8"),
        ],
    );
    let uid = line.split(' ').next().expect("uid").to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_dovetail"))
        .arg("--data-dir")
        .arg(&dir)
        .args([
            "fetch",
            "--account",
            "alice",
            "--mailbox",
            "INBOX",
            "--uid",
            &uid,
        ])
        .output()
        .expect("fetch");
    assert_eq!(out.stdout, std::fs::read(&extra).expect("read"));
}
