//! dovetail: multi-master mailbox replication.
//!
//! Layers, each depending only on the ones above it in this list:
//!
//! - [`model`]: checked newtypes (UIDs, GUIDs, blob ids, names, flags, UID sets).
//! - [`crdt`]: the sans-IO core: segment and account documents on automerge, the mailbox
//!   causal context, the UID engine (claims, dead UIDs, renumbering), flags, expunges, digest.
//! - [`store`]: the storage trait, sled and in-memory engines, the typed tables (document
//!   chunks, the mailbox view and its rows read in place, blobs, identity, sync state).
//! - [`sync`]: per-peer, per-document automerge sync sessions.
//! - [`net`]: the libp2p network (swarm, protocol, event loop and its client handle); it
//!   knows nothing of replicas.
//! - [`node`]: one replica (a data dir): local operations, applying remote changes in
//!   causal order, renumbering, offline sync of two data dirs; a running node (the replica
//!   actor, the sync coordinator over [`net`], the control socket).
//! - [`imap`]: the IMAP front end: a session state machine per connection over the
//!   replica actor, one file per command, imap-codec/imap-next for the wire format.
//! - [`lmtp`]: the LMTP front end (delivery from an MTA into a running node).
//! - [`http`]: the HTTP front end (`/metrics` for Prometheus, a status page).
//! - [`maildir`]: Maildir import and export (migration in and out).
//! - [`diff`]: comparing replicas record by record.
//! - [`cli`]: the `dovetail` command line.

pub mod cli;
pub mod crdt;
pub mod diff;
pub mod http;
pub mod imap;
pub mod lmtp;
pub mod maildir;
pub mod model;
pub mod net;
pub mod node;
pub mod store;
pub mod sync;
