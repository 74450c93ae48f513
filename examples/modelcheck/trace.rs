//! Readable traces: one action per line, with what it did to the node it touched.

use crate::model::{Action, NodeDesc, State, FLAGS};
use crate::world::{letter, Names};
use stateright::Path;

/// One action, in words.
pub fn action(names: &Names, a: &Action) -> String {
    let l = letter;
    match a {
        Action::Append { node, mailbox } => format!("{}: append a message to {mailbox}", l(*node)),
        Action::Expunge { node, msg } => format!("{}: expunge {msg}", l(*node)),
        Action::Flag {
            node,
            msg,
            flag,
            add,
        } => format!(
            "{}: {}FLAGS {} on {msg}",
            l(*node),
            if *add { "+" } else { "-" },
            FLAGS[*flag]
        ),
        Action::Renumber { node, grace_over } => format!(
            "{}: renumber {}",
            l(*node),
            if *grace_over {
                "every homeless message (grace period over)"
            } else {
                "the homeless messages it claimed last"
            }
        ),
        Action::Send { from, to, doc } => {
            format!(
                "{} -> {}: send document {}",
                l(*from),
                l(*to),
                names.doc(doc)
            )
        }
        Action::Deliver { from, to, doc, dup } => format!(
            "{} -> {}: deliver document {}{}",
            l(*from),
            l(*to),
            names.doc(doc),
            if *dup {
                " (a copy stays in flight)"
            } else {
                ""
            }
        ),
        Action::Sync { from, to, doc } => {
            format!(
                "{} -> {}: sync document {}",
                l(*from),
                l(*to),
                names.doc(doc)
            )
        }
        Action::Restart { node } => format!("{}: restart", l(*node)),
        Action::Delete { node } => format!("{}: delete {}", l(*node), crate::model::RACED),
        Action::Create { node } => format!("{}: create {}", l(*node), crate::model::RACED),
    }
}

/// What node `n` shows, in one line.
pub fn node(n: &NodeDesc) -> String {
    let mut out = Vec::new();
    for m in n.view.iter() {
        let rows: Vec<String> = m
            .rows
            .iter()
            .map(|(u, g, f)| {
                if f.is_empty() {
                    format!("{u}:{g}")
                } else {
                    format!("{u}:{g}({})", f.join(" "))
                }
            })
            .collect();
        out.push(format!(
            "{} uv {} [{}] UIDNEXT {}",
            m.name,
            m.uv,
            rows.join(" "),
            m.uidnext
        ));
    }
    for (mb, h) in n.homeless.iter() {
        let h: Vec<String> = h.iter().map(|(g, _)| g.to_string()).collect();
        out.push(format!("homeless in {mb}: {}", h.join(" ")));
    }
    if !n.pending.is_empty() {
        out.push(format!("{} change(s) waiting", n.pending.len()));
    }
    out.join("; ")
}

/// The node an action changes.
fn touched(a: &Action) -> Option<usize> {
    match a {
        Action::Send { .. } => None,
        Action::Deliver { to, .. } | Action::Sync { to, .. } => Some(*to),
        Action::Append { node, .. }
        | Action::Expunge { node, .. }
        | Action::Flag { node, .. }
        | Action::Renumber { node, .. }
        | Action::Restart { node }
        | Action::Delete { node }
        | Action::Create { node } => Some(*node),
    }
}

/// A path as numbered lines: the action, then what the touched node shows afterwards (a
/// send lists the changes the message carries).
pub fn path(p: &Path<State, Action>) -> String {
    let steps = p.clone().into_vec();
    let names = &steps[0].0.mat.names;
    let mut out = Vec::new();
    for (k, w) in steps.windows(2).enumerate() {
        let (_, Some(a)) = &w[0] else { continue };
        let after = &w[1].0;
        let what = match (a, touched(a)) {
            (Action::Send { from, to, doc }, _) => {
                let carried = after
                    .d
                    .net
                    .get(&(*from, *to, doc.clone()))
                    .map(|s| s.iter().map(|l| l.to_string()).collect::<Vec<_>>())
                    .unwrap_or_default();
                format!("carries {}", carried.join(" | "))
            }
            (_, Some(i)) => format!("{} shows {}", letter(i), node(&after.d.nodes[i])),
            (_, None) => String::new(),
        };
        out.push(format!("{:>3}. {}\n       {what}", k + 1, action(names, a)));
    }
    let last = p.last_state();
    for (prop, what) in &last.d.violations {
        out.push(format!("     VIOLATED {prop}: {what}"));
    }
    out.join("\n")
}
