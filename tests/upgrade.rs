//! Data dirs written by earlier versions open with this one.
//!
//! A data dir written by the first release (format 1, made with that release's binary and
//! kept in tests/fixtures/format1.tar.gz: two synced dirs `a` and `b` with a split brain,
//! renumbered messages, flags and a second mailbox) opens with this version: the view is
//! rebuilt from the documents once, shows exactly what the old version showed, and the dirs
//! go on working (append, flags, sync, diff).

//!
//! A data dir of format 4 (made with the release before the body index left sled, kept in
//! tests/fixtures/format4.tar.gz: `a` and `b` with a renumbered clash, flags, an expunge
//! whose body was collected, a second mailbox, and one message on `a` not synced yet):
//! its body index moves into index files on the first open, every body reads back, and the
//! dirs sync and collect bodies as before.
//!
//! A data dir of format 6 (tests/fixtures/format6.tar.gz: `a` with 300 messages appended
//! in one batch, so their records share one 54 KB block, a flag added, one expunged) has
//! that block split into parts on the first open and shows, changes and syncs the same.

use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Command;

fn dovetail(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dovetail"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run dovetail");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let (code, out, err) = dovetail(dir, args);
    assert_eq!(code, 0, "dovetail {args:?}: {err}");
    out
}

/// What the first release printed for these dirs (`list` of INBOX, `status`).
const OLD_LIST: &str = "\
2 9827a43e61771e0cf7af66824e13f651 ($Old \\Seen) 47 d164cc382394a98313cb5dd62f86d98661648036a7087ff406af6dc9528cd8ef
3 9b991140e67a7c641dfa0cc4d179ad9e ($Old) 47 780081cd68ecd11008701fe00f55b6dcfe18ecc9e28b45d965fbae0a8bda1765
4 4cfc89c62b8f0b7a2c6936d9144023fe ($Old \\Seen) 47 a158e3f4549895d8ee6be5677288b1baad1ff6861bc62aeb8cac79371a590d20
5 c12b183bca0698e0825b8eb24fdca887 () 47 84dae71c9800c319d5b4be9c71501d3884cfb166e11ae5380055c0c688726da3
";
const OLD_STATUS: &str = "\
ACCOUNT MAILBOX UIDVALIDITY UIDNEXT MESSAGES UNSEEN DIGEST
alice INBOX 1608623 6 4 2 daafe8993140be1d987a58527e4af695
alice Work 1952087 2 1 1 87db8226444c871e9b8edd71ec741ea3
";

#[test]
fn a_format_1_data_dir_opens_shows_the_same_and_syncs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    untar("format1.tar.gz", tmp.path());
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for d in [&a, &b] {
        // The first open upgrades (and says so on stderr); later ones are quiet.
        let (code, out, err) = dovetail(d, &["list", "--account", "alice", "--mailbox", "INBOX"]);
        assert_eq!(code, 0, "{err}");
        assert!(err.contains("upgrading the data dir"), "{err}");
        assert_eq!(out, OLD_LIST);
        let (code, out, err) = dovetail(d, &["status"]);
        assert_eq!((code, err.as_str()), (0, ""));
        assert_eq!(out, OLD_STATUS);
    }
    // The bodies moved from sled's tree into pack files: each reads back intact.
    bodies_read_back(&a, "INBOX", OLD_LIST);
    both(&["diff"], &a, &b);
    // They go on: new writes on both sides (a flag change on an old message included), a
    // sync, and both show the same, with the new messages above the old UIDNEXT.
    let m6 = tmp.path().join("m6.eml");
    std::fs::write(&m6, "Subject: new\r\n\r\nafter the upgrade\r\n").expect("write");
    let line = ok(
        &a,
        &[
            "append",
            "--account",
            "alice",
            "--mailbox",
            "INBOX",
            m6.to_str().expect("utf8"),
        ],
    );
    assert!(line.starts_with("6 "), "{line}");
    ok(
        &b,
        &[
            "flags",
            "--account",
            "alice",
            "--mailbox",
            "INBOX",
            "--uid",
            "3",
            "-$Old",
        ],
    );
    ok(&b, &["mailbox", "create", "--account", "alice", "New"]);
    both(&["sync"], &a, &b);
    let la = ok(&a, &["list", "--account", "alice", "--mailbox", "INBOX"]);
    let lb = ok(&b, &["list", "--account", "alice", "--mailbox", "INBOX"]);
    assert_eq!(la, lb);
    assert_eq!(la.lines().count(), 5);
    assert!(
        la.contains("3 9b991140e67a7c641dfa0cc4d179ad9e () 47"),
        "{la}"
    );
    assert_eq!(ok(&a, &["status"]), ok(&b, &["status"]));
    assert!(ok(&a, &["status"]).contains("alice New "));
}

