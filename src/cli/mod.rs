//! The `dovetail` command line: argument definitions here, one function per command in
//! [`commands`]. Every command takes `--data-dir DIR` (or `DOVETAIL_DATA_DIR`); listing
//! commands take `--json`.

mod commands;
pub mod config;
mod demo;
mod list;
mod maildir;
mod node;
mod remote;
mod user;
mod watch;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

pub use commands::run;

/// Errors of the command line (on top of the node's).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Node(#[from] crate::node::NodeError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("writing to standard output: {0}")]
    Stdout(std::io::Error),
    #[error("--data-dir DIR (or DOVETAIL_DATA_DIR) is required")]
    NoDataDir,
    #[error("{0}")]
    Remote(String),
    #[error(transparent)]
    Daemon(#[from] crate::node::daemon::DaemonError),
    #[error(transparent)]
    Lmtp(crate::lmtp::LmtpError),
    #[error(transparent)]
    Maildir(#[from] crate::maildir::MaildirError),
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
    /// The command line itself is wrong (or asks for help): clap prints and exits.
    #[error("{0}")]
    Usage(clap::Error),
    #[error("config file {path}: {why}")]
    Config { path: String, why: String },
    #[error("config file {path}: unknown key {key:?}")]
    UnknownKey { path: String, key: String },
}

/// Parses a byte size: a number with an optional unit, K/M/G (powers of 1024, with or
/// without `iB`/`B`), e.g. `256MiB`, `1G`, `500000000`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a size such as 256MiB, 1G or 1000000"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("{s:?}: unknown unit (use K, M or G)")),
    };
    let v = n
        .checked_mul(mult)
        .ok_or_else(|| format!("{s:?}: too large"))?;
    if v < 16 << 20 {
        return Err(format!("{s:?}: at least 16MiB"));
    }
    Ok(v)
}

#[derive(Parser, Debug)]
#[command(name = "dovetail", version, about = "Multi-master mailbox replication")]
pub struct Cli {
    /// Config file (TOML; every flag has a key; flags override it). Default:
    /// `<data-dir>/dovetail.toml` when it exists (docs/operations.md).
    #[arg(long, global = true, env = "DOVETAIL_CONFIG")]
    pub config: Option<PathBuf>,
    /// The node's data dir.
    #[arg(long, global = true, env = "DOVETAIL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Largest message accepted, in bytes.
    #[arg(long, global = true, env = "DOVETAIL_MAX_MESSAGE_SIZE", default_value_t = 64 * 1024 * 1024)]
    pub max_message_size: u64,
    /// Memory for caches (sled's page cache, open documents), e.g. 256MiB, 1G or bytes.
    /// Resident memory stays near it plus sled's page table (~16 bytes per page).
    #[arg(long, global = true, env = "DOVETAIL_MEMORY_BUDGET", default_value = "256MiB", value_parser = parse_size)]
    pub memory_budget: u64,
    #[command(subcommand)]
    pub cmd: Cmd,
}

