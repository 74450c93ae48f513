//! A data dir written by the first release (format 1, made with that release's binary and
//! kept in tests/fixtures/format1.tar.gz: two synced dirs `a` and `b` with a split brain,
//! renumbered messages, flags and a second mailbox) opens with this version: the view is
//! rebuilt from the documents once, shows exactly what the old version showed, and the dirs
//! go on working (append, flags, sync, diff).

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
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format1.tar.gz");
    let st = Command::new("tar")
        .arg("xzf")
        .arg(&fixture)
        .arg("-C")
        .arg(tmp.path())
        .status()
        .expect("tar");
    assert!(st.success());
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
    for line in OLD_LIST.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (uid, blob) = (f[0], f[f.len() - 1]);
        let out = Command::new(env!("CARGO_BIN_EXE_dovetail"))
            .arg("--data-dir")
            .arg(&a)
            .args([
                "fetch",
                "--account",
                "alice",
                "--mailbox",
                "INBOX",
                "--uid",
                uid,
            ])
            .output()
            .expect("fetch");
        assert!(out.status.success(), "{out:?}");
        assert_eq!(hex::encode(Sha256::digest(&out.stdout)), blob);
    }
    let diff = Command::new(env!("CARGO_BIN_EXE_dovetail"))
        .arg("diff")
        .arg(&a)
        .arg(&b)
        .output()
        .expect("diff");
    assert!(diff.status.success(), "{diff:?}");
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
    let sync = Command::new(env!("CARGO_BIN_EXE_dovetail"))
        .arg("sync")
        .arg(&a)
        .arg(&b)
        .output()
        .expect("sync");
    assert!(sync.status.success(), "{sync:?}");
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
