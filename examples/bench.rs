//! dovetail benchmarks: plain `fn main`, `std::time::Instant`, no harness.
//!
//! ```text
//! cargo run --release --example bench -- <scenario> [--reps N] [--n N]
//! ```
//!
//! Scenarios (each prints its figures and a summary table; medians over `--reps`):
//!
//! - `append`: appends `--n` (100,000) ~3 KB messages into one fresh mailbox through
//!   [`Replica::append`] in batches of 100, each batch durable (one flush): messages/s.
//! - `list`: opens a 100k-message and a 1M-message mailbox (in a fresh process, and with a
//!   fresh `Replica::open` in this process) and lists it: ms.
//! - `rss`: a fresh process opens a 1M-message account (10 mailboxes of 100k), runs `status`
//!   and lists every mailbox: VmRSS and VmHWM.
//! - `sync`: `sync_pair` of two dirs with 100k messages each sharing 99k: time, and bytes
//!   exchanged against the size of the changed records.
//! - `all`: every scenario above, one after the other (the figures of docs/benchmarks.md).
//! - `build`: only builds the datasets.
//!
//! Diagnostics, to see what limits the figures above:
//!
//! - `append-phases`: the steps of `append` (checks, blob puts, automerge commit, chunk save,
//!   compaction, view update, batch apply, flush) done one by one on the public layers and
//!   timed, then the cost of loading the resulting segment back.
//! - `exp-rows`: scanning `--n` view rows from sled stored one per key or packed in blocks.
//! - `exp-blobs`: putting `--n` messages into sled keyed by sha256, or by number + index.
//! - `sample [--i N]`: prints one generated message and the size distribution.
//!
//! Datasets are built once under `$DOVETAIL_BENCH_DIR` (default `/tmp/dovetail-bench`) and
//! reused while their `DONE` marker matches (format version, contents, segment capacity).
//! `$DOVETAIL_BENCH_SEGMENT_CAPACITY` overrides `Options::segment_capacity`. Internal
//! scenarios, run in a child process: `open-list DIR MAILBOX` and `measure-rss DIR`.
//!
//! Messages are deterministic from a seed: RFC 5322 headers (Received, DKIM-Signature,
//! Message-ID, Date, From, To, Subject, MIME), a size of 2.1-4.0 KB in all (3.0 KB mean) of
//! wrapped prose, sometimes a quoted reply and a signature; some carry `\Seen`, `\Flagged`
//! or `$Work`. GUIDs are random (the replica mints them).

use anyhow::{bail, Context, Result};
use dovetail::model::{AccountName, Flag, FlagSet, MailboxName};
use dovetail::node::{sync_pair, NewMessage, Options, Replica, SyncReport};
use dovetail::store::Tx;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const ACCOUNT: &str = "bench@example.net";
/// Messages per durable batch in the measured appends.
const BATCH: usize = 100;
/// Messages per batch when building the large datasets (the CLI's `append` batch).
const BUILD_BATCH: usize = 1000;
/// Bumped when the generator or the dataset layout changes, to rebuild old datasets.
const DATASET_VERSION: u32 = 3;

// ---------------------------------------------------------------- message generator

/// splitmix64: small, fast, and stable across library versions.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Rng {
        let mut r = Rng(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next();
        r
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const FIRST: &[&str] = &[
    "Alice", "Bob", "Carol", "David", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory",
    "Niaj", "Olivia", "Peggy", "Rupert", "Sybil", "Trent", "Victor", "Walter", "Yasmin", "Zoé",
    "Åsa", "Jürgen", "Chloé",
];
const LAST: &[&str] = &[
    "Smith",
    "Jones",
    "Garcia",
    "Müller",
    "Rossi",
    "Dubois",
    "Kowalski",
    "Nakamura",
    "Okafor",
    "Silva",
    "Johansson",
    "Novak",
    "Haddad",
    "Fischer",
    "Moreau",
    "Larsen",
    "Ivanova",
    "Chen",
];
const DOMAINS: &[&str] = &[
    "example.org",
    "example.com",
    "mail.example.net",
    "lists.example.org",
    "corp.example",
    "university.example.edu",
    "shop.example.com",
    "ops.example.io",
];
const TOPICS: &[&str] = &[
    "quarterly report draft",
    "meeting notes for Thursday",
    "invoice 2023-0412",
    "build failure on main",
    "holiday schedule",
    "[rust-users] lifetimes in trait objects",
    "your order has shipped",
    "contract renewal",
    "re-org announcement",
    "lunch?",
    "security advisory for libfoo",
    "PR #1832: fix flaky test",
    "conference travel",
    "budget approval needed",
    "[ops] disk usage alert on db-3",
    "minutes of the board meeting",
    "photos from the weekend",
    "password reset request",
    "weekly newsletter",
    "design review: sync protocol",
];
const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "a",
    "in",
    "that",
    "is",
    "for",
    "it",
    "with",
    "as",
    "was",
    "on",
    "be",
    "at",
    "by",
    "this",
    "have",
    "from",
    "or",
    "we",
    "an",
    "they",
    "which",
    "you",
    "were",
    "all",
    "would",
    "there",
    "their",
    "will",
    "when",
    "who",
    "more",
    "if",
    "no",
    "out",
    "so",
    "what",
    "up",
    "can",
    "about",
    "into",
    "than",
    "them",
    "only",
    "other",
    "new",
    "some",
    "could",
    "time",
    "these",
    "two",
    "may",
    "then",
    "first",
    "any",
    "like",
    "now",
    "such",
    "our",
    "over",
    "even",
    "most",
    "after",
    "also",
    "many",
    "before",
    "must",
    "through",
    "back",
    "where",
    "much",
    "should",
    "well",
    "people",
    "down",
    "just",
    "because",
    "good",
    "each",
    "those",
    "how",
    "too",
    "little",
    "state",
    "very",
    "make",
    "still",
    "own",
    "see",
    "report",
    "meeting",
    "schedule",
    "budget",
    "server",
    "release",
    "customer",
    "invoice",
    "deadline",
    "proposal",
    "database",
    "mailbox",
    "replication",
    "latency",
    "throughput",
    "review",
    "approve",
    "question",
    "answer",
    "project",
    "team",
    "quarter",
    "numbers",
    "attached",
    "please",
    "thanks",
    "tomorrow",
    "yesterday",
    "morning",
    "afternoon",
    "week",
    "office",
    "travel",
    "contract",
    "agreement",
    "update",
    "version",
    "change",
    "issue",
    "ticket",
    "deploy",
    "rollback",
    "incident",
    "postmortem",
    "action",
    "items",
    "follow",
    "decision",
    "plan",
    "estimate",
    "risk",
    "priority",
    "feedback",
    "draft",
    "final",
    "Kubernetes",
    "PostgreSQL",
    "Thursday",
    "Friday",
    "Monday",
    "Berlin",
    "Lisbon",
    "Tokyo",
    "naïve",
    "café",
    "résumé",
    "façade",
];
const MAILERS: &[&str] = &[
    "Mozilla Thunderbird 115.4",
    "Apple Mail (2.3731)",
    "Microsoft Outlook 16.0",
    "Roundcube Webmail/1.6.5",
    "mutt/2.2.12",
    "K-9 Mail for Android",
];
const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// RFC 5322 date of a Unix time (UTC).
fn rfc5322_date(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn person(r: &mut Rng) -> (String, String) {
    let (f, l, d) = (r.pick(FIRST), r.pick(LAST), r.pick(DOMAINS));
    let local: String = format!("{f}.{l}")
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                'x'
            }
        })
        .collect();
    (format!("\"{f} {l}\""), format!("{local}@{d}"))
}

