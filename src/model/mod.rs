//! Checked newtypes: every value that crosses a layer boundary is built through a
//! constructor that validates it, so the layers above never re-check.

mod flag;
mod ids;
mod names;
mod uid;

pub use flag::{Flag, FlagSet};
pub use ids::{BlobId, Guid, MailboxId, NodeId, OpId};
pub use names::{AccountName, MailboxName};
pub use uid::{ModSeq, Uid, UidSet, UidValidity};

/// A value that failed validation.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    #[error("invalid UID {0:?}: UIDs are 1..=4294967295")]
    Uid(String),
    #[error("invalid UID set {0:?}: expected e.g. 3, 2:7 or 1,4:*")]
    UidSet(String),
    #[error("invalid flag '{0}': expected a system flag (\\Seen \\Answered \\Flagged \\Deleted \\Draft) or a keyword atom")]
    Flag(String),
    #[error("invalid mailbox name {0:?}: {1}")]
    MailboxName(String, &'static str),
    #[error("invalid account name {0:?}: use letters, digits and . _ - @ +")]
    AccountName(String),
    #[error("invalid {kind} {value:?}: expected {len} hex digits")]
    Hex {
        kind: &'static str,
        value: String,
        len: usize,
    },
}
