//! The config file (`dovetail.toml`): every command-line flag of the global options and of
//! `dovetail node` has a key, its long name (`listen`, `max-message-size`, `lmtp`...).
//!
//! Precedence: command line > environment variable (where the flag has one) > file >
//! built-in default. The file is `--config FILE`, else `$DOVETAIL_CONFIG`, else
//! `<data-dir>/dovetail.toml` when that file exists, else none.
//!
//! The mechanism is generic, so a flag added to [`super::Cli`] or [`super::node::NodeArgs`]
//! gets its key with no code here: the keys are read from clap's own definition of the
//! arguments, each value of the file that the command line (or environment) did not set is
//! turned back into `--key=value` arguments, and clap parses the whole again. Values are
//! thus checked by the same parsers as flags, and a flag the command line gave replaces the
//! key's value (a list is replaced, not extended).

use super::{Cli, CliError};
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The config file looked for in the data dir when neither `--config` nor
/// `$DOVETAIL_CONFIG` names one.
pub const DEFAULT_FILE: &str = "dovetail.toml";

/// The subcommand whose flags have keys too (the others take only the global ones).
const NODE: &str = "node";

/// Flags that have no key: the config file cannot name itself, and help is not a setting.
const NO_KEY: &[&str] = &["config", "help", "version"];

/// One key of the config file: the flag it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// The key (the flag's long name).
    pub name: String,
    /// Whether it is an option of `dovetail node` (else a global option).
    pub node: bool,
    /// Whether the flag takes several values (a TOML array).
    pub list: bool,
    /// Whether the flag is a switch (a TOML boolean).
    pub switch: bool,
}

/// Every key of the config file, global options first.
pub fn keys() -> Vec<Key> {
    let cmd = Cli::command();
    let mut out = Vec::new();
    let node = cmd.find_subcommand(NODE).map(|c| c.get_arguments());
    let sets = [(false, cmd.get_arguments().collect::<Vec<_>>())]
        .into_iter()
        .chain(node.map(|n| (true, n.collect())));
    for (is_node, args) in sets {
        for a in args {
            let Some(long) = a.get_long() else { continue };
            if NO_KEY.contains(&long) {
                continue;
            }
            out.push(Key {
                name: long.to_string(),
                node: is_node,
                list: matches!(a.get_action(), ArgAction::Append),
                switch: matches!(a.get_action(), ArgAction::SetTrue),
            });
        }
    }
    out
}

/// Parses the command line `args` (program name first) with the config file it names or
/// implies merged in. A bad command line is [`CliError::Usage`] (clap prints it); a bad
/// file is a one-line error naming the file and the key.
pub fn load<I, T>(args: I) -> Result<Cli, CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let m = Cli::command()
        .try_get_matches_from(&args)
        .map_err(CliError::Usage)?;
    let Some(path) = config_path(&m) else {
        return Cli::from_arg_matches(&m).map_err(CliError::Usage);
    };
    let table = read_file(&path)?;
    let extra = file_args(&path, &table, &m)?;
    if extra.is_empty() {
        return Cli::from_arg_matches(&m).map_err(CliError::Usage);
    }
    // The file's arguments go at the end (before a `--`, if any): the global flags are
    // accepted after the subcommand, and the node flags must follow `node`.
    let mut all = args;
    let at = all.iter().position(|a| a == "--").unwrap_or(all.len());
    all.splice(at..at, extra);
    // The command line parsed alone, so an error now is the file's.
    <Cli as clap::Parser>::try_parse_from(all)
        .map_err(|e| config_err(&path, &first_line(&e.to_string())))
}

/// The config file to read: `--config` / `$DOVETAIL_CONFIG`, else the data dir's
/// `dovetail.toml` if it exists.
fn config_path(m: &ArgMatches) -> Option<PathBuf> {
    if let Some(p) = m.get_one::<PathBuf>("config") {
        return Some(p.clone());
    }
    let dir = m.get_one::<PathBuf>("data_dir")?;
    let p = dir.join(DEFAULT_FILE);
    p.is_file().then_some(p)
}