/// `dovetail ARGS A B` (a two-dir command: `sync`, `diff`) succeeds.
fn both(args: &[&str], a: &Path, b: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_dovetail"))
        .args(args)
        .arg(a)
        .arg(b)
        .output()
        .expect("run dovetail");
    assert!(out.status.success(), "{args:?}: {out:?}");
}

fn untar(fixture: &str, into: &Path) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(fixture);
    let st = Command::new("tar")
        .arg("xzf")
        .arg(&fixture)
        .arg("-C")
        .arg(into)
        .status()
        .expect("tar");
    assert!(st.success());
}

/// Every row of a `list` output reads back (`fetch`) as the bytes its blob id names.
fn bodies_read_back(dir: &Path, mailbox: &str, list: &str) {
    for line in list.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (uid, blob) = (f[0], f[f.len() - 1]);
        let out = Command::new(env!("CARGO_BIN_EXE_dovetail"))
            .arg("--data-dir")
            .arg(dir)
            .args([
                "fetch",
                "--account",
                "alice",
                "--mailbox",
                mailbox,
                "--uid",
                uid,
            ])
            .output()
            .expect("fetch");
        assert!(out.status.success(), "{out:?}");
        assert_eq!(hex::encode(Sha256::digest(&out.stdout)), blob, "UID {uid}");
    }
}

/// What the format-4 release printed for `a` (`list` of INBOX and Work, `status`).
const F4_LIST_A: &str = "\
1 0006618d9a9dafdd3f7c2cf4f27acf44 ($Old \\Seen) 45 2a7d9fc7b528bae4c2c7550157f20c6b4e70ed9f413691dc3e7784d9adf39e65
2 0006618d9a9daff75d4276cf8103d8f2 ($Old) 45 6970a023c418ed96dd439948c417c8a4ff97e894509c0a4c3a2075dbdb2e5f27
5 0006618d9a9ecc7c3a896e2abcf30c28 () 45 76b07f56ef69333d34c140635468ed599397bd48962bdfa8cd86bf883a0a9134
6 0006618d9a9eeeca36df4f3797b8bc9d () 24 54f08cc013249676f4099a327d367783408dceff176d18d1f1413d29847e3cea
7 0006618d9b1cd8a600e8d8ea0a70a04f () 30 ad779b4abe896e762214155af7aa300726ffc0617ef9c81207cdf160f56ea6a4
";
const F4_WORK: &str = "\
1 0006618d9add755ce52de7bf88cded0c () 21 70ad9361de9bb839830dc90103c3225424978c06bb4b9518413b6ceaa404ff73
";
const F4_STATUS_A: &str = "\
ACCOUNT MAILBOX UIDVALIDITY UIDNEXT MESSAGES UNSEEN DIGEST
alice INBOX 8290657 8 5 4 c5940a4b4980ac44314f1309abcd668d
alice Work 127165336 2 1 1 cc46347746b8362180bb9dc9ac1d5850
";

