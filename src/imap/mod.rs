//! The IMAP front end (RFC 3501 with STARTTLS, UIDPLUS, IDLE, MOVE, UNSELECT, ENABLE,
//! NAMESPACE, LITERAL+, ID, CONDSTORE and QRESYNC; implicit TLS): every node serves mail
//! clients and takes their writes.
//!
//! - [`server`]: the accept loop (a listener and a shutdown future in, one task per
//!   connection) and the per-connection driver that pumps bytes through imap-next's sans-IO
//!   [`imap_next::server::Server`] (framing, literals and their size limit, IDLE, SASL).
//! - [`session`]: the session as an explicit state machine (not authenticated →
//!   authenticated → selected → logout) with one transition function, [`session::Session::handle`].
//! - [`selected`]: the selected mailbox as this session shows it: the sequence-number map,
//!   and the changes (local or from peers) waiting until IMAP allows them to be told.
//! - [`cmd`]: one file per command or small family of commands.
//! - [`mime`]: ENVELOPE, BODYSTRUCTURE and body sections, on mail-parser.
//! - [`convert`]: model values to and from imap-types.
//! - [`cte`]: transfer-encoding decoding for BINARY (RFC 3516).
//! - [`tls`]: rustls: the certificate and key from PEM files, and the plaintext-or-TLS
//!   connection stream (`--imaps`, STARTTLS).
//! - [`auth`]: argon2 password hashes, SASL PLAIN, the delay after a failure.
//! - [`modseq`]: MODSEQ values on the wire, naming the node that issued them.
//! - [`mutf7`]: modified UTF-7 mailbox names (RFC 3501 5.1.3) to and from UTF-8.
//! - [`uidset`]: UID sets as ranges, for VANISHED.
//!
//! Every write goes through the replica actor, which flushes before it returns: a tagged OK
//! is sent only once the write is durable.

pub mod auth;
pub mod cmd;
pub mod convert;
pub mod cte;
pub mod mime;
pub mod modseq;
pub mod mutf7;
pub mod selected;
pub mod server;
pub mod session;
pub mod tls;
pub mod uidset;

pub use server::{serve, ImapConfig};

/// Errors of the IMAP front end.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("password hash: {0}")]
    Hash(String),
    #[error("IMAP listener on {addr}: {why}")]
    Listen { addr: String, why: String },
    /// A TLS certificate or key that cannot be used (`what` names the flag and file).
    #[error("{what}: {why}")]
    Tls { what: String, why: String },
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Stopped(#[from] crate::node::ActorStopped),
}
