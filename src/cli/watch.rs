//! `dovetail watch`: follows a running node's view events through its control socket, one
//! line (or JSON object) per event, with the mailbox named as `account/mailbox`.

use super::{Cli, CliError};
use crate::node::control::{self, ControlRequest, ControlResponse, EventOut};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

/// Mailbox id → `account/name`, from the node's status.
fn names(dir: &Path) -> Result<HashMap<String, String>, CliError> {
    match control::call(dir, &ControlRequest::Status { account: None })
        .map_err(|e| CliError::Remote(e.to_string()))?
    {
        Some(ControlResponse::Status { mailboxes, .. }) => Ok(mailboxes
            .into_iter()
            .map(|m| (m.id, format!("{}/{}", m.account, m.name)))
            .collect()),
        Some(other) => Err(CliError::Remote(format!(
            "unexpected answer from the node: {other:?}"
        ))),
        None => Err(CliError::Remote(format!(
            "no node runs on {}",
            dir.display()
        ))),
    }
}

/// Streams events until the node stops (exit 0) or standard output closes.
pub fn watch(cli: &Cli, dir: &Path) -> Result<i32, CliError> {
    let mut known = names(dir)?;
    let mut failed = None;
    let mut out = std::io::stdout().lock();
    let mut line = |e: &EventOut, known: &HashMap<String, String>| -> std::io::Result<()> {
        let mailbox = known.get(&e.mailbox_id).cloned();
        if cli.json {
            let v = serde_json::json!({
                "kind": e.kind,
                "mailbox": mailbox,
                "mailbox_id": e.mailbox_id,
                "uid": e.uid,
                "guid": e.guid,
                "remote": e.remote,
            });
            writeln!(out, "{v}")?;
        } else {
            writeln!(
                out,
                "{} {} uid {} guid {} {}",
                e.kind,
                mailbox.as_deref().unwrap_or(&e.mailbox_id),
                e.uid,
                e.guid,
                if e.remote { "peer" } else { "local" }
            )?;
        }
        // A line at a time: whoever reads the pipe sees each event as it happens.
        out.flush()
    };
    control::stream(dir, &ControlRequest::Watch, &mut |resp| {
        let res = match resp {
            ControlResponse::Event(e) => {
                if !known.contains_key(&e.mailbox_id) {
                    // A mailbox created (or received) since the watch began.
                    if let Ok(n) = names(dir) {
                        known = n;
                    }
                }
                line(&e, &known)
            }
            ControlResponse::Lagged(n) => {
                eprintln!("dovetail watch: fell behind, {n} events were dropped");
                Ok(())
            }
            other => {
                eprintln!("dovetail watch: unexpected answer {other:?}");
                Ok(())
            }
        };
        match res {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    })
    .map_err(|e| CliError::Remote(e.to_string()))?;
    match failed {
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        Some(e) => Err(CliError::Stdout(e)),
        None => Ok(0),
    }
}
