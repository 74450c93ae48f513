use crate::common::*;

#[test]
fn split_brain_appends_are_renumbered_on_sync() {
    let (a, b) = (Node::new(), Node::new());
    let mut appended = BTreeSet::new();
    for (n, tag) in [(&a, "a"), (&b, "b")] {
        n.create("alice", "INBOX");
        let files: Vec<PathBuf> = (1..=3).map(|i| n.msg(&format!("{tag}{i}"))).collect();
        let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        let got = n.append("alice", "INBOX", None, &refs);
        assert_eq!(
            got.iter().map(|(u, _)| *u).collect::<Vec<_>>(),
            [1, 2, 3],
            "both claim 1-3"
        );
        appended.extend(got.into_iter().map(|(_, g)| g));
    }
    assert_eq!(appended.len(), 6);
    // Flags set before the sync follow their messages to their new UIDs.
    a.cli("flags --account alice --mailbox INBOX --uid 2 +\\Seen");
    b.cli("flags --account alice --mailbox INBOX --uid 3 +\\Flagged");
    let seen_guid = a.list("alice", "INBOX")[1].guid.clone();
    let flagged_guid = b.list("alice", "INBOX")[2].guid.clone();
    let uv_a = a.mailbox_status("alice", "INBOX").uidvalidity;
    let uv_b = b.mailbox_status("alice", "INBOX").uidvalidity;
    assert_eq!(
        uv_a, uv_b,
        "INBOX created on both nodes is the same mailbox"
    );

    // Before the sync, diff exits 1 and names every differing message.
    let r = diff(&[&a, &b]);
    assert_eq!(r.code, 1, "{r:?}");
    for g in &appended {
        assert!(
            r.out.contains(g.as_str()),
            "diff does not name {g}: {}",
            r.out
        );
    }
    assert!(r.out.trim_end().ends_with("differences"), "{}", r.out);

    sync(&a, &b);
    let rows_a = a.list("alice", "INBOX");
    let rows_b = b.list("alice", "INBOX");
    assert_eq!(rows_a, rows_b, "both dirs list the same messages");
    assert_eq!(rows_a.len(), 6);
    let listed: BTreeSet<String> = rows_a.iter().map(|r| r.guid.clone()).collect();
    assert_eq!(listed, appended, "every message survives");
    for r in &rows_a {
        let want: &[&str] = if r.guid == seen_guid {
            &["\\Seen"]
        } else if r.guid == flagged_guid {
            &["\\Flagged"]
        } else {
            &[]
        };
        assert_eq!(r.flags, strs(want), "flags of {}", r.guid);
    }
    assert!(
        rows_a.iter().all(|r| r.uid >= 4),
        "conflicting UIDs are never reused: {rows_a:?}"
    );
    for n in [&a, &b] {
        let st = n.mailbox_status("alice", "INBOX");
        assert_eq!(st.uidvalidity, uv_a, "UIDVALIDITY is unchanged");
        assert_eq!(st.messages, 6);
        assert!(st.uidnext > rows_a.last().map_or(0, |r| r.uid));
    }
    assert_eq!(a.status(None), b.status(None));
    let r = diff(&[&a, &b]);
    assert_eq!(
        (r.code, r.out.as_str()),
        (0, "converged: 2 data dirs hold the same state\n"),
        "{r:?}"
    );

    // A second sync has nothing to do; later appends continue above the renumbered UIDs.
    assert!(sync(&a, &b).starts_with("synced 0 documents"));
    let m = a.msg("later");
    let got = a.append("alice", "INBOX", None, &[&m]);
    assert_eq!(got[0].0, a.mailbox_status("alice", "INBOX").uidnext - 1);
    assert!(got[0].0 > rows_a.last().map_or(0, |r| r.uid));
    sync(&b, &a);
    assert_eq!(a.list("alice", "INBOX"), b.list("alice", "INBOX"));
    assert_eq!(diff(&[&a, &b]).code, 0);
}

