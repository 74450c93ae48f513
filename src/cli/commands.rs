//! One function per command. Output goes to stdout only after the write it reports is durable.

use super::{AccountCmd, Cli, CliError, Cmd, CopyArgs, MailboxCmd};
use crate::diff;
use crate::model::{AccountName, Flag, FlagSet, MailboxName, Uid, UidSet};
use crate::node::{sync_pair, FlagOp, NewMessage, Options, Replica};
use serde_json::json;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Messages appended per durable batch (one flush) by `append`.
const APPEND_BATCH: usize = 1000;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn opts(cli: &Cli) -> Options {
    Options {
        max_message_size: cli.max_message_size,
        memory_budget: cli.memory_budget,
        ..Options::default()
    }
}

fn open(cli: &Cli) -> Result<Replica, CliError> {
    let dir = cli.data_dir.as_ref().ok_or(CliError::NoDataDir)?;
    Ok(Replica::open(dir, opts(cli))?)
}

fn acct(s: &str) -> Result<AccountName, CliError> {
    Ok(AccountName::try_from(s)?)
}

fn mbox(s: &str) -> Result<MailboxName, CliError> {
    Ok(MailboxName::try_from(s)?)
}

fn flag_str(f: &FlagSet) -> String {
    f.iter().map(Flag::as_str).collect::<Vec<_>>().join(" ")
}

fn print_json(v: serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(&v).expect("json"));
}