fn b64ish(r: &mut Rng, n: usize) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    (0..n).map(|_| A[r.below(64) as usize] as char).collect()
}

fn sentence(r: &mut Rng) -> String {
    let n = 6 + r.below(12);
    let mut s = String::new();
    for i in 0..n {
        let w = r.pick(WORDS);
        if i == 0 {
            let mut c = w.chars();
            if let Some(f) = c.next() {
                s.extend(f.to_uppercase());
                s.push_str(c.as_str());
            }
        } else {
            s.push(' ');
            s.push_str(w);
            if i + 1 < n && r.chance(6) {
                s.push(',');
            }
        }
    }
    s.push(if r.chance(10) { '?' } else { '.' });
    s
}

/// Wraps `text` at 72 columns, each line prefixed with `prefix`, CRLF line ends.
fn wrap(out: &mut String, text: &str, prefix: &str) {
    let mut line = String::from(prefix);
    for w in text.split(' ') {
        if line.len() > prefix.len() && line.len() + 1 + w.len() > 72 {
            out.push_str(&line);
            out.push_str("\r\n");
            line = String::from(prefix);
        }
        if line.len() > prefix.len() {
            line.push(' ');
        }
        line.push_str(w);
    }
    out.push_str(&line);
    out.push_str("\r\n");
}

/// The `i`-th message of the stream `seed`: deterministic, 2.1-4.0 KB (3.0 KB mean).
fn message(seed: u64, i: u64) -> NewMessage {
    let r = &mut Rng::new(seed, i);
    let t = 1_672_531_200 + (i as i64) * 307 + r.below(300) as i64; // from 2023-01-01
    let date = rfc5322_date(t);
    let (from_name, from) = person(r);
    let (to_name, to) = person(r);
    let from_domain = from.split('@').nth(1).unwrap_or("example.org").to_string();
    let reply = r.chance(35);
    let topic = r.pick(TOPICS);
    let subject = if reply {
        format!("Re: {topic}")
    } else {
        topic.to_string()
    };
    let msgid = format!("<{:016x}.{i}@{from_domain}>", r.next());
    let target = 2050 + r.below(1600) as usize;

    let mut m = String::with_capacity(target + 400);
    let _ = write!(
        m,
        "Return-Path: <{from}>\r\n\
         Received: from mail{}.{from_domain} (mail{}.{from_domain} [203.0.113.{}])\r\n\
         \tby mx1.example.net (Postfix) with ESMTPS id {}\r\n\
         \tfor <{to}>; {date}\r\n\
         DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d={from_domain}; s=s{};\r\n\
         \th=from:to:subject:date:message-id; bh={}=;\r\n\
         \tb={}\r\n\
         \t{}=\r\n\
         Message-ID: {msgid}\r\n\
         Date: {date}\r\n\
         From: {from_name} <{from}>\r\n\
         To: {to_name} <{to}>\r\n",
        r.below(9),
        r.below(9),
        1 + r.below(254),
        b64ish(r, 10).to_uppercase().replace(['+', '/'], "X"),
        2020 + r.below(5),
        b64ish(r, 43),
        b64ish(r, 70),
        b64ish(r, 70),
    );
    if r.chance(30) {
        let (cc_name, cc) = person(r);
        let _ = write!(m, "Cc: {cc_name} <{cc}>\r\n");
    }
    let _ = write!(m, "Subject: {subject}\r\n");
    let quoted_id = format!("<{:016x}@{}>", r.next(), r.pick(DOMAINS));
    if reply {
        let _ = write!(m, "In-Reply-To: {quoted_id}\r\nReferences: {quoted_id}\r\n");
    }
    let _ = write!(
        m,
        "MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=\"utf-8\"; format=flowed\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         X-Mailer: {}\r\n\r\n",
        r.pick(MAILERS)
    );
    let first = from_name
        .trim_matches('"')
        .split(' ')
        .next()
        .unwrap_or("")
        .to_string();
    let _ = write!(
        m,
        "Hi {},\r\n\r\n",
        to_name.trim_matches('"').split(' ').next().unwrap_or("")
    );
    let sig = format!(
        "\r\n-- \r\n{}\r\n{}\r\n",
        from_name.trim_matches('"'),
        from_domain
    );
    let quote_at = if reply { target * 2 / 3 } else { usize::MAX };
    let mut quoted = false;
    while m.len() + sig.len() < target {
        if !quoted && m.len() >= quote_at {
            quoted = true;
            let _ = write!(
                m,
                "On {}, {} wrote:\r\n",
                rfc5322_date(t - 86_400),
                to_name.trim_matches('"')
            );
            while m.len() + sig.len() < target {
                let p: Vec<String> = (0..1 + r.below(3)).map(|_| sentence(r)).collect();
                wrap(&mut m, &p.join(" "), "> ");
                m.push_str(">\r\n");
            }
            break;
        }
        let p: Vec<String> = (0..2 + r.below(4)).map(|_| sentence(r)).collect();
        wrap(&mut m, &p.join(" "), "");
        m.push_str("\r\n");
    }
    if !quoted {
        let _ = write!(m, "Best,\r\n{first}\r\n");
    }
    m.push_str(&sig);

    let mut flags = FlagSet::new();
    if r.chance(60) {
        flags.insert(Flag::seen());
    }
    if r.chance(5) {
        flags.insert(Flag::try_from("\\Flagged").expect("flag"));
    }
    if r.chance(3) {
        flags.insert(Flag::try_from("$Work").expect("flag"));
    }
    NewMessage {
        name: format!("msg-{seed}-{i}"),
        bytes: m.into_bytes(),
        flags,
        internal_date: t,
    }
}

// ---------------------------------------------------------------- helpers

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn account() -> AccountName {
    AccountName::try_from(ACCOUNT).expect("account name")
}

fn mailbox(s: &str) -> MailboxName {
    MailboxName::try_from(s).expect("mailbox name")
}

fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn percentile(xs: &[f64], p: f64) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn fmt_list(xs: &[f64], digits: usize) -> String {
    xs.iter()
        .map(|x| format!("{x:.digits$}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// CPU time (user + system, all threads) this process has used, in seconds.
fn cpu_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which ends with ')'), from `state` on: utime is
    // the 12th and stime the 13th, in clock ticks (100 per second).
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok());
    match (field(11), field(12)) {
        (Some(u), Some(s)) => (u + s) / 100.0,
        _ => f64::NAN,
    }
}

/// (VmRSS, VmHWM) of this process in MiB.
fn mem_mib() -> (f64, f64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn du_mib(dir: &Path) -> f64 {
    fn walk(p: &Path) -> u64 {
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => std::fs::read_dir(p)
                .map(|rd| rd.flatten().map(|e| walk(&e.path())).sum())
                .unwrap_or(0),
            Ok(m) => {
                use std::os::unix::fs::MetadataExt;
                m.blocks() * 512
            }
            Err(_) => 0,
        }
    }
    walk(dir) as f64 / (1024.0 * 1024.0)
}

fn bench_root() -> PathBuf {
    std::env::var_os("DOVETAIL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/dovetail-bench"))
}

fn rm(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(())
}

/// The replica options: the defaults, except `segment_capacity` when
/// `$DOVETAIL_BENCH_SEGMENT_CAPACITY` is set (to compare segment sizes).
fn options() -> Options {
    let mut o = Options::default();
    if let Some(c) = std::env::var("DOVETAIL_BENCH_SEGMENT_CAPACITY")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        o.segment_capacity = c;
    }
    o
}

