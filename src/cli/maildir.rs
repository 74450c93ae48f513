//! `dovetail import-maildir` and `dovetail export-maildir` (see [`crate::maildir`]): the
//! progress display and the summary; the work is in the library.

use super::{Cli, CliError};
use crate::maildir::export::export;
use crate::maildir::import::{import, ImportOptions, Progress};
use crate::maildir::target::Target;
use crate::model::AccountName;
use crate::node::Options;
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn target(cli: &Cli) -> Result<Target, CliError> {
    let dir = cli.data_dir.as_ref().ok_or(CliError::NoDataDir)?;
    let opts = Options {
        max_message_size: cli.max_message_size,
        memory_budget: cli.memory_budget,
        ..Options::default()
    };
    Ok(Target::open(dir, opts)?)
}

/// Progress on stderr: a bar redrawn in place on a terminal, else a line every 5 seconds;
/// nothing for an import done within the first second.
struct Meter {
    start: Instant,
    last: Instant,
    tty: bool,
    drawn: bool,
}

impl Meter {
    fn new() -> Meter {
        let now = Instant::now();
        Meter {
            start: now,
            last: now,
            tty: std::io::stderr().is_terminal(),
            drawn: false,
        }
    }

    fn show(&mut self, what: &str, done: usize, total: usize, end: bool) {
        let every = if self.tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(5)
        };
        let elapsed = self.start.elapsed();
        if (!end && self.last.elapsed() < every)
            || (elapsed < Duration::from_secs(1) && !self.drawn)
        {
            return;
        }
        self.last = Instant::now();
        self.drawn = true;
        let rate = done as f64 / elapsed.as_secs_f64().max(1e-3);
        let mut err = std::io::stderr().lock();
        if self.tty {
            let width = 30;
            let filled = (done * width)
                .checked_div(total)
                .unwrap_or(width)
                .min(width);
            let _ = write!(
                err,
                "\r[{}{}] {done}/{total} messages {rate:.0}/s {what:<20.20}",
                "#".repeat(filled),
                "-".repeat(width - filled)
            );
            if end {
                let _ = writeln!(err);
            }
        } else {
            let _ = writeln!(err, "{done}/{total} messages, {rate:.0}/s {what}");
        }
    }
}

/// `dovetail import-maildir --account A PATH`.
pub fn import_maildir(cli: &Cli, account: &str, path: &Path) -> Result<i32, CliError> {
    let a = AccountName::try_from(account)?;
    let mut t = target(cli)?;
    let opts = ImportOptions::new(cli.max_message_size);
    let mut meter = Meter::new();
    let report = import(&mut t, &a, path, &opts, now(), &mut |p: Progress<'_>| {
        meter.show(p.mailbox, p.done, p.total, p.mailbox.is_empty());
    })?;
    for f in &report.folders {
        for (c, n) in &f.unknown_flag_letters {
            eprintln!(
                "dovetail: warning: {}: flag letter '{c}' on {n} messages has no IMAP flag or keyword; left out",
                f.mailbox
            );
        }
    }
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!(report)).expect("json")
        );
    } else {
        for f in &report.folders {
            println!(
                "{} {} found, {} imported, {} already there{}",
                f.mailbox,
                f.found,
                f.imported,
                f.skipped,
                if f.created { " (created)" } else { "" }
            );
        }
        println!(
            "imported {} messages, {} already there",
            report.imported, report.skipped
        );
    }
    Ok(0)
}

/// `dovetail export-maildir --account A PATH`.
pub fn export_maildir(cli: &Cli, account: &str, path: &Path) -> Result<i32, CliError> {
    let a = AccountName::try_from(account)?;
    let mut t = target(cli)?;
    let mut meter = Meter::new();
    let report = export(&mut t, &a, path, &mut |n| meter.show("", n, n, false))?;
    for (m, lost) in &report.keywords_lost {
        eprintln!(
            "dovetail: warning: {m}: keywords beyond the 26 a Maildir folder can name were not written: {}",
            lost.join(" ")
        );
    }
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!(report)).expect("json")
        );
    } else {
        println!(
            "exported {} messages in {} mailboxes to {}",
            report.messages,
            report.mailboxes,
            path.display()
        );
    }
    Ok(0)
}
