//! The LMTP session as an explicit state machine, free of I/O: [`Session::command`] takes
//! one command line and says what to do; the server does the I/O (recipient look-ups, the
//! DATA block, delivery) and reports back.

use super::recipient::Target;
use super::reply::Reply;

/// Most recipients in one transaction (RFC 5321 §4.5.3.1.8 asks for at least 100).
pub const MAX_RECIPIENTS: usize = 1000;

/// Where a session is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Connected, LHLO not yet seen.
    Connected,
    /// After LHLO, no transaction open.
    Ready,
    /// A transaction: MAIL FROM seen, recipients being collected.
    Mail(Envelope),
}

/// One transaction's envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The reverse path (empty for the null sender `<>`).
    pub from: String,
    /// The accepted recipients, in RCPT order: each gets one reply after DATA.
    pub rcpts: Vec<Accepted>,
}

/// An accepted recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The address as the client gave it.
    pub address: String,
    pub target: Target,
}

/// What the server must do after a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this reply.
    Reply(Reply),
    /// Look this recipient address up, then call [`Session::recipient`].
    Lookup(String),
    /// Send 354, read the DATA block, deliver to [`Session::take_envelope`].
    Data,
    /// Send this reply and close.
    Quit(Reply),
}

/// An LMTP session.
#[derive(Debug)]
pub struct Session {
    state: State,
    /// The size limit (SIZE in LHLO, checked at MAIL and on DATA).
    limit: u64,
    /// This server's name.
    host: String,
    /// The name the client gave in LHLO.
    client: Option<String>,
}

impl Session {
    /// A new session of a server called `host` accepting messages up to `limit` bytes.
    pub fn new(host: &str, limit: u64) -> Session {
        Session {
            state: State::Connected,
            limit,
            host: host.to_string(),
            client: None,
        }
    }

    /// The current state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The name the client gave in LHLO.
    pub fn client_name(&self) -> &str {
        self.client.as_deref().unwrap_or("unknown")
    }

    /// The one transition function: a command line (without its line end).
    pub fn command(&mut self, line: &[u8]) -> Step {
        let Ok(line) = std::str::from_utf8(line) else {
            return Step::Reply(Reply::syntax("command is not UTF-8"));
        };
        let line = line.trim_end_matches(['\r', '\n']);
        let (verb, arg) = match line.find(' ') {
            Some(i) => (&line[..i], line[i + 1..].trim()),
            None => (line, ""),
        };
        match verb.to_ascii_uppercase().as_str() {
            "LHLO" => {
                if arg.is_empty() || arg.contains(char::is_whitespace) {
                    return Step::Reply(Reply::syntax("LHLO needs one domain"));
                }
                self.client = Some(arg.to_string());
                self.state = State::Ready;
                Step::Reply(Reply::lhlo(&self.host, self.limit))
            }
            "HELO" | "EHLO" => Step::Reply(Reply::new(500, "5.5.1", "this is LMTP: use LHLO")),
            "MAIL" => self.mail(arg),
            "RCPT" => self.rcpt(arg),
            "DATA" => match &self.state {
                _ if !arg.is_empty() => Step::Reply(Reply::syntax("DATA takes no argument")),
                State::Mail(e) if !e.rcpts.is_empty() => Step::Data,
                State::Mail(_) => Step::Reply(Reply::bad_sequence("no valid recipients")),
                _ => Step::Reply(Reply::bad_sequence("MAIL FROM first")),
            },
            "RSET" => {
                if self.state != State::Connected {
                    self.state = State::Ready;
                }
                Step::Reply(Reply::reset())
            }
            "NOOP" => Step::Reply(Reply::ok()),
            "QUIT" => Step::Quit(Reply::bye()),
            "VRFY" | "EXPN" | "HELP" | "STARTTLS" | "AUTH" | "TURN" | "ETRN" | "BDAT" => {
                Step::Reply(Reply::not_implemented(verb))
            }
            _ => Step::Reply(Reply::unrecognized()),
        }
    }

    fn mail(&mut self, arg: &str) -> Step {
        match self.state {
            State::Connected => return Step::Reply(Reply::bad_sequence("LHLO first")),
            State::Mail(_) => return Step::Reply(Reply::bad_sequence("nested MAIL")),
            State::Ready => {}
        }
        let (path, params) = match parse_path(arg, "FROM:") {
            Ok(x) => x,
            Err(why) => return Step::Reply(Reply::syntax(why)),
        };
        for p in params.split_whitespace() {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            match k.to_ascii_uppercase().as_str() {
                "SIZE" => match v.parse::<u64>() {
                    Ok(n) if n > self.limit => return Step::Reply(Reply::too_large(self.limit)),
                    Ok(_) => {}
                    Err(_) => return Step::Reply(Reply::syntax("SIZE=number")),
                },
                "BODY" if v.eq_ignore_ascii_case("7BIT") || v.eq_ignore_ascii_case("8BITMIME") => {}
                _ => return Step::Reply(Reply::bad_parameter(p)),
            }
        }
        self.state = State::Mail(Envelope {
            from: path,
            rcpts: Vec::new(),
        });
        Step::Reply(Reply::sender_ok())
    }

