//! The LMTP front end (RFC 2033): an MTA such as Postfix delivers mail into a running node
//! over TCP or a unix socket.
//!
//! - [`session`]: the session state machine (LHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT),
//!   free of I/O.
//! - [`data`]: the DATA block decoder (dot-unstuffing, end mark, size cap).
//! - [`recipient`]: the recipient → (account, mailbox) rule.
//! - [`deliver`]: the trace headers and the durable appends, one reply per recipient.
//! - [`server`]: the accept loop and a connection's I/O.
//! - [`reply`]: the replies.
//!
//! A recipient's 250 is sent only after its copy was appended, which returns once the
//! write is flushed. A message over the size limit is refused with 552 5.3.4 after reading
//! (and dropping) the rest of its DATA block; a client that disconnects mid-DATA leaves
//! nothing behind.

pub mod data;
pub mod deliver;
pub mod recipient;
pub mod reply;
pub mod server;
pub mod session;

use crate::node::daemon::FrontEnd;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

/// Errors of the LMTP front end.
#[derive(Debug, thiserror::Error)]
pub enum LmtpError {
    #[error("--lmtp {0:?}: expected HOST:PORT (e.g. 127.0.0.1:2424) or unix:/path/to/socket")]
    BadAddress(String),
    #[error("LMTP: cannot listen on {addr}: {why}")]
    Bind { addr: String, why: String },
}

/// Where the LMTP server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl FromStr for Listen {
    type Err = LmtpError;
    fn from_str(s: &str) -> Result<Listen, LmtpError> {
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err(LmtpError::BadAddress(s.into()));
            }
            return Ok(Listen::Unix(PathBuf::from(p)));
        }
        s.parse()
            .map(Listen::Tcp)
            .map_err(|_| LmtpError::BadAddress(s.into()))
    }
}

/// How the LMTP server behaves.
#[derive(Clone, Debug)]
pub struct LmtpConfig {
    /// The name in the greeting and `Received:` headers (the host name by default).
    pub host: String,
    /// Largest stored message (trace headers included): the node's `--max-message-size`.
    pub max_message_size: u64,
    /// Sessions served at once; more are refused with 421. Each may hold one message of up
    /// to `max_message_size` in memory while it is delivered, so this bounds the memory of
    /// delivery (Postfix opens at most 20 per destination by default).
    pub max_sessions: usize,
    /// A client silent this long is disconnected (RFC 5321 §4.5.3.2 suggests 5 minutes).
    pub idle: Duration,
}

impl LmtpConfig {
    /// Defaults: this host's name, 32 sessions, 5 minutes idle.
    pub fn new(max_message_size: u64) -> LmtpConfig {
        LmtpConfig {
            host: host_name(),
            max_message_size,
            max_sessions: 32,
            idle: Duration::from_secs(300),
        }
    }
}

/// This machine's host name (`localhost` if it has none).
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(h) if rc == 0 && !h.is_empty() => h.to_string(),
        _ => "localhost".to_string(),
    }
}

/// A bound listener, made before the node starts (so a bad or busy address fails the
/// start) and handed to the runtime when the node runs.
#[derive(Debug)]
pub enum Bound {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener, PathBuf),
}

type Tokio = (
    Option<tokio::net::TcpListener>,
    Option<(tokio::net::UnixListener, PathBuf)>,
);

impl Bound {
    /// The TCP address bound (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Bound::Tcp(l) => l.local_addr().ok(),
            Bound::Unix(..) => None,
        }
    }

    fn into_tokio(self) -> std::io::Result<Tokio> {
        Ok(match self {
            Bound::Tcp(l) => {
                l.set_nonblocking(true)?;
                (Some(tokio::net::TcpListener::from_std(l)?), None)
            }
            Bound::Unix(l, p) => {
                l.set_nonblocking(true)?;
                (None, Some((tokio::net::UnixListener::from_std(l)?, p)))
            }
        })
    }
}

/// Binds `listen`. A unix socket file left by a node that is gone is replaced; one another
/// process still answers on is not.
pub fn bind(listen: &Listen) -> Result<Bound, LmtpError> {
    match listen {
        Listen::Tcp(a) => {
            std::net::TcpListener::bind(a)
                .map(Bound::Tcp)
                .map_err(|e| LmtpError::Bind {
                    addr: a.to_string(),
                    why: e.to_string(),
                })
        }
        Listen::Unix(p) => {
            let err = |why: String| LmtpError::Bind {
                addr: format!("unix:{}", p.display()),
                why,
            };
            if let Ok(m) = std::fs::symlink_metadata(p) {
                use std::os::unix::fs::FileTypeExt;
                if !m.file_type().is_socket() {
                    return Err(err("exists and is not a socket".into()));
                }
                if std::os::unix::net::UnixStream::connect(p).is_ok() {
                    return Err(err("another process listens on it".into()));
                }
                std::fs::remove_file(p).map_err(|e| err(e.to_string()))?;
            }
            std::os::unix::net::UnixListener::bind(p)
                .map(|l| Bound::Unix(l, p.clone()))
                .map_err(|e| err(e.to_string()))
        }
    }
}

/// The LMTP front end serving `bound`, for [`crate::node::daemon::DaemonConfig::front_ends`].
pub fn front_end(bound: Bound, cfg: LmtpConfig) -> FrontEnd {
    // A front end is started once; the listener moves into that one start.
    let bound = Mutex::new(Some(bound));
    FrontEnd::new("lmtp", move |ctx| {
        let b = bound.lock().unwrap_or_else(|e| e.into_inner()).take();
        let cfg = cfg.clone();
        async move {
            if let Some(b) = b {
                server::serve(b, cfg, ctx).await;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(
            "127.0.0.1:2424".parse::<Listen>().unwrap(),
            Listen::Tcp("127.0.0.1:2424".parse().unwrap())
        );
        assert_eq!(
            "unix:/run/x.sock".parse::<Listen>().unwrap(),
            Listen::Unix("/run/x.sock".into())
        );
        assert!("localhost".parse::<Listen>().is_err());
        assert!("unix:".parse::<Listen>().is_err());
    }
}
