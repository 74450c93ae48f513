//! The commands of a running node's data dir: sent over its control socket
//! ([`crate::node::control`]) and printed as the local commands print them. `diff` compares
//! running and stopped data dirs alike, and `--wait` polls until they converge.

use super::{AccountCmd, Cli, CliError, Cmd, MailboxCmd};
use crate::diff::Difference;
use crate::node::control::{self, ControlRequest, ControlResponse, MessageFile, RowOut, StatusRow};
use crate::node::{check_message, Options, Replica};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Bytes of messages per control request of `append` (each request is one durable batch).
const APPEND_BYTES: usize = 64 * 1024 * 1024;
/// Messages per control request of `append`.
const APPEND_BATCH: usize = 1000;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn print_json(v: serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(&v).expect("json"));
}

fn send(dir: &Path, req: &ControlRequest) -> Result<ControlResponse, CliError> {
    match control::call(dir, req).map_err(|e| CliError::Remote(e.to_string()))? {
        Some(ControlResponse::Error(e)) => Err(CliError::Remote(e)),
        Some(r) => Ok(r),
        None => Err(CliError::Remote(format!(
            "the node on {} stopped answering",
            dir.display()
        ))),
    }
}

fn unexpected(r: ControlResponse) -> CliError {
    CliError::Remote(format!("unexpected answer from the node: {r:?}"))
}

/// Runs `cli` through the control socket if a node runs on its data dir. `None`: no node
/// runs there (or the command is not one a node serves): run it locally.
pub fn try_remote(cli: &Cli) -> Result<Option<i32>, CliError> {
    if let Cmd::Diff { dirs, wait } = &cli.cmd {
        if wait.is_some() || dirs.iter().any(|d| control::running(d)) {
            return diff(cli, dirs, wait.unwrap_or(0.0)).map(Some);
        }
        return Ok(None);
    }
    let Some(dir) = cli.data_dir.as_deref() else {
        return Ok(None);
    };
    if !control::running(dir) {
        return Ok(None);
    }
    let req = match &cli.cmd {
        Cmd::Account { cmd } => match cmd {
            AccountCmd::Create { account } => ControlRequest::AccountCreate(account.clone()),
            AccountCmd::List => ControlRequest::AccountList,
        },
        Cmd::Mailbox { cmd } => match cmd {
            MailboxCmd::Create { account, name } => ControlRequest::MailboxCreate {
                account: account.clone(),
                name: name.clone(),
            },
            MailboxCmd::Rename { account, name, new } => ControlRequest::MailboxRename {
                account: account.clone(),
                name: name.clone(),
                new: new.clone(),
            },
            MailboxCmd::Delete { account, name } => ControlRequest::MailboxDelete {
                account: account.clone(),
                name: name.clone(),
            },
            MailboxCmd::List { account } => ControlRequest::Status {
                account: Some(account.clone()),
            },
        },
        Cmd::Append {
            account,
            mailbox,
            flags,
            files,
        } => return append(cli, dir, account, mailbox, flags.as_deref(), files).map(Some),
        Cmd::List { account, mailbox } => ControlRequest::List {
            account: account.clone(),
            mailbox: mailbox.clone(),
        },
        Cmd::Flags {
            account,
            mailbox,
            uid,
            change,
        } => ControlRequest::Flags {
            account: account.clone(),
            mailbox: mailbox.clone(),
            uid: uid.clone(),
            change: change.clone(),
        },
        Cmd::Expunge {
            account,
            mailbox,
            uid,
        } => ControlRequest::Expunge {
            account: account.clone(),
            mailbox: mailbox.clone(),
            uid: uid.clone(),
        },
        Cmd::Copy(a) | Cmd::Move(a) => ControlRequest::Copy {
            account: a.account.clone(),
            mailbox: a.mailbox.clone(),
            uid: a.uid.clone(),
            to: a.to.clone(),
            remove: matches!(cli.cmd, Cmd::Move(_)),
        },
        Cmd::Status { account } => ControlRequest::Status {
            account: account.clone(),
        },
        Cmd::Fetch {
            account,
            mailbox,
            uid,
        } => ControlRequest::Fetch {
            account: account.clone(),
            mailbox: mailbox.clone(),
            uid: uid.clone(),
        },
        Cmd::Watch => return super::watch::watch(cli, dir).map(Some),
        _ => return Ok(None),
    };
    let resp = send(dir, &req)?;
    print(cli, &req, resp)?;
    Ok(Some(0))
}

