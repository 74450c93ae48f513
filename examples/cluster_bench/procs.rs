//! What the latency and initial-sync scenarios add to [`super::support`]: a data dir with
//! account `alice`, appends and peer counts through a running node's control socket, peak
//! memory from /proc, a ~3 KB message, percentiles.

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

/// A ~3 KB mail message, different for every `i`.
pub fn message(i: u64) -> Vec<u8> {
    let mut m = format!(
        "Received: from mx{0}.example.org (mx{0}.example.org [192.0.2.{1}])\r\n\tby mail.example.net with ESMTPS id {2:016x}\r\n\
         Message-ID: <{2:016x}.{i}@example.org>\r\nDate: Mon, 30 Nov 2026 12:00:00 +0000\r\n\
         From: Sender {i} <sender{i}@example.org>\r\nTo: alice@example.net\r\n\
         Subject: latency probe {i}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
        i % 7,
        i % 250,
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    )
    .into_bytes();
    let line = b"The quick brown fox jumps over the lazy dog while the mail is replicated.\r\n";
    while m.len() < 3000 {
        m.extend_from_slice(line);
    }
    m
}

/// Percentile (0..=100) of sorted values.
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