fn config_err(path: &Path, why: &str) -> CliError {
    CliError::Config {
        path: path.display().to_string(),
        why: why.to_string(),
    }
}

/// The first line of a multi-line message, without clap's `error: ` prefix.
fn first_line(s: &str) -> String {
    let l = s.lines().find(|l| !l.trim().is_empty()).unwrap_or(s);
    l.trim_start_matches("error: ").trim().to_string()
}

/// Reads and parses a config file into its table of keys.
pub fn read_file(path: &Path) -> Result<toml::Table, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::Read {
        path: path.display().to_string(),
        source,
    })?;
    text.parse::<toml::Table>().map_err(|e| {
        // toml's own rendering spans several lines (a source excerpt): keep one.
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        let why = match line {
            Some(n) => format!("line {n}: {}", e.message().trim()),
            None => e.message().trim().to_string(),
        };
        config_err(path, &why)
    })
}

/// Checks a config file's keys and value shapes (not the values themselves: clap does
/// that when they are used).
pub fn check_table(path: &Path, table: &toml::Table) -> Result<(), CliError> {
    let keys = keys();
    for (k, v) in table {
        let key = keys
            .iter()
            .find(|x| &x.name == k)
            .ok_or_else(|| CliError::UnknownKey {
                path: path.display().to_string(),
                key: k.clone(),
            })?;
        values(path, key, v)?;
    }
    Ok(())
}

