//! SIGKILL during `flags` (+, - and =) on every message of a mailbox.

use crate::common::*;
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};

const MESSAGES: usize = 1500;
const KILLS: usize = 13;

#[test]
fn killed_flags_is_all_or_nothing_and_keeps_acknowledged_changes() {
    let mut rng = rng("flags");
    let d = Dir::new();
    let mut originals = BTreeMap::new();
    let files = write_messages(&d.files, "flags", MESSAGES, 64, &mut rng, &mut originals);
    d.append("INBOX", &files);
    // Every message carries the same flags: `state`.
    let mut state: BTreeSet<String> = BTreeSet::new();
    let mut typical = None;
    let mut kills = 0;
    for attempt in 0..3 * KILLS {
        if kills >= KILLS {
            break;
        }
        let when = format!("flags attempt {attempt}");
        let fresh = format!("$K{attempt}");
        let old: Vec<String> = state.iter().cloned().collect();
        let pick = |rng: &mut rand::rngs::StdRng| old[rng.gen_range(0..old.len())].clone();
        let (change, want): (String, BTreeSet<String>) = match rng.gen_range(0..3) {
            1 if !old.is_empty() => {
                let f = pick(&mut rng);
                let mut w = state.clone();
                w.remove(&f);
                (format!("-{f}"), w)
            }
            2 if !old.is_empty() => {
                let keep = pick(&mut rng);
                let w: BTreeSet<String> = [keep, fresh].into_iter().collect();
                let list: Vec<&str> = w.iter().map(String::as_str).collect();
                (format!("={}", list.join(" ")), w)
            }
            _ => {
                let mut w = state.clone();
                w.insert(fresh.clone());
                (format!("+{fresh}"), w)
            }
        };
        let o = run(
            &mut d.cmd(&[
                "flags",
                "--account",
                ACCOUNT,
                "--mailbox",
                "INBOX",
                "--uid",
                "1:*",
                &change,
            ]),
            typical.map(|t| instant(&mut rng, t)),
        );
        if o.killed {
            kills += 1;
        } else {
            assert_eq!(o.code, Some(0), "{when}: {o:?}");
            typical.get_or_insert(o.elapsed);
        }
        let all = reopen_and_check(&d, &originals, &mut rng, 2, &when);
        let rows = &all["INBOX"];
        assert_eq!(rows.len(), MESSAGES, "{when}: messages lost");
        let first: BTreeSet<String> = rows[0].flags.iter().cloned().collect();
        for r in rows {
            let f: BTreeSet<String> = r.flags.iter().cloned().collect();
            assert_eq!(
                f, first,
                "{when}: `flags {change}` applied to some messages only"
            );
        }
        if o.killed {
            assert!(
                first == state || first == want,
                "{when}: after a killed `flags {change}` the flags are {first:?}, \
                 neither {state:?} nor {want:?}"
            );
        } else {
            assert_eq!(first, want, "{when}: acknowledged `flags {change}` lost");
        }
        state = first;
    }
    assert!(
        kills >= KILLS,
        "only {kills} of {KILLS} kills interrupted `flags`"
    );
}
