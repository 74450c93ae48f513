//! Helpers shared by the CLI scenarios: running the binary, data dirs, parsing output.
#![allow(dead_code)]

pub use serde_json::Value;
pub use sha2::{Digest, Sha256};
pub use std::collections::{BTreeMap, BTreeSet};
pub use std::io::{BufRead, BufReader, Read, Write};
pub use std::path::{Path, PathBuf};
pub use std::process::{Command, Stdio};
pub use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_dovetail");

/// A `dovetail` command that ignores the environment of the test runner.
pub fn cmd() -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("DOVETAIL_DATA_DIR")
        .env_remove("DOVETAIL_MAX_MESSAGE_SIZE")
        .env_remove("DOVETAIL_LOG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    c
}

/// What a finished command printed and returned.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub out: String,
    pub err: String,
}

pub fn run_cmd(c: &mut Command) -> Run {
    let o = c.output().expect("run dovetail");
    Run {
        code: o.status.code().unwrap_or(-1),
        out: String::from_utf8(o.stdout).expect("utf-8 stdout"),
        err: String::from_utf8(o.stderr).expect("utf-8 stderr"),
    }
}

pub fn run(args: &[&str]) -> Run {
    run_cmd(cmd().args(args))
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

pub fn is_hex(v: &str, len: usize) -> bool {
    v.len() == len
        && v.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Asserts that a command failed with one clear line on stderr containing `needle`, and
/// printed nothing on stdout. Returns the error line.
pub fn assert_error(r: &Run, needle: &str, what: &str) -> String {
    assert_ne!(r.code, 0, "{what}: should fail, got {r:?}");
    assert_eq!(r.out, "", "{what}: printed on stdout despite failing");
    let lines: Vec<&str> = r.err.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: want one error line, got {:?}",
        r.err
    );
    assert!(
        lines[0].starts_with("dovetail: error: "),
        "{what}: unexpected error line {:?}",
        lines[0]
    );
    assert!(
        lines[0].contains(needle),
        "{what}: error {:?} does not mention {needle:?}",
        lines[0]
    );
    lines[0].to_string()
}

/// One row of `dovetail list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub uid: u32,
    pub guid: String,
    pub flags: Vec<String>,
    pub size: u64,
    pub blob: String,
}

/// Parses a `list` line: `UID GUID (FLAGS) SIZE BLOB`.
pub fn parse_row(line: &str) -> Row {
    pub fn fields(line: &str) -> Option<Row> {
        let (uid, rest) = line.split_once(' ')?;
        let (guid, rest) = rest.split_once(' ')?;
        let (flags, rest) = rest.strip_prefix('(')?.split_once(") ")?;
        let (size, blob) = rest.split_once(' ')?;
        Some(Row {
            uid: uid.parse().ok()?,
            guid: guid.to_string(),
            flags: flags.split_whitespace().map(str::to_string).collect(),
            size: size.parse().ok()?,
            blob: blob.to_string(),
        })
    }
    let row = fields(line).unwrap_or_else(|| panic!("malformed list line {line:?}"));
    assert!(is_hex(&row.guid, 32), "GUID of {line:?}");
    assert!(is_hex(&row.blob, 64), "blob id of {line:?}");
    row
}

/// One line of `dovetail status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub account: String,
    pub mailbox: String,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub messages: u64,
    pub unseen: u64,
    pub digest: String,
}

/// A data dir (and a scratch dir for message files) that lives as long as the value.
pub struct Node {
    pub _tmp: TempDir,
    pub root: PathBuf,
    pub data: PathBuf,
}

impl Node {
    /// A fresh, initialized data dir.
    pub fn new() -> Node {
        let n = Node::uninit();
        let r = run(&["init", "--data-dir", s(&n.data)]);
        assert_eq!(r.code, 0, "init: {r:?}");
        n
    }

    /// A temp dir whose data dir does not exist yet.
    pub fn uninit() -> Node {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().to_path_buf();
        Node {
            data: root.join("data"),
            root,
            _tmp: tmp,
        }
    }

    pub fn dir(&self) -> &str {
        s(&self.data)
    }

    pub fn run(&self, args: &[&str]) -> Run {
        run_cmd(cmd().arg("--data-dir").arg(&self.data).args(args))
    }

