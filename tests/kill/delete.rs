//! SIGKILL during `mailbox delete` of a mailbox holding many messages.

use crate::common::*;
use std::collections::BTreeMap;

const MESSAGES: usize = 400;
const KILLS: usize = 11;

#[test]
fn killed_mailbox_delete_is_all_or_nothing() {
    let mut rng = rng("delete");
    let d = Dir::new();
    let mut originals = BTreeMap::new();
    let files = write_messages(&d.files, "delete", MESSAGES, 64, &mut rng, &mut originals);
    // INBOX holds messages that no delete may touch.
    let inbox = d.append("INBOX", &files[..50]);
    // Mailboxes that survived a killed delete, with their rows: they must stay as they are.
    let mut kept: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    let mut typical = None;
    let mut kills = 0;
    for attempt in 0..3 * KILLS {
        if kills >= KILLS {
            break;
        }
        let when = format!("delete attempt {attempt}");
        let name = format!("Box{attempt}");
        d.ok(&["mailbox", "create", "--account", ACCOUNT, &name]);
        let acked = d.append(&name, &files);
        let o = run(
            &mut d.cmd(&["mailbox", "delete", "--account", ACCOUNT, &name]),
            typical.map(|t| instant(&mut rng, t)),
        );
        if o.killed {
            kills += 1;
        } else {
            assert_eq!(o.code, Some(0), "{when}: {o:?}");
            typical.get_or_insert(o.elapsed);
        }
        let all = reopen_and_check(&d, &originals, &mut rng, 2, &when);
        match all.get(&name) {
            None => {}
            Some(rows) => {
                assert!(o.killed, "{when}: acknowledged delete of {name} lost");
                let got: Vec<(u32, String)> =
                    rows.iter().map(|r| (r.uid, r.guid.clone())).collect();
                assert_eq!(
                    got, acked,
                    "{when}: {name} survived the kill, but not whole"
                );
                kept.insert(name.clone(), rows.clone());
            }
        }
        let inbox_now: Vec<(u32, String)> = all["INBOX"]
            .iter()
            .map(|r| (r.uid, r.guid.clone()))
            .collect();
        assert_eq!(inbox_now, inbox, "{when}: INBOX changed");
        for (k, rows) in &kept {
            assert_eq!(all.get(k), Some(rows), "{when}: {k} changed");
        }
    }
    assert!(
        kills >= KILLS,
        "only {kills} of {KILLS} kills interrupted a delete"
    );
}