/// The arguments the file adds: each key whose flag the command line did not set.
fn file_args(path: &Path, table: &toml::Table, m: &ArgMatches) -> Result<Vec<OsString>, CliError> {
    check_table(path, table)?;
    let keys = keys();
    let node = match m.subcommand() {
        Some((NODE, sub)) => Some(sub),
        _ => None,
    };
    let mut out = Vec::new();
    for (k, v) in table {
        let Some(key) = keys.iter().find(|x| &x.name == k) else {
            continue;
        };
        let scope = if key.node {
            match node {
                Some(n) => n,
                // A node setting, and this command is not `node`: not its business.
                None => continue,
            }
        } else {
            m
        };
        let id = arg_id(&key.name, key.node);
        if matches!(
            scope.value_source(&id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        for val in values(path, key, v)? {
            out.push(match val {
                Some(s) => OsString::from(format!("--{}={s}", key.name)),
                None => OsString::from(format!("--{}", key.name)),
            });
        }
    }
    Ok(out)
}

/// The clap id of the flag named `long` (derive ids are the field names).
fn arg_id(long: &str, node: bool) -> String {
    let cmd = Cli::command();
    let found = if node {
        cmd.find_subcommand(NODE)
            .and_then(|c| c.get_arguments().find(|a| a.get_long() == Some(long)))
            .map(|a| a.get_id().to_string())
    } else {
        cmd.get_arguments()
            .find(|a| a.get_long() == Some(long))
            .map(|a| a.get_id().to_string())
    };
    found.unwrap_or_else(|| long.replace('-', "_"))
}

/// A key's value as flag values: `None` for a switch that is on (`--key`), nothing for a
/// switch that is off.
fn values(path: &Path, key: &Key, v: &toml::Value) -> Result<Vec<Option<String>>, CliError> {
    let bad = |what: &str| config_err(path, &format!("key {}: {what}", key.name));
    if key.switch {
        return match v {
            toml::Value::Boolean(true) => Ok(vec![None]),
            toml::Value::Boolean(false) => Ok(vec![]),
            _ => Err(bad("expected true or false")),
        };
    }
    match v {
        toml::Value::Array(items) if key.list => items
            .iter()
            .map(|i| {
                scalar(i)
                    .map(Some)
                    .ok_or_else(|| bad("expected a list of values"))
            })
            .collect(),
        toml::Value::Array(_) => Err(bad("expected one value, not a list")),
        other => scalar(other)
            .map(|s| vec![Some(s)])
            .ok_or_else(|| bad("expected a string or a number")),
    }
}

fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(text.as_bytes()).expect("write");
        f
    }

    fn node_args(cli: &Cli) -> &super::super::node::NodeArgs {
        match &cli.cmd {
            super::super::Cmd::Node(n) => n,
            other => panic!("not node: {other:?}"),
        }
    }

    #[test]
    fn the_file_sets_flags_and_the_command_line_wins() {
        let f = file(
            "data-dir = \"/srv/d\"\nlisten = [\"/ip4/127.0.0.1/tcp/4001\"]\n\
             lmtp = \"127.0.0.1:2424\"\nmdns = true\nanti-entropy = 7\n\
             memory-budget = \"64MiB\"\n",
        );
        let p = f.path().to_str().expect("utf-8");
        let cli = load(["dovetail", "--config", p, "node", "--anti-entropy", "9"]).expect("load");
        assert_eq!(cli.data_dir, Some(PathBuf::from("/srv/d")));
        assert_eq!(cli.memory_budget, 64 << 20);
        let n = node_args(&cli);
        assert_eq!(n.listen.len(), 1);
        assert_eq!(n.lmtp.as_deref(), Some("127.0.0.1:2424"));
        assert!(n.mdns);
        assert_eq!(n.anti_entropy, 9, "the flag overrides the key");
        // A list flag replaces the key's list.
        let cli = load([
            "dovetail",
            "--config",
            p,
            "node",
            "--listen",
            "/ip4/127.0.0.1/tcp/5000",
            "--listen",
            "/ip4/127.0.0.1/tcp/5001",
        ])
        .expect("load");
        let l: Vec<String> = node_args(&cli)
            .listen
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(l, ["/ip4/127.0.0.1/tcp/5000", "/ip4/127.0.0.1/tcp/5001"]);
        // A global flag after the subcommand wins too.
        let cli = load([
            "dovetail",
            "--config",
            p,
            "node",
            "--memory-budget",
            "32MiB",
        ])
        .expect("load");
        assert_eq!(cli.memory_budget, 32 << 20);
        // Node keys do not disturb other commands; global ones apply.
        let cli = load(["dovetail", "--config", p, "status"]).expect("load");
        assert_eq!(cli.data_dir, Some(PathBuf::from("/srv/d")));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_one_line_errors() {
        let f = file("listen = []\nlmpt = \"x\"\n");
        let p = f.path().to_str().expect("utf-8");
        let e = load(["dovetail", "--config", p, "node"]).expect_err("unknown key");
        assert!(
            matches!(&e, CliError::UnknownKey { key, .. } if key == "lmpt"),
            "{e}"
        );
        let f = file("anti-entropy = \"often\"\n");
        let p = f.path().to_str().expect("utf-8");
        let e = load(["dovetail", "--config", p, "node"]).expect_err("bad value");
        let msg = e.to_string();
        assert!(msg.contains("anti-entropy") && !msg.contains('\n'), "{msg}");
        let f = file("mdns = \"yes\"\n");
        let p = f.path().to_str().expect("utf-8");
        let e = load(["dovetail", "--config", p, "node"]).expect_err("bad switch");
        assert!(e.to_string().contains("key mdns"), "{e}");
        let f = file("listen = [\n");
        let p = f.path().to_str().expect("utf-8");
        let e = load(["dovetail", "--config", p, "node"]).expect_err("bad toml");
        assert!(!e.to_string().contains('\n'), "{e}");
    }

    #[test]
    fn every_key_is_in_the_documented_table() {
        let doc = include_str!("../../docs/operations.md");
        for k in keys() {
            assert!(
                doc.contains(&format!("| `{}` |", k.name)),
                "config key {} is missing from docs/operations.md's reference",
                k.name
            );
        }
    }
}