    /// Runs a command that must succeed quietly on stderr; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert_eq!(r.code, 0, "dovetail {args:?} failed: {r:?}");
        assert_eq!(r.err, "", "dovetail {args:?} wrote to stderr");
        r.out
    }

    /// `ok` on a command line given as words (`~` stands for a space inside a word).
    pub fn cli(&self, line: &str) -> String {
        let args = words(line);
        self.ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// `json` on a command line given as words.
    pub fn cli_json(&self, line: &str) -> Value {
        let args = words(line);
        self.json(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.ok(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: invalid JSON {e}: {out}"))
    }

    /// Writes a small message file under the scratch dir.
    pub fn msg(&self, name: &str) -> PathBuf {
        let body = format!(
            "From: a@example.org\r\nTo: b@example.org\r\nSubject: {name}\r\n\r\nbody of {name}\r\n"
        );
        self.file(name, body.as_bytes())
    }

    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.root.join(name);
        std::fs::write(&p, bytes).expect("write message file");
        p
    }

    pub fn create(&self, account: &str, mailbox: &str) {
        let out = self.ok(&["mailbox", "create", "--account", account, mailbox]);
        assert_eq!(out, "", "mailbox create prints nothing without --json");
    }

    /// Appends files; returns the printed (UID, GUID) pairs.
    pub fn append(
        &self,
        account: &str,
        mailbox: &str,
        flags: Option<&str>,
        files: &[&Path],
    ) -> Vec<(u32, String)> {
        let mut args = vec!["append", "--account", account, "--mailbox", mailbox];
        if let Some(f) = flags {
            args.extend(["--flags", f]);
        }
        args.extend(files.iter().map(|p| s(p)));
        let out = self.ok(&args);
        let got = parse_appended(&out);
        assert_eq!(got.len(), files.len(), "one line per message: {out:?}");
        got
    }

    pub fn list(&self, account: &str, mailbox: &str) -> Vec<Row> {
        parse_list(&self.ok(&["list", "--account", account, "--mailbox", mailbox]))
    }

    pub fn flags_of(&self, account: &str, mailbox: &str) -> BTreeMap<u32, Vec<String>> {
        self.list(account, mailbox)
            .into_iter()
            .map(|r| (r.uid, r.flags))
            .collect()
    }

    pub fn status(&self, account: Option<&str>) -> Vec<Status> {
        let mut args = vec!["status"];
        if let Some(a) = account {
            args.extend(["--account", a]);
        }
        let out = self.ok(&args);
        let mut lines = out.lines();
        assert_eq!(
            lines.next(),
            Some("ACCOUNT MAILBOX UIDVALIDITY UIDNEXT MESSAGES UNSEEN DIGEST")
        );
        lines
            .map(|l| {
                // A mailbox name may hold spaces: the other fields have none.
                let f: Vec<&str> = l.split(' ').collect();
                assert!(f.len() >= 7, "status line {l:?}");
                let n = f.len();
                let st = Status {
                    account: f[0].to_string(),
                    mailbox: f[1..n - 5].join(" "),
                    uidvalidity: f[n - 5].parse().expect("UIDVALIDITY"),
                    uidnext: f[n - 4].parse().expect("UIDNEXT"),
                    messages: f[n - 3].parse().expect("messages"),
                    unseen: f[n - 2].parse().expect("unseen"),
                    digest: f[n - 1].to_string(),
                };
                assert!(st.uidvalidity > 0 && st.uidnext > 0, "{l:?}");
                assert!(is_hex(&st.digest, 32), "digest of {l:?}");
                st
            })
            .collect()
    }

    pub fn mailbox_status(&self, account: &str, mailbox: &str) -> Status {
        self.status(Some(account))
            .into_iter()
            .find(|st| st.mailbox == mailbox)
            .unwrap_or_else(|| panic!("no status for {account}/{mailbox}"))
    }

    /// Everything observable about the data dir: accounts, status, and every mailbox's
    /// full JSON listing (including modseqs).
    pub fn snapshot(&self) -> String {
        let mut out = String::new();
        let accounts = self.cli_json("account list");
        out.push_str(&accounts.to_string());
        for a in accounts.as_array().expect("account list") {
            let a = a.as_str().expect("account name");
            let st = self.json(&["status", "--account", a]);
            out.push_str(&st.to_string());
            for m in st.as_array().expect("status array") {
                let name = m["name"].as_str().expect("mailbox name");
                out.push_str(
                    &self
                        .json(&["list", "--account", a, "--mailbox", name])
                        .to_string(),
                );
            }
        }
        out
    }

    /// `reject` on a command line given as words.
    pub fn reject_cli(&self, line: &str, needle: &str) -> String {
        let args = words(line);
        self.reject(&args.iter().map(String::as_str).collect::<Vec<_>>(), needle)
    }

    /// Runs a command that must fail with a one-line error mentioning `needle` and change
    /// nothing in the data dir.
    pub fn reject(&self, args: &[&str], needle: &str) -> String {
        let before = self.snapshot();
        let r = self.run(args);
        let what = if args.len() > 12 {
            format!("{:?} ... ({} arguments)", &args[..6], args.len())
        } else {
            format!("{args:?}")
        };
        let line = assert_error(&r, needle, &what);
        assert_eq!(
            before,
            self.snapshot(),
            "{what} failed but changed the data dir"
        );
        line
    }
}

/// Parses `list` output, checking that it is in strictly increasing UID order.
pub fn parse_list(out: &str) -> Vec<Row> {
    let rows: Vec<Row> = out.lines().map(parse_row).collect();
    let uids: Vec<u32> = rows.iter().map(|r| r.uid).collect();
    let mut sorted = uids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(uids, sorted, "list is in strictly increasing UID order");
    rows
}

/// Parses `append` output: one `UID GUID` line per message.
pub fn parse_appended(out: &str) -> Vec<(u32, String)> {
    out.lines()
        .map(|l| {
            let (u, g) = l
                .split_once(' ')
                .unwrap_or_else(|| panic!("append line {l:?}"));
            assert!(is_hex(g, 32), "GUID in {l:?}");
            (
                u.parse().unwrap_or_else(|_| panic!("UID in {l:?}")),
                g.to_string(),
            )
        })
        .collect()
}

pub fn sync(a: &Node, b: &Node) -> String {
    let r = run(&["sync", a.dir(), b.dir()]);
    assert_eq!(r.code, 0, "sync: {r:?}");
    assert!(r.out.starts_with("synced "), "sync report: {:?}", r.out);
    r.out
}

pub fn diff(dirs: &[&Node]) -> Run {
    let mut c = cmd();
    c.arg("diff").args(dirs.iter().map(|n| &n.data));
    run_cmd(&mut c)
}

/// Splits a command line into words; `~` stands for a space inside a word.
pub fn words(line: &str) -> Vec<String> {
    line.split_whitespace()
        .map(|w| w.replace('~', " "))
        .collect()
}

pub fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}
