//! SIGKILL during `sync` of two data dirs; every killed sync is followed by a complete one,
//! after which the dirs must have converged and hold every acknowledged message of both.
//! Two rounds in three append on one side only (the other side only receives: a sync
//! killed between storing the changes and copying their blobs leaves nothing new for the
//! next sync to exchange); the third has split-brain appends on both sides (renumbering).

use crate::common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Messages per round and their bodies: few large ones where one side only receives
/// (copying their blobs then takes most of the sync, so kills often land between the
/// stored changes and their blobs), many small ones for the split-brain rounds.
const ONE_SIDED: (usize, usize) = (16, 256 * 1024);
const SPLIT_BRAIN: (usize, usize) = (60, 64);
const KILLS: usize = 10;

#[test]
fn killed_sync_heals_with_the_next_sync() {
    let mut rng = rng("sync");
    let (a, b) = (Dir::new(), Dir::new());
    let mut originals = BTreeMap::new();
    // Every acknowledged GUID, appended on either side.
    let mut acked: BTreeSet<String> = BTreeSet::new();
    let mut kills = 0;
    for round in 0..3 * KILLS {
        if kills >= KILLS {
            break;
        }
        let when = format!("sync round {round}");
        let sides = if round % 3 == 2 { 2 } else { 1 };
        for (side, d) in [("a", &a), ("b", &b)].into_iter().take(sides) {
            let tag = format!("sync-{side}{round}");
            let (n, body) = if sides == 1 { ONE_SIDED } else { SPLIT_BRAIN };
            let files = write_messages(&d.files, &tag, n, body, &mut rng, &mut originals);
            acked.extend(d.append("INBOX", &files).into_iter().map(|(_, g)| g));
        }
        // How long this sync takes, measured on copies: a sync's duration grows with the
        // data, and the instants must cover all of it.
        let scratch = tempfile::tempdir().expect("tempdir");
        let (ca, cb) = (scratch.path().join("a"), scratch.path().join("b"));
        copy_dir(&a.data, &ca);
        copy_dir(&b.data, &cb);
        let dry = run(cmd().arg("sync").arg(&ca).arg(&cb), None);
        assert_eq!(dry.code, Some(0), "{when}: sync of the copies: {dry:?}");
        drop(scratch);
        let o = run(
            cmd().arg("sync").arg(&a.data).arg(&b.data),
            Some(instant(&mut rng, dry.elapsed)),
        );
        if o.killed {
            kills += 1;
        } else {
            assert_eq!(o.code, Some(0), "{when}: {o:?}");
        }
        for d in [&a, &b] {
            reopen_and_check(d, &originals, &mut rng, 2, &when);
        }
        // The next sync completes: the dirs converge, with every acknowledged message.
        sync(&a, &b);
        let df = diff(&a, &b);
        assert_eq!(
            df.code,
            Some(0),
            "{when}: not converged after a complete sync (sync killed: {}):\n{}",
            o.killed,
            df.text().lines().take(10).collect::<Vec<_>>().join("\n")
        );
        for d in [&a, &b] {
            let all = reopen_and_check(d, &originals, &mut rng, 2, &when);
            let shown: BTreeSet<&String> = all["INBOX"].iter().map(|r| &r.guid).collect();
            let lost: Vec<&String> = acked.iter().filter(|g| !shown.contains(g)).collect();
            assert!(
                lost.is_empty(),
                "{when}: {} acknowledged messages not shown, e.g. {:?}",
                lost.len(),
                lost.first()
            );
        }
    }
    assert!(
        kills >= KILLS,
        "only {kills} of {KILLS} kills interrupted a sync"
    );
}

/// Copies a stopped data dir.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("dir entry");
        let dst = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).expect("copy");
        }
    }
}
