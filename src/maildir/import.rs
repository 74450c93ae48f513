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

use super::layout::{order, scan, stat, Folder, MsgFile};
use super::target::Target;
use super::MaildirError;
use crate::model::{AccountName, BlobId, MailboxName};
use crate::node::{check_message, NewMessage, NodeError, Stager, StoredMessage};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

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
    /// 10,000 messages or 64 MiB per batch: each batch ends in an fsync of the packs and of
    /// sled, which with 1,000-message batches was where an import of 100k messages spent a
    /// third of its time; 64 MiB is also what one control request to a running node holds.
    pub fn new(max_message_size: u64) -> ImportOptions {
        ImportOptions {
            max_message_size,
            batch_messages: 10_000,
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
/// not a mail message, fails the import with nothing changed. Each file is opened once
/// here, which also reads its size and time ([`stat`]); then every folder is put in import
/// order ([`order`]). The files are read on two threads (reading is most of the cost); the
/// error is the first in import order.
///
/// With `stage` (a stopped data dir), the bodies are stored as they are checked, so the
/// import reads each file once: the appends after name bodies already stored. If a later
/// file fails, the bodies stored so far are orphans that no message names (harmless;
/// `dovetail gc` drops them), and no message is written.
fn validate(
    folders: &mut [Folder],
    limit: u64,
    stage: Option<&Stager>,
) -> Result<(), MaildirError> {
    let check = |m: &mut MsgFile| -> Result<Vec<u8>, MaildirError> {
        let name = m.path.display().to_string();
        let ioe = |source| MaildirError::Io {
            path: name.clone(),
            source,
        };
        let mut f = std::fs::File::open(&m.path).map_err(ioe)?;
        stat(m, &f)?;
        if m.size > limit {
            return Err(NodeError::TooLarge {
                name,
                size: m.size,
                limit,
            }
            .into());
        }
        let mut bytes = Vec::with_capacity(m.size as usize);
        std::io::Read::read_to_end(&mut f, &mut bytes).map_err(ioe)?;
        check_message(&name, &bytes, limit)?;
        Ok(bytes)
    };
    // Every file is checked (an error does not stop the others), so that the one
    // reported is the first in import order, which needs every file's time.
    let check_all = |part: &mut [&mut MsgFile]| -> Vec<(PathBuf, MaildirError)> {
        let mut errors = Vec::new();
        let mut batch: Vec<(BlobId, Vec<u8>)> = Vec::new();
        let mut bytes = 0;
        let put = |batch: &mut Vec<(BlobId, Vec<u8>)>,
                   at: &Path,
                   errors: &mut Vec<(PathBuf, MaildirError)>| {
            if let (Some(s), false) = (stage, batch.is_empty()) {
                let items: Vec<(BlobId, &[u8])> =
                    batch.iter().map(|(id, b)| (*id, b.as_slice())).collect();
                if let Err(e) = s.put(&items) {
                    errors.push((at.to_path_buf(), e.into()));
                }
            }
            batch.clear();
        };
        for m in part.iter_mut() {
            match check(m) {
                Ok(b) if stage.is_some() => {
                    let id = BlobId::of(&b);
                    m.blob = Some(id);
                    bytes += b.len();
                    batch.push((id, b));
                    if bytes >= READ_CHUNK_BYTES {
                        put(&mut batch, &m.path, &mut errors);
                        bytes = 0;
                    }
                }
                Ok(_) => {}
                Err(e) => errors.push((m.path.clone(), e)),
            }
        }
        if let Some(m) = part.last() {
            put(&mut batch, &m.path, &mut errors);
        }
        errors
    };
    let mut all: Vec<&mut MsgFile> = folders.iter_mut().flat_map(|f| &mut f.messages).collect();
    let half = all.len() / 2;
    let (first, second) = all.split_at_mut(half);
    let mut errors = std::thread::scope(|s| {
        let later = s.spawn(|| check_all(second));
        let mut earlier = check_all(first);
        earlier.extend(
            later
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p)),
        );
        earlier
    });
    for f in folders.iter_mut() {
        order(f);
    }
    if errors.is_empty() {
        return Ok(());
    }
    for f in folders.iter() {
        for m in &f.messages {
            if let Some(i) = errors.iter().position(|(p, _)| *p == m.path) {
                return Err(errors.swap_remove(i).1);
            }
        }
    }
    Err(errors.swap_remove(0).1)
}

/// A folder's message files, read and hashed in order.
type Loaded = Vec<Result<(Vec<u8>, BlobId), MaildirError>>;

