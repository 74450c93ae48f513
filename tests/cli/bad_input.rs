use crate::common::*;

#[test]
fn bad_input_is_rejected_and_changes_nothing() {
    let n = Node::new();
    n.create("alice", "INBOX");
    n.create("alice", "Work");
    let good: Vec<PathBuf> = (1..=3).map(|i| n.msg(&format!("m{i}"))).collect();
    let refs: Vec<&Path> = good.iter().map(PathBuf::as_path).collect();
    n.append("alice", "INBOX", Some("\\Seen"), &refs);
    n.file("notmail", b"hello world\nthis is not a message\n");
    n.file("noheader", b"\r\njust a body\r\n");
    n.file("empty", b"");
    let big = format!(
        "From: a@example.org\r\nSubject: {}\r\n\r\nbody\r\n",
        "x".repeat(120)
    );
    let big = n.file("big", big.as_bytes());
    let (g1, g2) = (s(&good[0]), s(&good[1]));

    // Missing data dir: an error, and the dir is not created.
    let gone = n.root.join("gone");
    for args in [
        vec!["status"],
        vec!["list", "--account", "alice", "--mailbox", "INBOX"],
        vec!["append", "--account", "alice", "--mailbox", "INBOX", g1],
        vec!["mailbox", "create", "--account", "alice", "X"],
    ] {
        let r = run_cmd(cmd().arg("--data-dir").arg(&gone).args(&args));
        assert_error(&r, "no dovetail data dir", &format!("{args:?}"));
        assert!(!gone.exists(), "{args:?} created the missing data dir");
    }
    let before = n.snapshot();
    let r = run(&["sync", n.dir(), s(&gone)]);
    assert_error(&r, "no dovetail data dir", "sync with a missing dir");
    assert!(!gone.exists());
    assert_eq!(before, n.snapshot(), "a failed sync changed the other dir");

    // Each case: a command line (words; `~` stands for a space inside an argument, and
    // message file names are relative to the scratch dir) and what its error must say.
    let cases: &[(&str, &str)] = &[
        // Unknown account / mailbox, for every command that names one.
        (
            "append --account bob --mailbox INBOX m1",
            "unknown account \"bob\"",
        ),
        (
            "list --account bob --mailbox INBOX",
            "unknown account \"bob\"",
        ),
        ("status --account bob", "unknown account \"bob\""),
        (
            "flags --account bob --mailbox INBOX --uid 1 +\\Seen",
            "unknown account \"bob\"",
        ),
        (
            "expunge --account bob --mailbox INBOX --uid 1",
            "unknown account \"bob\"",
        ),
        (
            "mailbox rename --account bob Work Old",
            "unknown account \"bob\"",
        ),
        (
            "append --account alice --mailbox Nope m1",
            "unknown mailbox \"Nope\"",
        ),
        (
            "list --account alice --mailbox Nope",
            "unknown mailbox \"Nope\"",
        ),
        (
            "flags --account alice --mailbox Nope --uid 1 +\\Seen",
            "unknown mailbox \"Nope\"",
        ),
        (
            "expunge --account alice --mailbox Nope --uid 1",
            "unknown mailbox \"Nope\"",
        ),
        (
            "copy --account alice --mailbox Nope --uid 1 --to Work",
            "unknown mailbox \"Nope\"",
        ),
        (
            "move --account alice --mailbox INBOX --uid 1 --to Nope",
            "unknown mailbox \"Nope\"",
        ),
        // Files that are not mail messages, alone and as the 3rd of 3.
        (
            "append --account alice --mailbox INBOX notmail",
            "notmail: not a mail message",
        ),
        (
            "append --account alice --mailbox INBOX m1 m2 notmail",
            "notmail: not a mail message",
        ),
        (
            "append --account alice --mailbox INBOX noheader",
            "noheader: not a mail message",
        ),
        (
            "append --account alice --mailbox INBOX m1 m2 noheader",
            "noheader: not a mail message",
        ),
        (
            "append --account alice --mailbox INBOX empty",
            "empty: not a mail message: empty",
        ),
        (
            "append --account alice --mailbox INBOX m1 m2 empty",
            "empty: not a mail message: empty",
        ),
        (
            "append --account alice --mailbox INBOX m1 m2 missing",
            "missing",
        ),
        // Oversized, alone and as the 3rd of 3 (the limit is a global flag).
        (
            "--max-message-size 100 append --account alice --mailbox INBOX big",
            "big: message of",
        ),
        (
            "append --account alice --mailbox INBOX m1 m2 big --max-message-size 100",
            "exceeds the limit of 100 bytes",
        ),
        // Bad flags on append.
        (
            "append --account alice --mailbox INBOX --flags \\Bogus m1",
            "invalid flag",
        ),
        (
            "append --account alice --mailbox INBOX --flags \\Seen~\\Recent m1",
            "invalid flag",
        ),
        // Bad UID sets.
        (
            "flags --account alice --mailbox INBOX --uid 0 +\\Flagged",
            "invalid UID set \"0\"",
        ),
        (
            "flags --account alice --mailbox INBOX --uid a:b +\\Flagged",
            "invalid UID set \"a:b\"",
        ),
        (
            "expunge --account alice --mailbox INBOX --uid 0",
            "invalid UID set \"0\"",
        ),
        (
            "expunge --account alice --mailbox INBOX --uid a:b",
            "invalid UID set \"a:b\"",
        ),
        (
            "expunge --account alice --mailbox INBOX --uid 1,",
            "invalid UID set \"1,\"",
        ),
        (
            "copy --account alice --mailbox INBOX --uid 0 --to Work",
            "invalid UID set \"0\"",
        ),
        (
            "move --account alice --mailbox INBOX --uid 1:x --to Work",
            "invalid UID set \"1:x\"",
        ),
        // Bad flag changes: unknown system flag, missing + - = (nothing is applied).
        (
            "flags --account alice --mailbox INBOX --uid 1 +\\Bogus",
            "Bogus",
        ),
        (
            "flags --account alice --mailbox INBOX --uid 1 -\\Bogus",
            "Bogus",
        ),
        (
            "flags --account alice --mailbox INBOX --uid 1:* =\\Seen~\\Bogus",
            "Bogus",
        ),
        (
            "flags --account alice --mailbox INBOX --uid 1 \\Flagged",
            "expected +FLAGS, -FLAGS or =FLAGS",
        ),
        (
            "flags --account alice --mailbox INBOX --uid 1 $Work",
            "expected +FLAGS, -FLAGS or =FLAGS",
        ),
        (
            "flags --account alice --mailbox INBOX --uid 1 +",
            "expected +FLAGS, -FLAGS or =FLAGS",
        ),
    ];
    for (line, needle) in cases {
        let args: Vec<String> = line
            .split_whitespace()
            .map(|w| {
                let p = n.root.join(w);
                if p.exists() || w == "missing" {
                    s(&p).to_string()
                } else {
                    w.replace('~', " ")
                }
            })
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        n.reject(&args, needle);
    }

    // The limit from the environment.
    let before = n.snapshot();
    let r = run_cmd(
        cmd()
            .env("DOVETAIL_MAX_MESSAGE_SIZE", "100")
            .args(["--data-dir", n.dir(), "append", "--account", "alice"])
            .args(["--mailbox", "INBOX", g1, g2, s(&big)]),
    );
    assert_error(
        &r,
        "exceeds the limit of 100 bytes",
        "limit from the environment",
    );
    assert_eq!(before, n.snapshot());

    // A bad file after a whole batch (1000 messages) of good ones: none is stored.
    let bulk = n.root.join("bulk");
    std::fs::create_dir(&bulk).expect("mkdir");
    let mut args = strs(&["append", "--account", "alice", "--mailbox", "INBOX"]);
    for i in 0..1000 {
        let p = bulk.join(format!("{i}"));
        let body = format!("From: a@example.org\r\nSubject: {i}\r\n\r\n{i}\r\n");
        std::fs::write(&p, body).expect("write");
        args.push(s(&p).to_string());
    }
    args.push(s(&n.root.join("notmail")).to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    n.reject(&args, "notmail: not a mail message");

    // The same good files go in without the limit, at the next UIDs: the failures used none.
    let got = n.append("alice", "INBOX", None, &[&good[0], &big]);
    assert_eq!(got.iter().map(|(u, _)| *u).collect::<Vec<_>>(), [4, 5]);
}