fn print(cli: &Cli, req: &ControlRequest, resp: ControlResponse) -> Result<(), CliError> {
    match (req, resp) {
        (_, ControlResponse::Done) => {}
        (_, ControlResponse::Accounts(a)) => {
            if cli.json {
                print_json(json!(a));
            } else {
                for x in a {
                    println!("{x}");
                }
            }
        }
        (_, ControlResponse::Uidvalidity(uv)) => {
            if cli.json {
                print_json(json!({ "uidvalidity": uv }));
            }
        }
        (
            ControlRequest::Status { account },
            ControlResponse::Status {
                mailboxes,
                peers,
                sync,
            },
        ) => {
            let mailbox_list = matches!(&cli.cmd, Cmd::Mailbox { .. });
            if cli.json {
                // `status` without an account adds the peers; the other forms print what
                // they print on a stopped data dir.
                if mailbox_list || account.is_some() {
                    print_json(json!(mailboxes));
                } else {
                    print_json(json!({ "mailboxes": mailboxes, "peers": peers, "sync": sync }));
                }
            } else if mailbox_list {
                for s in mailboxes {
                    println!("{}", s.name);
                }
            } else {
                println!("ACCOUNT MAILBOX UIDVALIDITY UIDNEXT MESSAGES UNSEEN DIGEST");
                for s in mailboxes {
                    println!(
                        "{} {} {} {} {} {} {}",
                        s.account, s.name, s.uidvalidity, s.uidnext, s.messages, s.unseen, s.digest
                    );
                }
                if account.is_none() {
                    println!(
                        "SYNC documents-behind {} changes-waiting {} blobs-missing {} blobs-fetched {} bytes-fetched {}",
                        sync.documents_behind,
                        sync.changes_waiting,
                        sync.blobs_missing,
                        sync.blobs_fetched,
                        sync.blob_bytes_fetched
                    );
                }
                println!("PEERS {}", peers.len());
                for p in peers {
                    println!(
                        "peer {} {} since {} behind {} sent {} received {}",
                        p.peer, p.addr, p.since, p.behind, p.sent, p.received
                    );
                }
            }
        }
        (_, ControlResponse::Rows(rows)) => {
            if cli.json {
                print_json(json!(rows));
            } else {
                let mut out = String::with_capacity(rows.len() * 140);
                for r in rows {
                    out.push_str(&format!(
                        "{} {} ({}) {} {}\n",
                        r.uid,
                        r.guid,
                        r.flags.join(" "),
                        r.size,
                        r.blob
                    ));
                }
                print!("{out}");
            }
        }
        (_, ControlResponse::Flags(v)) => {
            if cli.json {
                let v: Vec<_> = v
                    .iter()
                    .map(|(u, f)| json!({ "uid": u, "flags": f }))
                    .collect();
                print_json(json!(v));
            } else {
                for (u, f) in v {
                    println!("{u} ({})", f.join(" "));
                }
            }
        }
        (_, ControlResponse::Uids(v)) => {
            if cli.json {
                print_json(json!(v));
            } else {
                for u in v {
                    println!("{u}");
                }
            }
        }
        (_, ControlResponse::Copied(v)) => {
            if cli.json {
                let v: Vec<_> = v
                    .iter()
                    .map(|(a, b)| json!({ "uid": a, "new_uid": b }))
                    .collect();
                print_json(json!(v));
            } else {
                for (a, b) in v {
                    println!("{a} {b}");
                }
            }
        }
        (_, ControlResponse::Message(bytes)) => {
            // Raw bytes, not text: a message need not be UTF-8.
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)
                .and_then(|()| out.flush())
                .map_err(CliError::Stdout)?;
        }
        (_, other) => return Err(unexpected(other)),
    }
    Ok(())
}

fn read_file(p: &Path) -> Result<Vec<u8>, CliError> {
    let err = |source| CliError::Read {
        path: p.display().to_string(),
        source,
    };
    if p == Path::new("-") {
        let mut v = Vec::new();
        std::io::stdin().read_to_end(&mut v).map_err(err)?;
        Ok(v)
    } else {
        std::fs::read(p).map_err(err)
    }
}

