//! SIGKILL during `append` of many files (three group-commit batches of up to 1000).

use crate::common::*;
use std::collections::BTreeMap;

const FILES: usize = 2200;
const KILLS: usize = 13;

#[test]
fn killed_append_keeps_every_acknowledged_message() {
    let mut rng = rng("append");
    let d = Dir::new();
    let mut originals = BTreeMap::new();
    let files = write_messages(&d.files, "append", FILES, 64, &mut rng, &mut originals);
    let blobs: Vec<String> = files
        .iter()
        .map(|p| sha256_hex(&std::fs::read(p).expect("read")))
        .collect();
    // The first run is not killed: it measures how long a run takes.
    let mut typical = None;
    let (mut kills, mut listed) = (0, 0usize);
    for attempt in 0..3 * KILLS {
        if kills >= KILLS {
            break;
        }
        let when = format!("append attempt {attempt}");
        let mut c = d.cmd(&["append", "--account", ACCOUNT, "--mailbox", "INBOX"]);
        c.args(&files);
        let o = run(&mut c, typical.map(|t| instant(&mut rng, t)));
        let acked = parse_appended(&o.text());
        if o.killed {
            kills += 1;
        } else {
            assert_eq!(o.code, Some(0), "{when}: {o:?}");
            assert_eq!(acked.len(), FILES, "{when}: not every file acknowledged");
            typical.get_or_insert(o.elapsed);
        }
        let all = reopen_and_check(&d, &originals, &mut rng, 3, &when);
        let rows = &all["INBOX"];
        let by_uid: BTreeMap<u32, &Row> = rows.iter().map(|r| (r.uid, r)).collect();
        // Every acknowledged message is there, at its UID, with the body of its file.
        for (i, (u, g)) in acked.iter().enumerate() {
            let r = by_uid
                .get(u)
                .unwrap_or_else(|| panic!("{when}: acknowledged UID {u} {g} lost"));
            assert_eq!(&r.guid, g, "{when}: UID {u} shows another message");
            assert_eq!(r.blob, blobs[i], "{when}: UID {u} is not file {i}");
        }
        if let Some((u, _)) = acked.last() {
            fetch_equals(&d, "INBOX", by_uid[u], &originals, &when);
        }
        // Batches are atomic: this run added whole batches (or everything).
        let added = rows.len() - listed;
        assert!(
            added.is_multiple_of(1000) || added == FILES,
            "{when}: a partial batch of {added} messages is visible"
        );
        assert!(added >= acked.len(), "{when}: fewer rows than acknowledged");
        listed = rows.len();
    }
    assert!(
        kills >= KILLS,
        "only {kills} of {KILLS} kills interrupted an append"
    );
}
