//! Content-Transfer-Encoding decoding for BINARY (RFC 3516): a part's content as the bytes
//! it encodes. Decoding is lenient, as mail readers are: base64 skips what is not in its
//! alphabet, quoted-printable keeps an `=` that starts no valid escape.

/// A transfer encoding BINARY cannot undo (answered `NO [UNKNOWN-CTE]`).
#[derive(Debug, PartialEq, Eq)]
pub struct UnknownCte(pub String);

/// The content of `body` under transfer encoding `cte` (case-insensitive; empty is 7bit).
pub fn decode(cte: &str, body: &[u8]) -> Result<Vec<u8>, UnknownCte> {
    match cte.trim().to_ascii_lowercase().as_str() {
        "" | "7bit" | "8bit" | "binary" => Ok(body.to_vec()),
        "base64" => Ok(base64(body)),
        "quoted-printable" => Ok(quoted_printable(body)),
        other => Err(UnknownCte(other.to_string())),
    }
}

fn base64(body: &[u8]) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in body {
        if c == b'=' {
            break;
        }
        let Some(v) = val(c) else { continue };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

fn quoted_printable(body: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        if c != b'=' {
            out.push(c);
            i += 1;
            continue;
        }
        // A soft line break: `=`, optional trailing blanks, then CRLF or LF.
        let mut j = i + 1;
        while j < body.len() && (body[j] == b' ' || body[j] == b'\t') {
            j += 1;
        }
        if body[j..].starts_with(b"\r\n") {
            i = j + 2;
        } else if body[j..].starts_with(b"\n") {
            i = j + 1;
        } else if let (Some(h), Some(l)) = (
            body.get(i + 1).copied().and_then(hex),
            body.get(i + 2).copied().and_then(hex),
        ) {
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(b'=');
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_encodings() {
        assert_eq!(
            decode("BASE64", b"aGVs\r\nbG8A/w==\r\n").unwrap(),
            b"hello\0\xff"
        );
        assert_eq!(
            decode("quoted-printable", b"caf=C3=A9 =\r\nsoft=3D=\nend=ZZ\r\n").unwrap(),
            b"caf\xc3\xa9 soft=end=ZZ\r\n"
        );
        assert_eq!(decode("", b"x\r\n").unwrap(), b"x\r\n");
        assert_eq!(decode(" 8bit", b"\xe9").unwrap(), b"\xe9");
        assert_eq!(
            decode("x-uuencode", b""),
            Err(UnknownCte("x-uuencode".into()))
        );
    }
}
