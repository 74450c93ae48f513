//! Maildir migration: `import-maildir` reads a Dovecot Maildir / Maildir++ tree into an
//! account; `export-maildir` writes an account back out as one. Both run on a stopped data
//! dir or through the node running on it ([`target`]).
//!
//! - [`layout`]: the tree: folders, message files, their order.
//! - [`names`]: folder directory names ↔ mailbox names (modified UTF-7, `.` ↔ `/`).
//! - [`flags`]: the `:2,` flag letters and `dovecot-keywords`.
//! - [`import`], [`export`]: the two commands.
//! - [`watch`]: `dovetail node --watch-maildir`, taking in what others drop into `new/`.

pub mod export;
pub mod flags;
pub mod import;
pub mod layout;
pub mod names;
pub mod target;
pub mod watch;

use crate::node::NodeError;
use std::path::PathBuf;

/// Errors of a Maildir import or export.
#[derive(Debug, thiserror::Error)]
pub enum MaildirError {
    #[error("{0} is not a Maildir (it has no cur/ or new/ directory)")]
    NotAMaildir(PathBuf),
    #[error("{0} is not empty: export-maildir writes a new Maildir")]
    NotEmpty(PathBuf),
    #[error("Maildir folder {name:?}: {why}")]
    FolderName { name: String, why: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Remote(String),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
}
