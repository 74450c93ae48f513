use crate::common::*;

#[test]
fn init_prints_node_id_and_both_data_dir_sources_work() {
    let a = Node::uninit();
    let r = run(&["init", "--data-dir", a.dir()]);
    assert_eq!((r.code, r.err.as_str()), (0, ""), "{r:?}");
    let id_a = r.out.strip_suffix('\n').expect("newline").to_string();
    assert!(is_hex(&id_a, 64), "node id {id_a:?}");
    assert!(a.data.join("db").exists());

    let b = Node::uninit();
    let r = run_cmd(cmd().env("DOVETAIL_DATA_DIR", &b.data).arg("init"));
    assert_eq!((r.code, r.err.as_str()), (0, ""), "{r:?}");
    let id_b = r.out.trim_end().to_string();
    assert!(is_hex(&id_b, 64), "node id {id_b:?}");
    assert_ne!(id_a, id_b, "each node gets its own identity");
    assert!(b.data.join("db").exists());

    let c = Node::uninit();
    let v: Value =
        serde_json::from_str(&run(&["--json", "init", "--data-dir", c.dir()]).out).expect("json");
    assert!(is_hex(v["node_id"].as_str().expect("node_id"), 64), "{v}");

    // A second init refuses and leaves the node alone.
    a.create("alice", "Work");
    let before = a.snapshot();
    assert_error(
        &run(&["init", "--data-dir", a.dir()]),
        "already",
        "second init",
    );
    assert_eq!(before, a.snapshot());

    // The environment variable works for every command, and --data-dir wins over it.
    let env_b = |args: &[&str]| run_cmd(cmd().env("DOVETAIL_DATA_DIR", &b.data).args(args));
    let r = env_b(&["mailbox", "create", "--account", "bob", "Lists"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(b.cli("mailbox list --account bob"), "INBOX\nLists\n");
    let r = env_b(&[
        "--data-dir",
        a.dir(),
        "mailbox",
        "list",
        "--account",
        "alice",
    ]);
    assert_eq!((r.code, r.out.as_str()), (0, "INBOX\nWork\n"), "{r:?}");
    let r = env_b(&["mailbox", "list", "--account", "alice"]);
    assert_error(&r, "unknown account \"alice\"", "alice is not in b");

    // Neither given: a clear error.
    assert_error(
        &run(&["status"]),
        "--data-dir DIR (or DOVETAIL_DATA_DIR) is required",
        "no data dir",
    );
}

#[test]
fn mailbox_create_rename_delete_list() {
    let n = Node::new();
    // Creating a mailbox of a new account creates the account with its INBOX.
    let v = n.cli_json("mailbox create --account alice Archive");
    let archive_uv = v["uidvalidity"].as_u64().expect("uidvalidity");
    n.create("alice", "Work");
    n.create("alice", "Lists/rust");
    assert_eq!(
        n.cli("mailbox list --account alice"),
        "Archive\nINBOX\nLists/rust\nWork\n"
    );
    assert_eq!(n.cli_json("account list"), serde_json::json!(["alice"]));
    assert_eq!(n.cli("account list"), "alice\n");

    // Rename keeps the mailbox (its UIDVALIDITY and messages).
    let m = n.msg("m1");
    n.append("alice", "Work", None, &[&m]);
    let work = n.mailbox_status("alice", "Work");
    assert_eq!(n.cli("mailbox rename --account alice Work Projects"), "");
    let projects = n.mailbox_status("alice", "Projects");
    assert_eq!(
        (
            projects.uidvalidity,
            projects.uidnext,
            projects.messages,
            &projects.digest
        ),
        (work.uidvalidity, work.uidnext, work.messages, &work.digest)
    );
    assert_eq!(n.list("alice", "Projects").len(), 1);
    n.reject_cli(
        "list --account alice --mailbox Work",
        "unknown mailbox \"Work\"",
    );

    // Delete removes it with its messages; a new mailbox of the same name starts afresh.
    n.append("alice", "Archive", None, &[&m]);
    assert_eq!(n.cli("mailbox delete --account alice Archive"), "");
    assert_eq!(
        n.cli("mailbox list --account alice"),
        "INBOX\nLists/rust\nProjects\n"
    );
    n.create("alice", "Archive");
    let again = n.mailbox_status("alice", "Archive");
    assert_ne!(
        u64::from(again.uidvalidity),
        archive_uv,
        "a recreated mailbox gets a new UIDVALIDITY"
    );
    assert_eq!((again.messages, again.uidnext), (0, 1));
    assert!(n.list("alice", "Archive").is_empty());

    // --json on mailbox list: valid JSON agreeing with status.
    let v = n.cli_json("mailbox list --account alice");
    let arr = v.as_array().expect("array");
    let names: Vec<&str> = arr
        .iter()
        .map(|m| m["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["Archive", "INBOX", "Lists/rust", "Projects"]);
    for (m, st) in arr.iter().zip(n.status(Some("alice"))) {
        assert_eq!(m["account"], "alice");
        assert_eq!(m["uidvalidity"].as_u64(), Some(u64::from(st.uidvalidity)));
        assert_eq!(m["uidnext"].as_u64(), Some(u64::from(st.uidnext)));
        assert_eq!(m["messages"].as_u64(), Some(st.messages));
        assert_eq!(m["digest"].as_str(), Some(st.digest.as_str()));
    }

    // Refusals change nothing.
    n.reject_cli("mailbox create --account alice Projects", "already exists");
    n.reject_cli(
        "mailbox rename --account alice Archive Projects",
        "already exists",
    );
    n.reject_cli(
        "mailbox rename --account alice INBOX Old",
        "INBOX cannot be renamed",
    );
    n.reject_cli(
        "mailbox delete --account alice INBOX",
        "INBOX cannot be deleted",
    );
    n.reject_cli(
        "mailbox delete --account alice Nope",
        "unknown mailbox \"Nope\"",
    );
    n.reject_cli(
        "mailbox rename --account alice Nope X",
        "unknown mailbox \"Nope\"",
    );
    n.reject_cli("mailbox list --account bob", "unknown account \"bob\"");
    n.reject_cli(
        "mailbox create --account bad~name X",
        "invalid account name",
    );
    n.reject_cli(
        "mailbox create --account alice a//b",
        "invalid mailbox name",
    );
}

#[test]
fn append_then_list_shows_uid_guid_flags_size_blob() {
    let n = Node::new();
    n.create("alice", "INBOX");
    let files: Vec<PathBuf> = (1..=3).map(|i| n.msg(&format!("m{i}"))).collect();
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let got = n.append("alice", "INBOX", Some("\\Seen $Work"), &refs);
    assert_eq!(got.iter().map(|(u, _)| *u).collect::<Vec<_>>(), [1, 2, 3]);
    let guids: BTreeSet<&String> = got.iter().map(|(_, g)| g).collect();
    assert_eq!(guids.len(), 3, "GUIDs are distinct");

    // More, without flags, one of them from standard input.
    let m4 = n.msg("m4");
    let stdin_msg = b"From: c@example.org\nSubject: piped\n\nfrom stdin\n".to_vec();
    let mut child = cmd()
        .args([
            "--data-dir",
            n.dir(),
            "append",
            "--account",
            "alice",
            "--mailbox",
            "INBOX",
        ])
        .args([s(&m4), "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&stdin_msg)
        .expect("write stdin");
    let o = child.wait_with_output().expect("wait");
    assert!(o.status.success(), "{o:?}");
    let more = parse_appended(&String::from_utf8(o.stdout).expect("utf-8"));
    assert_eq!(more.iter().map(|(u, _)| *u).collect::<Vec<_>>(), [4, 5]);

    let rows = n.list("alice", "INBOX");
    let mut want = Vec::new();
    let contents: Vec<Vec<u8>> = files
        .iter()
        .chain([&m4])
        .map(|p| std::fs::read(p).expect("read"))
        .chain([stdin_msg])
        .collect();
    for (i, ((uid, guid), bytes)) in got.iter().chain(&more).zip(&contents).enumerate() {
        want.push(Row {
            uid: *uid,
            guid: guid.clone(),
            flags: if i < 3 {
                strs(&["$Work", "\\Seen"])
            } else {
                vec![]
            },
            size: bytes.len() as u64,
            blob: sha256_hex(bytes),
        });
    }
    assert_eq!(rows, want);

    // --json agrees with the text listing.
    let v = n.cli_json("list --account alice --mailbox INBOX");
    let arr = v.as_array().expect("array");
    assert_eq!(arr.len(), rows.len());
    for (j, r) in arr.iter().zip(&rows) {
        assert_eq!(j["uid"].as_u64(), Some(u64::from(r.uid)));
        assert_eq!(j["guid"].as_str(), Some(r.guid.as_str()));
        assert_eq!(j["size"].as_u64(), Some(r.size));
        assert_eq!(j["blob"].as_str(), Some(r.blob.as_str()));
        let flags: Vec<String> = serde_json::from_value(j["flags"].clone()).expect("flags");
        assert_eq!(flags, r.flags);
    }
    // --json append prints the same pairs as an array.
    let m6 = n.msg("m6");
    let v = n.json(&["append", "--account", "alice", "--mailbox", "INBOX", s(&m6)]);
    assert_eq!(v[0]["uid"].as_u64(), Some(6));
    assert!(is_hex(v[0]["guid"].as_str().expect("guid"), 32));

    let st = n.mailbox_status("alice", "INBOX");
    assert_eq!((st.uidnext, st.messages, st.unseen), (7, 6, 3));
}

#[test]
fn flags_add_remove_replace_over_uid_sets() {
    let n = Node::new();
    n.create("alice", "INBOX");
    let files: Vec<PathBuf> = (1..=8).map(|i| n.msg(&format!("m{i}"))).collect();
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    n.append("alice", "INBOX", Some("\\Seen"), &refs);
    let flags = |f: &[&str]| strs(f);

    let out = n.cli("flags --account alice --mailbox INBOX --uid 3 +\\Flagged");
    assert_eq!(out, "3 (\\Flagged \\Seen)\n");

    let out = n.cli("flags --account alice --mailbox INBOX --uid 2:7 +$Work");
    assert_eq!(out.lines().count(), 6, "{out}");
    assert!(
        out.starts_with("2 ($Work \\Seen)\n3 ($Work \\Flagged \\Seen)\n"),
        "{out}"
    );

    // `-\Seen` is a positional value, not an option.
    let out = n.cli("flags --account alice --mailbox INBOX --uid 1,4:* -\\Seen");
    let uids: Vec<&str> = out
        .lines()
        .map(|l| l.split(' ').next().unwrap_or(""))
        .collect();
    assert_eq!(uids, ["1", "4", "5", "6", "7", "8"]);

    let out = n.cli("flags --account alice --mailbox INBOX --uid 3 =\\Draft~$Work");
    assert_eq!(out, "3 ($Work \\Draft)\n");

    let mut want = BTreeMap::new();
    want.insert(1, flags(&[]));
    want.insert(2, flags(&["$Work", "\\Seen"]));
    want.insert(3, flags(&["$Work", "\\Draft"]));
    for u in 4..=7 {
        want.insert(u, flags(&["$Work"]));
    }
    want.insert(8, flags(&[]));
    assert_eq!(n.flags_of("alice", "INBOX"), want);
    assert_eq!(n.mailbox_status("alice", "INBOX").unseen, 7);

    // Flag names are case-insensitive for system flags and printed canonically; the
    // parenthesized form works; removing an absent flag is a no-op.
    let v = n.cli_json("flags --account alice --mailbox INBOX --uid 8 +(\\seen~\\ANSWERED)");
    assert_eq!(
        v,
        serde_json::json!([{ "uid": 8, "flags": ["\\Answered", "\\Seen"] }])
    );
    let before = n.snapshot();
    let out = n.cli("flags --account alice --mailbox INBOX --uid 1 -\\Deleted");
    assert_eq!(out, "1 ()\n");
    assert_eq!(
        before,
        n.snapshot(),
        "a flag change that changes nothing is not a change"
    );
    assert_eq!(n.mailbox_status("alice", "INBOX").unseen, 6);
}

#[test]
fn expunge_copy_move() {
    let n = Node::new();
    n.create("alice", "INBOX");
    n.create("alice", "Archive");
    let files: Vec<PathBuf> = (1..=5).map(|i| n.msg(&format!("m{i}"))).collect();
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    n.append("alice", "INBOX", Some("$Work"), &refs);
    n.cli("flags --account alice --mailbox INBOX --uid 3 +\\Flagged");
    let inbox = n.list("alice", "INBOX");

    let out = n.cli("expunge --account alice --mailbox INBOX --uid 2,4");
    assert_eq!(out, "2\n4\n");
    let left = n.list("alice", "INBOX");
    assert_eq!(left, [inbox[0].clone(), inbox[2].clone(), inbox[4].clone()]);
    let st = n.mailbox_status("alice", "INBOX");
    assert_eq!(
        (st.messages, st.uidnext),
        (3, 6),
        "expunge does not reuse UIDs"
    );

    // Copy: new messages (new GUIDs, new UIDs) sharing the blobs and flags; source intact.
    let out = n.cli("copy --account alice --mailbox INBOX --uid 1:3 --to Archive");
    assert_eq!(out, "1 1\n3 2\n");
    assert_eq!(n.list("alice", "INBOX"), left);
    let archive = n.list("alice", "Archive");
    assert_eq!(archive.len(), 2);
    for (copy, orig) in archive.iter().zip([&inbox[0], &inbox[2]]) {
        assert_ne!(copy.guid, orig.guid, "a copy is a new message");
        assert_eq!(
            (&copy.blob, copy.size, &copy.flags),
            (&orig.blob, orig.size, &orig.flags)
        );
    }
    assert_eq!(archive[1].flags, strs(&["$Work", "\\Flagged"]));

    // Move: copy, then expunge in the source.
    let v = n.cli_json("move --account alice --mailbox INBOX --uid 5 --to Archive");
    assert_eq!(v, serde_json::json!([{ "uid": 5, "new_uid": 3 }]));
    assert_eq!(
        n.list("alice", "INBOX"),
        [inbox[0].clone(), inbox[2].clone()]
    );
    let archive = n.list("alice", "Archive");
    assert_eq!(archive.iter().map(|r| r.uid).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(archive[2].blob, inbox[4].blob);
    assert_eq!(
        archive[2].blob,
        sha256_hex(&std::fs::read(&files[4]).expect("read"))
    );
    assert_ne!(archive[2].guid, inbox[4].guid);

    // Expunging the original leaves the copy.
    n.cli("expunge --account alice --mailbox INBOX --uid 1:*");
    assert!(n.list("alice", "INBOX").is_empty());
    assert_eq!(n.list("alice", "Archive"), archive);
    let st = n.mailbox_status("alice", "Archive");
    assert_eq!((st.messages, st.uidnext), (3, 4));

    n.reject_cli(
        "copy --account alice --mailbox Archive --uid 1 --to Nope",
        "unknown mailbox \"Nope\"",
    );
    n.reject_cli(
        "move --account alice --mailbox Archive --uid x --to INBOX",
        "invalid UID set \"x\"",
    );
}

/// `fetch` prints the exact bytes of a message, 8-bit and bare-LF bodies included; an
/// unknown account, mailbox or UID (never used, or expunged) is a one-line error, exit 2.
#[test]
fn fetch_prints_the_raw_message() {
    let n = Node::new();
    n.create("alice", "INBOX");
    let mut raw = b"From: a@example.org\r\nSubject: caf\xc3\xa9\n\r\n".to_vec();
    raw.extend((0u8..=255).filter(|b| *b != 0));
    raw.extend(b"\r\nno final newline");
    let m8 = n.file("8bit.eml", &raw);
    let plain = n.msg("plain");
    let got = n.append("alice", "INBOX", None, &[&m8, &plain]);
    let fetched = cmd()
        .arg("--data-dir")
        .arg(&n.data)
        .args([
            "fetch",
            "--account",
            "alice",
            "--mailbox",
            "INBOX",
            "--uid",
            "1",
        ])
        .output()
        .expect("run fetch");
    assert!(fetched.status.success(), "fetch: {fetched:?}");
    assert_eq!(
        fetched.stdout, raw,
        "fetch of UID 1 is not the file byte for byte"
    );
    assert!(fetched.stderr.is_empty());
    let second = n.ok(&[
        "fetch",
        "--account",
        "alice",
        "--mailbox",
        "INBOX",
        "--uid",
        "2",
    ]);
    assert_eq!(
        second.as_bytes(),
        std::fs::read(&plain).expect("read").as_slice()
    );
    assert_eq!(got[1].0, 2);

    n.ok(&[
        "expunge",
        "--account",
        "alice",
        "--mailbox",
        "INBOX",
        "--uid",
        "2",
    ]);
    for (args, needle) in [
        (
            ["--account", "alice", "--mailbox", "INBOX", "--uid", "2"],
            "UID 2",
        ),
        (
            ["--account", "alice", "--mailbox", "INBOX", "--uid", "9"],
            "UID 9",
        ),
        (
            ["--account", "alice", "--mailbox", "INBOX", "--uid", "x"],
            "x",
        ),
        (
            ["--account", "alice", "--mailbox", "Nope", "--uid", "1"],
            "Nope",
        ),
        (
            ["--account", "bob", "--mailbox", "INBOX", "--uid", "1"],
            "bob",
        ),
    ] {
        let mut a = vec!["fetch"];
        a.extend(args);
        let r = n.run(&a);
        assert_eq!(r.code, 2, "fetch {args:?}: {r:?}");
        assert_error(&r, needle, &format!("fetch {args:?}"));
    }
}

#[test]
fn status_reports_every_mailbox() {
    let n = Node::new();
    n.create("alice", "INBOX");
    n.create("alice", "Sent");
    n.create("bob", "INBOX");
    let a = n.msg("a");
    let b = n.msg("b");
    n.append("alice", "INBOX", None, &[&a, &b]);
    n.append("alice", "Sent", Some("\\Seen"), &[&a]);

    let all = n.status(None);
    let names: Vec<(&str, &str)> = all
        .iter()
        .map(|st| (st.account.as_str(), st.mailbox.as_str()))
        .collect();
    assert_eq!(
        names,
        [("alice", "INBOX"), ("alice", "Sent"), ("bob", "INBOX")]
    );
    let alice = n.status(Some("alice"));
    assert_eq!(alice, all[..2]);
    assert_eq!(n.status(Some("bob")), all[2..]);

    let (inbox, sent, bob) = (&all[0], &all[1], &all[2]);
    assert_eq!((inbox.uidnext, inbox.messages, inbox.unseen), (3, 2, 2));
    assert_eq!((sent.uidnext, sent.messages, sent.unseen), (2, 1, 0));
    assert_eq!((bob.uidnext, bob.messages, bob.unseen), (1, 0, 0));
    assert_ne!(inbox.uidvalidity, sent.uidvalidity);
    assert_ne!(inbox.digest, sent.digest);

    // JSON agrees with text.
    let v = n.cli_json("status");
    let arr = v.as_array().expect("array");
    assert_eq!(arr.len(), 3);
    for (j, st) in arr.iter().zip(&all) {
        assert_eq!(j["account"].as_str(), Some(st.account.as_str()));
        assert_eq!(j["name"].as_str(), Some(st.mailbox.as_str()));
        assert_eq!(j["uidvalidity"].as_u64(), Some(u64::from(st.uidvalidity)));
        assert_eq!(j["uidnext"].as_u64(), Some(u64::from(st.uidnext)));
        assert_eq!(j["messages"].as_u64(), Some(st.messages));
        assert_eq!(j["unseen"].as_u64(), Some(st.unseen));
        assert_eq!(j["digest"].as_str(), Some(st.digest.as_str()));
    }

    // The counters and the digest follow the changes.
    n.cli("flags --account alice --mailbox INBOX --uid 1 +\\Seen");
    let after = n.mailbox_status("alice", "INBOX");
    assert_eq!(
        (
            after.uidvalidity,
            after.uidnext,
            after.messages,
            after.unseen
        ),
        (inbox.uidvalidity, 3, 2, 1)
    );
    assert_ne!(
        after.digest, inbox.digest,
        "a flag change changes the digest"
    );
    n.cli("expunge --account alice --mailbox INBOX --uid 2");
    let after = n.mailbox_status("alice", "INBOX");
    assert_eq!((after.uidnext, after.messages, after.unseen), (3, 1, 0));
}
