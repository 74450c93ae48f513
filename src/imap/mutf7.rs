//! Modified UTF-7 (RFC 3501 5.1.3), the encoding of mailbox names on the wire: printable
//! ASCII stands for itself (`&` is written `&-`), anything else is UTF-16 in a modified
//! base64 (`,` for `/`, no padding) between `&` and `-`. Dovetail stores names in UTF-8:
//! names are decoded as they come in and encoded as they go out.
//!
//! Decoding is strict: only the one canonical encoding of a name is accepted (so two
//! spellings can never name two different mailboxes, and nothing the client sends is
//! silently changed).

/// Why a name is not valid modified UTF-7.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Utf7Error {
    /// A byte outside printable ASCII (8-bit names need UTF8=ACCEPT, not supported).
    #[error("mailbox name is not modified UTF-7 (RFC 3501 5.1.3): byte 0x{0:02x} is not printable ASCII")]
    NotAscii(u8),
    /// A `&` run that is not closed by `-`, or holds a character outside the base64 set.
    #[error(
        "mailbox name is not modified UTF-7 (RFC 3501 5.1.3): unterminated or malformed &...- run"
    )]
    Malformed,
    /// The run does not decode to whole, valid UTF-16.
    #[error(
        "mailbox name is not modified UTF-7 (RFC 3501 5.1.3): the &...- run is not valid UTF-16"
    )]
    BadUtf16,
    /// Valid, but not the canonical spelling (printable ASCII encoded, split runs, ...).
    #[error("mailbox name is not modified UTF-7 (RFC 3501 5.1.3): not the canonical encoding")]
    NotCanonical,
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

fn direct(c: char) -> bool {
    (' '..='~').contains(&c) && c != '&'
}

/// Encodes a UTF-8 name as modified UTF-7.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
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
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            let digits = chunk.len() + 1;
            for i in 0..digits {
                out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out.push('-');
        run.clear();
    };
    for c in name.chars() {
        if direct(c) {
            flush(&mut run, &mut out);
            out.push(c);
        } else if c == '&' {
            flush(&mut run, &mut out);
            out.push_str("&-");
        } else {
            let mut buf = [0u16; 2];
            run.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Decodes a modified UTF-7 name to UTF-8; refuses anything but the canonical encoding.
pub fn decode(wire: &[u8]) -> Result<String, Utf7Error> {
    if let Some(&b) = wire.iter().find(|&&b| !(0x20..=0x7e).contains(&b)) {
        return Err(Utf7Error::NotAscii(b));
    }
    let mut out = String::with_capacity(wire.len());
    let mut i = 0;
    while i < wire.len() {
        let b = wire[i];
        i += 1;
        if b != b'&' {
            out.push(char::from(b));
            continue;
        }
        let len = wire[i..]
            .iter()
            .position(|&b| b == b'-')
            .ok_or(Utf7Error::Malformed)?;
        let run = &wire[i..i + len];
        i += len + 1;
        if run.is_empty() {
            out.push('&');
            continue;
        }
        let (mut acc, mut bits, mut units) = (0u32, 0u32, Vec::new());
        for &c in run {
            let v = B64
                .iter()
                .position(|&x| x == c)
                .ok_or(Utf7Error::Malformed)?;
            acc = ((acc << 6) | v as u32) & 0x3f_ffff;
            bits += 6;
            if bits >= 16 {
                bits -= 16;
                units.push((acc >> bits) as u16);
            }
        }
        if units.is_empty() || bits >= 6 || acc & ((1 << bits) - 1) != 0 {
            return Err(Utf7Error::BadUtf16);
        }
        out.push_str(&String::from_utf16(&units).map_err(|_| Utf7Error::BadUtf16)?);
    }
    if encode(&out).as_bytes() != wire {
        return Err(Utf7Error::NotCanonical);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_names() {
        // RFC 3501 5.1.3's example, and the names of the common clients.
        let rfc = "~peter/mail/\u{65e5}\u{672c}\u{8a9e}/\u{53f0}\u{5317}";
        assert_eq!(encode(rfc), "~peter/mail/&ZeVnLIqe-/&U,BTFw-");
        assert_eq!(decode(b"~peter/mail/&ZeVnLIqe-/&U,BTFw-").unwrap(), rfc);
        assert_eq!(encode("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(encode("Ä"), "&AMQ-");
        assert_eq!(encode("a&b"), "a&-b");
        assert_eq!(decode(b"a&-b").unwrap(), "a&b");
        assert_eq!(encode("📧"), "&2D3c5w-");
        assert_eq!(decode(b"&2D3c5w-").unwrap(), "📧");
        assert_eq!(decode(b"INBOX").unwrap(), "INBOX");
    }

    #[test]
    fn invalid_names_are_refused() {
        assert_eq!(
            decode("Entwürfe".as_bytes()),
            Err(Utf7Error::NotAscii(0xc3))
        );
        assert_eq!(decode(b"&AMQ"), Err(Utf7Error::Malformed));
        assert_eq!(decode(b"&A.Q-"), Err(Utf7Error::Malformed));
        assert_eq!(decode(b"&AM-"), Err(Utf7Error::BadUtf16));
        // A lone high surrogate.
        assert_eq!(decode(b"&2D0-"), Err(Utf7Error::BadUtf16));
        // Printable ASCII ("a") encoded, and one run split in two.
        assert_eq!(decode(b"&AGE-"), Err(Utf7Error::NotCanonical));
        assert_eq!(decode(b"&AMQ-&AMQ-"), Err(Utf7Error::NotCanonical));
        // Non-zero bits left over at the end of a run.
        assert_eq!(decode(b"&AMR-"), Err(Utf7Error::BadUtf16));
    }

    proptest! {
        #[test]
        fn every_name_round_trips(s in any::<String>()) {
            let e = encode(&s);
            prop_assert!(e.bytes().all(|b| (0x20..=0x7e).contains(&b)), "{e:?}");
            prop_assert_eq!(decode(e.as_bytes()), Ok(s));
        }

        #[test]
        fn what_decodes_encodes_back(w in "[ -~]{0,24}") {
            if let Ok(s) = decode(w.as_bytes()) {
                prop_assert_eq!(encode(&s), w);
            }
        }
    }
}
