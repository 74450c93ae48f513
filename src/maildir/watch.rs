//! `dovetail node --watch-maildir ACCOUNT=PATH`: mail another program drops into a Maildir
//! (`new/` of the root and of each `.Folder`) is taken into the account and replicates.
//!
//! The watched Maildir is a spool: each file found in a `new/` is appended (flags from its
//! `:2,` letters, if any; internal date its modification time) and, once the append is
//! durable, deleted. A file that is not a mail message or is over the size limit is moved
//! to `PATH/dovetail-rejected/` with a warning, so it is neither lost nor retried forever.
//! Writers must follow the Maildir protocol (write in `tmp/`, rename into `new/`), so a
//! file in `new/` is always complete. `new/` is polled (every second by default).

use super::flags::{flags_of, parse_keywords, split_name};
use super::layout::is_maildir;
use super::names::mailbox_of_dir;
use super::MaildirError;
use crate::model::{AccountName, MailboxName};
use crate::node::daemon::{FrontEnd, FrontEndCtx};
use crate::node::{check_message, NewMessage, NodeError, Replica};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// Messages per durable batch.
const BATCH: usize = 1000;

/// One watched Maildir.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchSpec {
    pub account: AccountName,
    pub root: PathBuf,
}

impl FromStr for WatchSpec {
    type Err = MaildirError;
    fn from_str(s: &str) -> Result<WatchSpec, MaildirError> {
        let (a, p) = s.split_once('=').ok_or_else(|| MaildirError::FolderName {
            name: s.to_string(),
            why: "expected ACCOUNT=PATH".into(),
        })?;
        let root = PathBuf::from(p);
        if !is_maildir(&root) {
            return Err(MaildirError::NotAMaildir(root));
        }
        Ok(WatchSpec {
            account: AccountName::try_from(a)?,
            root,
        })
    }
}

/// The front end watching `specs` every `interval`.
pub fn front_end(specs: Vec<WatchSpec>, max_message_size: u64, interval: Duration) -> FrontEnd {
    FrontEnd::new("watch-maildir", move |ctx| {
        let specs = specs.clone();
        async move { run(specs, ctx, max_message_size, interval).await }
    })
}

async fn run(specs: Vec<WatchSpec>, ctx: FrontEndCtx, limit: u64, interval: Duration) {
    let mut shutdown = ctx.shutdown.clone();
    let mut tick = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => {}
        }
        for spec in &specs {
            let (spec, limit) = (spec.clone(), limit);
            // The scan reads files: a blocking job, on the replica thread that also
            // appends (one pass at a time, between other writes).
            match ctx.replica.call(move |r| pass(r, &spec, limit)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => {
                    let _ = ctx.changed.send(());
                    tracing::info!(messages = n, "watch-maildir: taken in");
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "watch-maildir"),
                Err(_) => return,
            }
        }
    }
}

/// The `new/` directories of the tree and their mailboxes.
fn new_dirs(root: &Path) -> Result<Vec<(MailboxName, PathBuf)>, MaildirError> {
    let mut out = vec![(MailboxName::inbox(), root.to_path_buf())];
    let io = |source| MaildirError::Io {
        path: root.display().to_string(),
        source,
    };
    for e in std::fs::read_dir(root).map_err(io)? {
        let e = e.map_err(io)?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name != "." && name != ".." && e.path().join("new").is_dir() {
            if let Ok(m) = mailbox_of_dir(&name) {
                out.push((m, e.path()));
            }
        }
    }
    Ok(out)
}

/// One pass over every `new/`: returns the messages taken in.
pub fn pass(r: &mut Replica, spec: &WatchSpec, limit: u64) -> Result<usize, MaildirError> {
    let mut total = 0;
    for (mailbox, dir) in new_dirs(&spec.root)? {
        let new = dir.join("new");
        let Ok(entries) = std::fs::read_dir(&new) else {
            continue;
        };
        let mut files: Vec<(i64, PathBuf)> = Vec::new();
        for e in entries.flatten() {
            let p = e.path();
            let Ok(m) = std::fs::metadata(&p) else {
                continue;
            };
            if !m.is_file() || e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs() as i64);
            files.push((mtime, p));
        }
        if files.is_empty() {
            continue;
        }
        files.sort();
        let keywords = std::fs::read_to_string(dir.join("dovecot-keywords"))
            .map(|t| parse_keywords(&t))
            .unwrap_or_default();
        for chunk in files.chunks(BATCH) {
            let mut batch = Vec::new();
            let mut taken = Vec::new();
            for (mtime, p) in chunk {
                let name = p.display().to_string();
                let checked = std::fs::read(p)
                    .map_err(|e| NodeError::Io(format!("{name}: {e}")))
                    .and_then(|b| check_message(&name, &b, limit).map(|()| b));
                match checked {
                    Ok(bytes) => {
                        let file = p.file_name().map(|f| f.to_string_lossy().into_owned());
                        let (flags, _) =
                            flags_of(split_name(file.as_deref().unwrap_or("")).1, &keywords);
                        batch.push(NewMessage {
                            name,
                            bytes,
                            flags,
                            internal_date: *mtime,
                        });
                        taken.push(p.clone());
                    }
                    Err(e) => reject(&spec.root, p, &e.to_string()),
                }
            }
            if batch.is_empty() {
                continue;
            }
            let a = &spec.account;
            let missing =
                !r.has_account(a)? || !r.status(a)?.iter().any(|s| s.name == mailbox.as_str());
            if missing {
                r.create_mailbox(a, &mailbox)?;
            }
            let now = crate::node::daemon::now();
            total += r.append(a, &mailbox, batch, now)?.len();
            // Durable now: only then do the spool files go.
            for p in taken {
                if let Err(e) = std::fs::remove_file(&p) {
                    tracing::error!(file = %p.display(), error = %e, "watch-maildir: taken in but not removed; it will be taken in again");
                }
            }
        }
    }
    Ok(total)
}

/// Moves a file that cannot be taken in to `root/dovetail-rejected/`.
fn reject(root: &Path, p: &Path, why: &str) {
    let dir = root.join("dovetail-rejected");
    let to = dir.join(p.file_name().unwrap_or_default());
    let moved = std::fs::create_dir_all(&dir).and_then(|()| std::fs::rename(p, &to));
    match moved {
        Ok(()) => {
            tracing::warn!(file = %p.display(), moved_to = %to.display(), why, "watch-maildir: rejected")
        }
        Err(e) => {
            tracing::error!(file = %p.display(), why, error = %e, "watch-maildir: rejected but not moved")
        }
    }
}
