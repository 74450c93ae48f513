//! End-to-end tests of the `dovetail` command line: every test runs the real binary on data
//! dirs in temporary directories and checks what it prints, its exit code and what a later
//! command (`list`, `status`, `diff`) sees.

mod bad_input;
mod commands;
mod common;
mod kill;
mod sync;