fn append(
    cli: &Cli,
    dir: &Path,
    account: &str,
    mailbox: &str,
    flags: Option<&str>,
    files: &[PathBuf],
) -> Result<i32, CliError> {
    if let Some(f) = flags {
        crate::model::Flag::parse_list(f)?;
    }
    // Check every file before sending any, so that one bad file changes nothing.
    let limit = cli.max_message_size;
    for p in files {
        if p != Path::new("-") {
            let size = std::fs::metadata(p)
                .map_err(|source| CliError::Read {
                    path: p.display().to_string(),
                    source,
                })?
                .len();
            let name = p.display().to_string();
            if size > limit {
                return Err(crate::node::NodeError::TooLarge { name, size, limit }.into());
            }
            check_message(&name, &read_file(p)?, limit)?;
        }
    }
    let mut json_out = Vec::new();
    let mut i = 0;
    while i < files.len() {
        let mut batch = Vec::new();
        let mut bytes = 0;
        while i < files.len()
            && batch.len() < APPEND_BATCH
            && (batch.is_empty() || bytes < APPEND_BYTES)
        {
            let b = read_file(&files[i])?;
            bytes += b.len();
            batch.push(MessageFile {
                name: files[i].display().to_string(),
                bytes: b,
                internal_date: now(),
            });
            i += 1;
        }
        let req = ControlRequest::Append {
            account: account.to_string(),
            mailbox: mailbox.to_string(),
            flags: flags.map(str::to_string),
            messages: batch,
        };
        match send(dir, &req)? {
            ControlResponse::Appended(v) => {
                for (u, g) in v {
                    if cli.json {
                        json_out.push(json!({ "uid": u, "guid": g }));
                    } else {
                        println!("{u} {g}");
                    }
                }
            }
            other => return Err(unexpected(other)),
        }
    }
    if cli.json {
        print_json(json!(json_out));
    }
    Ok(0)
}

/// A data dir to compare: through its node's control socket, or opened directly.
enum Source {
    Running(PathBuf),
    Stopped(Box<Replica>),
}

impl Source {
    fn open(cli: &Cli, dir: &Path) -> Result<Source, CliError> {
        if control::running(dir) {
            return Ok(Source::Running(dir.to_path_buf()));
        }
        let opts = Options {
            max_message_size: cli.max_message_size,
            memory_budget: cli.memory_budget,
            ..Options::default()
        };
        Ok(Source::Stopped(Box::new(Replica::open(dir, opts)?)))
    }

    fn statuses(&mut self) -> Result<Vec<StatusRow>, CliError> {
        match self {
            Source::Running(d) => match send(d, &ControlRequest::Status { account: None })? {
                ControlResponse::Status { mailboxes, .. } => Ok(mailboxes),
                other => Err(unexpected(other)),
            },
            Source::Stopped(r) => Ok(control::statuses(r, None)?),
        }
    }

    fn rows(&mut self, id: &str) -> Result<Vec<RowOut>, CliError> {
        match self {
            Source::Running(d) => match send(
                d,
                &ControlRequest::Rows {
                    mailbox_id: id.to_string(),
                },
            )? {
                ControlResponse::Rows(r) => Ok(r),
                other => Err(unexpected(other)),
            },
            Source::Stopped(r) => Ok(control::rows_by_id(r, id)?),
        }
    }
}

type ByAccount = BTreeMap<String, BTreeMap<String, StatusRow>>;

fn by_account(v: Vec<StatusRow>) -> ByAccount {
    let mut out = ByAccount::new();
    for s in v {
        out.entry(s.account.clone())
            .or_default()
            .insert(s.id.clone(), s);
    }
    out
}

/// Compares every data dir with the first, as [`crate::diff::diff`] does.
fn compare(sources: &mut [Source], labels: &[String]) -> Result<Vec<Difference>, CliError> {
    let mut out = Vec::new();
    let Some((first, rest)) = sources.split_first_mut() else {
        return Ok(out);
    };
    let sa = by_account(first.statuses()?);
    for (i, other) in rest.iter_mut().enumerate() {
        let (la, lb) = (&labels[0], &labels[i + 1]);
        let sb = by_account(other.statuses()?);
        let accounts: BTreeSet<&String> = sa.keys().chain(sb.keys()).collect();
        for acc in accounts {
            let (ma, mb) = match (sa.get(acc), sb.get(acc)) {
                (Some(x), Some(y)) => (x, y),
                (x, _) => {
                    out.push(Difference::Account {
                        account: acc.clone(),
                        only_in: if x.is_some() { la.clone() } else { lb.clone() },
                    });
                    continue;
                }
            };
            let ids: BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
            for id in ids {
                let (x, y) = match (ma.get(id), mb.get(id)) {
                    (Some(x), Some(y)) => (x, y),
                    (Some(m), None) | (None, Some(m)) => {
                        out.push(Difference::Mailbox {
                            account: acc.clone(),
                            mailbox: m.name.clone(),
                            only_in: if ma.contains_key(id) {
                                la.clone()
                            } else {
                                lb.clone()
                            },
                        });
                        continue;
                    }
                    (None, None) => continue,
                };
                let mailbox = x.name.clone();
                if x.name != y.name {
                    out.push(Difference::Name {
                        account: acc.clone(),
                        id: id.clone(),
                        a: x.name.clone(),
                        b: y.name.clone(),
                    });
                }
                if x.uidvalidity != y.uidvalidity {
                    out.push(Difference::UidValidity {
                        account: acc.clone(),
                        mailbox: mailbox.clone(),
                        a: x.uidvalidity,
                        b: y.uidvalidity,
                    });
                }
                if x.uidnext != y.uidnext {
                    out.push(Difference::UidNext {
                        account: acc.clone(),
                        mailbox: mailbox.clone(),
                        a: x.uidnext,
                        b: y.uidnext,
                    });
                }
                if x.digest == y.digest && x.messages == y.messages {
                    continue;
                }
                let ra = first.rows(id)?;
                let rb = other.rows(id)?;
                rows_diff(acc, &mailbox, &ra, &rb, la, lb, &mut out);
            }
        }
    }
    Ok(out)
}