#[test]
fn concurrent_flag_changes_merge_and_expunge_wins() {
    let (a, b) = (Node::new(), Node::new());
    a.create("alice", "INBOX");
    let files: Vec<PathBuf> = (1..=3).map(|i| a.msg(&format!("m{i}"))).collect();
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    a.append("alice", "INBOX", None, &refs);
    sync(&a, &b);
    assert_eq!(a.list("alice", "INBOX"), b.list("alice", "INBOX"));
    assert_eq!(diff(&[&a, &b]).code, 0);
    let base = a.list("alice", "INBOX");

    let flags = |n: &Node, uid: &str, change: &str| {
        n.ok(&[
            "flags",
            "--account",
            "alice",
            "--mailbox",
            "INBOX",
            "--uid",
            uid,
            change,
        ]);
    };
    flags(&a, "1", "+\\Seen");
    flags(&b, "1", "+\\Flagged");
    a.cli("expunge --account alice --mailbox INBOX --uid 2");
    flags(&b, "2", "+\\Answered $Later");
    flags(&b, "3", "+$Keep");
    flags(&a, "3", "-$Keep");
    let r = diff(&[&a, &b]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.out.contains(&base[1].guid),
        "names the expunged message: {}",
        r.out
    );
    assert!(
        r.out.contains("UID 1 flags"),
        "names the flag difference: {}",
        r.out
    );

    sync(&a, &b);
    for n in [&a, &b] {
        let rows = n.list("alice", "INBOX");
        assert_eq!(
            rows.iter().map(|r| r.uid).collect::<Vec<_>>(),
            [1, 3],
            "UID 2 expunged on both"
        );
        assert_eq!(rows[0].guid, base[0].guid);
        assert_eq!(
            rows[0].flags,
            strs(&["\\Flagged", "\\Seen"]),
            "both flags kept"
        );
        assert_eq!(
            rows[1].flags,
            strs(&["$Keep"]),
            "a concurrent add survives a no-op remove"
        );
        let st = n.mailbox_status("alice", "INBOX");
        assert_eq!((st.messages, st.unseen), (2, 1));
    }
    assert_eq!(a.status(None), b.status(None));
    assert_eq!(diff(&[&a, &b]).code, 0);

    // Deleting a mailbox on one side while the other appends to it: the delete removes
    // what it saw (despite a concurrent flag change); the new message survives and
    // brings the mailbox back, under a restore name of its own, never under "Job".
    a.create("alice", "Job");
    let old = a.append("alice", "Job", None, &[&files[0], &files[1]]);
    sync(&a, &b);
    let uv = b.mailbox_status("alice", "Job").uidvalidity;
    assert_eq!(a.cli("mailbox delete --account alice Job"), "");
    let new = b.append("alice", "Job", None, &[&files[2]]);
    flags(&b, "1", "+\\Seen");
    sync(&a, &b);
    for n in [&a, &b] {
        let restored: Vec<Status> = n
            .status(None)
            .into_iter()
            .filter(|st| st.mailbox.starts_with("Job (restored "))
            .collect();
        assert_eq!(restored.len(), 1, "{restored:?}");
        assert!(n.status(None).iter().all(|st| st.mailbox != "Job"));
        let rows = n.list("alice", &restored[0].mailbox);
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!((rows[0].uid, &rows[0].guid), (new[0].0, &new[0].1));
        assert!(old.iter().all(|(_, g)| *g != rows[0].guid));
        assert_eq!(restored[0].uidvalidity, uv);
    }
    assert_eq!(a.status(None), b.status(None));
    assert_eq!(diff(&[&a, &b]).code, 0);
    // "Job" is free again, and a new "Job" shows a greater UIDVALIDITY.
    a.create("alice", "Job");
    assert!(a.mailbox_status("alice", "Job").uidvalidity > uv);
}

#[test]
fn diff_three_dirs_and_json() {
    let (p, q, r) = (Node::new(), Node::new(), Node::new());
    p.create("alice", "INBOX");
    let m1 = p.msg("m1");
    let m2 = p.msg("m2");
    p.append("alice", "INBOX", None, &[&m1, &m2]);
    sync(&p, &q);

    // r is empty: it is the one named.
    let d = diff(&[&p, &q, &r]);
    assert_eq!(d.code, 1, "{d:?}");
    assert_eq!(
        d.out,
        format!("account alice: only in {}\n1 differences\n", p.dir()),
        "p and q agree, so only r differs"
    );
    let v: Value = serde_json::from_str(&run(&["--json", "diff", p.dir(), q.dir(), r.dir()]).out)
        .expect("json");
    assert_eq!(v["converged"], false);
    assert_eq!(
        v["differences"],
        serde_json::json!([{ "kind": "account", "account": "alice", "only_in": p.dir() }])
    );

    sync(&q, &r);
    let d = diff(&[&p, &q, &r]);
    assert_eq!(
        (d.code, d.out.as_str()),
        (0, "converged: 3 data dirs hold the same state\n"),
        "{d:?}"
    );
    let d = run(&["--json", "diff", r.dir(), p.dir(), q.dir()]);
    assert_eq!(d.code, 0);
    let v: Value = serde_json::from_str(&d.out).expect("json");
    assert_eq!(
        v,
        serde_json::json!({ "converged": true, "differences": [] })
    );

    // Diverge q (flags) and r (a new message).
    let rows = p.list("alice", "INBOX");
    q.cli("flags --account alice --mailbox INBOX --uid 2 +\\Seen");
    let m3 = r.msg("m3");
    let new = r.append("alice", "INBOX", None, &[&m3]);
    let d = run(&["--json", "diff", p.dir(), q.dir(), r.dir()]);
    assert_eq!(d.code, 1, "{d:?}");
    let v: Value = serde_json::from_str(&d.out).expect("json");
    assert_eq!(v["converged"], false);
    let diffs = v["differences"].as_array().expect("array");
    let kinds: BTreeSet<&str> = diffs
        .iter()
        .map(|x| x["kind"].as_str().expect("kind"))
        .collect();
    assert!(kinds.contains("flags") && kinds.contains("message"), "{v}");
    assert!(diffs.contains(&serde_json::json!({
        "kind": "flags", "account": "alice", "mailbox": "INBOX", "uid": 2, "a": "", "b": "\\Seen"
    })), "{v}");
    assert!(
        diffs.contains(&serde_json::json!({
            "kind": "message", "account": "alice", "mailbox": "INBOX", "uid": new[0].0,
            "guid": new[0].1, "only_in": r.dir()
        })),
        "{v}"
    );
    assert!(diffs.iter().all(|x| x["account"] == "alice"));
    let text = diff(&[&p, &q, &r]);
    assert_eq!(text.code, 1);
    assert!(
        text.out.contains(&new[0].1) && text.out.contains(r.dir()),
        "{}",
        text.out
    );
    assert!(
        text.out.contains("UID 2 flags () vs (\\Seen)"),
        "{}",
        text.out
    );
    assert_eq!(rows, p.list("alice", "INBOX"), "diff changes nothing");

    // Sync everything: converged again, and diff of one dir is trivially converged.
    sync(&p, &q);
    sync(&q, &r);
    sync(&p, &q);
    assert_eq!(diff(&[&p, &q, &r]).code, 0);
    assert_eq!(diff(&[&r]).code, 0);
    let rows = p.list("alice", "INBOX");
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1].flags, strs(&["\\Seen"]));

    // A missing dir is an error (exit 2), not a difference.
    let gone = p.root.join("gone");
    let d = run(&["diff", p.dir(), s(&gone)]);
    assert_eq!(d.code, 2, "{d:?}");
    assert_error(&d, "no dovetail data dir", "diff with a missing dir");
}