/// Runs a command; returns the process exit code.
pub fn run(cli: Cli) -> Result<i32, CliError> {
    // A node running on the data dir holds its store: talk to it instead.
    if let Some(code) = super::remote::try_remote(&cli)? {
        return Ok(code);
    }
    match &cli.cmd {
        Cmd::Init => {
            let dir = cli.data_dir.as_ref().ok_or(CliError::NoDataDir)?;
            let id = Replica::init(dir)?;
            if cli.json {
                print_json(json!({ "node_id": id.to_hex() }));
            } else {
                println!("{id}");
            }
        }
        Cmd::Account { cmd } => {
            let mut r = open(&cli)?;
            match cmd {
                AccountCmd::Create { account } => r.create_account(&acct(account)?)?,
                AccountCmd::List => {
                    let accounts: Vec<String> =
                        r.accounts()?.iter().map(|a| a.to_string()).collect();
                    if cli.json {
                        print_json(json!(accounts));
                    } else {
                        for a in accounts {
                            println!("{a}");
                        }
                    }
                }
            }
        }
        Cmd::Mailbox { cmd } => mailbox(&cli, cmd)?,
        Cmd::Append {
            account,
            mailbox,
            flags,
            files,
        } => append(&cli, account, mailbox, flags.as_deref(), files)?,
        Cmd::List { account, mailbox } => {
            let mut r = open(&cli)?;
            super::list::list(
                &mut r,
                &acct(account)?,
                &mbox(mailbox)?,
                cli.json,
                std::io::stdout().lock(),
            )?;
        }
        Cmd::Fetch {
            account,
            mailbox,
            uid,
        } => {
            let uid = Uid::try_from(uid.as_str())?;
            let mut r = open(&cli)?;
            let bytes = r.fetch(&acct(account)?, &mbox(mailbox)?, uid)?;
            // Raw bytes, not text: a message need not be UTF-8.
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)
                .and_then(|()| out.flush())
                .map_err(CliError::Stdout)?;
        }
        Cmd::Flags {
            account,
            mailbox,
            uid,
            change,
        } => {
            let set = UidSet::try_from(uid.as_str())?;
            let op = FlagOp::try_from(change.as_str())?;
            let mut r = open(&cli)?;
            let res = r.store_flags(&acct(account)?, &mbox(mailbox)?, &set, &op, now())?;
            if cli.json {
                let v: Vec<_> = res
                    .iter()
                    .map(|(u, f)| json!({ "uid": u.get(), "flags": f.iter().map(Flag::as_str).collect::<Vec<_>>() }))
                    .collect();
                print_json(json!(v));
            } else {
                for (u, f) in res {
                    println!("{u} ({})", flag_str(&f));
                }
            }
        }
        Cmd::Expunge {
            account,
            mailbox,
            uid,
        } => {
            let set = UidSet::try_from(uid.as_str())?;
            let mut r = open(&cli)?;
            let res = r.expunge(&acct(account)?, &mbox(mailbox)?, &set, now())?;
            if cli.json {
                print_json(json!(res.iter().map(|u| u.get()).collect::<Vec<_>>()));
            } else {
                for u in res {
                    println!("{u}");
                }
            }
        }
        Cmd::Copy(a) => copy(&cli, a, false)?,
        Cmd::Move(a) => copy(&cli, a, true)?,
        Cmd::Status { account } => {
            let mut r = open(&cli)?;
            let accounts = match account {
                Some(a) => vec![acct(a)?],
                None => r.accounts()?,
            };
            let mut all = Vec::new();
            for a in accounts {
                all.extend(r.status(&a)?);
            }
            if cli.json {
                print_json(json!(all));
            } else {
                println!("ACCOUNT MAILBOX UIDVALIDITY UIDNEXT MESSAGES UNSEEN DIGEST");
                for s in all {
                    println!(
                        "{} {} {} {} {} {} {}",
                        s.account, s.name, s.uidvalidity, s.uidnext, s.messages, s.unseen, s.digest
                    );
                }
            }
        }
        Cmd::Gc => {
            let mut r = open(&cli)?;
            let st = r.gc()?;
            if cli.json {
                print_json(json!(st));
            } else {
                println!(
                    "kept {} bodies, dropped {}; {} pack files rewritten, {} deleted, {} bytes freed",
                    st.kept, st.dropped, st.packs_rewritten, st.packs_deleted, st.bytes_freed
                );
            }
        }
        Cmd::Sync { dir_a, dir_b } => {
            if let (Ok(x), Ok(y)) = (dir_a.canonicalize(), dir_b.canonicalize()) {
                if x == y {
                    return Err(
                        crate::node::NodeError::SameDir(dir_a.clone(), dir_b.clone()).into(),
                    );
                }
            }
            // Two replicas in one process: each gets half of the budget.
            let half = Options {
                memory_budget: cli.memory_budget / 2,
                ..opts(&cli)
            };
            // Opened side by side (each open reads its store's start-up state).
            let (a, b) = std::thread::scope(|s| {
                let b = s.spawn(|| Replica::open(dir_b, half.clone()));
                let a = Replica::open(dir_a, half.clone());
                (a, b.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            });
            let (mut a, mut b) = (a?, b?);
            let rep = sync_pair(&mut a, &mut b, now())?;
            if cli.json {
                print_json(json!(rep));
            } else {
                println!(
                    "synced {} documents in {} messages ({} bytes), copied {} blobs ({} bytes), renumbered {} messages",
                    rep.docs_synced, rep.messages, rep.sync_bytes, rep.blobs, rep.blob_bytes, rep.renumbered
                );
            }
        }
        Cmd::Diff { dirs, .. } => return diff_dirs(&cli, dirs),
        Cmd::Node(args) => return super::node::run_node(&cli, args),
        Cmd::Keygen { file } => return super::node::keygen(file),
        Cmd::Demo(args) => return super::demo::run(args),
        Cmd::User { cmd } => return super::user::run(&cli, cmd),
        Cmd::ImportMaildir { account, path } => {
            return super::maildir::import_maildir(&cli, account, path)
        }
        Cmd::ExportMaildir { account, path } => {
            return super::maildir::export_maildir(&cli, account, path)
        }
        Cmd::Watch => {
            return Err(CliError::Remote(format!(
                "no node runs on {}: `dovetail watch` follows a running node (start one with `dovetail node`)",
                cli.data_dir.as_deref().map(|d| d.display().to_string()).unwrap_or_default()
            )))
        }
    }
    Ok(0)
}

