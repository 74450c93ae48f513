//! Helpers shared by the Maildir tests.

#![allow(dead_code)]

use crate::cluster_support::{ok, s};
use serde_json::Value;
use std::path::Path;

/// (blob, flags, internal date) of each message of a mailbox, in UID order.
pub fn rows(dir: &str, account: &str, mailbox: &str) -> Vec<(String, Vec<String>, i64)> {
    let out = ok(&[
        "--data-dir",
        dir,
        "--json",
        "list",
        "--account",
        account,
        "--mailbox",
        mailbox,
    ]);
    let v: Value = serde_json::from_str(&out).expect("json");
    v.as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            let mut flags: Vec<String> = r["flags"]
                .as_array()
                .expect("flags")
                .iter()
                .map(|f| f.as_str().expect("flag").to_string())
                .collect();
            flags.sort();
            (
                r["blob"].as_str().expect("blob").to_string(),
                flags,
                r["internal_date"].as_i64().expect("date"),
            )
        })
        .collect()
}

pub fn import(dir: &str, account: &str, path: &Path) -> String {
    ok(&[
        "--data-dir",
        dir,
        "import-maildir",
        "--account",
        account,
        s(path),
    ])
}