/// `sync` refuses a data dir paired with itself, or with a copy of itself (same node id),
/// with one clear line, and changes nothing.
#[test]
fn sync_refuses_a_dir_with_itself() {
    let a = Node::new();
    a.create("alice", "INBOX");
    let m1 = a.msg("m1");
    a.append("alice", "INBOX", None, &[m1.as_path()]);
    let before = a.snapshot();
    let r = run(&["sync", a.dir(), a.dir()]);
    assert_error(&r, "is the same data dir as", "sync A A");
    assert_eq!(a.snapshot(), before, "a refused sync changed the data dir");
}

/// Issue 5 §5: a data dir copied as a backup and restored later writes under a new writer
/// id, so nothing it writes after the restore collides with what the original wrote.
#[test]
fn a_restored_copy_loses_nothing() {
    let (a, b) = (Node::new(), Node::new());
    a.create("alice", "INBOX");
    let files: Vec<PathBuf> = (1..=6).map(|i| a.msg(&format!("m{i}"))).collect();
    a.append("alice", "INBOX", None, &[&files[0]]);
    sync(&a, &b);
    // The backup.
    let backup = a.root.join("backup");
    let st = Command::new("cp")
        .args(["-a", a.dir(), s(&backup)])
        .status()
        .expect("cp");
    assert!(st.success());
    // Life goes on at A: writes, synced to B.
    a.append("alice", "INBOX", None, &[&files[1], &files[2]]);
    a.cli("flags --account alice --mailbox INBOX --uid 1 +\\Seen");
    a.cli("mailbox create --account alice Work");
    a.append("alice", "Work", None, &[&files[3]]);
    sync(&a, &b);
    // A's disk dies; the backup is restored in its place and written to before syncing.
    std::fs::remove_dir_all(a.dir()).expect("rm");
    std::fs::rename(&backup, a.dir()).expect("restore");
    let r = a.run(&[
        "append",
        "--account",
        "alice",
        "--mailbox",
        "INBOX",
        s(&files[4]),
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.err.contains("copied or restored"), "says why: {r:?}");
    a.cli("mailbox create --account alice Notes");
    a.append("alice", "Notes", None, &[&files[5]]);
    a.cli("flags --account alice --mailbox INBOX --uid 1 +$Restored");
    sync(&a, &b);
    sync(&a, &b);
    assert_eq!(diff(&[&a, &b]).code, 0);
    let inbox = a.list("alice", "INBOX");
    let bodies: Vec<&str> = inbox.iter().map(|r| r.blob.as_str()).collect();
    for f in [&files[0], &files[1], &files[2], &files[4]] {
        let blob = sha256_hex(&std::fs::read(f).expect("read"));
        assert_eq!(
            bodies.iter().filter(|b| **b == blob).count(),
            1,
            "{} once in INBOX: {inbox:?}",
            f.display()
        );
    }
    assert_eq!(inbox.len(), 4, "{inbox:?}");
    assert_eq!(inbox[0].flags, strs(&["$Restored", "\\Seen"]));
    assert_eq!(a.list("alice", "Work").len(), 1);
    assert_eq!(a.list("alice", "Notes").len(), 1);
    assert_eq!(a.status(None), b.status(None));
}
