//! Reading a Maildir / Maildir++ tree (Dovecot's layout): the root is INBOX, each `.A.B`
//! directory with `cur/` or `new/` is a folder; a folder's messages are the files of
//! `cur/` and `new/` (never `tmp/`, where deliveries are still being written), in the
//! order of `dovecot-uidlist` where it lists them, then by modification time and name.

use super::flags::{flags_of, parse_keywords, split_name, Keywords};
use super::names::mailbox_of_dir;
use super::MaildirError;
use crate::model::{FlagSet, MailboxName};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One message file.
#[derive(Clone, Debug)]
pub struct MsgFile {
    pub path: PathBuf,
    pub flags: FlagSet,
    /// Its UID in `dovecot-uidlist` (`u64::MAX`: not listed).
    pub uid: u64,
    /// Modification time, seconds since the epoch: the internal date. Read with the file
    /// ([`stat_and_order`]), not by the scan.
    pub mtime: i64,
    pub size: u64,
    /// Its body's id, once an import's first pass stored the body.
    pub blob: Option<crate::model::BlobId>,
}

/// Records the size and modification time of a message from its open file (one `fstat`
/// on a descriptor the reader holds anyway: a `stat` per file by path in the scan was a
/// sixth of an import's time).
pub fn stat(m: &mut MsgFile, f: &std::fs::File) -> Result<(), MaildirError> {
    let meta = f.metadata().map_err(io(&m.path))?;
    m.size = meta.len();
    m.mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64);
    Ok(())
}

/// Puts a folder's messages in import order: by `dovecot-uidlist` UID where listed, then
/// by modification time and name (call once their times are read, [`stat`]).
pub fn order(folder: &mut Folder) {
    folder.messages.sort_by(|a, b| {
        (a.uid, a.mtime, a.path.file_name()).cmp(&(b.uid, b.mtime, b.path.file_name()))
    });
}

/// One folder and its messages, in the order to import them (once [`order`]ed; the scan
/// gives them in directory order).
#[derive(Clone, Debug)]
pub struct Folder {
    pub mailbox: MailboxName,
    pub dir: PathBuf,
    pub messages: Vec<MsgFile>,
    /// Flag letters that mean nothing in IMAP (`P`) or have no keyword in
    /// `dovecot-keywords`: counted per letter, for a warning.
    pub unknown_letters: Vec<(char, usize)>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> MaildirError + '_ {
    move |source| MaildirError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Whether `dir` holds a Maildir (a `cur/` or `new/` directory).
pub fn is_maildir(dir: &Path) -> bool {
    dir.join("cur").is_dir() || dir.join("new").is_dir()
}

/// Reads the tree at `root`: INBOX first, then the folders by name.
pub fn scan(root: &Path) -> Result<Vec<Folder>, MaildirError> {
    let meta = std::fs::metadata(root).map_err(io(root))?;
    if !meta.is_dir() || !is_maildir(root) {
        return Err(MaildirError::NotAMaildir(root.to_path_buf()));
    }
    let mut folders = vec![read_folder(MailboxName::inbox(), root)?];
    let mut subs = Vec::new();
    for e in std::fs::read_dir(root).map_err(io(root))? {
        let e = e.map_err(io(root))?;
        let name = e.file_name();
        let Some(name) = name.to_str() else {
            return Err(MaildirError::FolderName {
                name: name.to_string_lossy().into_owned(),
                why: "not UTF-8".into(),
            });
        };
        if !name.starts_with('.') || name == "." || name == ".." || !is_maildir(&e.path()) {
            continue;
        }
        let mailbox = mailbox_of_dir(name)?;
        // Dovecot never makes `.INBOX`; a tree that has one would merge it into INBOX.
        if mailbox.is_inbox() {
            return Err(MaildirError::FolderName {
                name: name.to_string(),
                why: "a folder named INBOX beside the root INBOX".into(),
            });
        }
        subs.push((mailbox, e.path()));
    }
    subs.sort();
    for (m, p) in subs {
        folders.push(read_folder(m, &p)?);
    }
    Ok(folders)
}

/// Base names → UIDs from `dovecot-uidlist` (versions 1 and 3); empty if there is none.
pub fn parse_uidlist(text: &str) -> HashMap<String, u32> {
    let mut out = HashMap::new();
    for line in text.lines().skip(1) {
        let Some((uid, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(uid) = uid.parse::<u32>() else {
            continue;
        };
        // Version 3: `<uid> [<ext> ...] :<file name>`; version 1: `<uid> <file name>`.
        let file = match rest.find(':') {
            Some(i) if i == 0 || rest[..i].ends_with(' ') => &rest[i + 1..],
            _ => rest.trim(),
        };
        out.insert(split_name(file).0.to_string(), uid);
    }
    out
}

fn read_folder(mailbox: MailboxName, dir: &Path) -> Result<Folder, MaildirError> {
    let keywords: Keywords = match std::fs::read_to_string(dir.join("dovecot-keywords")) {
        Ok(t) => parse_keywords(&t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Keywords::new(),
        Err(e) => return Err(io(&dir.join("dovecot-keywords"))(e)),
    };
    let uids = match std::fs::read_to_string(dir.join("dovecot-uidlist")) {
        Ok(t) => parse_uidlist(&t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
        Err(e) => return Err(io(&dir.join("dovecot-uidlist"))(e)),
    };
    let mut unknown: std::collections::BTreeMap<char, usize> = Default::default();
    let mut found: Vec<MsgFile> = Vec::new();
    for sub in ["cur", "new"] {
        let d = dir.join(sub);
        let entries = match std::fs::read_dir(&d) {
            Ok(x) => x,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(&d)(e)),
        };
        for e in entries {
            let e = e.map_err(io(&d))?;
            let path = e.path();
            // The entry's type comes with the directory listing; only a link is followed.
            let t = e.file_type().map_err(io(&path))?;
            let is_file = if t.is_symlink() {
                std::fs::metadata(&path).map_err(io(&path))?.is_file()
            } else {
                t.is_file()
            };
            if !is_file {
                continue;
            }
            let file = e.file_name().to_string_lossy().into_owned();
            // Hidden files are not messages (editors' and tools' leftovers).
            if file.starts_with('.') {
                continue;
            }
            // Dovecot leaves flagged messages in new/ too (`doveadm flags` on an unseen
            // message renames it there), so the letters count in both.
            let (base, letters) = split_name(&file);
            let (flags, bad) = flags_of(letters, &keywords);
            for c in bad {
                *unknown.entry(c).or_default() += 1;
            }
            let uid = uids.get(base).map_or(u64::MAX, |&u| u64::from(u));
            found.push(MsgFile {
                path,
                flags,
                uid,
                mtime: 0,
                size: 0,
                blob: None,
            });
        }
    }
    Ok(Folder {
        mailbox,
        dir: dir.to_path_buf(),
        messages: found,
        unknown_letters: unknown.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uidlist_versions() {
        let v3 =
            "3 V1700000000 N4 G0123\n1 W100 S98 :1700.M1.h\n3 :1702.M3.h\n2 G9 :1701.M2.h:2,S\n";
        let m = parse_uidlist(v3);
        assert_eq!(m.get("1700.M1.h"), Some(&1));
        assert_eq!(m.get("1701.M2.h"), Some(&2));
        assert_eq!(m.get("1702.M3.h"), Some(&3));
        let v1 = "1 1700000000 3\n1 1700.M1.h\n2 1701.M2.h:2,S\n";
        let m = parse_uidlist(v1);
        assert_eq!(m.get("1700.M1.h"), Some(&1));
        assert_eq!(m.get("1701.M2.h"), Some(&2));
    }
}
