//! The deterministic message generator: realistic RFC 5322 messages of ~3 KB from a seed.

use dovetail::model::{Flag, FlagSet};
use dovetail::node::NewMessage;
use std::fmt::Write as _;

// ---------------------------------------------------------------- message generator

/// splitmix64: small, fast, and stable across library versions.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64, stream: u64) -> Rng {
        let mut r = Rng(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next();
        r
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

pub const FIRST: &[&str] = &[
    "Alice", "Bob", "Carol", "David", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory",
    "Niaj", "Olivia", "Peggy", "Rupert", "Sybil", "Trent", "Victor", "Walter", "Yasmin", "Zoé",
    "Åsa", "Jürgen", "Chloé",
];
pub const LAST: &[&str] = &[
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
pub const DOMAINS: &[&str] = &[
    "example.org",
    "example.com",
    "mail.example.net",
    "lists.example.org",
    "corp.example",
    "university.example.edu",
    "shop.example.com",
    "ops.example.io",
];
pub const TOPICS: &[&str] = &[
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
pub const WORDS: &[&str] = &[
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
pub const MAILERS: &[&str] = &[
    "Mozilla Thunderbird 115.4",
    "Apple Mail (2.3731)",
    "Microsoft Outlook 16.0",
    "Roundcube Webmail/1.6.5",
    "mutt/2.2.12",
    "K-9 Mail for Android",
];
pub const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
pub const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// RFC 5322 date of a Unix time (UTC).
pub fn rfc5322_date(t: i64) -> String {
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

pub fn person(r: &mut Rng) -> (String, String) {
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

pub fn b64ish(r: &mut Rng, n: usize) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    (0..n).map(|_| A[r.below(64) as usize] as char).collect()
}

pub fn sentence(r: &mut Rng) -> String {
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
pub fn wrap(out: &mut String, text: &str, prefix: &str) {
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
pub fn message(seed: u64, i: u64) -> NewMessage {
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