#[test]
fn a_format_4_data_dir_moves_its_body_index_and_syncs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    untar("format4.tar.gz", tmp.path());
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    assert!(!a.join("blobs/pack-000000.idx").exists());
    let (code, out, err) = dovetail(&a, &["list", "--account", "alice", "--mailbox", "INBOX"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("upgrading the data dir"), "{err}");
    assert_eq!(out, F4_LIST_A);
    assert!(a.join("blobs/pack-000000.idx").exists());
    let (code, out, err) = dovetail(&a, &["status"]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(out, F4_STATUS_A);
    bodies_read_back(&a, "INBOX", F4_LIST_A);
    bodies_read_back(&a, "Work", F4_WORK);
    // `b` upgrades on the sync's open; the message only `a` had arrives with its body.
    both(&["sync"], &a, &b);
    let lb = ok(&b, &["list", "--account", "alice", "--mailbox", "INBOX"]);
    assert_eq!(lb, F4_LIST_A);
    bodies_read_back(&b, "INBOX", &lb);
    bodies_read_back(&b, "Work", F4_WORK);
    assert_eq!(ok(&a, &["status"]), ok(&b, &["status"]));
    // Collecting bodies goes on: UID 6 expunged on both sides, its body dropped (on `b`
    // with the body of the message `a` expunged before the fixture's last sync: `a`
    // collected it then, `b` never did).
    for (d, dropped) in [(&a, "dropped 1;"), (&b, "dropped 2;")] {
        ok(
            d,
            &[
                "expunge",
                "--account",
                "alice",
                "--mailbox",
                "INBOX",
                "--uid",
                "6",
            ],
        );
        let gc = ok(d, &["gc"]);
        assert!(gc.contains(dropped), "{gc}");
        let gc = ok(d, &["gc"]);
        assert!(gc.contains("dropped 0;"), "{gc}");
    }
    both(&["diff"], &a, &b);
    let la = ok(&a, &["list", "--account", "alice", "--mailbox", "INBOX"]);
    assert_eq!(la.lines().count(), 4);
    bodies_read_back(&a, "INBOX", &la);
}

/// What the format-6 release printed for `a`: `status`, and the sha256 of `list` of INBOX.
const F6_STATUS: &str = "\
ACCOUNT MAILBOX UIDVALIDITY UIDNEXT MESSAGES UNSEEN DIGEST
alice INBOX 8290657 301 299 0 79c90a7b690a3b9e0e158e05f09de6e7
";
const F6_LIST_SHA256: &str = "81df0d0b6e36acf58b282dd0a79aacac504462e8f84c06d35c2b7e552ebe961f";

#[test]
fn a_format_6_data_dir_splits_its_message_blocks_and_syncs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    untar("format6.tar.gz", tmp.path());
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let inbox = ["list", "--account", "alice", "--mailbox", "INBOX"];
    let (code, list, err) = dovetail(&a, &inbox);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("upgrading the data dir"), "{err}");
    assert_eq!(
        hex::encode(Sha256::digest(list.as_bytes())),
        F6_LIST_SHA256,
        "{list}"
    );
    assert_eq!(list.lines().count(), 299);
    assert!(list.contains("\n7 000661a8cea3f9629cc2319f99cab946 ($Work \\Seen) 23 "));
    assert!(!list.contains("\n9 "), "UID 9 was expunged");
    let (code, out, err) = dovetail(&a, &["status"]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(out, F6_STATUS);
    let some: String = list
        .lines()
        .enumerate()
        .filter(|(i, _)| i % 37 == 0 || *i == 298)
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    bodies_read_back(&a, "INBOX", &some);
    // A record of the split block changes, and the block takes one more message.
    let flags = ["flags", "--account", "alice", "--mailbox", "INBOX", "--uid"];
    ok(&a, &[&flags[..], &["300", "-\\Seen"]].concat());
    let dir = tempfile::tempdir().expect("tempdir");
    let m = dir.path().join("m");
    std::fs::write(&m, "Subject: new\r\n\r\nafter the upgrade\r\n").expect("write");
    let out = ok(
        &a,
        &[
            "append",
            "--account",
            "alice",
            "--mailbox",
            "INBOX",
            m.to_str().expect("utf-8"),
        ],
    );
    assert!(out.starts_with("301 "), "{out}");
    let after = ok(&a, &inbox);
    assert_eq!(after.lines().count(), 300);
    assert!(
        after.contains("\n300 000661a8cea3fa87b1a9ea3f1adfbbaa () 27 "),
        "{after}"
    );
    assert!(ok(&a, &["status"]).contains(" 302 300 2 "));
    // Into an empty dir, and back the same.
    ok(&b, &["init"]);
    both(&["sync"], &a, &b);
    both(&["diff"], &a, &b);
    assert_eq!(ok(&b, &inbox), after);
    bodies_read_back(&b, "INBOX", &after);
}
