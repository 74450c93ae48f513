//! Kill loop through the real binary (design notes §7, invariant 8): `dovetail` is killed
//! with SIGKILL at random instants during `append` (several group-commit batches),
//! `flags`, `expunge`, `mailbox delete` and `sync`. After every kill the data dir is
//! reopened and checked: every acknowledged write is there (the `UID GUID` lines `append`
//! printed; a command that exited 0), no listed row lacks its blob, and message bodies read
//! back with `dovetail fetch` equal the original files byte for byte.
//!
//! The instants come from a seeded RNG: every scenario prints its seed, and `KILL_SEED=n`
//! replays one. One scenario per file; [`common`] holds the data dir helpers and checks.

#![cfg(unix)]

mod append;
mod common;
mod delete;
mod expunge;
mod flags;
mod import;
mod sync;