// One value per process, parsed once: its size does not matter, and boxing `NodeArgs`
// would only complicate the config file's merge.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Create a data dir and node identity; prints the node id.
    Init,
    /// Create or list accounts.
    Account {
        #[command(subcommand)]
        cmd: AccountCmd,
    },
    /// Create, rename, delete or list mailboxes.
    Mailbox {
        #[command(subcommand)]
        cmd: MailboxCmd,
    },
    /// Append message files; prints `UID GUID` per message.
    Append {
        #[arg(long)]
        account: String,
        #[arg(long)]
        mailbox: String,
        /// Flags to set, e.g. '\Seen $Work'.
        #[arg(long, allow_hyphen_values = true)]
        flags: Option<String>,
        /// Message files (`-` reads standard input).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List a mailbox: UID, GUID, flags, size, blob id, in UID order.
    List {
        #[arg(long)]
        account: String,
        #[arg(long)]
        mailbox: String,
    },
    /// Print the raw message at a UID (exact bytes) on standard output.
    Fetch {
        #[arg(long)]
        account: String,
        #[arg(long)]
        mailbox: String,
        #[arg(long)]
        uid: String,
    },
    /// Change flags: +FLAGS adds, -FLAGS removes, =FLAGS replaces.
    Flags {
        #[arg(long)]
        account: String,
        #[arg(long)]
        mailbox: String,
        /// UID set, e.g. 3, 2:7, 1,4:*
        #[arg(long)]
        uid: String,
        /// (+|-|=)FLAGS, e.g. '+\Seen $Work'
        #[arg(allow_hyphen_values = true)]
        change: String,
    },
    /// Expunge messages.
    Expunge {
        #[arg(long)]
        account: String,
        #[arg(long)]
        mailbox: String,
        #[arg(long)]
        uid: String,
    },
    /// Copy messages to another mailbox (new messages sharing the blobs).
    Copy(CopyArgs),
    /// Move messages to another mailbox (copy, then expunge).
    Move(CopyArgs),
    /// Per mailbox: UIDVALIDITY, UIDNEXT, messages, unseen, digest.
    Status {
        #[arg(long)]
        account: Option<String>,
    },
    /// Two-way offline sync of two stopped data dirs.
    Sync { dir_a: PathBuf, dir_b: PathBuf },
    /// Compare data dirs (running or stopped); exit 0 iff all converged.
    Diff {
        #[arg(required = true, num_args = 1..)]
        dirs: Vec<PathBuf>,
        /// Poll until converged or this many seconds have passed.
        #[arg(long)]
        wait: Option<f64>,
    },
    /// Drop message bodies no message needs any more (all their messages expunged) and
    /// reclaim their space.
    Gc,
    /// Run a node of a cluster until SIGTERM or Ctrl-C.
    Node(node::NodeArgs),
    /// Write a new cluster key to FILE.
    Keygen { file: PathBuf },
    /// Start local nodes, write concurrently, cut one off, add one, prove convergence.
    Demo(demo::DemoArgs),
    /// Follow what a running node shows: a line per message shown, hidden or re-flagged,
    /// from local writes and peers' changes, until Ctrl-C.
    Watch,
    /// Import a Maildir / Maildir++ tree (Dovecot layout) into an account; a second run
    /// imports nothing twice (docs/operations.md).
    ImportMaildir {
        #[arg(long)]
        account: String,
        path: PathBuf,
    },
    /// Write an account as a new Maildir++ tree (flags in file names, dovecot-keywords).
    ExportMaildir {
        #[arg(long)]
        account: String,
        path: PathBuf,
    },
    /// Add, change or remove the IMAP login of an account (the login is the account name;
    /// the password is read from the first line of standard input).
    User {
        #[command(subcommand)]
        cmd: UserCmd,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Give an account an IMAP login with the password read from standard input.
    Add {
        #[arg(long)]
        account: String,
        /// Read the password from standard input (the only way; the flag documents it).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change the password of an account's login (read from standard input).
    Passwd {
        #[arg(long)]
        account: String,
        /// Read the password from standard input (the only way; the flag documents it).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove an account's login.
    Del {
        #[arg(long)]
        account: String,
    },
}

#[derive(clap::Args, Debug)]
pub struct CopyArgs {
    #[arg(long)]
    pub account: String,
    #[arg(long)]
    pub mailbox: String,
    #[arg(long)]
    pub uid: String,
    #[arg(long)]
    pub to: String,
}

#[derive(Subcommand, Debug)]
pub enum AccountCmd {
    /// Create an account with its INBOX.
    Create { account: String },
    /// List accounts.
    List,
}

#[derive(Subcommand, Debug)]
pub enum MailboxCmd {
    /// Create a mailbox (and the account, if new).
    Create {
        #[arg(long)]
        account: String,
        name: String,
    },
    /// Rename a mailbox.
    Rename {
        #[arg(long)]
        account: String,
        name: String,
        new: String,
    },
    /// Delete a mailbox and its messages.
    Delete {
        #[arg(long)]
        account: String,
        name: String,
    },
    /// List mailboxes.
    List {
        #[arg(long)]
        account: String,
    },
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("64m"), Ok(64 << 20));
        assert_eq!(parse_size("20000000"), Ok(20_000_000));
        assert!(parse_size("1000").is_err(), "below the floor");
        assert!(parse_size("12T").is_err());
        assert!(parse_size("lots").is_err());
    }
}
