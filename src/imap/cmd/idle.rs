//! IDLE (RFC 2177). The server loop accepts it (a continuation request), then tells the
//! selected mailbox's changes as they are committed, local or from peers, expunges
//! included, until the client sends DONE.

use crate::imap::session::{Reply, Session};

/// Whether IDLE may start (authenticated or selected), or the BAD refusing it.
pub fn check(s: &Session) -> Result<(), Reply> {
    match s.account() {
        Some(_) => Ok(()),
        None => Err(Reply::bad("IDLE needs a login")),
    }
}

/// Tells what changed since the last time (expunges are allowed while idling).
pub async fn changes(s: &mut Session) {
    s.tell(true).await;
}
