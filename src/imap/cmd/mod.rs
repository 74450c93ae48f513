//! One file per IMAP command or small family of commands. Each takes the session and the
//! command's arguments, queues its untagged responses and returns the tagged status.

pub mod any;
pub mod append;
pub mod copy;
pub mod expunge;
pub mod fetch;
pub mod fetch_meta;
pub mod idle;
pub mod list;
pub mod login;
pub mod mailbox;
pub mod qresync;
pub mod search;
pub mod select;
pub mod status;
pub mod store;
