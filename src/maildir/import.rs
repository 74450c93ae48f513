//! `import-maildir`: a Maildir++ tree into an account, folder by folder in UID order, in
//! durable batches.
//!
//! Running it twice imports nothing twice: before a folder is imported, the blob ids
//! (SHA-256 of the bytes) of the messages already in its mailbox are counted, and a file
//! whose bytes are already there is skipped, once per copy (so a folder holding the same
//! message twice imports it twice, and a second run finds both). The rule needs no state
//! besides the mailbox itself, survives an interrupted run (the next run imports the rest)
//! and works through a running node. Its limit: a message already in the mailbox with the
//! same bytes from another source (delivered over LMTP as well, say) is taken as imported,
//! and flags changed in the Maildir since the first run are not carried over.

use super::layout::{scan, Folder};
use super::target::Target;
use super::MaildirError;
use crate::model::{AccountName, BlobId, MailboxName};
use crate::node::{check_message, NewMessage, NodeError};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;

/// How an import batches its writes.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// The size limit of a message (the data dir's `--max-message-size`).
    pub max_message_size: u64,
    /// Messages per durable batch (one flush each).
    pub batch_messages: usize,
    /// Bytes per durable batch (a batch is held in memory, and through a running node it
    /// is one control request).
    pub batch_bytes: usize,
}

impl ImportOptions {
    /// 1,000 messages or 64 MiB per batch, as `dovetail append` does.
    pub fn new(max_message_size: u64) -> ImportOptions {
        ImportOptions {
            max_message_size,
            batch_messages: 1000,
            batch_bytes: 64 * 1024 * 1024,
        }
    }
}

/// What happened to one folder.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FolderReport {
    pub mailbox: String,
    pub found: usize,
    pub imported: usize,
    /// Already in the mailbox (an earlier run).
    pub skipped: usize,
    pub created: bool,
    /// Flag letters without an IMAP meaning or a keyword, with their counts.
    pub unknown_flag_letters: Vec<(char, usize)>,
}

/// What an import did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ImportReport {
    pub account_created: bool,
    pub folders: Vec<FolderReport>,
    pub imported: usize,
    pub skipped: usize,
}

/// Progress, reported after each durable batch.
#[derive(Clone, Debug)]
pub struct Progress<'a> {
    pub mailbox: &'a str,
    /// Messages done (imported or skipped) and the total.
    pub done: usize,
    pub total: usize,
}

fn read(p: &Path) -> Result<Vec<u8>, MaildirError> {
    std::fs::read(p).map_err(|source| MaildirError::Io {
        path: p.display().to_string(),
        source,
    })
}

/// Checks every message before anything is written: a file over the limit, or one that is
/// not a mail message, fails the import with nothing changed.
fn validate(folders: &[Folder], limit: u64) -> Result<(), MaildirError> {
    for f in folders {
        for m in &f.messages {
            let name = m.path.display().to_string();
            if m.size > limit {
                return Err(NodeError::TooLarge {
                    name,
                    size: m.size,
                    limit,
                }
                .into());
            }
            check_message(&name, &read(&m.path)?, limit)?;
        }
    }
    Ok(())
}

/// Imports the tree at `root` into `account` (created if new, with the missing mailboxes).
pub fn import(
    target: &mut Target,
    account: &AccountName,
    root: &Path,
    opts: &ImportOptions,
    now: i64,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<ImportReport, MaildirError> {
    let folders = scan(root)?;
    validate(&folders, opts.max_message_size)?;
    let total: usize = folders.iter().map(|f| f.messages.len()).sum();
    let mut report = ImportReport::default();
    if !target.has_account(account)? {
        target.create_mailbox(account, &MailboxName::inbox())?;
        report.account_created = true;
    }
    let existing: Vec<MailboxName> = target
        .mailboxes(account)?
        .into_iter()
        .map(|m| m.name)
        .collect();
    let mut done = 0;
    for f in &folders {
        let mut fr = FolderReport {
            mailbox: f.mailbox.to_string(),
            found: f.messages.len(),
            unknown_flag_letters: f.unknown_letters.clone(),
            ..FolderReport::default()
        };
        if !existing.contains(&f.mailbox) {
            target.create_mailbox(account, &f.mailbox)?;
            fr.created = true;
        }
        let mut have: HashMap<String, usize> = HashMap::new();
        for r in target.rows(account, &f.mailbox)? {
            *have.entry(r.blob).or_default() += 1;
        }
        let mut batch = Vec::new();
        let mut bytes = 0;
        for (i, m) in f.messages.iter().enumerate() {
            let b = read(&m.path)?;
            let blob = BlobId::of(&b).to_hex();
            match have.get_mut(&blob) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    fr.skipped += 1;
                }
                _ => {
                    bytes += b.len();
                    batch.push(NewMessage {
                        name: m.path.display().to_string(),
                        bytes: b,
                        flags: m.flags.clone(),
                        internal_date: m.mtime,
                    });
                }
            }
            let last = i + 1 == f.messages.len();
            if batch.len() >= opts.batch_messages
                || bytes >= opts.batch_bytes
                || (last && !batch.is_empty())
            {
                // Durable when it returns: only then is it counted and reported.
                fr.imported +=
                    target.append(account, &f.mailbox, std::mem::take(&mut batch), now)?;
                bytes = 0;
                progress(Progress {
                    mailbox: f.mailbox.as_str(),
                    done: done + i + 1,
                    total,
                });
            }
        }
        done += f.messages.len();
        report.imported += fr.imported;
        report.skipped += fr.skipped;
        report.folders.push(fr);
    }
    progress(Progress {
        mailbox: "",
        done,
        total,
    });
    Ok(report)
}