fn rows_diff(
    acc: &str,
    mailbox: &str,
    ra: &[RowOut],
    rb: &[RowOut],
    la: &str,
    lb: &str,
    out: &mut Vec<Difference>,
) {
    let (account, mailbox) = (acc.to_string(), mailbox.to_string());
    let uid_a: BTreeMap<&str, u32> = ra.iter().map(|r| (r.guid.as_str(), r.uid)).collect();
    let uid_b: BTreeMap<&str, u32> = rb.iter().map(|r| (r.guid.as_str(), r.uid)).collect();
    for (g, ua) in &uid_a {
        match uid_b.get(g) {
            Some(ub) if ub != ua => out.push(Difference::Uid {
                account: account.clone(),
                mailbox: mailbox.clone(),
                guid: g.to_string(),
                a: *ua,
                b: *ub,
            }),
            Some(_) => {}
            None => out.push(Difference::Message {
                account: account.clone(),
                mailbox: mailbox.clone(),
                uid: *ua,
                guid: g.to_string(),
                only_in: la.to_string(),
            }),
        }
    }
    for (g, ub) in &uid_b {
        if !uid_a.contains_key(g) {
            out.push(Difference::Message {
                account: account.clone(),
                mailbox: mailbox.clone(),
                uid: *ub,
                guid: g.to_string(),
                only_in: lb.to_string(),
            });
        }
    }
    let by_uid_b: BTreeMap<u32, &RowOut> = rb.iter().map(|r| (r.uid, r)).collect();
    for x in ra {
        let Some(y) = by_uid_b.get(&x.uid) else {
            continue;
        };
        if x.guid != y.guid {
            out.push(Difference::Guid {
                account: account.clone(),
                mailbox: mailbox.clone(),
                uid: x.uid,
                a: x.guid.clone(),
                b: y.guid.clone(),
            });
            continue;
        }
        if x.flags != y.flags {
            out.push(Difference::Flags {
                account: account.clone(),
                mailbox: mailbox.clone(),
                uid: x.uid,
                a: x.flags.join(" "),
                b: y.flags.join(" "),
            });
        }
        if x.blob != y.blob {
            out.push(Difference::Blob {
                account: account.clone(),
                mailbox: mailbox.clone(),
                uid: x.uid,
                a: x.blob.clone(),
                b: y.blob.clone(),
            });
        }
    }
}

/// `dovetail diff DIR... [--wait SECONDS]`: exit 0 iff all converged.
fn diff(cli: &Cli, dirs: &[PathBuf], wait: f64) -> Result<i32, CliError> {
    let labels: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let deadline = Instant::now() + Duration::from_secs_f64(wait.max(0.0));
    let diffs = loop {
        let mut sources = Vec::new();
        for d in dirs {
            sources.push(Source::open(cli, d)?);
        }
        let diffs = compare(&mut sources, &labels)?;
        // Stopped data dirs are reopened each round; close them so a node can start.
        drop(sources);
        if diffs.is_empty() || Instant::now() >= deadline {
            break diffs;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if cli.json {
        print_json(json!({ "converged": diffs.is_empty(), "differences": diffs }));
    } else if diffs.is_empty() {
        println!("converged: {} data dirs hold the same state", dirs.len());
    } else {
        for d in &diffs {
            println!("{d}");
        }
        println!("{} differences", diffs.len());
    }
    Ok(if diffs.is_empty() { 0 } else { 1 })
}
