//! The sans-IO CRDT core. Nothing here touches a disk, a socket or a clock: local operations
//! and remote automerge changes go in; automerge changes, facts and view updates come out.
//!
//! - [`meta`]: the mailbox-level causal context each change carries in its message field.
//! - [`segment`]: a segment document (bounded set of messages) and the facts its changes carry.
//! - [`view`]: the UID engine: claims, dead UIDs, homeless messages, renumbering, flags,
//!   expunges, MODSEQ and the digest, applied to view tables behind a trait.
//! - [`account`]: the account document holding the mailbox tree.

pub mod account;
pub mod bulk;
pub mod meta;
pub mod segment;
pub mod view;

use crate::model::ModelError;

/// Errors of the CRDT layer: malformed documents or changes, automerge failures.
#[derive(Debug, thiserror::Error)]
pub enum CrdtError {
    #[error("automerge: {0}")]
    Automerge(Box<automerge::AutomergeError>),
    #[error("malformed change metadata: {0}")]
    BadMeta(String),
    #[error("malformed document entry {key:?}: {why}")]
    BadEntry { key: String, why: String },
    #[error(transparent)]
    Model(#[from] ModelError),
}

impl From<automerge::AutomergeError> for CrdtError {
    fn from(e: automerge::AutomergeError) -> Self {
        CrdtError::Automerge(Box::new(e))
    }
}
