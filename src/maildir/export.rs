//! `export-maildir`: an account into a new Maildir++ tree that Dovecot (or
//! `import-maildir`) reads back: INBOX in the root, other mailboxes in `.A.B` folders, each
//! message a file in `cur/` named `<date>.D<uid>V<uidvalidity>.dovetail,S=<size>:2,<flags>`
//! with its internal date as modification time, keywords in `dovecot-keywords` and the
//! UID order in `dovecot-uidlist`.

use super::flags::{keywords_file, letters_of, Keywords};
use super::names::dir_of_mailbox;
use super::target::Target;
use super::MaildirError;
use crate::model::{AccountName, Flag, FlagSet};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What an export wrote.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ExportReport {
    pub mailboxes: usize,
    pub messages: usize,
    /// Keywords that found no letter (a Maildir folder has 26), per mailbox.
    pub keywords_lost: Vec<(String, Vec<String>)>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> MaildirError + '_ {
    move |source| MaildirError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn make_maildir(dir: &Path, subfolder: bool) -> Result<(), MaildirError> {
    for sub in ["cur", "new", "tmp"] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).map_err(io(&d))?;
    }
    if subfolder {
        // Maildir++ marks subfolders with this empty file (Dovecot's `maildirfolder`).
        let f = dir.join("maildirfolder");
        std::fs::write(&f, b"").map_err(io(&f))?;
    }
    Ok(())
}

/// Writes `account` as a Maildir++ tree at `root`, which must not exist or be empty.
pub fn export(
    target: &mut Target,
    account: &AccountName,
    root: &Path,
    progress: &mut dyn FnMut(usize),
) -> Result<ExportReport, MaildirError> {
    match std::fs::read_dir(root) {
        Ok(mut d) => {
            if d.next().is_some() {
                return Err(MaildirError::NotEmpty(root.to_path_buf()));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(root)(e)),
    }
    if !target.has_account(account)? {
        return Err(crate::node::NodeError::UnknownAccount(account.to_string()).into());
    }
    let mailboxes = target.mailboxes(account)?;
    // Every name must have a Maildir++ form before anything is written.
    let mut dirs: Vec<(PathBuf, bool)> = Vec::new();
    for m in &mailboxes {
        dirs.push(match dir_of_mailbox(&m.name)? {
            Some(d) => (root.join(d), true),
            None => (root.to_path_buf(), false),
        });
    }
    let mut report = ExportReport::default();
    for (m, (dir, sub)) in mailboxes.iter().zip(dirs) {
        make_maildir(&dir, sub)?;
        let mut keywords = Keywords::new();
        let mut lost = Vec::new();
        let mut uidlist = format!("3 V{} N{}\n", m.uidvalidity, m.uidnext);
        for row in target.rows(account, &m.name)? {
            let bytes = target.fetch(account, &m.name, row.uid)?;
            let flags: FlagSet = row
                .flags
                .iter()
                .filter_map(|f| Flag::try_from(f.as_str()).ok())
                .collect();
            let (letters, l) = letters_of(&flags, &mut keywords);
            lost.extend(l);
            let base = format!(
                "{}.D{}V{}.dovetail,S={}",
                row.internal_date,
                row.uid,
                m.uidvalidity,
                bytes.len()
            );
            // Written in tmp/ and renamed into cur/, as the Maildir protocol asks, so a
            // reader never sees half a message.
            let tmp = dir.join("tmp").join(&base);
            let dst = dir.join("cur").join(format!("{base}:2,{letters}"));
            std::fs::write(&tmp, &bytes).map_err(io(&tmp))?;
            let when = std::time::UNIX_EPOCH
                + std::time::Duration::from_secs(row.internal_date.max(0) as u64);
            std::fs::File::options()
                .write(true)
                .open(&tmp)
                .and_then(|f| f.set_modified(when))
                .map_err(io(&tmp))?;
            std::fs::rename(&tmp, &dst).map_err(io(&dst))?;
            uidlist.push_str(&format!("{} :{base}\n", row.uid));
            report.messages += 1;
            progress(report.messages);
        }
        if !keywords.is_empty() {
            let f = dir.join("dovecot-keywords");
            std::fs::write(&f, keywords_file(&keywords)).map_err(io(&f))?;
        }
        let f = dir.join("dovecot-uidlist");
        std::fs::write(&f, uidlist).map_err(io(&f))?;
        if !lost.is_empty() {
            lost.sort();
            lost.dedup();
            report.keywords_lost.push((m.name.to_string(), lost));
        }
        report.mailboxes += 1;
    }
    // One sync for the whole tree rather than an fsync per file.
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    Ok(report)
}
