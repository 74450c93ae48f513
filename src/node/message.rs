//! Checks on a message before it is accepted: not empty, within the size limit, and starting
//! with an RFC 5322 header block.

use super::NodeError;
use crate::model::FlagSet;

/// A message to append.
#[derive(Clone, Debug)]
pub struct NewMessage {
    /// Where it came from, for error messages (a file name, "LMTP", ...).
    pub name: String,
    pub bytes: Vec<u8>,
    pub flags: FlagSet,
    /// Internal date, seconds since the epoch.
    pub internal_date: i64,
}

/// A message whose body is already stored ([`crate::node::Replica::stager`]): what an
/// import appends after its first pass read, checked and stored every file.
#[derive(Clone, Debug)]
pub struct StoredMessage {
    pub blob: crate::model::BlobId,
    pub size: u64,
    pub flags: FlagSet,
    /// Internal date, seconds since the epoch.
    pub internal_date: i64,
}

/// Rejects what is not a mail message: empty input, more than `limit` bytes, or no header
/// block (the first line must be a header field, and every line up to the first empty line
/// a header field or its continuation).
pub fn check_message(name: &str, bytes: &[u8], limit: u64) -> Result<(), NodeError> {
    let bad = |why: &str| NodeError::NotAMessage {
        name: name.to_string(),
        why: why.to_string(),
    };
    if bytes.is_empty() {
        return Err(bad("empty"));
    }
    if bytes.len() as u64 > limit {
        return Err(NodeError::TooLarge {
            name: name.to_string(),
            size: bytes.len() as u64,
            limit,
        });
    }
    let mut lines = 0;
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let continuation = line[0] == b' ' || line[0] == b'\t';
        if continuation && i > 0 {
            continue;
        }
        let colon = line.iter().position(|&b| b == b':');
        let ok = match colon {
            Some(c) if c > 0 => line[..c].iter().all(|&b| (33..=126).contains(&b)),
            _ => false,
        };
        if !ok {
            return Err(bad(if i == 0 {
                "it does not start with a header field"
            } else {
                "malformed header block"
            }));
        }
        lines += 1;
    }
    if lines == 0 {
        return Err(bad("no header block"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_block_is_required() {
        let ok = b"From: a@b\r\nSubject: x\r\n  folded\r\n\r\nbody\r\n";
        assert!(check_message("m", ok, 1 << 20).is_ok());
        assert!(check_message("m", b"From: a@b", 1 << 20).is_ok());
        for bad in [
            &b""[..],
            b"hello world\n",
            b"\r\nbody",
            b"From: a\nnot a header\n\nx",
            b": x\n",
        ] {
            assert!(check_message("m", bad, 1 << 20).is_err(), "{bad:?}");
        }
        assert!(matches!(
            check_message("m", ok, 10),
            Err(NodeError::TooLarge { .. })
        ));
    }
}