    fn rcpt(&mut self, arg: &str) -> Step {
        let State::Mail(e) = &self.state else {
            return Step::Reply(Reply::bad_sequence("MAIL FROM first"));
        };
        if e.rcpts.len() >= MAX_RECIPIENTS {
            return Step::Reply(Reply::too_many_recipients());
        }
        match parse_path(arg, "TO:") {
            Err(why) => Step::Reply(Reply::syntax(why)),
            Ok((p, _)) if p.is_empty() => Step::Reply(Reply::syntax("empty recipient")),
            Ok((_, params)) if !params.trim().is_empty() => {
                Step::Reply(Reply::bad_parameter(params.trim()))
            }
            Ok((p, _)) => Step::Lookup(p),
        }
    }

    /// The result of looking up the recipient of a [`Step::Lookup`]: `None` when no account
    /// takes it.
    pub fn recipient(&mut self, address: String, target: Option<Target>) -> Reply {
        let State::Mail(e) = &mut self.state else {
            return Reply::bad_sequence("MAIL FROM first");
        };
        match target {
            Some(target) => {
                e.rcpts.push(Accepted { address, target });
                Reply::recipient_ok()
            }
            None => Reply::unknown_user(&address),
        }
    }

    /// Ends the transaction after DATA: its envelope, to deliver (the session is ready for
    /// the next MAIL).
    pub fn take_envelope(&mut self) -> Option<Envelope> {
        match std::mem::replace(&mut self.state, State::Ready) {
            State::Mail(e) => Some(e),
            other => {
                self.state = other;
                None
            }
        }
    }
}

/// Parses `FROM:<path> params` (or `TO:`): the path without its brackets and any source
/// route, and the parameters.
fn parse_path<'a>(arg: &'a str, keyword: &str) -> Result<(String, &'a str), &'static str> {
    let kw = arg
        .get(..keyword.len())
        .filter(|k| k.eq_ignore_ascii_case(keyword))
        .ok_or("expected FROM:<address> or TO:<address>")?;
    let rest = arg[kw.len()..].trim_start();
    let rest = rest.strip_prefix('<').ok_or("address must be in <>")?;
    let end = rest.find('>').ok_or("address must be in <>")?;
    let mut path = &rest[..end];
    // A source route (`@a,@b:user@d`) is ignored, as RFC 5321 §3.3 allows.
    if path.starts_with('@') {
        path = path.split_once(':').map_or("", |(_, p)| p);
    }
    if path.len() > 256 || path.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("bad address");
    }
    Ok((path.to_string(), &rest[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AccountName, MailboxName};

    fn target() -> Target {
        Target {
            account: AccountName::try_from("alice").unwrap(),
            mailbox: MailboxName::inbox(),
        }
    }

    fn reply(s: Step) -> u16 {
        match s {
            Step::Reply(r) | Step::Quit(r) => r.code,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn a_transaction() {
        let mut s = Session::new("h", 100);
        assert_eq!(reply(s.command(b"MAIL FROM:<a@b>")), 503);
        assert_eq!(reply(s.command(b"LHLO client")), 250);
        assert_eq!(reply(s.command(b"RCPT TO:<a@b>")), 503);
        assert_eq!(reply(s.command(b"DATA")), 503);
        assert_eq!(reply(s.command(b"MAIL FROM:<> BODY=8BITMIME SIZE=10")), 250);
        assert_eq!(reply(s.command(b"MAIL FROM:<x@y>")), 503);
        assert_eq!(reply(s.command(b"DATA")), 503);
        assert_eq!(
            s.command(b"rcpt to: <alice@example.org>"),
            Step::Lookup("alice@example.org".into())
        );
        assert_eq!(s.recipient("bob@x".into(), None).code, 550);
        assert_eq!(reply(s.command(b"DATA")), 503);
        assert_eq!(s.recipient("alice@x".into(), Some(target())).code, 250);
        assert_eq!(s.command(b"DATA"), Step::Data);
        let e = s.take_envelope().expect("envelope");
        assert_eq!(e.from, "");
        assert_eq!(e.rcpts.len(), 1);
        assert_eq!(s.state(), &State::Ready);
    }

    #[test]
    fn bad_commands_keep_the_session() {
        let mut s = Session::new("h", 100);
        assert_eq!(reply(s.command(b"LHLO c")), 250);
        assert_eq!(reply(s.command(b"HELLO")), 500);
        assert_eq!(reply(s.command(b"EHLO c")), 500);
        assert_eq!(reply(s.command(b"MAIL FROM:a@b")), 501);
        assert_eq!(reply(s.command(b"MAIL FROM:<a@b> SIZE=1000")), 552);
        assert_eq!(reply(s.command(b"MAIL FROM:<a@b> X=1")), 555);
        assert_eq!(reply(s.command(b"MAIL TO:<a@b>")), 501);
        assert_eq!(reply(s.command(&[0xff, 0xfe])), 501);
        assert_eq!(reply(s.command(b"VRFY x")), 502);
        assert_eq!(reply(s.command(b"MAIL FROM:<a@b>")), 250);
        assert_eq!(reply(s.command(b"RCPT TO:<>")), 501);
        assert_eq!(reply(s.command(b"RCPT TO:<a@b> NOTIFY=NEVER")), 555);
        assert_eq!(reply(s.command(b"RSET")), 250);
        assert_eq!(s.state(), &State::Ready);
        assert_eq!(reply(s.command(b"NOOP")), 250);
        assert_eq!(reply(s.command(b"QUIT")), 221);
    }

    #[test]
    fn source_routes_are_dropped() {
        let mut s = Session::new("h", 100);
        s.command(b"LHLO c");
        s.command(b"MAIL FROM:<a@b>");
        assert_eq!(
            s.command(b"RCPT TO:<@relay.example:alice@example.org>"),
            Step::Lookup("alice@example.org".into())
        );
    }
}