/// Messages or bytes the reader thread puts in one hand-over at most.
const READ_CHUNK_MESSAGES: usize = 2048;
const READ_CHUNK_BYTES: usize = 8 * 1024 * 1024;

/// Hand-overs waiting at most: with the batch being built, what bounds the memory the
/// reader adds (a few chunks, not the folder: at most 48 MiB). About one batch of small
/// messages (10,000): the reader reads the next batch while the importing thread commits
/// this one (with 4 chunks of 256, it stopped 1,024 messages ahead, and reading and
/// committing took turns).
const READ_AHEAD: usize = 6;

/// Reads and hashes the files of `msgs` in order, in chunks, into `out`, until the receiver
/// hangs up. Runs on its own thread while the importing thread commits: reading and hashing
/// overlap the CRDT, store and fsync work of the batches before.
fn read_ahead(msgs: &[MsgFile], out: std::sync::mpsc::SyncSender<Loaded>) {
    let mut chunk = Vec::new();
    let mut bytes = 0;
    for m in msgs {
        let r = read(&m.path).map(|b| {
            let id = BlobId::of(&b);
            (b, id)
        });
        bytes += r.as_ref().map_or(0, |(b, _)| b.len());
        chunk.push(r);
        if chunk.len() >= READ_CHUNK_MESSAGES || bytes >= READ_CHUNK_BYTES {
            if out.send(std::mem::take(&mut chunk)).is_err() {
                return;
            }
            bytes = 0;
        }
    }
    if !chunk.is_empty() {
        let _ = out.send(chunk);
    }
}

