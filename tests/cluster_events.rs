//! View events of a running node (`dovetail watch`), `fetch` through the control socket,
//! and the sync progress `status` reports: real nodes on loopback.

mod cluster_support;

use cluster_support::{cmd, ok, run, Cluster};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `dovetail watch --json`, its lines read on a thread.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<Value>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Watch {
    fn start(dir: &str) -> Watch {
        let mut child = cmd()
            .args(["--data-dir", dir, "--json", "watch"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn watch");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { return };
                let v: Value = serde_json::from_str(&l).expect("watch prints JSON lines");
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        Watch { child, lines }
    }

    /// Events until `done` says they are all there (or the time is up); returns them all.
    fn until(&self, secs: u64, mut done: impl FnMut(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut got = Vec::new();
        while !done(&got) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => got.push(v),
                Err(_) => break,
            }
        }
        got
    }
}

fn has(events: &[Value], kind: &str, guid: &str, remote: bool) -> bool {
    events
        .iter()
        .any(|e| e["kind"] == kind && e["guid"] == guid && e["remote"] == remote)
}

/// `dovetail watch` on node 1 shows its own appends as local events and node 0's appends,
/// flag change and expunge as peer events, each naming the mailbox, the message's GUID and
/// the UID node 1 shows it at; `fetch` through node 1's control socket returns node 0's
/// message byte for byte; `status` reports the sync done.
#[test]
fn watch_follows_local_writes_and_peers_changes() {
    let mut c = Cluster::new(2);
    // On a stopped data dir, watch explains itself and fails.
    let r = run(&["--data-dir", c.dir(1), "watch"]);
    assert_ne!(r.code, 0);
    assert!(r.err.contains("no node runs"), "{}", r.err);

    c.start(0, &[]);
    c.start(1, &[0]);
    let w = Watch::start(c.dir(1));
    // The watch is subscribed once it reports a local write.
    let deadline = Instant::now() + Duration::from_secs(20);
    let probe = loop {
        let p = c.append(1, "probe", 1)[0].1.clone();
        if !w.until(2, |e| has(e, "shown", &p, false)).is_empty() {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "watch never reported a local append"
        );
    };
    // Node 0 knows the probe before it appends: no UID clash, so node 1 shows node 0's
    // messages by delivering node 0's changes (a clash would show them through node 1's
    // own renumbering: local events).
    assert!(c.converged(&[0, 1], 30), "no convergence after the probe");
    let mine = c.append(0, "remote", 3);
    let events = w.until(30, |e| mine.iter().all(|(_, g)| has(e, "shown", g, true)));
    for (_, g) in &mine {
        assert!(
            has(&events, "shown", g, true),
            "no peer `shown` event for {g}: {events:?}"
        );
    }
    assert!(c.converged(&[0, 1], 30), "no convergence");
    // Each event names the mailbox and the UID node 1 shows the message at.
    let listed = c.list(1);
    for e in events.iter().filter(|e| e["kind"] == "shown") {
        assert_eq!(e["mailbox"], "alice/INBOX", "{e}");
        let g = e["guid"].as_str().expect("guid");
        if g == probe {
            continue;
        }
        let uid = listed
            .iter()
            .find(|r| r.1 == g)
            .map(|r| r.0 as u64)
            .expect("shown message listed");
        assert_eq!(e["uid"].as_u64(), Some(uid), "{e}");
    }

    // A flag change and an expunge on node 0 reach node 1's watchers.
    let uid_on_0 = |g: &str| {
        c.list(0)
            .into_iter()
            .find(|r| r.1 == g)
            .map(|r| r.0.to_string())
            .expect("listed on node 0")
    };
    let (flagged, gone) = (mine[0].1.clone(), mine[1].1.clone());
    let base = [
        "--data-dir",
        c.dir(0),
        "flags",
        "--account",
        "alice",
        "--mailbox",
        "INBOX",
        "--uid",
    ];
    let u = uid_on_0(&flagged);
    ok(&[&base[..], &[u.as_str(), "+\\Flagged"]].concat());
    let u = uid_on_0(&gone);
    ok(&[
        "--data-dir",
        c.dir(0),
        "expunge",
        "--account",
        "alice",
        "--mailbox",
        "INBOX",
        "--uid",
        &u,
    ]);
    let events = w.until(30, |e| {
        has(e, "flags", &flagged, true) && has(e, "hidden", &gone, true)
    });
    assert!(has(&events, "flags", &flagged, true), "{events:?}");
    assert!(has(&events, "hidden", &gone, true), "{events:?}");

    // fetch through the running node: node 0's third message, byte for byte.
    let kept = &mine[2].1;
    let uid = c
        .list(1)
        .into_iter()
        .find(|r| &r.1 == kept)
        .map(|r| r.0.to_string())
        .expect("listed on node 1");
    let o = cmd()
        .args([
            "--data-dir",
            c.dir(1),
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
    assert!(o.status.success(), "{o:?}");
    let file = std::fs::read(c.tmp.path().join("remote-2.eml")).expect("message file");
    assert_eq!(
        o.stdout, file,
        "fetched bytes differ from the appended file"
    );
    // An unknown UID through the control socket is a clear error.
    let r = run(&[
        "--data-dir",
        c.dir(1),
        "fetch",
        "--account",
        "alice",
        "--mailbox",
        "INBOX",
        "--uid",
        "4000000",
    ]);
    assert_ne!(r.code, 0);
    assert!(r.err.contains("no message with UID 4000000"), "{}", r.err);

    // status: the sync is done, and node 1 fetched the three blobs from node 0.
    let v: Value =
        serde_json::from_str(&ok(&["--data-dir", c.dir(1), "--json", "status"])).expect("json");
    let sync = &v["sync"];
    assert_eq!(sync["changes_waiting"], 0, "{v}");
    assert_eq!(sync["blobs_missing"], 0, "{v}");
    assert!(sync["blobs_fetched"].as_u64().expect("fetched") >= 3, "{v}");
    assert!(
        sync["blob_bytes_fetched"].as_u64().expect("bytes") > 0,
        "{v}"
    );
    // Documents behind are counted at each summary comparison (every second here).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = ok(&["--data-dir", c.dir(1), "status"]);
        if text.contains("SYNC documents-behind 0 changes-waiting 0 blobs-missing 0") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "status never showed the sync done: {text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // ... and its log says so.
    let deadline = Instant::now() + Duration::from_secs(10);
    while c
        .log_lines(1, "every received change is delivered")
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "no progress line in node 1's log"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