fn mailbox(cli: &Cli, cmd: &MailboxCmd) -> Result<(), CliError> {
    let mut r = open(cli)?;
    match cmd {
        MailboxCmd::Create { account, name } => {
            let uv = r.create_mailbox(&acct(account)?, &mbox(name)?)?;
            if cli.json {
                print_json(json!({ "uidvalidity": uv.get() }));
            }
        }
        MailboxCmd::Rename { account, name, new } => {
            r.rename_mailbox(&acct(account)?, &mbox(name)?, &mbox(new)?)?
        }
        MailboxCmd::Delete { account, name } => {
            r.delete_mailbox(&acct(account)?, &mbox(name)?, now())?
        }
        MailboxCmd::List { account } => {
            let st = r.status(&acct(account)?)?;
            if cli.json {
                print_json(json!(st));
            } else {
                for s in st {
                    println!("{}", s.name);
                }
            }
        }
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

fn check_file(p: &Path, limit: u64) -> Result<(), CliError> {
    let name = p.display().to_string();
    let size = std::fs::metadata(p)
        .map_err(|source| CliError::Read {
            path: name.clone(),
            source,
        })?
        .len();
    if size > limit {
        return Err(crate::node::NodeError::TooLarge { name, size, limit }.into());
    }
    crate::node::check_message(&name, &read_file(p)?, limit)?;
    Ok(())
}

fn append(
    cli: &Cli,
    account: &str,
    mailbox: &str,
    flags: Option<&str>,
    files: &[PathBuf],
) -> Result<(), CliError> {
    let (a, m) = (acct(account)?, mbox(mailbox)?);
    let flags = match flags {
        Some(f) => Flag::parse_list(f)?,
        None => FlagSet::new(),
    };
    let mut r = open(cli)?;
    let limit = r.options().max_message_size;
    // Check every file before storing any, so that one bad file changes nothing.
    for p in files {
        if p != Path::new("-") {
            check_file(p, limit)?;
        }
    }
    let mut json_out = Vec::new();
    for chunk in files.chunks(APPEND_BATCH) {
        let mut msgs = Vec::with_capacity(chunk.len());
        for p in chunk {
            msgs.push(NewMessage {
                name: p.display().to_string(),
                bytes: read_file(p)?,
                flags: flags.clone(),
                internal_date: now(),
            });
        }
        // `append` returns once the batch is durable: only then is it reported.
        for (u, g) in r.append(&a, &m, msgs, now())? {
            if cli.json {
                json_out.push(json!({ "uid": u.get(), "guid": g.to_hex() }));
            } else {
                println!("{u} {g}");
            }
        }
    }
    if cli.json {
        print_json(json!(json_out));
    }
    Ok(())
}

fn copy(cli: &Cli, args: &CopyArgs, remove: bool) -> Result<(), CliError> {
    let set = UidSet::try_from(args.uid.as_str())?;
    let mut r = open(cli)?;
    let res = r.copy(
        &acct(&args.account)?,
        &mbox(&args.mailbox)?,
        &set,
        &mbox(&args.to)?,
        remove,
        now(),
    )?;
    if cli.json {
        let v: Vec<_> = res
            .iter()
            .map(|(a, b)| json!({ "uid": a.get(), "new_uid": b.get() }))
            .collect();
        print_json(json!(v));
    } else {
        for (a, b) in res {
            println!("{a} {b}");
        }
    }
    Ok(())
}

fn diff_dirs(cli: &Cli, dirs: &[PathBuf]) -> Result<i32, CliError> {
    // Every dir is open at once: they share the budget.
    let share = Options {
        memory_budget: cli.memory_budget / dirs.len().max(1) as u64,
        ..opts(cli)
    };
    let mut reps = Vec::new();
    for d in dirs {
        reps.push(Replica::open(d, share.clone())?);
    }
    let labels: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let diffs = diff::diff(&mut reps, &labels)?;
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