/// Whether a message with body `id` is already in the mailbox (`have`: its rows' bodies,
/// counted), using one up: a body twice in the tree and once in the mailbox is imported once.
fn already_there(have: &mut HashMap<String, usize>, id: &BlobId) -> bool {
    match have.get_mut(&id.to_hex()) {
        Some(n) if *n > 0 => {
            *n -= 1;
            true
        }
        _ => false,
    }
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
    let mut folders = scan(root)?;
    let stager = target.stager();
    validate(&mut folders, opts.max_message_size, stager.as_ref())?;
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
        if stager.is_some() {
            // Every body was stored by `validate`: the appends name them, no file is read
            // again.
            let mut batch: Vec<StoredMessage> = Vec::new();
            for (i, m) in f.messages.iter().enumerate() {
                let id = m.blob.ok_or_else(|| MaildirError::Io {
                    path: m.path.display().to_string(),
                    source: std::io::Error::other("its body was not stored"),
                })?;
                if already_there(&mut have, &id) {
                    fr.skipped += 1;
                } else {
                    batch.push(StoredMessage {
                        blob: id,
                        size: m.size,
                        flags: m.flags.clone(),
                        internal_date: m.mtime,
                    });
                }
                let last = i + 1 == f.messages.len();
                if batch.len() >= opts.batch_messages || (last && !batch.is_empty()) {
                    // Durable when it returns: only then is it counted and reported.
                    fr.imported += target.append_stored(account, &f.mailbox, &batch, now)?;
                    batch.clear();
                    progress(Progress {
                        mailbox: f.mailbox.as_str(),
                        done: done + i + 1,
                        total,
                    });
                }
            }
        } else {
            let (send, recv) = std::sync::mpsc::sync_channel(READ_AHEAD);
            std::thread::scope(|s| -> Result<(), MaildirError> {
                s.spawn(|| read_ahead(&f.messages, send));
                // Owned here, so an error return hangs up and the reader stops instead of
                // blocking the scope's join on a full channel.
                let recv = recv;
                let mut loaded = recv.iter().flatten();
                let mut batch = Vec::new();
                let mut bytes = 0;
                for (i, m) in f.messages.iter().enumerate() {
                    // The reader sends every file in order unless this side hung up first.
                    let (b, id) = loaded.next().ok_or_else(|| MaildirError::Io {
                        path: m.path.display().to_string(),
                        source: std::io::Error::other("the reader thread stopped"),
                    })??;
                    if already_there(&mut have, &id) {
                        fr.skipped += 1;
                    } else {
                        bytes += b.len();
                        batch.push(NewMessage {
                            name: m.path.display().to_string(),
                            bytes: b,
                            flags: m.flags.clone(),
                            internal_date: m.mtime,
                        });
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
                Ok(())
            })?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{Options, Replica};

    /// A tree of `n` messages in INBOX and `.Sub`, with flags, a duplicate body and mtimes.
    fn tree(root: &Path, n: usize) {
        for d in [root.to_path_buf(), root.join(".Sub")] {
            for sub in ["cur", "new", "tmp"] {
                std::fs::create_dir_all(d.join(sub)).expect("mkdir");
            }
        }
        for i in 0..n {
            let dir = if i % 3 == 0 {
                root.join(".Sub")
            } else {
                root.to_path_buf()
            };
            let letters = ["", "S", "FS", "RS"][i % 4];
            // Every 7th message repeats the body of the one before.
            let k = if i % 7 == 6 { i - 1 } else { i };
            let body = format!("From: a@b\r\nSubject: m{k}\r\n\r\nbody {k}\r\n");
            let p = dir
                .join("cur")
                .join(format!("{}.M{i}.h:2,{letters}", 1000 + i));
            std::fs::write(&p, body).expect("write");
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000 + i as u64);
            std::fs::File::options()
                .write(true)
                .open(&p)
                .and_then(|f| f.set_modified(t))
                .expect("mtime");
        }
    }

    type Seen = Vec<(String, Vec<(u32, Vec<String>, String, i64)>)>;

    fn import_with(src: &Path, batch: usize) -> (ImportReport, Seen, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        Replica::init(dir.path()).expect("init");
        let mut t = Target::Local(Box::new(
            Replica::open(dir.path(), Options::default()).expect("open"),
        ));
        let a = AccountName::try_from("acct").expect("name");
        let opts = ImportOptions {
            batch_messages: batch,
            ..ImportOptions::new(1 << 20)
        };
        let r = import(&mut t, &a, src, &opts, 0, &mut |_| {}).expect("import");
        let mut seen = Vec::new();
        for m in t.mailboxes(&a).expect("mailboxes") {
            let rows = t.rows(&a, &m.name).expect("rows");
            assert_eq!(m.uidnext as usize, rows.len() + 1, "UIDs 1..=n, in order");
            let rows = rows
                .into_iter()
                .map(|r| (r.uid, r.flags, r.blob, r.internal_date))
                .collect();
            seen.push((m.name.to_string(), rows));
        }
        (r, seen, dir)
    }

    /// Big batches (the import's default) store what batches of 1 and of 4 messages do:
    /// the same mailboxes, UIDs in folder order, flags, bodies and dates; and a second run
    /// imports nothing.
    #[test]
    fn batch_size_does_not_change_what_is_stored() {
        let src = tempfile::tempdir().expect("tempdir");
        tree(src.path(), 40);
        let (r1, one, _d1) = import_with(src.path(), 1);
        let (r4, four, _d4) = import_with(src.path(), 4);
        let (rb, big, dir) = import_with(src.path(), ImportOptions::new(1 << 20).batch_messages);
        assert_eq!(r1.imported, 40);
        assert_eq!((r4.imported, rb.imported), (40, 40));
        assert_eq!(one, four);
        assert_eq!(one, big);
        let mut t = Target::Local(Box::new(
            Replica::open(dir.path(), Options::default()).expect("open"),
        ));
        let a = AccountName::try_from("acct").expect("name");
        let opts = ImportOptions::new(1 << 20);
        let again = import(&mut t, &a, src.path(), &opts, 0, &mut |_| {}).expect("again");
        assert_eq!((again.imported, again.skipped), (0, 40));
    }

    /// Two bad files: the one reported is the first in import order (by time here: no
    /// `dovecot-uidlist`), though the other comes first in the directory, and nothing is
    /// imported.
    #[test]
    fn the_error_is_the_first_bad_file_in_import_order() {
        let src = tempfile::tempdir().expect("tempdir");
        tree(src.path(), 10);
        for (name, secs) in [("0.junk-late", 3_000_000), ("9.junk-early", 500_000)] {
            let p = src.path().join("cur").join(name);
            std::fs::write(&p, b"not a mail message\n").expect("write");
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
            std::fs::File::options()
                .write(true)
                .open(&p)
                .and_then(|f| f.set_modified(t))
                .expect("mtime");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        Replica::init(dir.path()).expect("init");
        let mut t = Target::Local(Box::new(
            Replica::open(dir.path(), Options::default()).expect("open"),
        ));
        let a = AccountName::try_from("acct").expect("name");
        let e = import(
            &mut t,
            &a,
            src.path(),
            &ImportOptions::new(1 << 20),
            0,
            &mut |_| {},
        )
        .expect_err("a bad file");
        assert!(e.to_string().contains("9.junk-early"), "{e}");
        assert!(!t.has_account(&a).expect("account"), "nothing written");
    }
}
