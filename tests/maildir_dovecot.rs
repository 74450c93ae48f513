//! `import-maildir` of a Maildir written by Debian's Dovecot (`doveadm save` and
//! `doveadm flags`, run with a minimal configuration and no auth server): the same folders,
//! messages, flags (keywords included) and UID order in dovetail; a second import imports
//! nothing; an export imports back to the same. Needs doveadm (`dovecot-core`, installed by
//! scripts/test.sh); fails without it.

mod cluster_support;
mod maildir_support;

use cluster_support::{cmd, ok, s, Cluster};
use maildir_support::{import, rows};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// Runs doveadm with `conf` as the mail user (USER/HOME from the environment, so no auth
/// server is needed); panics with its stderr on failure.
fn doveadm(conf: &Path, home: &Path, args: &[&str], stdin: Option<&[u8]>) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut c = Command::new("doveadm");
    c.arg("-c")
        .arg(conf)
        .args(args)
        .env("USER", "tester")
        .env("HOME", home)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c
        .spawn()
        .expect("doveadm is not installed (apt-get install dovecot-core; scripts/test.sh does it)");
    if let Some(b) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(b)
            .expect("write");
    }
    let o = child.wait_with_output().expect("doveadm");
    assert!(
        o.status.success(),
        "doveadm {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("utf-8")
}

#[test]
fn import_of_a_maildir_written_by_dovecot() {
    use std::os::unix::fs::PermissionsExt;
    let c = Cluster::new(1);
    let dir = c.dir(0);
    let base = c.tmp.path().join("dovecot");
    let (mail, home) = (base.join("Maildir"), base.join("home"));
    for d in [&mail, &home, &base.join("run"), &base.join("state")] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    // Dovecot will not touch mail as root: as root it works as `nobody`, which must reach
    // the directories.
    let root = unsafe { libc::geteuid() } == 0;
    let (user, group) = if root {
        ("nobody".to_string(), "nogroup".to_string())
    } else {
        let id = |f: &str| {
            String::from_utf8(
                std::process::Command::new("id")
                    .arg(f)
                    .output()
                    .expect("id")
                    .stdout,
            )
            .expect("id")
            .trim()
            .to_string()
        };
        (id("-u"), id("-g"))
    };
    for d in [c.tmp.path(), base.as_path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    if root {
        for d in [&mail, &home] {
            let st = std::process::Command::new("chown")
                .arg(format!("{user}:{group}"))
                .arg(d)
                .status()
                .expect("chown");
            assert!(st.success());
        }
    }
    let conf = base.join("dovecot.conf");
    std::fs::write(
        &conf,
        format!(
            "protocols =\nssl = no\nbase_dir = {b}/run\nstate_dir = {b}/state\nlog_path = {b}/dovecot.log\n\
             first_valid_uid = 1\nfirst_valid_gid = 1\nmail_location = maildir:{m}\n\
             mail_uid = {user}\nmail_gid = {group}\n\
             namespace inbox {{\n  inbox = yes\n  separator = /\n}}\n",
            b = s(&base),
            m = s(&mail)
        ),
    )
    .expect("conf");
    let folders = [
        ("INBOX", 120),
        ("Work", 60),
        ("Work/2026", 20),
        ("Entwürfe", 20),
    ];
    doveadm(
        &conf,
        &home,
        &["mailbox", "create", "Work", "Work/2026", "Entwürfe"],
        None,
    );
    for (f, n) in folders {
        for i in 1..=n {
            let m = format!(
                "From: dv@example.org\nSubject: dv {f} {i}\nMessage-ID: <{i}.{}@dv>\n\nbody {i}\n{}\n",
                f.len(),
                "line of text ".repeat(i % 7)
            );
            doveadm(&conf, &home, &["save", "-m", f], Some(m.as_bytes()));
        }
    }
    for (flags, mb, set) in [
        ("\\Seen", "INBOX", "1:60"),
        ("$Work Junk", "INBOX", "10:40"),
        ("\\Flagged \\Answered", "INBOX", "35:50"),
        ("\\Seen", "Work", "1:30"),
        ("NonJunk", "Work", "25:35"),
        ("\\Deleted", "Work/2026", "3"),
        ("\\Draft", "Entwürfe", "1:5"),
    ] {
        doveadm(
            &conf,
            &home,
            &["flags", "add", flags, "mailbox", mb, "uid", set],
            None,
        );
    }
    // Dovecot's own view: mailbox, UID order, flags (without the session flag \Recent).
    let listing = doveadm(
        &conf,
        &home,
        &["-f", "tab", "fetch", "mailbox uid flags", "all"],
        None,
    );
    let mut want: BTreeMap<String, Vec<(u32, Vec<String>)>> = BTreeMap::new();
    for l in listing.lines().skip(1) {
        let mut p = l.split('\t');
        let (mb, uid, flags) = (
            p.next().expect("mailbox"),
            p.next().expect("uid"),
            p.next().unwrap_or(""),
        );
        let mut f: Vec<String> = flags
            .split_whitespace()
            .filter(|f| *f != "\\Recent")
            .map(str::to_string)
            .collect();
        f.sort();
        want.entry(mb.to_string())
            .or_default()
            .push((uid.parse().expect("uid"), f));
    }
    assert_eq!(want.values().map(Vec::len).sum::<usize>(), 220, "{listing}");
    let out = import(dir, "tester", &mail);
    assert!(
        out.contains("imported 220 messages, 0 already there"),
        "{out}"
    );
    for (mb, msgs) in &want {
        let got = rows(dir, "tester", mb);
        assert_eq!(got.len(), msgs.len(), "{mb}: message count");
        for (k, ((blob, flags, _), (uid, dflags))) in got.iter().zip(msgs).enumerate() {
            assert_eq!(flags, dflags, "{mb} UID {uid}: flags");
            let bytes = cmd()
                .args([
                    "--data-dir",
                    dir,
                    "fetch",
                    "--account",
                    "tester",
                    "--mailbox",
                    mb,
                    "--uid",
                    &(k + 1).to_string(),
                ])
                .output()
                .expect("fetch")
                .stdout;
            assert_eq!(&hex::encode(Sha256::digest(&bytes)), blob);
            let text = String::from_utf8(bytes).expect("utf-8");
            // Dovecot's UID order is the order the messages were saved in.
            assert!(
                text.contains(&format!("Subject: dv {mb} {}\n", k + 1)),
                "{mb} #{k}: {text}"
            );
        }
    }
    let again = import(dir, "tester", &mail);
    assert!(
        again.contains("imported 0 messages, 220 already there"),
        "{again}"
    );
    // Out again and back into a new account: the same messages, flags and order.
    let dst = c.tmp.path().join("export");
    ok(&[
        "--data-dir",
        dir,
        "export-maildir",
        "--account",
        "tester",
        s(&dst),
    ]);
    import(dir, "back", &dst);
    for mb in want.keys() {
        assert_eq!(
            rows(dir, "back", mb),
            rows(dir, "tester", mb),
            "{mb} after a round trip"
        );
    }
}
