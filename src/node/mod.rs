//! One node's replica of its accounts (a data dir): local operations as the CLI and front
//! ends call them, remote changes applied in mailbox-causal order, renumbering, and the
//! offline sync of two data dirs through the same sync sessions the network uses.

mod actor;
pub mod control;
mod copier;
pub mod daemon;
mod doc_id;
mod fetch;
mod filter;
mod gc;
mod identity;
mod message;
pub mod metrics;
mod netx;
mod offline;
mod ops;
mod pending;
mod replica;
mod timed_kv;
mod upgrade;
mod users;
mod writer;

pub use actor::{ActorStopped, ReplicaHandle};
pub use filter::AccountFilter;
pub use message::{check_message, NewMessage, StoredMessage};
pub use metrics::Metrics;
pub use netx::{doc_account, FromPeer, Generated, Received};
pub use offline::{sync_pair, SyncReport};
pub use ops::{FlagOp, MailboxStatus, Stager};
pub use replica::{MailboxEvent, Options, Replica, DEFAULT_MEMORY_BUDGET};
pub use users::UserChange;

use crate::crdt::CrdtError;
use crate::model::ModelError;
use crate::store::StoreError;
use crate::sync::SyncError;
use std::path::PathBuf;

/// Errors a node reports to its caller: each one is a clear, one-line message.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("no dovetail data dir at {0} (create one with `dovetail init --data-dir {0}`)")]
    NoDataDir(PathBuf),
    #[error("{0} is already a dovetail data dir")]
    AlreadyInitialized(PathBuf),
    #[error("unknown account {0:?}")]
    UnknownAccount(String),
    #[error("account {0:?} already exists")]
    AccountExists(String),
    #[error("unknown mailbox {mailbox:?} in account {account:?}")]
    UnknownMailbox { account: String, mailbox: String },
    #[error("no message with UID {uid} in mailbox {mailbox:?}")]
    UnknownUid { mailbox: String, uid: u32 },
    #[error("the blob {0} of a listed message is missing")]
    MissingBlob(String),
    #[error("user {0:?} already exists (change its password with `dovetail user passwd`)")]
    UserExists(String),
    #[error("unknown user {0:?}")]
    UnknownUser(String),
    #[error("mailbox {0:?} already exists")]
    MailboxExists(String),
    #[error("INBOX cannot be {0}")]
    Inbox(&'static str),
    #[error("{name}: not a mail message: {why}")]
    NotAMessage { name: String, why: String },
    #[error("{name}: message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { name: String, size: u64, limit: u64 },
    #[error("invalid flag change '{0}': expected +FLAGS, -FLAGS or =FLAGS, e.g. '+\\Seen $Work'")]
    FlagChange(String),
    #[error("{0} is the same data dir as {1}")]
    SameDir(PathBuf, PathBuf),
    #[error("the 32-bit UID space of mailbox {0:?} is exhausted")]
    UidsExhausted(String),
    #[error("identity: {0}")]
    Identity(String),
    #[error("{0}")]
    Io(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crdt(#[from] CrdtError),
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error(transparent)]
    Model(#[from] ModelError),
}
