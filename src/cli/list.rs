//! `dovetail list`: rows are written to standard output as they are read from the store, one
//! row block at a time, so a 1M-message mailbox is never held in memory (neither as rows
//! nor as output text). `--json` prints the same rows as one JSON array, streamed.

use super::CliError;
use crate::crdt::view::ViewRow;
use crate::model::{AccountName, MailboxName, Uid};
use crate::node::Replica;
use std::io::{BufWriter, Write};

/// Output buffer: large enough that writes to a file or pipe are few.
const OUT_BUF: usize = 256 * 1024;

/// Lists a mailbox on `out` (text lines, or a JSON array with `json`), streaming.
pub fn list(
    r: &mut Replica,
    a: &AccountName,
    m: &MailboxName,
    json: bool,
    out: impl Write,
) -> Result<(), CliError> {
    let mut w = BufWriter::with_capacity(OUT_BUF, out);
    let mut err = None;
    let mut first = true;
    if json {
        w.write_all(b"[").map_err(CliError::Stdout)?;
    }
    r.list_each(a, m, &mut |uid, row| {
        let res = if json {
            let sep: &[u8] = if first { b"\n  " } else { b",\n  " };
            w.write_all(sep)
                .and_then(|()| write_json(&mut w, uid, &row))
        } else {
            write_text(&mut w, uid, &row)
        };
        first = false;
        match res {
            Ok(()) => true,
            Err(e) => {
                err = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = err {
        return Err(CliError::Stdout(e));
    }
    if json {
        let end: &[u8] = if first { b"]\n" } else { b"\n]\n" };
        w.write_all(end).map_err(CliError::Stdout)?;
    }
    w.flush().map_err(CliError::Stdout)
}

/// Hex of an id into a stack buffer (no allocation per row).
fn hex<'b>(bytes: &[u8], buf: &'b mut [u8; 64]) -> &'b [u8] {
    let n = bytes.len() * 2;
    // The buffer fits the largest id (32 bytes); encode_to_slice only fails on a size mismatch.
    hex::encode_to_slice(bytes, &mut buf[..n]).expect("hex buffer size");
    &buf[..n]
}

/// `UID GUID (FLAGS) SIZE BLOB`, the format of the non-streaming `list` before it.
fn write_text(w: &mut impl Write, uid: Uid, row: &ViewRow) -> std::io::Result<()> {
    let mut buf = [0u8; 64];
    write!(w, "{uid} ")?;
    w.write_all(hex(row.guid.as_bytes(), &mut buf))?;
    w.write_all(b" (")?;
    for (i, f) in row.flags.iter().enumerate() {
        if i > 0 {
            w.write_all(b" ")?;
        }
        w.write_all(f.as_str().as_bytes())?;
    }
    write!(w, ") {} ", row.size)?;
    w.write_all(hex(row.blob.as_bytes(), &mut buf))?;
    w.write_all(b"\n")
}

/// One row as a JSON object (keys in the order the earlier `json!` output had them).
fn write_json(w: &mut impl Write, uid: Uid, row: &ViewRow) -> std::io::Result<()> {
    let mut buf = [0u8; 64];
    w.write_all(b"{\"blob\": \"")?;
    w.write_all(hex(row.blob.as_bytes(), &mut buf))?;
    w.write_all(b"\", \"flags\": [")?;
    for (i, f) in row.flags.iter().enumerate() {
        if i > 0 {
            w.write_all(b", ")?;
        }
        // Flag names are IMAP atoms or system flags, but escape them as any string.
        serde_json::to_writer(&mut *w, f.as_str()).map_err(std::io::Error::other)?;
    }
    w.write_all(b"], \"guid\": \"")?;
    w.write_all(hex(row.guid.as_bytes(), &mut buf))?;
    write!(
        w,
        "\", \"internal_date\": {}, \"modseq\": {}, \"size\": {}, \"uid\": {}}}",
        row.internal_date,
        row.modseq.get(),
        row.size,
        uid.get()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FlagSet;
    use crate::node::{NewMessage, Options};
    use crate::store::MemKv;
    use std::sync::Arc;

    fn replica_with(n: usize) -> (Replica, AccountName, MailboxName) {
        let a = AccountName::try_from("alice").expect("account");
        let m = MailboxName::inbox();
        let mut r = Replica::with_kv(Arc::new(MemKv::new()), Some([7; 32]), Options::default())
            .expect("replica");
        r.create_account(&a).expect("create");
        let msgs = (0..n)
            .map(|i| NewMessage {
                name: format!("m{i}"),
                bytes: format!("Subject: {i}\r\n\r\nbody {i}\r\n").into_bytes(),
                flags: if i % 2 == 0 {
                    crate::model::Flag::parse_list("\\Seen $Work").expect("flags")
                } else {
                    FlagSet::new()
                },
                internal_date: i as i64,
            })
            .collect();
        r.append(&a, &m, msgs, 0).expect("append");
        (r, a, m)
    }

    /// The streamed JSON is one valid array with every row, equal to the rows in memory.
    #[test]
    fn json_stream_is_the_rows_as_an_array() {
        for n in [0, 1, 130] {
            let (mut r, a, m) = replica_with(n);
            let mut out = Vec::new();
            list(&mut r, &a, &m, true, &mut out).expect("list");
            let v: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
            let rows = r.list(&a, &m).expect("rows");
            let arr = v.as_array().expect("array");
            assert_eq!(arr.len(), n);
            for ((uid, row), j) in rows.iter().zip(arr) {
                assert_eq!(j["uid"], uid.get());
                assert_eq!(j["guid"], row.guid.to_hex());
                assert_eq!(j["blob"], row.blob.to_hex());
                assert_eq!(j["size"], row.size);
                assert_eq!(j["internal_date"], row.internal_date);
                assert_eq!(j["modseq"], row.modseq.get());
                let flags: Vec<&str> = row.flags.iter().map(|f| f.as_str()).collect();
                assert_eq!(j["flags"], serde_json::json!(flags));
            }
        }
    }

    /// The text lines are `UID GUID (FLAGS) SIZE BLOB`, one per row.
    #[test]
    fn text_stream_has_one_line_per_row() {
        let (mut r, a, m) = replica_with(3);
        let mut out = Vec::new();
        list(&mut r, &a, &m, false, &mut out).expect("list");
        let text = String::from_utf8(out).expect("utf8");
        let rows = r.list(&a, &m).expect("rows");
        let want: String = rows
            .iter()
            .map(|(u, row)| {
                let flags: Vec<&str> = row.flags.iter().map(|f| f.as_str()).collect();
                format!(
                    "{u} {} ({}) {} {}\n",
                    row.guid,
                    flags.join(" "),
                    row.size,
                    row.blob
                )
            })
            .collect();
        assert_eq!(text, want);
        assert_eq!(text.lines().count(), 3);
    }
}
