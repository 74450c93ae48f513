//! End-to-end tests of the `dovetail` command line: every test runs the real binary on data
//! dirs in temporary directories and checks what it prints, its exit code and what a later
//! command (`list`, `status`, `diff`) sees.

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_dovetail");

/// A `dovetail` command that ignores the environment of the test runner.
fn cmd() -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("DOVETAIL_DATA_DIR")
        .env_remove("DOVETAIL_MAX_MESSAGE_SIZE")
        .env_remove("DOVETAIL_LOG")
        .stdin(Stdio::null());
    c
}

/// What a finished command printed and returned.
#[derive(Debug)]
struct Run {
    code: i32,
    out: String,
    err: String,
}

fn run_cmd(c: &mut Command) -> Run {
    let o = c.output().expect("run dovetail");
    Run {
        code: o.status.code().unwrap_or(-1),
        out: String::from_utf8(o.stdout).expect("utf-8 stdout"),
        err: String::from_utf8(o.stderr).expect("utf-8 stderr"),
    }
}

fn run(args: &[&str]) -> Run {
    run_cmd(cmd().args(args))
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn is_hex(v: &str, len: usize) -> bool {
    v.len() == len
        && v.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Asserts that a command failed with one clear line on stderr containing `needle`, and
/// printed nothing on stdout. Returns the error line.
fn assert_error(r: &Run, needle: &str, what: &str) -> String {
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
struct Row {
    uid: u32,
    guid: String,
    flags: Vec<String>,
    size: u64,
    blob: String,
}

/// Parses a `list` line: `UID GUID (FLAGS) SIZE BLOB`.
fn parse_row(line: &str) -> Row {
    fn fields(line: &str) -> Option<Row> {
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
struct Status {
    account: String,
    mailbox: String,
    uidvalidity: u32,
    uidnext: u32,
    messages: u64,
    unseen: u64,
    digest: String,
}

/// A data dir (and a scratch dir for message files) that lives as long as the value.
struct Node {
    _tmp: TempDir,
    root: PathBuf,
    data: PathBuf,
}

impl Node {
    /// A fresh, initialized data dir.
    fn new() -> Node {
        let n = Node::uninit();
        let r = run(&["init", "--data-dir", s(&n.data)]);
        assert_eq!(r.code, 0, "init: {r:?}");
        n
    }

    /// A temp dir whose data dir does not exist yet.
    fn uninit() -> Node {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().to_path_buf();
        Node {
            data: root.join("data"),
            root,
            _tmp: tmp,
        }
    }

    fn dir(&self) -> &str {
        s(&self.data)
    }

    fn run(&self, args: &[&str]) -> Run {
        run_cmd(cmd().arg("--data-dir").arg(&self.data).args(args))
    }

    /// Runs a command that must succeed quietly on stderr; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert_eq!(r.code, 0, "dovetail {args:?} failed: {r:?}");
        assert_eq!(r.err, "", "dovetail {args:?} wrote to stderr");
        r.out
    }

    /// `ok` on a command line given as words (`~` stands for a space inside a word).
    fn cli(&self, line: &str) -> String {
        let args = words(line);
        self.ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// `json` on a command line given as words.
    fn cli_json(&self, line: &str) -> Value {
        let args = words(line);
        self.json(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.ok(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: invalid JSON {e}: {out}"))
    }

    /// Writes a small message file under the scratch dir.
    fn msg(&self, name: &str) -> PathBuf {
        let body = format!(
            "From: a@example.org\r\nTo: b@example.org\r\nSubject: {name}\r\n\r\nbody of {name}\r\n"
        );
        self.file(name, body.as_bytes())
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.root.join(name);
        std::fs::write(&p, bytes).expect("write message file");
        p
    }

    fn create(&self, account: &str, mailbox: &str) {
        let out = self.ok(&["mailbox", "create", "--account", account, mailbox]);
        assert_eq!(out, "", "mailbox create prints nothing without --json");
    }

    /// Appends files; returns the printed (UID, GUID) pairs.
    fn append(
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

    fn list(&self, account: &str, mailbox: &str) -> Vec<Row> {
        parse_list(&self.ok(&["list", "--account", account, "--mailbox", mailbox]))
    }

    fn flags_of(&self, account: &str, mailbox: &str) -> BTreeMap<u32, Vec<String>> {
        self.list(account, mailbox)
            .into_iter()
            .map(|r| (r.uid, r.flags))
            .collect()
    }

    fn status(&self, account: Option<&str>) -> Vec<Status> {
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

    fn mailbox_status(&self, account: &str, mailbox: &str) -> Status {
        self.status(Some(account))
            .into_iter()
            .find(|st| st.mailbox == mailbox)
            .unwrap_or_else(|| panic!("no status for {account}/{mailbox}"))
    }

    /// Everything observable about the data dir: accounts, status, and every mailbox's
    /// full JSON listing (including modseqs).
    fn snapshot(&self) -> String {
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
    fn reject_cli(&self, line: &str, needle: &str) -> String {
        let args = words(line);
        self.reject(&args.iter().map(String::as_str).collect::<Vec<_>>(), needle)
    }

    /// Runs a command that must fail with a one-line error mentioning `needle` and change
    /// nothing in the data dir.
    fn reject(&self, args: &[&str], needle: &str) -> String {
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
fn parse_list(out: &str) -> Vec<Row> {
    let rows: Vec<Row> = out.lines().map(parse_row).collect();
    let uids: Vec<u32> = rows.iter().map(|r| r.uid).collect();
    let mut sorted = uids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(uids, sorted, "list is in strictly increasing UID order");
    rows
}

/// Parses `append` output: one `UID GUID` line per message.
fn parse_appended(out: &str) -> Vec<(u32, String)> {
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

fn sync(a: &Node, b: &Node) -> String {
    let r = run(&["sync", a.dir(), b.dir()]);
    assert_eq!(r.code, 0, "sync: {r:?}");
    assert!(r.out.starts_with("synced "), "sync report: {:?}", r.out);
    r.out
}

fn diff(dirs: &[&Node]) -> Run {
    let mut c = cmd();
    c.arg("diff").args(dirs.iter().map(|n| &n.data));
    run_cmd(&mut c)
}

/// Splits a command line into words; `~` stands for a space inside a word.
fn words(line: &str) -> Vec<String> {
    line.split_whitespace()
        .map(|w| w.replace('~', " "))
        .collect()
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

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
