use crate::common::*;

/// Reads `UID GUID` lines from a running `append`: `limit` lines, or all that remain.
fn read_appended(out: &mut impl BufRead, limit: usize, into: &mut BTreeMap<u32, String>) -> usize {
    let mut n = 0;
    let mut line = String::new();
    while n < limit {
        line.clear();
        if out.read_line(&mut line).expect("read stdout") == 0 || !line.ends_with('\n') {
            break; // end of output, or a line cut short by the kill
        }
        for (u, g) in parse_appended(&line) {
            assert!(into.insert(u, g).is_none(), "UID {u} reported twice");
        }
        n += 1;
    }
    n
}

#[cfg(unix)]
#[test]
fn killed_append_keeps_every_reported_message() {
    use std::os::unix::process::ExitStatusExt;
    const FILES: usize = 5000;
    let n = Node::new();
    n.create("alice", "INBOX");
    let dir = n.root.join("bulk");
    std::fs::create_dir(&dir).expect("mkdir");
    let names: Vec<String> = (0..FILES).map(|i| format!("{i}")).collect();
    for name in &names {
        let body = format!("From: a@example.org\r\nSubject: bulk {name}\r\n\r\n{name}\r\n");
        std::fs::write(dir.join(name), body).expect("write");
    }

    let mut printed: BTreeMap<u32, String> = BTreeMap::new();
    let mut killed = 0;
    // Kill before any output, after the first batch, mid-run, and near the end.
    for stop_after in [0, 1, 1000, 2500, 4001] {
        let mut child = cmd()
            .current_dir(&dir)
            .arg("--data-dir")
            .arg(&n.data)
            .args(["append", "--account", "alice", "--mailbox", "INBOX"])
            .args(&names)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn append");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        read_appended(&mut out, stop_after, &mut printed);
        child.kill().expect("kill");
        let status = child.wait().expect("wait");
        // Whatever it printed before it died was reported durable too.
        read_appended(&mut out, usize::MAX, &mut printed);
        let mut err = String::new();
        child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut err)
            .expect("stderr");
        if status.signal() == Some(9) {
            killed += 1;
        } else {
            assert!(status.success(), "append failed: {status:?} {err}");
        }

        // Reopen: every reported message is there at its reported UID. The first open
        // after a kill may log the storage engine's recovery (a warning), nothing worse.
        let r = n.run(&["list", "--account", "alice", "--mailbox", "INBOX"]);
        assert_eq!(r.code, 0, "reopen after kill at {stop_after}: {}", r.err);
        assert!(
            r.err.lines().all(|l| l.contains("WARN")),
            "reopen after kill at {stop_after}: {}",
            r.err
        );
        let rows = parse_list(&r.out);
        let listed: BTreeMap<u32, String> = rows.iter().map(|r| (r.uid, r.guid.clone())).collect();
        for (u, g) in &printed {
            assert_eq!(
                listed.get(u),
                Some(g),
                "reported UID {u} {g} lost after kill at {stop_after}"
            );
        }
        // Batches are atomic: whole batches of 1000, UIDs 1..=len without gaps.
        assert_eq!(
            rows.len() % 1000,
            0,
            "a partial batch is visible after kill at {stop_after}"
        );
        assert!(
            rows.iter().map(|r| r.uid).eq(1..=rows.len() as u32),
            "UIDs have gaps"
        );
        let st = n.mailbox_status("alice", "INBOX");
        assert_eq!(
            (st.messages, st.uidnext),
            (rows.len() as u64, rows.len() as u32 + 1)
        );
    }
    assert!(
        killed >= 2,
        "the kills came too late to interrupt anything ({killed})"
    );
    assert!(!printed.is_empty());

    // The data dir still takes appends, at the next UID.
    let total = n.list("alice", "INBOX").len() as u32;
    let m = n.msg("after");
    let got = n.append("alice", "INBOX", Some("\\Seen"), &[&m]);
    assert_eq!(got[0].0, total + 1);
    let rows = n.list("alice", "INBOX");
    assert_eq!(
        rows.last().map(|r| (r.uid, r.guid.clone())),
        Some(got[0].clone())
    );
    assert_eq!(rows.len() as u32, total + 1);
}
