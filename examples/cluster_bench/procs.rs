//! What the latency and initial-sync scenarios add to [`super::support`]: a data dir with
//! account `alice`, appends and peer counts through a running node's control socket, peak
//! memory from /proc, percentiles.

use super::support::cli;
use anyhow::{bail, Context, Result};
use dovetail::node::control::{self, ControlRequest, ControlResponse, MessageFile};
use std::path::Path;

/// Creates a data dir with account `alice` (its INBOX).
pub fn init(dir: &Path) -> Result<()> {
    let d = dir.to_str().context("utf-8 path")?;
    cli(&["--data-dir", d, "init"])?;
    cli(&["--data-dir", d, "account", "create", "alice"])?;
    Ok(())
}

/// Connected peers of the node running on `dir`, from `status`.
pub fn peers(dir: &Path) -> Result<usize> {
    match control::call(dir, &ControlRequest::Status { account: None })? {
        Some(ControlResponse::Status { peers, .. }) => Ok(peers.len()),
        other => bail!("status: {other:?}"),
    }
}

/// Appends one message to alice's INBOX on the node running on `dir`; returns its GUID
/// once durable.
pub fn append(dir: &Path, name: &str, bytes: Vec<u8>) -> Result<String> {
    let req = ControlRequest::Append {
        account: "alice".into(),
        mailbox: "INBOX".into(),
        flags: None,
        messages: vec![MessageFile {
            name: name.into(),
            bytes,
            internal_date: 0,
        }],
    };
    match control::call(dir, &req)? {
        Some(ControlResponse::Appended(v)) if v.len() == 1 => Ok(v[0].1.clone()),
        other => bail!("append: {other:?}"),
    }
}

/// Peak resident memory (VmHWM) of a process, in MiB.
pub fn hwm_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Percentile (0..=100) of sorted values.
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
