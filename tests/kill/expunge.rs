//! SIGKILL during `expunge` of random UID sets.

use crate::common::*;
use rand::Rng;
use std::collections::BTreeMap;

const MESSAGES: usize = 2000;
const KILLS: usize = 13;

#[test]
fn killed_expunge_is_all_or_nothing_and_keeps_acknowledged_expunges() {
    let mut rng = rng("expunge");
    let d = Dir::new();
    let mut originals = BTreeMap::new();
    let files = write_messages(&d.files, "expunge", MESSAGES, 64, &mut rng, &mut originals);
    d.append("INBOX", &files);
    let mut before: BTreeMap<u32, Row> = reopen_and_check(&d, &originals, &mut rng, 1, "start")
        ["INBOX"]
        .iter()
        .map(|r| (r.uid, r.clone()))
        .collect();
    let mut typical = None;
    let mut kills = 0;
    for attempt in 0..3 * KILLS {
        if kills >= KILLS {
            break;
        }
        let when = format!("expunge attempt {attempt}");
        // A range and two single UIDs of what is listed.
        let uids: Vec<u32> = before.keys().copied().collect();
        let a = rng.gen_range(0..uids.len() - 40);
        let mut set: Vec<u32> = uids[a..a + rng.gen_range(1..30)].to_vec();
        set.push(uids[rng.gen_range(0..uids.len())]);
        set.push(uids[rng.gen_range(0..uids.len())]);
        set.sort_unstable();
        set.dedup();
        let spec: Vec<String> = set.iter().map(u32::to_string).collect();
        let spec = spec.join(",");
        let o = run(
            &mut d.cmd(&[
                "expunge",
                "--account",
                ACCOUNT,
                "--mailbox",
                "INBOX",
                "--uid",
                &spec,
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
        let now: BTreeMap<u32, Row> = all["INBOX"].iter().map(|r| (r.uid, r.clone())).collect();
        let gone = set.iter().filter(|u| !now.contains_key(u)).count();
        if o.killed {
            assert!(
                gone == 0 || gone == set.len(),
                "{when}: a killed expunge of {spec} removed {gone} of {} messages",
                set.len()
            );
        } else {
            assert_eq!(
                gone,
                set.len(),
                "{when}: acknowledged expunge of {spec} lost"
            );
        }
        // Nothing else changed.
        for (u, r) in &before {
            if !set.contains(u) {
                assert_eq!(now.get(u), Some(r), "{when}: UID {u} changed");
            }
        }
        assert!(
            now.keys().all(|u| before.contains_key(u)),
            "{when}: new rows"
        );
        before = now;
    }
    assert!(
        kills >= KILLS,
        "only {kills} of {KILLS} kills interrupted an expunge"
    );
}