/// `Replica::open`, retried for a while: sled releases its file lock in a background thread
/// after the previous handle on the same dir is dropped.
fn open_dir(dir: &Path) -> Result<Replica> {
    let mut tries = 0;
    loop {
        match Replica::open(dir, options()) {
            Ok(r) => return Ok(r),
            Err(e) if tries < 200 && e.to_string().contains("could not acquire lock") => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn fresh_replica(dir: &Path) -> Result<Replica> {
    rm(dir)?;
    Replica::init(dir)?;
    open_dir(dir)
}

/// Appends `n` messages of stream `seed` (numbered from `first`) to `mb` in batches.
/// Returns the duration of every `append` call, in seconds (generation excluded).
fn append_stream(
    r: &mut Replica,
    mb: &MailboxName,
    seed: u64,
    first: u64,
    n: u64,
    batch: usize,
    progress: Option<&str>,
) -> Result<(Vec<f64>, u64)> {
    let a = account();
    let mut lat = Vec::with_capacity(n as usize / batch + 1);
    let mut bytes = 0u64;
    let mut i = first;
    let end = first + n;
    let mut next_report = first + n / 10;
    let t0 = Instant::now();
    while i < end {
        let k = (end - i).min(batch as u64);
        let msgs: Vec<NewMessage> = (i..i + k).map(|j| message(seed, j)).collect();
        bytes += msgs.iter().map(|m| m.bytes.len() as u64).sum::<u64>();
        let t = Instant::now();
        let out = r.append(&a, mb, msgs, now())?;
        lat.push(t.elapsed().as_secs_f64());
        if out.len() as u64 != k {
            bail!("append returned {} UIDs for {k} messages", out.len());
        }
        i += k;
        if let Some(what) = progress {
            if i >= next_report && n >= 10_000 {
                next_report += n / 10;
                eprintln!(
                    "  [{what}] {}/{} messages, {:.0} s",
                    i - first,
                    n,
                    t0.elapsed().as_secs_f64()
                );
            }
        }
    }
    Ok((lat, bytes))
}

/// Builds (once) a data dir holding `mailboxes` (name, message count) in one account.
fn dataset(dir: &Path, mailboxes: &[(&str, u64)], batch: usize, seed: u64) -> Result<()> {
    let spec = format!(
        "v{DATASET_VERSION} {mailboxes:?} batch={batch} seed={seed} segment_capacity={}",
        options().segment_capacity
    );
    let done = dir.join("DONE");
    if std::fs::read_to_string(&done).ok().as_deref() == Some(spec.as_str()) {
        return Ok(());
    }
    eprintln!("building dataset {} ({spec}) ...", dir.display());
    let t = Instant::now();
    let mut r = fresh_replica(dir)?;
    let a = account();
    r.create_account(&a)?;
    for (k, (name, n)) in mailboxes.iter().enumerate() {
        let mb = mailbox(name);
        if !mb.is_inbox() {
            r.create_mailbox(&a, &mb)?;
        }
        // Each mailbox gets its own stream so that no two messages share a blob.
        append_stream(&mut r, &mb, seed + k as u64, 0, *n, batch, Some(name))?;
        // Bound the builder's memory: old segment documents are not needed any more.
        r.close_docs();
    }
    drop(r);
    let built = t.elapsed().as_secs_f64();
    // sled writes its snapshot only when it opens a db, replaying the log written since the
    // last open: the first open after building pays for all of it. Do it here, and record it.
    let t = Instant::now();
    drop(open_dir(dir)?);
    let first_open = t.elapsed().as_secs_f64();
    let info = format!(
        "built in {built:.0} s, {:.0} MiB on disk; first open after building {first_open:.1} s",
        du_mib(dir)
    );
    eprintln!("{}: {info}", dir.display());
    std::fs::write(dir.join("INFO"), &info)?;
    std::fs::write(&done, &spec)?;
    Ok(())
}

fn ds_100k() -> Result<PathBuf> {
    let d = bench_root().join("mb100k");
    dataset(&d, &[("INBOX", 100_000)], BUILD_BATCH, 100)?;
    Ok(d)
}

fn ds_1m() -> Result<PathBuf> {
    let d = bench_root().join("mb1m");
    dataset(&d, &[("INBOX", 1_000_000)], BUILD_BATCH, 200)?;
    Ok(d)
}

const ACCT_MAILBOXES: [&str; 10] = [
    "INBOX",
    "Archive",
    "Sent",
    "Drafts",
    "Lists/rust-users",
    "Lists/postgres",
    "Work/Projects",
    "Work/Invoices",
    "Family",
    "Travel",
];

fn ds_acct1m() -> Result<PathBuf> {
    let d = bench_root().join("acct1m");
    let mbs: Vec<(&str, u64)> = ACCT_MAILBOXES.iter().map(|m| (*m, 100_000)).collect();
    dataset(&d, &mbs, BUILD_BATCH, 300)?;
    Ok(d)
}

/// Runs this program again with `args`; returns its stdout.
fn child(args: &[&str]) -> Result<String> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe).args(args).output()?;
    if !out.status.success() {
        bail!(
            "child {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Parses `key=value` pairs of a child's last output line.
fn kv_line(s: &str) -> BTreeMap<String, f64> {
    s.lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// One line of the final summary.
struct Row {
    what: String,
    figure: String,
    target: String,
    pass: bool,
}

fn print_summary(rows: &[Row]) {
    println!();
    println!("| measurement | median (runs) | target | result |");
    println!("|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} |",
            r.what,
            r.figure,
            r.target,
            if r.pass { "pass" } else { "MISS" }
        );
    }
}

// ---------------------------------------------------------------- scenarios

fn scen_append(n: u64, reps: usize, rows: &mut Vec<Row>) -> Result<()> {
    println!("== append: {n} messages into one mailbox, batches of {BATCH}, one flush each");
    let mut rates = Vec::new();
    let mut reopen = Vec::new();
    for rep in 0..reps {
        let dir = bench_root().join(format!("append-{rep}"));
        let mut r = fresh_replica(&dir)?;
        let a = account();
        r.create_account(&a)?;
        let t = Instant::now();
        let cpu0 = cpu_secs();
        let (lat, bytes) = append_stream(
            &mut r,
            &MailboxName::inbox(),
            1000 + rep as u64,
            0,
            n,
            BATCH,
            None,
        )?;
        let wall = t.elapsed().as_secs_f64();
        let cpu = cpu_secs() - cpu0;
        let busy: f64 = lat.iter().sum();
        let rate = n as f64 / busy;
        let (rss, hwm) = mem_mib();
        drop(r);
        println!(
            "  run {rep}: {rate:.0} msg/s ({:.1} MB/s of messages); {busy:.1} s in append \
             ({wall:.1} s with generation, {cpu:.1} CPU s); batch latency p50 {:.1} ms, p99 {:.1} ms, \
             max {:.0} ms; {:.0} MiB on disk; process VmRSS {rss:.0} MiB, VmHWM {hwm:.0} MiB",
            bytes as f64 / busy / 1e6,
            percentile(&lat, 0.5) * 1e3,
            percentile(&lat, 0.99) * 1e3,
            percentile(&lat, 1.0) * 1e3,
            du_mib(&dir),
        );
        // Latency over the run, in tenths: shows growth with the segment size.
        let tenth = lat.len().div_ceil(10);
        let by_tenth: Vec<f64> = lat
            .chunks(tenth)
            .map(|c| c.iter().sum::<f64>() / c.len() as f64 * 1e3)
            .collect();
        println!(
            "    mean batch ms per tenth of the run: {}",
            fmt_list(&by_tenth, 1)
        );
        // What a fresh process (the CLI) pays to append one more batch: opening the store
        // and loading the open segment document.
        let t = Instant::now();
        let mut r = open_dir(&dir)?;
        let open = t.elapsed().as_secs_f64();
        let (lat1, _) = append_stream(
            &mut r,
            &MailboxName::inbox(),
            1000 + rep as u64,
            n,
            BATCH as u64,
            BATCH,
            None,
        )?;
        drop(r);
        println!(
            "    reopen {:.0} ms, then one more batch of {BATCH}: {:.0} ms (loads the open segment)",
            open * 1e3,
            lat1[0] * 1e3
        );
        reopen.push((open + lat1[0]) * 1e3);
        rates.push(rate);
        if std::env::var_os("DOVETAIL_BENCH_KEEP").is_none() {
            rm(&dir)?;
        }
    }
    let m = median(&rates);
    println!(
        "  median {m:.0} msg/s over [{}]; reopen + one batch: median {:.0} ms [{}]",
        fmt_list(&rates, 0),
        median(&reopen),
        fmt_list(&reopen, 0)
    );
    rows.push(Row {
        what: format!("1. append {}k msgs, batches of {BATCH}, durable", n / 1000),
        figure: format!("{m:.0} msg/s ({})", fmt_list(&rates, 0)),
        target: ">= 5,000 msg/s".into(),
        pass: m >= 5000.0,
    });
    Ok(())
}

/// `open-list DIR MAILBOX`: open the replica, list one mailbox, print the timings.
fn run_open_list(dir: &str, mb: &str) -> Result<()> {
    let t = Instant::now();
    let mut r = Replica::open(Path::new(dir), options())?;
    let open = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let rows = r.list(&account(), &mailbox(mb))?;
    let list = t.elapsed().as_secs_f64();
    let n = rows.len();
    std::hint::black_box(&rows);
    let (rss, hwm) = mem_mib();
    println!(
        "open_ms={:.2} list_ms={:.2} total_ms={:.2} rows={n} rss_mib={rss:.1} hwm_mib={hwm:.1}",
        open * 1e3,
        list * 1e3,
        (open + list) * 1e3
    );
    Ok(())
}

fn scen_list(reps: usize, rows: &mut Vec<Row>) -> Result<()> {
    for (dir, n, target_ms) in [
        (ds_100k()?, 100_000usize, 100.0),
        (ds_1m()?, 1_000_000, 1000.0),
    ] {
        let label = format!("{}k", n / 1000);
        println!(
            "== list: open a {label}-message mailbox and list it ({})",
            dir.display()
        );
        let d = dir.to_str().context("path")?;
        child(&["open-list", d, "INBOX"])?; // warm the page cache; not counted
        let (mut open, mut list, mut total) = (vec![], vec![], vec![]);
        for _ in 0..reps {
            let out = child(&["open-list", d, "INBOX"])?;
            let v = kv_line(&out);
            if v.get("rows").copied() != Some(n as f64) {
                bail!("expected {n} rows, got {out}");
            }
            open.push(v["open_ms"]);
            list.push(v["list_ms"]);
            total.push(v["total_ms"]);
            println!("  fresh process: {}", out.trim());
        }
        println!(
            "  fresh process, median: open {:.1} ms + list {:.1} ms = {:.1} ms [{}]",
            median(&open),
            median(&list),
            median(&total),
            fmt_list(&total, 1)
        );
        let (mut iopen, mut ilist) = (vec![], vec![]);
        for _ in 0..reps {
            let t = Instant::now();
            let mut r = open_dir(&dir)?;
            iopen.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            let got = r.list(&account(), &MailboxName::inbox())?;
            ilist.push(t.elapsed().as_secs_f64() * 1e3);
            assert_eq!(got.len(), n);
            drop(got);
            drop(r);
        }
        println!(
            "  fresh Replica::open in this process, median: open {:.1} ms + list {:.1} ms [lists: {}]",
            median(&iopen),
            median(&ilist),
            fmt_list(&ilist, 1)
        );
        let m = median(&total);
        rows.push(Row {
            what: format!("2. open + list a {label}-msg mailbox (fresh process)"),
            figure: format!(
                "{m:.0} ms (open {:.0} + list {:.0}; runs {})",
                median(&open),
                median(&list),
                fmt_list(&total, 0)
            ),
            target: format!("<= {target_ms:.0} ms"),
            pass: m <= target_ms,
        });
    }
    Ok(())
}

/// `measure-rss DIR`: open, status, list every mailbox; print memory figures.
fn run_measure_rss(dir: &str) -> Result<()> {
    let (rss0, _) = mem_mib();
    let t = Instant::now();
    let mut r = Replica::open(Path::new(dir), options())?;
    let (rss_open, _) = mem_mib();
    let a = account();
    let st = r.status(&a)?;
    let (rss_status, _) = mem_mib();
    let mut total = 0u64;
    let mut largest = 0f64;
    for s in &st {
        let rows = r.list(&a, &mailbox(&s.name))?;
        if rows.len() as u64 != s.messages {
            bail!(
                "{}: listed {} of {} messages",
                s.name,
                rows.len(),
                s.messages
            );
        }
        total += rows.len() as u64;
        largest = largest.max(mem_mib().0);
        drop(rows);
    }
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let (rss_end, hwm) = mem_mib();
    println!(
        "mailboxes={} messages={total} ms={ms:.0} rss_start_mib={rss0:.1} rss_open_mib={rss_open:.1} \
         rss_status_mib={rss_status:.1} rss_max_listing_mib={largest:.1} rss_end_mib={rss_end:.1} hwm_mib={hwm:.1}",
        st.len()
    );
    Ok(())
}

fn scen_rss(reps: usize, rows: &mut Vec<Row>) -> Result<()> {
    let dir = ds_acct1m()?;
    println!(
        "== rss: fresh process opens a 1M-message account (10 x 100k), status, lists every mailbox ({})",
        dir.display()
    );
    let d = dir.to_str().context("path")?;
    let (mut rss, mut hwm) = (vec![], vec![]);
    for _ in 0..reps {
        let out = child(&["measure-rss", d])?;
        let v = kv_line(&out);
        if v.get("messages").copied() != Some(1_000_000.0) {
            bail!("expected 1M messages: {out}");
        }
        println!("  {}", out.trim());
        rss.push(v["rss_end_mib"]);
        hwm.push(v["hwm_mib"]);
    }
    let (mr, mh) = (median(&rss), median(&hwm));
    println!("  median VmRSS at end {mr:.0} MiB, VmHWM {mh:.0} MiB");
    rows.push(Row {
        what: "3. memory: open 1M-msg account, status, list all (VmHWM; VmRSS at end)".into(),
        figure: format!(
            "VmHWM {mh:.0} MiB, VmRSS {mr:.0} MiB (HWM runs {})",
            fmt_list(&hwm, 0)
        ),
        target: "<= 300 MB".into(),
        pass: mh * 1.048_576 <= 300.0,
    });
    Ok(())
}

/// Bytes of the automerge changes made since `base` (per document), on replica `r`.
fn changes_since(r: &Replica, base: &BTreeMap<String, Vec<[u8; 32]>>) -> Result<(usize, u64, u64)> {
    let tx = Tx::new(r.kv());
    let (mut n, mut raw, mut compressed) = (0usize, 0u64, 0u64);
    for (id, _) in r.doc_heads()? {
        let Some((mut am, _)) = tx.load_doc(&id)? else {
            continue;
        };
        let have: Vec<automerge::ChangeHash> = base
            .get(&id)
            .map(|hs| hs.iter().map(|h| automerge::ChangeHash(*h)).collect())
            .unwrap_or_default();
        for mut c in am.get_changes(&have) {
            n += 1;
            raw += c.raw_bytes().len() as u64;
            compressed += c.bytes().len() as u64;
        }
    }
    Ok((n, raw, compressed))
}

fn scen_sync(reps: usize, rows: &mut Vec<Row>) -> Result<()> {
    const SHARED: u64 = 99_000;
    const EACH: u64 = 1_000;
    let base = bench_root().join("sync-base");
    let spec = format!(
        "v{DATASET_VERSION} shared={SHARED} batch={BATCH} segment_capacity={}",
        options().segment_capacity
    );
    let (ba, bb) = (base.join("a"), base.join("b"));
    if std::fs::read_to_string(base.join("DONE")).ok().as_deref() != Some(spec.as_str()) {
        eprintln!("building {} ...", base.display());
        rm(&base)?;
        std::fs::create_dir_all(&base)?;
        let mut a = fresh_replica(&ba)?;
        a.create_account(&account())?;
        append_stream(
            &mut a,
            &MailboxName::inbox(),
            400,
            0,
            SHARED,
            BATCH,
            Some("sync base"),
        )?;
        a.close_docs();
        let mut b = fresh_replica(&bb)?;
        let t = Instant::now();
        let rep = sync_pair(&mut a, &mut b, now())?;
        let secs = t.elapsed().as_secs_f64();
        let (sa, sb) = (a.status(&account())?, b.status(&account())?);
        if sa != sb || sa[0].messages != SHARED {
            bail!("the initial sync did not converge: {sa:?} vs {sb:?}");
        }
        let info =
            format!("initial sync of {SHARED} messages into an empty dir: {secs:.1} s, {rep:?}");
        eprintln!("{info}");
        std::fs::write(base.join("INITIAL"), &info)?;
        std::fs::write(base.join("DONE"), &spec)?;
    }
    println!(
        "== sync: two dirs sharing {SHARED} messages, {EACH} new on each side (same mailbox, so \
         their UIDs clash and are renumbered)"
    );
    if let Ok(s) = std::fs::read_to_string(base.join("INITIAL")) {
        println!("  (dataset: {s})");
    }
    let (mut times, mut ratios, mut ratios_c) = (vec![], vec![], vec![]);
    let mut last_bytes = String::new();
    for rep in 0..reps {
        let work = bench_root().join(format!("sync-{rep}"));
        rm(&work)?;
        std::fs::create_dir_all(&work)?;
        let (wa, wb) = (work.join("a"), work.join("b"));
        for (from, to) in [(&ba, &wa), (&bb, &wb)] {
            let st = Command::new("cp").arg("-a").arg(from).arg(to).status()?;
            if !st.success() {
                bail!("cp failed");
            }
        }
        let mut new_blob_bytes = 0u64;
        let heads0: BTreeMap<String, Vec<[u8; 32]>>;
        {
            let mut a = open_dir(&wa)?;
            let mut b = open_dir(&wb)?;
            heads0 = a.doc_heads()?.into_iter().collect();
            let hb: BTreeMap<String, Vec<[u8; 32]>> = b.doc_heads()?.into_iter().collect();
            if heads0 != hb {
                bail!("the base dirs differ");
            }
            let seed = 10_000 + 2 * rep as u64;
            new_blob_bytes +=
                append_stream(&mut a, &MailboxName::inbox(), seed, 0, EACH, BATCH, None)?.1;
            new_blob_bytes += append_stream(
                &mut b,
                &MailboxName::inbox(),
                seed + 1,
                0,
                EACH,
                BATCH,
                None,
            )?
            .1;
        }
        // Like `dovetail sync`: two freshly opened dirs.
        let t = Instant::now();
        let mut a = open_dir(&wa)?;
        let mut b = open_dir(&wb)?;
        let open = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let rep_: SyncReport = sync_pair(&mut a, &mut b, now())?;
        let secs = t.elapsed().as_secs_f64();
        // Check the result: both sides hold every message, the same way.
        let (sa, sb) = (a.status(&account())?, b.status(&account())?);
        if sa != sb || sa[0].messages != SHARED + 2 * EACH {
            bail!("sync did not converge: {sa:?} vs {sb:?}");
        }
        let (nchanges, raw, compressed) = changes_since(&a, &heads0)?;
        let exchanged = rep_.sync_bytes + rep_.blob_bytes;
        let changed = new_blob_bytes + raw;
        let ratio = exchanged as f64 / changed as f64;
        let ratio_c = exchanged as f64 / (new_blob_bytes + compressed) as f64;
        println!(
            "  run {rep}: sync_pair {:.0} ms (+ {:.0} ms to open both dirs); {} docs, {} messages, \
             {} rounds, {} renumbered; exchanged {} B sync + {} B blobs ({} blobs) = {exchanged} B; \
             changed: {new_blob_bytes} B blobs of the {} new messages + {raw} B automerge \
             ({nchanges} changes, {compressed} B compressed) = {changed} B; ratio {ratio:.2} \
             ({ratio_c:.2} against compressed changes)",
            secs * 1e3,
            open * 1e3,
            rep_.docs_synced,
            rep_.messages,
            rep_.rounds,
            rep_.renumbered,
            rep_.sync_bytes,
            rep_.blob_bytes,
            rep_.blobs,
            2 * EACH,
        );
        last_bytes = format!(
            "sync {} B + blobs {} B vs new blobs {new_blob_bytes} B + changes {raw} B",
            rep_.sync_bytes, rep_.blob_bytes
        );
        times.push(secs * 1e3);
        ratios.push(ratio);
        ratios_c.push(ratio_c);
        drop((a, b));
        rm(&work)?;
    }
    let (mt, mr) = (median(&times), median(&ratios));
    println!(
        "  median {mt:.0} ms [{}], ratio {mr:.2} [{}] ({:.2} against compressed changes)",
        fmt_list(&times, 0),
        fmt_list(&ratios, 2),
        median(&ratios_c)
    );
    rows.push(Row {
        what: "4a. sync_pair 100k+100k dirs sharing 99k (time)".into(),
        figure: format!("{mt:.0} ms (runs {})", fmt_list(&times, 0)),
        target: "<= 2 s".into(),
        pass: mt <= 2000.0,
    });
    rows.push(Row {
        what: "4b. sync bytes exchanged / changed records".into(),
        figure: format!("{mr:.2}x ({last_bytes})"),
        target: "<= 3x".into(),
        pass: mr <= 3.0,
    });
    Ok(())
}

/// `append-phases`: the steps of [`Replica::append`] done one by one on the public layers
/// (sled store, segment document, UID engine), each timed, to see what limits `append`.
/// It mirrors `ops.rs`/`replica.rs` (one segment, no account lookup) and is not the
/// measured figure itself.
fn scen_append_phases(n: u64) -> Result<()> {
    use dovetail::crdt::meta::ChangeMeta;
    use dovetail::crdt::segment::{LocalOp, Segment, SegmentRef};
    use dovetail::crdt::view::{apply_facts, MailboxMeta};
    use dovetail::model::{BlobId, Guid, MailboxId, NodeId, Uid};
    use dovetail::store::{DocMeta, Kv, SledKv};

    println!(
        "== append-phases: {n} messages, batches of {BATCH}, the steps of append timed one by one"
    );
    let dir = bench_root().join("append-phases");
    rm(&dir)?;
    std::fs::create_dir_all(&dir)?;
    let kv = SledKv::open(&dir)?;
    let node = NodeId([7; 32]);
    let mb = MailboxId::derive(ACCOUNT, "INBOX", 0);
    // Segments roll over at `segment_capacity` messages, as in the replica.
    let capacity = options().segment_capacity;
    let mut seg = SegmentRef { node, gen: 0 };
    let mut doc_id = format!("seg/{ACCOUNT}/{mb}/{node}/0");
    let mut doc = Segment::new(&node, seg);
    let mut dmeta = DocMeta::default();
    let mut in_segment = 0u64;
    let mut meta = MailboxMeta::new();
    let names = [
        "check", "blobs", "commit", "save_doc", "compact", "view", "apply", "flush",
    ];
    let mut t = [0f64; 8];
    let mut tenth = vec![[0f64; 8]];
    let batches_per_tenth = (n / BATCH as u64 / 10).max(1);
    let mut i = 0u64;
    while i < n {
        let msgs: Vec<NewMessage> = (i..i + BATCH as u64).map(|j| message(77, j)).collect();
        if in_segment + BATCH as u64 > capacity {
            seg.gen += 1;
            doc_id = format!("seg/{ACCOUNT}/{mb}/{node}/{}", seg.gen);
            doc = Segment::new(&node, seg);
            dmeta = DocMeta::default();
            in_segment = 0;
        }
        in_segment += BATCH as u64;
        let mut lap = Instant::now();
        let mut step = |k: usize, t: &mut [f64; 8], tenth: &mut Vec<[f64; 8]>| {
            let d = lap.elapsed().as_secs_f64();
            t[k] += d;
            tenth.last_mut().expect("one")[k] += d;
            lap = Instant::now();
        };
        for m in &msgs {
            dovetail::node::check_message(&m.name, &m.bytes, 64 << 20)?;
        }
        step(0, &mut t, &mut tenth);
        let mut ops = Vec::new();
        let mut blobs = Vec::new();
        for (k, m) in msgs.iter().enumerate() {
            let blob = BlobId::of(&m.bytes);
            kv.blob_put(blob.as_bytes(), &m.bytes)?;
            let guid = Guid::random();
            let uid = Uid::new((meta.uidnext + k as u64) as u32).context("uid")?;
            ops.push(LocalOp::Add {
                guid,
                blob,
                size: m.bytes.len() as u64,
                internal_date: m.internal_date,
            });
            ops.push(LocalOp::Claim { guid, uid });
            for f in &m.flags {
                ops.push(LocalOp::SetFlag {
                    guid,
                    flag: f.clone(),
                });
            }
            blobs.push(blob);
        }
        step(1, &mut t, &mut tenth);
        let seq = meta.next_seq(&node);
        let mut clock = meta.applied.clone();
        clock.insert(node, seq);
        let cm = ChangeMeta {
            node,
            clock,
            lamport: meta.lamport + 1,
            blobs,
        };
        let facts = doc.commit(&ops, &cm)?;
        step(2, &mut t, &mut tenth);
        let mut tx = Tx::new(&kv);
        let first = dmeta.first_chunk;
        tx.save_doc(&doc_id, &mut doc.doc, &mut dmeta);
        step(
            if dmeta.first_chunk != first { 4 } else { 3 },
            &mut t,
            &mut tenth,
        );
        meta.applied.insert(node, seq);
        meta.lamport = cm.lamport;
        apply_facts(&mut tx.view(mb), &mut meta, &facts, now())?;
        tx.put_mailbox_meta(&mb, &meta);
        step(5, &mut t, &mut tenth);
        tx.commit()?;
        step(6, &mut t, &mut tenth);
        kv.flush()?;
        step(7, &mut t, &mut tenth);
        i += BATCH as u64;
        if i.is_multiple_of(batches_per_tenth * BATCH as u64) && i < n {
            tenth.push([0f64; 8]);
        }
    }
    let total: f64 = t.iter().sum();
    println!(
        "  {:.0} msg/s if nothing else ran; {total:.2} s in all:",
        n as f64 / total
    );
    for (k, name) in names.iter().enumerate() {
        let per: Vec<f64> = tenth
            .iter()
            .map(|x| x[k] * 1e3 / batches_per_tenth as f64)
            .collect();
        println!(
            "  {name:>9}: {:6.2} s ({:4.1}%), ms per batch by tenth of the run: {}",
            t[k],
            100.0 * t[k] / total,
            fmt_list(&per, 1)
        );
    }
    // Loading the segment back: as `load_doc` does (snapshot, then each incremental chunk),
    // as snapshot + one batch of all the rest, and the snapshot of the whole doc alone.
    let chunk = |i: u64| -> Result<Vec<u8>> {
        let k = [b"D", doc_id.as_bytes(), &[0], &i.to_be_bytes()].concat();
        kv.get(&k)?.context("chunk")
    };
    let snapshot = doc.doc.save();
    let (mut per_chunk, mut batched, mut alone, mut save) = (vec![], vec![], vec![], vec![]);
    let (mut save_raw, mut load_raw, mut raw_len) = (vec![], vec![], 0);
    for _ in 0..3 {
        let lt = Instant::now();
        let (mut loaded, _) = Tx::new(&kv).load_doc(&doc_id)?.context("doc")?;
        per_chunk.push(lt.elapsed().as_secs_f64() * 1e3);
        let lt = Instant::now();
        let mut b = automerge::AutoCommit::new();
        b.load_incremental(&chunk(dmeta.first_chunk)?)?;
        let mut rest = Vec::new();
        for i in dmeta.first_chunk + 1..dmeta.next_chunk {
            rest.extend(chunk(i)?);
        }
        b.load_incremental(&rest)?;
        batched.push(lt.elapsed().as_secs_f64() * 1e3);
        assert_eq!(b.get_heads(), loaded.get_heads());
        let lt = Instant::now();
        let _ = automerge::AutoCommit::load(&snapshot)?;
        alone.push(lt.elapsed().as_secs_f64() * 1e3);
        let lt = Instant::now();
        let _ = loaded.save();
        save.push(lt.elapsed().as_secs_f64() * 1e3);
        let lt = Instant::now();
        let raw = loaded.save_nocompress();
        save_raw.push(lt.elapsed().as_secs_f64() * 1e3);
        let lt = Instant::now();
        let _ = automerge::AutoCommit::load(&raw)?;
        load_raw.push(lt.elapsed().as_secs_f64() * 1e3);
        raw_len = raw.len();
    }
    println!(
        "  uncompressed snapshot: save [{}] ms, load [{}] ms, {} KiB",
        fmt_list(&save_raw, 0),
        fmt_list(&load_raw, 0),
        raw_len / 1024
    );
    println!(
        "  last segment ({in_segment} messages), {} chunks: load_doc [{}] ms; snapshot + the rest as one batch [{}] ms; \
         a snapshot of it all alone [{}] ms; a full save [{}] ms, {} KiB",
        dmeta.next_chunk - dmeta.first_chunk,
        fmt_list(&per_chunk, 0),
        fmt_list(&batched, 0),
        fmt_list(&alone, 0),
        fmt_list(&save, 0),
        snapshot.len() / 1024
    );
    drop(kv);
    println!("  {:.0} MiB on disk", du_mib(&dir));
    rm(&dir)?;
    Ok(())
}

/// `exp-rows`: how fast sled gives back `--n` view rows stored one per key (today's layout)
/// or packed into blocks of B rows per key: write, reopen, scan and decode.
fn scen_exp_rows(n: u64) -> Result<()> {
    use dovetail::crdt::view::ViewRow;
    use dovetail::model::{BlobId, Guid, ModSeq};
    let mut r = Rng::new(5, 5);
    let seen = Flag::seen();
    let rows: Vec<(u32, ViewRow)> = (1..=n as u32)
        .map(|u| {
            let mut b = [0u8; 32];
            b.iter_mut().for_each(|x| *x = r.next() as u8);
            let mut g = [0u8; 16];
            g.iter_mut().for_each(|x| *x = r.next() as u8);
            let mut flags = FlagSet::new();
            if r.chance(60) {
                flags.insert(seen.clone());
            }
            (
                u,
                ViewRow {
                    guid: Guid(g),
                    blob: BlobId(b),
                    size: 2000 + r.below(2000),
                    internal_date: 1_700_000_000 + u as i64,
                    flags,
                    modseq: ModSeq::new(u as u64).expect("modseq"),
                },
            )
        })
        .collect();
    for block in [1usize, 16, 64, 256] {
        let dir = bench_root().join(format!("exp-rows-{block}"));
        rm(&dir)?;
        let db = sled::Config::new()
            .path(&dir)
            .cache_capacity(64 << 20)
            .open()?;
        // Blocks hold the UIDs u with the same u / block, like a table keyed by UID would.
        let blocks: Vec<&[(u32, ViewRow)]> = rows
            .chunk_by(|x, y| x.0 / block as u32 == y.0 / block as u32)
            .collect();
        for chunk in blocks.chunks(1024 / block.min(1024)) {
            let mut b = sled::Batch::default();
            for part in chunk {
                if block == 1 {
                    b.insert(
                        [b"V".as_slice(), &[9; 16], &part[0].0.to_be_bytes()].concat(),
                        postcard::to_allocvec(&part[0].1)?,
                    );
                } else {
                    let k = part[0].0 / block as u32;
                    b.insert(
                        [b"W".as_slice(), &[9; 16], &k.to_be_bytes()].concat(),
                        postcard::to_allocvec(part)?,
                    );
                }
            }
            db.apply_batch(b)?;
        }
        db.flush()?;
        drop(db);
        let (mut topen, mut tscan) = (vec![], vec![]);
        for _ in 0..3 {
            let t = Instant::now();
            let db = sled::Config::new()
                .path(&dir)
                .cache_capacity(64 << 20)
                .open()?;
            topen.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            let mut out: Vec<(u32, ViewRow)> = Vec::new();
            if block == 1 {
                for kv in db.scan_prefix([b"V".as_slice(), &[9; 16]].concat()) {
                    let (k, v) = kv?;
                    out.push((
                        u32::from_be_bytes(k[17..21].try_into()?),
                        postcard::from_bytes(&v)?,
                    ));
                }
            } else {
                for kv in db.scan_prefix([b"W".as_slice(), &[9; 16]].concat()) {
                    let (_, v) = kv?;
                    out.extend(postcard::from_bytes::<Vec<(u32, ViewRow)>>(&v)?);
                }
            }
            tscan.push(t.elapsed().as_secs_f64() * 1e3);
            assert_eq!(out.len() as u64, n);
        }
        println!(
            "  {block:>3} rows per key: open {} ms, scan+decode {} ms, {:.0} MiB on disk",
            fmt_list(&topen, 0),
            fmt_list(&tscan, 0),
            du_mib(&dir)
        );
        rm(&dir)?;
    }
    Ok(())
}

/// `exp-blobs`: inserting `--n` ~3 KB messages under random (sha256) keys into a sled tree,
/// 100 per flush, with sled caches of 64 MiB (today's setting) and more.
fn scen_exp_blobs(n: u64) -> Result<()> {
    let msgs: Vec<Vec<u8>> = (0..n).map(|i| message(9, i).bytes).collect();
    for (cache_mib, seq) in [(64u64, false), (64, true), (256, false)] {
        let dir = bench_root().join(format!("exp-blobs-{cache_mib}"));
        rm(&dir)?;
        let db = sled::Config::new()
            .path(&dir)
            .cache_capacity(cache_mib << 20)
            .open()?;
        let tree = db.open_tree("blobs")?;
        let index = db.open_tree("blob-index")?;
        let t = Instant::now();
        let mut tenths = vec![];
        let mut lap = Instant::now();
        let per_tenth = (msgs.len() / 100 / 10).max(1);
        for (i, chunk) in msgs.chunks(100).enumerate() {
            for m in chunk {
                let id = dovetail::model::BlobId::of(m);
                if seq {
                    // Bodies under an increasing number, and a small index sha256 -> number.
                    if index.contains_key(id.as_bytes())? {
                        continue;
                    }
                    let num = db.generate_id()?.to_be_bytes();
                    tree.insert(num, m.as_slice())?;
                    index.insert(id.as_bytes(), &num)?;
                } else {
                    tree.insert(id.as_bytes(), m.as_slice())?;
                }
            }
            db.flush()?;
            if (i + 1) % per_tenth == 0 {
                tenths.push(lap.elapsed().as_secs_f64() * 1e3 / per_tenth as f64);
                lap = Instant::now();
            }
        }
        let secs = t.elapsed().as_secs_f64();
        let (rss, hwm) = mem_mib();
        drop((tree, index));
        drop(db);
        println!(
            "  cache {cache_mib:>4} MiB, {}: {:.0} blobs/s; ms per 100 by tenth: {}; {:.0} MiB on disk; VmRSS {rss:.0} VmHWM {hwm:.0} MiB",
            if seq { "by number + index" } else { "by sha256" },
            n as f64 / secs,
            fmt_list(&tenths, 1),
            du_mib(&dir)
        );
        rm(&dir)?;
    }
    Ok(())
}

/// `load-docs DIR`: how long loading each document of a data dir takes (the first thing a
/// fresh process does with a segment it appends to or syncs), and how many chunks it has.
fn run_load_docs(dir: &str) -> Result<()> {
    let r = open_dir(Path::new(dir))?;
    let tx = Tx::new(r.kv());
    for (id, _) in r.doc_heads()? {
        let meta = tx.doc_meta(&id)?.context("meta")?;
        let t = Instant::now();
        let (mut am, _) = tx.load_doc(&id)?.context("doc")?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        println!(
            "{id}: {} chunks, {} changes, loaded in {ms:.0} ms",
            meta.next_chunk - meta.first_chunk,
            am.get_changes(&[]).len()
        );
    }
    Ok(())
}

fn usage() -> ! {
    eprintln!(
        "usage: bench <append|append-phases|list|rss|sync|all|build|sample> [--reps N] [--n N]\n\
         (internal: open-list DIR MAILBOX, measure-rss DIR; diagnostic: load-docs DIR)"
    );
    std::process::exit(2)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(scenario) = args.first().cloned() else {
        usage()
    };
    let opt = |name: &str, default: u64| -> u64 {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let reps = opt("--reps", 5) as usize;
    // 100k appends take a while: three runs unless asked otherwise.
    let append_reps = opt("--reps", 3) as usize;
    let n = opt("--n", 100_000);
    let mut rows = Vec::new();
    match scenario.as_str() {
        "open-list" => {
            let (Some(d), Some(m)) = (args.get(1), args.get(2)) else {
                usage()
            };
            return run_open_list(d, m);
        }
        "load-docs" => {
            let Some(d) = args.get(1) else { usage() };
            return run_load_docs(d);
        }
        "measure-rss" => {
            let Some(d) = args.get(1) else { usage() };
            return run_measure_rss(d);
        }
        "sample" => {
            // One generated message, and the size distribution of the first 1,000.
            let m = message(1, opt("--i", 0));
            print!("{}", String::from_utf8_lossy(&m.bytes));
            let sizes: Vec<f64> = (0..1000)
                .map(|i| message(1, i).bytes.len() as f64)
                .collect();
            eprintln!(
                "flags {:?}; sizes of 1,000: mean {:.0} B, min {:.0}, median {:.0}, max {:.0}",
                m.flags,
                sizes.iter().sum::<f64>() / 1000.0,
                percentile(&sizes, 0.0),
                median(&sizes),
                percentile(&sizes, 1.0)
            );
            return Ok(());
        }
        "build" => {
            ds_100k()?;
            ds_1m()?;
            ds_acct1m()?;
            return Ok(());
        }
        "append" => scen_append(n, append_reps, &mut rows)?,
        "append-phases" => return scen_append_phases(n),
        "exp-rows" => return scen_exp_rows(n),
        "exp-blobs" => return scen_exp_blobs(n),
        "list" => scen_list(reps, &mut rows)?,
        "rss" => scen_rss(reps, &mut rows)?,
        "sync" => scen_sync(reps, &mut rows)?,
        "all" => {
            scen_append(n, append_reps, &mut rows)?;
            scen_list(reps, &mut rows)?;
            scen_rss(reps, &mut rows)?;
            scen_sync(reps, &mut rows)?;
        }
        _ => usage(),
    }
    print_summary(&rows);
    Ok(())
}
