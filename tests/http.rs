//! The HTTP front end: `/metrics` scraped with curl parses with Python's prometheus_client
//! (Debian's, under /usr/bin/python3) and its counters move with appends and LMTP
//! deliveries; headless Chromium renders `/`, whose numbers match `dovetail status --json`.
//! Both tools are installed by scripts/test.sh: the tests fail without them, never skip.

mod cluster_support;

use cluster_support::{ok, s, Cluster};
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Debian's Python, where python3-prometheus-client installs.
const PYTHON: &str = "/usr/bin/python3";

/// Parses OpenMetrics/Prometheus text with prometheus_client's own parser; returns every
/// sample as `name{labels}` → value.
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for fam in text_string_to_metric_families(sys.stdin.read()):
    for smp in fam.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(smp.labels.items()))
        out[f"{smp.name}{{{labels}}}"] = smp.value
print(json.dumps(out))
"#;

/// Fetches `/metrics` with curl and parses it for real.
fn scrape(port: u16) -> BTreeMap<String, f64> {
    let o = Command::new("curl")
        .args(["-sSf", &format!("http://127.0.0.1:{port}/metrics")])
        .output()
        .expect("curl runs (scripts/test.sh installs it)");
    assert!(o.status.success(), "curl /metrics: {o:?}");
    let mut p = Command::new(PYTHON)
        .args(["-c", PARSE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    use std::io::Write;
    p.stdin
        .take()
        .expect("stdin")
        .write_all(&o.stdout)
        .expect("write");
    let r = p.wait_with_output().expect("python3");
    assert!(
        r.status.success(),
        "prometheus_client refused the metrics ({}; scripts/test.sh installs \
         python3-prometheus-client):\n{}",
        String::from_utf8_lossy(&r.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    serde_json::from_slice(&r.stdout).expect("json")
}

fn get(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("no sample {key} in {m:#?}"))
}

/// Waits until `f` holds of a fresh scrape.
fn scrape_until(port: u16, what: &str, f: impl Fn(&BTreeMap<String, f64>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = scrape(port);
        if f(&m) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {m:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn append(c: &Cluster, i: usize, n: usize) {
    let mut files = Vec::new();
    for k in 0..n {
        let f = c.tmp.path().join(format!("m{i}-{k}.eml"));
        std::fs::write(&f, format!("Subject: m {k}\r\n\r\nbody {k}\r\n")).expect("write");
        files.push(s(&f).to_string());
    }
    let mut args = vec![
        "--data-dir",
        c.dir(i),
        "append",
        "--account",
        "alice",
        "--mailbox",
        "INBOX",
    ];
    args.extend(files.iter().map(String::as_str));
    ok(&args);
}

fn swaks_to_alice(lmtp: u16, data: &std::path::Path) {
    let o = Command::new("swaks")
        .args([
            "--protocol",
            "LMTP",
            "--server",
            &format!("127.0.0.1:{lmtp}"),
            "--from",
            "sender@example.org",
            "--to",
            "alice@example.org",
            "--data",
            &format!("@{}", s(data)),
        ])
        .output()
        .expect("swaks runs (scripts/test.sh installs it)");
    assert!(o.status.success(), "swaks: {o:?}");
}

/// Two nodes; node 0 serves HTTP and LMTP.
fn start(c: &mut Cluster) -> (u16, u16) {
    let (http, lmtp) = (free_port(), free_port());
    c.node_args = vec![
        "--http".into(),
        format!("127.0.0.1:{http}"),
        "--lmtp".into(),
        format!("127.0.0.1:{lmtp}"),
    ];
    c.start(0, &[]);
    c.node_args.clear();
    c.start(1, &[0]);
    (http, lmtp)
}

#[test]
fn metrics_parse_and_move_with_writes() {
    let mut c = Cluster::new(2);
    let (http, lmtp) = start(&mut c);
    scrape_until(http, "a peer connects and is compared", |m| {
        m.get("dovetail_peers_connected{}") == Some(&1.0)
            && m.keys()
                .any(|k| k.starts_with("dovetail_documents_behind{peer="))
    });
    let before = scrape(http);
    let appended = get(&before, "dovetail_appended_messages_total{}");
    let fsyncs = get(&before, "dovetail_fsync_seconds_count{}");
    let sent = get(&before, "dovetail_sync_bytes_sent_total{}");
    assert!(before.contains_key("dovetail_renumbered_messages_total{}"));
    assert!(before.contains_key("dovetail_sync_bytes_received_total{}"));
    assert!(before
        .keys()
        .any(|k| k.starts_with("dovetail_documents_behind{peer=")));
    assert!(before
        .keys()
        .any(|k| k.starts_with("dovetail_fsync_seconds_bucket{le=")));

    append(&c, 0, 3);
    let msg = c.tmp.path().join("lmtp.eml");
    std::fs::write(&msg, "Subject: over LMTP\r\n\r\nhello\r\n").expect("write");
    swaks_to_alice(lmtp, &msg);
    scrape_until(http, "counters move", |m| {
        get(m, "dovetail_appended_messages_total{}") >= appended + 4.0
            && m.get("dovetail_sessions_total{front_end=\"lmtp\"}") >= Some(&1.0)
            && get(m, "dovetail_fsync_seconds_count{}") > fsyncs
            && get(m, "dovetail_sync_bytes_sent_total{}") > sent
    });
    assert!(c.converged(&[0, 1], 60));
    c.stop(1);
    c.stop(0);
}

/// The text of the `data-k="key"` cell in `row`.
fn cell<'a>(row: &'a str, key: &str) -> &'a str {
    let at = row
        .find(&format!("data-k=\"{key}\">"))
        .unwrap_or_else(|| panic!("no {key} in {row}"));
    let rest = &row[at..];
    let start = rest.find('>').expect(">") + 1;
    let end = rest[start..].find('<').expect("<") + start;
    &rest[start..end]
}

/// The `<tr>` whose attributes contain `attrs`.
fn row<'a>(dom: &'a str, attrs: &str) -> &'a str {
    let at = dom
        .find(attrs)
        .unwrap_or_else(|| panic!("no row {attrs} in the page:\n{dom}"));
    let end = dom[at..].find("</tr>").expect("</tr>") + at;
    &dom[at..end]
}

fn chromium(args: &[&str], profile: &std::path::Path) -> std::process::Output {
    let o = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            &format!("--user-data-dir={}", s(profile)),
        ])
        .args(args)
        .output()
        .expect("chromium runs (scripts/test.sh installs Debian's chromium)");
    assert!(o.status.success(), "chromium {args:?}: {o:?}");
    o
}

