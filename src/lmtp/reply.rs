//! LMTP replies (RFC 2033, RFC 5321 §4.2, enhanced codes of RFC 3463): one type, and the
//! replies the server sends, named, so the session code reads as the protocol does.

use std::fmt;

/// One reply: a three-digit code, an enhanced status code (none on greetings) and text
/// lines (several make a multi-line reply).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: Option<&'static str>,
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply.
    pub fn new(code: u16, enhanced: &'static str, text: impl Into<String>) -> Reply {
        Reply {
            code,
            enhanced: Some(enhanced),
            lines: vec![text.into()],
        }
    }

    /// Whether this reply accepts (2xx or 3xx).
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// The wire form, CRLF-terminated lines.
    pub fn to_wire(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }

    pub fn greeting(host: &str) -> Reply {
        Reply {
            code: 220,
            enhanced: None,
            lines: vec![format!("{host} dovetail LMTP ready")],
        }
    }
    pub fn lhlo(host: &str, size: u64) -> Reply {
        Reply {
            code: 250,
            enhanced: None,
            lines: vec![
                host.to_string(),
                "PIPELINING".into(),
                "ENHANCEDSTATUSCODES".into(),
                "8BITMIME".into(),
                format!("SIZE {size}"),
            ],
        }
    }
    pub fn ok() -> Reply {
        Reply::new(250, "2.0.0", "OK")
    }
    pub fn sender_ok() -> Reply {
        Reply::new(250, "2.1.0", "sender OK")
    }
    pub fn recipient_ok() -> Reply {
        Reply::new(250, "2.1.5", "recipient OK")
    }
    pub fn reset() -> Reply {
        Reply::new(250, "2.0.0", "reset")
    }
    pub fn start_data() -> Reply {
        Reply {
            code: 354,
            enhanced: None,
            lines: vec!["end data with <CR><LF>.<CR><LF>".into()],
        }
    }
    pub fn bye() -> Reply {
        Reply::new(221, "2.0.0", "bye")
    }
    pub fn delivered(rcpt: &str, uid: u32) -> Reply {
        Reply::new(250, "2.0.0", format!("<{rcpt}> delivered (UID {uid})"))
    }
    pub fn unknown_user(rcpt: &str) -> Reply {
        Reply::new(550, "5.1.1", format!("<{rcpt}> no such user"))
    }
    pub fn too_large(limit: u64) -> Reply {
        Reply::new(
            552,
            "5.3.4",
            format!("message exceeds the size limit of {limit} bytes"),
        )
    }
    pub fn not_a_message(why: &str) -> Reply {
        Reply::new(554, "5.6.0", format!("not a mail message: {why}"))
    }
    pub fn temporary(why: &str) -> Reply {
        Reply::new(451, "4.3.0", format!("temporary failure, try again: {why}"))
    }
    pub fn shutting_down() -> Reply {
        Reply::new(421, "4.3.2", "the node is shutting down")
    }
    pub fn timeout() -> Reply {
        Reply::new(421, "4.4.2", "idle too long, closing")
    }
    pub fn too_many_recipients() -> Reply {
        Reply::new(452, "4.5.3", "too many recipients")
    }
    pub fn unrecognized() -> Reply {
        Reply::new(500, "5.5.2", "command not recognized")
    }
    pub fn line_too_long() -> Reply {
        Reply::new(500, "5.5.2", "line too long")
    }
    pub fn syntax(why: &str) -> Reply {
        Reply::new(501, "5.5.4", format!("syntax error: {why}"))
    }
    pub fn not_implemented(cmd: &str) -> Reply {
        Reply::new(502, "5.5.1", format!("{cmd} not implemented"))
    }
    pub fn bad_sequence(why: &str) -> Reply {
        Reply::new(503, "5.5.1", format!("bad sequence of commands: {why}"))
    }
    pub fn bad_parameter(p: &str) -> Reply {
        Reply::new(555, "5.5.4", format!("unsupported parameter {p}"))
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.lines.len().max(1);
        for i in 0..n {
            let sep = if i + 1 < n { '-' } else { ' ' };
            let text = self.lines.get(i).map(String::as_str).unwrap_or("");
            // Enhanced codes go on every line of a reply (RFC 2034 §4), but not on the
            // LHLO capability list, whose lines are keywords.
            match self.enhanced {
                Some(e) => write!(f, "{}{sep}{e} {text}\r\n", self.code)?,
                None => write!(f, "{}{sep}{text}\r\n", self.code)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_forms() {
        assert_eq!(Reply::ok().to_string(), "250 2.0.0 OK\r\n");
        assert_eq!(
            Reply::lhlo("h", 10).to_string(),
            "250-h\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 SIZE 10\r\n"
        );
        assert!(!Reply::unknown_user("x").is_positive());
    }
}
