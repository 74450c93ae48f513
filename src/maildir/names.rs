//! Maildir++ folder names ↔ dovetail mailbox names. Dovecot's Maildir++ layout keeps the
//! INBOX in the root and every other folder in a directory `.A.B` (hierarchy separator
//! `.`), each level in IMAP's modified UTF-7 (RFC 3501 §5.1.3); dovetail names are UTF-8
//! with `/` as the separator (`A/B`).

use super::MaildirError;
use crate::model::MailboxName;

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// Decodes one modified UTF-7 name; `None` if it is not valid modified UTF-7.
pub fn mutf7_decode(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after.find('-')?;
        let enc = &after[..end];
        rest = &after[end + 1..];
        if enc.is_empty() {
            out.push('&');
            continue;
        }
        let mut bits = 0u32;
        let mut n = 0;
        let mut bytes = Vec::new();
        for c in enc.bytes() {
            let v = B64.iter().position(|&b| b == c)? as u32;
            bits = (bits << 6) | v;
            n += 6;
            if n >= 8 {
                n -= 8;
                bytes.push((bits >> n) as u8);
                bits &= (1 << n) - 1;
            }
        }
        if bytes.len() % 2 != 0 {
            return None;
        }
        let units: Vec<u16> = bytes
            .chunks(2)
            .map(|p| u16::from_be_bytes([p[0], p[1]]))
            .collect();
        out.push_str(&String::from_utf16(&units).ok()?);
    }
    out.push_str(rest);
    Some(out)
}

/// Encodes a name in modified UTF-7.
pub fn mutf7_encode(s: &str) -> String {
    let mut out = String::new();
    let mut run: Vec<u16> = Vec::new();
    let flush = |run: &mut Vec<u16>, out: &mut String| {
        if run.is_empty() {
            return;
        }
        out.push('&');
        let bytes: Vec<u8> = run.iter().flat_map(|u| u.to_be_bytes()).collect();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            let chars = match chunk.len() {
                1 => 2,
                2 => 3,
                _ => 4,
            };
            for k in 0..chars {
                out.push(B64[((v >> (18 - 6 * k)) & 63) as usize] as char);
            }
        }
        out.push('-');
        run.clear();
    };
    for c in s.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut run, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            run.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut run, &mut out);
    out
}

/// The mailbox of a Maildir++ subfolder directory name (`.A.B` → `A/B`).
pub fn mailbox_of_dir(dir_name: &str) -> Result<MailboxName, MaildirError> {
    let bad = |why: &str| MaildirError::FolderName {
        name: dir_name.to_string(),
        why: why.to_string(),
    };
    let inner = dir_name
        .strip_prefix('.')
        .ok_or_else(|| bad("no leading dot"))?;
    let mut levels = Vec::new();
    for level in inner.split('.') {
        if level.is_empty() {
            return Err(bad("empty hierarchy level"));
        }
        levels.push(mutf7_decode(level).ok_or_else(|| bad("invalid modified UTF-7"))?);
    }
    MailboxName::try_from(levels.join("/").as_str()).map_err(|e| bad(&e.to_string()))
}

/// The Maildir++ directory name of a mailbox (`A/B` → `.A.B`); `None` for INBOX (the
/// root). A level containing `.` has no Maildir++ form (`.` is the separator there).
pub fn dir_of_mailbox(m: &MailboxName) -> Result<Option<String>, MaildirError> {
    if m.is_inbox() {
        return Ok(None);
    }
    let mut out = String::new();
    for level in m.as_str().split('/') {
        if level.contains('.') {
            return Err(MaildirError::FolderName {
                name: m.to_string(),
                why: "a '.' in a name has no Maildir++ form (it is the hierarchy separator)".into(),
            });
        }
        out.push('.');
        out.push_str(&mutf7_encode(level));
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modified_utf7_known_answers() {
        // RFC 3501's example and Dovecot-style names.
        assert_eq!(
            mutf7_encode("~peter/mail/台北/日本語"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
        assert_eq!(
            mutf7_decode("~peter/mail/&U,BTFw-/&ZeVnLIqe-").unwrap(),
            "~peter/mail/台北/日本語"
        );
        assert_eq!(mutf7_encode("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(mutf7_encode("A&B"), "A&-B");
        for s in [
            "Gesendete Objekte",
            "Entwürfe",
            "a&b",
            "😀 emoji",
            "Ünïcödé",
        ] {
            assert_eq!(mutf7_decode(&mutf7_encode(s)).as_deref(), Some(s));
        }
        assert_eq!(mutf7_decode("&Jjo"), None);
        assert_eq!(mutf7_decode("&Jjo!-"), None);
    }

    #[test]
    fn folder_names() {
        assert_eq!(mailbox_of_dir(".Work").unwrap().as_str(), "Work");
        assert_eq!(mailbox_of_dir(".Work.2026").unwrap().as_str(), "Work/2026");
        assert_eq!(
            mailbox_of_dir(".Entw&APw-rfe").unwrap().as_str(),
            "Entwürfe"
        );
        assert!(mailbox_of_dir(".a..b").is_err());
        let m = MailboxName::try_from("Work/Entwürfe").unwrap();
        assert_eq!(
            dir_of_mailbox(&m).unwrap().as_deref(),
            Some(".Work.Entw&APw-rfe")
        );
        assert_eq!(dir_of_mailbox(&MailboxName::inbox()).unwrap(), None);
        assert!(dir_of_mailbox(&MailboxName::try_from("v1.2").unwrap()).is_err());
    }
}
