//! `dovetail user add|passwd|del --account A`: the logins IMAP accepts. The password is
//! read from standard input (its first line), never from the command line, where other
//! users could see it in the process list. The argon2 hash is stored in the account
//! document, so it replicates to every node that holds the account.

use super::{Cli, CliError, UserCmd};
use crate::imap::auth;
use crate::model::AccountName;
use crate::node::control::{self, ControlRequest, ControlResponse};
use crate::node::{Options, Replica, UserChange};
use std::io::{BufRead, IsTerminal};

/// Runs `dovetail user ...` on a stopped data dir, or through the control socket of the
/// node running on it.
pub fn run(cli: &Cli, cmd: &UserCmd) -> Result<i32, CliError> {
    let dir = cli.data_dir.as_deref().ok_or(CliError::NoDataDir)?;
    let (account, change) = match cmd {
        UserCmd::Add { account, .. } => (account, UserChange::Add(hash_from_stdin()?)),
        UserCmd::Passwd { account, .. } => (account, UserChange::Passwd(hash_from_stdin()?)),
        UserCmd::Del { account } => (account, UserChange::Del),
    };
    let a = AccountName::try_from(account.as_str())?;
    // The login is the account name: a user sees only its own account.
    let login = a.to_string();
    if control::running(dir) {
        let req = ControlRequest::User {
            account: a.to_string(),
            login,
            change,
        };
        return match control::call(dir, &req).map_err(|e| CliError::Remote(e.to_string()))? {
            Some(ControlResponse::Done) => Ok(0),
            Some(ControlResponse::Error(e)) => Err(CliError::Remote(e)),
            Some(r) => Err(CliError::Remote(format!("unexpected answer: {r:?}"))),
            None => Err(CliError::Remote(format!(
                "the node on {} stopped answering",
                dir.display()
            ))),
        };
    }
    let opts = Options {
        max_message_size: cli.max_message_size,
        memory_budget: cli.memory_budget,
        ..Options::default()
    };
    let mut r = Replica::open(dir, opts)?;
    r.change_user(&a, &login, &change)?;
    Ok(0)
}

/// Reads the password (first line of standard input, without its line end) and hashes it.
fn hash_from_stdin() -> Result<String, CliError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password: ");
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|source| CliError::Read {
            path: "standard input".into(),
            source,
        })?;
    let pw = line.trim_end_matches(['\r', '\n']);
    if pw.is_empty() {
        return Err(CliError::Remote(
            "empty password: give it on standard input, e.g. `echo secret | dovetail user add --account A --password-stdin`".into(),
        ));
    }
    auth::hash_password(pw).map_err(|e| CliError::Remote(e.to_string()))
}
