//! SIGKILL during `import-maildir` of a folder bigger than one import batch (10,000
//! messages): after every kill, only whole durable batches are there, in folder order, and
//! the next run imports the rest and nothing twice.

use crate::common::*;
use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

/// One whole batch and a part of another.
const FILES: usize = 12_000;
const BATCH: usize = 10_000;
const KILLS: usize = 4;

fn imported(out: &str) -> Option<(usize, usize)> {
    let l = out.lines().find(|l| l.starts_with("imported "))?;
    let mut n = l
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty());
    Some((n.next()?.parse().ok()?, n.next()?.parse().ok()?))
}

/// Checks the INBOX of `d` after a run: whole batches only, in folder order from UID 1,
/// each file once. Returns how many messages it holds.
fn check_inbox(
    d: &Dir,
    blobs: &[String],
    originals: &BTreeMap<String, Vec<u8>>,
    rng: &mut rand::rngs::StdRng,
    when: &str,
) -> usize {
    let all = reopen_and_check(d, originals, rng, 3, when);
    let rows = &all["INBOX"];
    assert!(
        rows.len().is_multiple_of(BATCH) || rows.len() == FILES,
        "{when}: a partial batch: {} messages visible",
        rows.len()
    );
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.uid as usize, i + 1, "{when}: UIDs not dense");
        assert_eq!(r.blob, blobs[i], "{when}: UID {} is not file {i}", r.uid);
    }
    rows.len()
}

#[test]
fn killed_import_keeps_whole_batches_and_imports_nothing_twice() {
    let mut rng = rng("import");
    let src = Dir::new();
    let root = src.files.join("maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(root.join(sub)).expect("mkdir");
    }
    let mut originals = BTreeMap::new();
    let files = write_messages(
        &root.join("cur"),
        "import",
        FILES,
        64,
        &mut rng,
        &mut originals,
    );
    // Folder order is by modification time: make it the order the files were written.
    for (i, p) in files.iter().enumerate() {
        std::fs::File::options()
            .write(true)
            .open(p)
            .and_then(|f| f.set_modified(UNIX_EPOCH + Duration::from_secs(1_000_000 + i as u64)))
            .expect("mtime");
    }
    let blobs: Vec<String> = files
        .iter()
        .map(|p| sha256_hex(&std::fs::read(p).expect("read")))
        .collect();
    let path = root.to_str().expect("utf-8 path");
    let import = ["import-maildir", "--account", ACCOUNT, path];
    // The first run is not killed: it measures how long an import takes.
    let t = run(&mut src.cmd(&import), None);
    assert_eq!(t.code, Some(0), "{t:?}");
    assert_eq!(
        check_inbox(&src, &blobs, &originals, &mut rng, "unkilled"),
        FILES
    );
    let mut kills = 0;
    for attempt in 0..3 * KILLS {
        if kills >= KILLS {
            break;
        }
        let when = format!("import attempt {attempt}");
        // A fresh data dir each time: a killed import, then one that finishes, then one
        // more that must find everything there.
        let d = Dir::new();
        let o = run(&mut d.cmd(&import), Some(instant(&mut rng, t.elapsed)));
        if o.killed {
            kills += 1;
        } else {
            assert_eq!(o.code, Some(0), "{when}: {o:?}");
        }
        let had = check_inbox(&d, &blobs, &originals, &mut rng, &when);
        let out = d.ok(&import);
        assert_eq!(imported(&out), Some((FILES - had, had)), "{when}: {out}");
        assert_eq!(check_inbox(&d, &blobs, &originals, &mut rng, &when), FILES);
        let out = d.ok(&import);
        assert_eq!(imported(&out), Some((0, FILES)), "{when}: {out}");
    }
    assert!(kills > 0, "no run was killed");
}
