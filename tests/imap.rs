//! The IMAP front end against real clients and the real binary on loopback: python3's
//! imaplib (tests/imap/client.py, tests/imap/tls_client.py), curl, mbsync and raw TCP
//! (every command split at every byte, and malformed input); TLS with a self-signed
//! certificate made by rcgen.

mod cluster_support;

#[path = "imap/cluster.rs"]
mod cluster;
#[path = "imap/common.rs"]
mod common;
#[path = "imap/flow.rs"]
mod flow;
#[path = "imap/mbsync.rs"]
mod mbsync;
#[path = "imap/qresync.rs"]
mod qresync;
#[path = "imap/raw.rs"]
mod raw;
#[path = "imap/tls.rs"]
mod tls;