#[test]
fn the_status_page_renders_in_chromium_and_matches_status() {
    let mut c = Cluster::new(2);
    ok(&[
        "--data-dir",
        c.dir(0),
        "mailbox",
        "create",
        "--account",
        "alice",
        "Work",
    ]);
    let (http, _) = start(&mut c);
    append(&c, 0, 5);
    append(&c, 1, 2);
    assert!(c.converged(&[0, 1], 60));
    // Quiet: the last comparison found nothing to sync, so page and status agree.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let v: Value =
            serde_json::from_str(&ok(&["--data-dir", c.dir(0), "--json", "status"])).expect("json");
        if v["sync"]["documents_behind"] == 0 && v["peers"].as_array().map(Vec::len) == Some(1) {
            break v;
        }
        assert!(Instant::now() < deadline, "node 0 never idle: {v}");
        std::thread::sleep(Duration::from_millis(300));
    };
    let url = format!("http://127.0.0.1:{http}/");
    let profile = c.tmp.path().join("chromium");
    let dom = chromium(&["--dump-dom", &url], &profile);
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    assert!(dom.contains("<svg id=\"behind-plot\""), "the plot: {dom}");

    let mailboxes = status["mailboxes"].as_array().expect("mailboxes");
    assert_eq!(mailboxes.len(), 2, "{status}");
    for m in mailboxes {
        let attrs = format!(
            "data-account=\"{}\" data-mailbox=\"{}\"",
            m["account"].as_str().expect("account"),
            m["name"].as_str().expect("name")
        );
        let r = row(&dom, &attrs);
        for k in [
            "uidvalidity",
            "uidnext",
            "messages",
            "unseen",
            "highest_modseq",
        ] {
            assert_eq!(cell(r, k), m[k].to_string(), "{k} of {attrs}");
        }
        assert_eq!(cell(r, "digest"), m["digest"].as_str().expect("digest"));
    }
    for p in status["peers"].as_array().expect("peers") {
        let r = row(
            &dom,
            &format!("data-peer=\"{}\"", p["peer"].as_str().expect("peer")),
        );
        assert_eq!(cell(r, "behind"), p["behind"].to_string());
    }
    let behind = dom
        .split("id=\"documents-behind\">")
        .nth(1)
        .and_then(|t| t.split('<').next())
        .expect("the documents-behind card");
    assert_eq!(behind, status["sync"]["documents_behind"].to_string());

    let shot = c.tmp.path().join("status.png");
    chromium(
        &[
            &format!("--screenshot={}", s(&shot)),
            "--window-size=1200,1400",
            &url,
        ],
        &profile,
    );
    let png = std::fs::read(&shot).expect("the screenshot file");
    assert!(png.len() > 1000 && png.starts_with(b"\x89PNG"), "a PNG");
    c.stop(1);
    c.stop(0);
}
