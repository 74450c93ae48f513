//! Per-peer, per-document sync sessions: automerge's sync protocol, pumped by the caller
//! (the network event loop, or the offline sync of two data dirs). Sans-IO: messages are
//! bytes in and bytes out.

use automerge::sync::{self, SyncDoc};
use automerge::AutoCommit;

/// Errors of the sync layer: undecodable or unappliable messages from a peer.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("bad sync message: {0}")]
    BadMessage(String),
    #[error("bad sync state: {0}")]
    BadState(String),
    #[error("applying sync message: {0}")]
    Apply(Box<automerge::AutomergeError>),
}

/// The state of syncing one document with one peer. Persisted between sessions so that a
/// reconnecting peer exchanges heads, not a summary of all history.
pub struct DocSession {
    state: sync::State,
}

impl Default for DocSession {
    fn default() -> Self {
        DocSession::new()
    }
}

impl DocSession {
    pub fn new() -> DocSession {
        DocSession {
            state: sync::State::new(),
        }
    }

    /// Restores a persisted session.
    pub fn decode(bytes: &[u8]) -> Result<DocSession, SyncError> {
        sync::State::decode(bytes)
            .map(|state| DocSession { state })
            .map_err(|e| SyncError::BadState(e.to_string()))
    }

    /// The persistent part of the session (automerge keeps only what survives a reconnect).
    pub fn encode(&self) -> Vec<u8> {
        self.state.encode()
    }

    /// The next message for the peer, if there is anything to say.
    pub fn generate(&mut self, doc: &mut AutoCommit) -> Option<Vec<u8>> {
        doc.sync()
            .generate_sync_message(&mut self.state)
            .map(|m| m.encode())
    }

    /// Applies a message from the peer to `doc`.
    pub fn receive(&mut self, doc: &mut AutoCommit, msg: &[u8]) -> Result<(), SyncError> {
        let m = sync::Message::decode(msg).map_err(|e| SyncError::BadMessage(e.to_string()))?;
        doc.sync()
            .receive_sync_message(&mut self.state, m)
            .map_err(|e| SyncError::Apply(Box::new(e)))?;
        Ok(())
    }
}
