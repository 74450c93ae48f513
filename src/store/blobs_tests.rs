//! Tests of the body store ([`super::blobs`]): what survives a drop without a sync, torn
//! tails of packs and index files, garbage collection across reloads, the scan, and the
//! index adopted from sled.

use super::blobs::Blobs;
use super::keydir::REC;
use super::packs::{Loc, Packs};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

fn body(i: u32) -> ([u8; 32], Vec<u8>) {
    let b = format!(
        "Subject: {i}\r\n\r\nbody {i} {}\r\n",
        "x".repeat(i as usize % 50)
    )
    .into_bytes();
    (Sha256::digest(&b).into(), b)
}

fn put(b: &Blobs, range: std::ops::Range<u32>) {
    let items: Vec<_> = range.map(body).collect();
    let refs: Vec<([u8; 32], &[u8])> = items.iter().map(|(id, b)| (*id, b.as_slice())).collect();
    b.put_many(&refs).expect("put");
}

/// Appends `items` to the packs with one `append_many`.
fn append(p: &Packs, items: &[([u8; 32], Vec<u8>)]) -> Vec<Loc> {
    let r: Vec<(&[u8; 32], &[u8])> = items.iter().map(|(i, b)| (i, b.as_slice())).collect();
    p.append_many(&r).expect("append")
}

fn all_there(b: &Blobs, range: std::ops::Range<u32>) {
    for i in range {
        let (id, bytes) = body(i);
        assert!(b.has(&id).expect("has"), "body {i} missing");
        assert_eq!(b.get(&id).expect("get"), Some(bytes), "body {i}");
    }
}

fn append_to(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open");
    f.write_all(bytes).expect("write");
}

#[test]
fn bodies_read_back_after_a_reload() {
    let dir = tempfile::tempdir().expect("dir");
    let b = Blobs::open(dir.path());
    put(&b, 0..100);
    put(&b, 50..150);
    b.sync().expect("sync");
    assert_eq!(b.count().expect("count"), 150);
    drop(b);
    let b = Blobs::open(dir.path());
    assert_eq!(b.count().expect("count"), 150);
    all_there(&b, 0..150);
    assert!(!b.has(&[9; 32]).expect("has"));
    assert_eq!(b.get(&[9; 32]).expect("get"), None);
}

/// Bodies appended but never synced are in the pack (the page cache, as after a SIGKILL)
/// and not in its index: the next load finds them past the index's end.
#[test]
fn bodies_the_index_lacks_are_found_in_the_pack() {
    let dir = tempfile::tempdir().expect("dir");
    let b = Blobs::open(dir.path());
    put(&b, 0..10);
    b.sync().expect("sync");
    put(&b, 10..30);
    drop(b);
    let idx = std::fs::metadata(dir.path().join("pack-000000.idx")).expect("idx");
    assert_eq!(idx.len(), 10 * REC as u64);
    let b = Blobs::open(dir.path());
    assert_eq!(b.count().expect("count"), 30);
    all_there(&b, 0..30);
    drop(b);
    // The load wrote what it found into the index.
    let idx = std::fs::metadata(dir.path().join("pack-000000.idx")).expect("idx");
    assert_eq!(idx.len(), 30 * REC as u64);
}

/// A torn pack tail (a write cut by a crash) is cut off; bodies appended after the cut are
/// found by the next load; a torn index record is cut off too.
#[test]
fn torn_tails_are_cut_and_later_bodies_found() {
    let dir = tempfile::tempdir().expect("dir");
    let pack = dir.path().join("pack-000000");
    let b = Blobs::open(dir.path());
    put(&b, 0..5);
    b.sync().expect("sync");
    drop(b);
    let before = std::fs::metadata(&pack).expect("pack").len();
    // Half a record: a length, an id, and fewer bytes than the length says.
    let (id, bytes) = body(99);
    let mut torn = (bytes.len() as u32).to_be_bytes().to_vec();
    torn.extend_from_slice(&id);
    torn.extend_from_slice(&bytes[..3]);
    append_to(&pack, &torn);
    append_to(&dir.path().join("pack-000000.idx"), &[1, 2, 3]);
    let b = Blobs::open(dir.path());
    assert_eq!(b.count().expect("count"), 5);
    assert_eq!(std::fs::metadata(&pack).expect("pack").len(), before);
    assert!(!b.has(&id).expect("has"));
    put(&b, 5..8);
    drop(b);
    let b = Blobs::open(dir.path());
    all_there(&b, 0..8);
    assert_eq!(b.count().expect("count"), 8);
}

/// A record whose bytes do not hash to its id (a torn write that left zeros) ends the
/// pack: it is never served.
#[test]
fn a_record_that_does_not_hash_to_its_id_is_never_served() {
    let dir = tempfile::tempdir().expect("dir");
    let b = Blobs::open(dir.path());
    put(&b, 0..3);
    b.sync().expect("sync");
    drop(b);
    let (id, bytes) = body(42);
    let mut rec = (bytes.len() as u32).to_be_bytes().to_vec();
    rec.extend_from_slice(&id);
    rec.extend(std::iter::repeat_n(0u8, bytes.len()));
    append_to(&dir.path().join("pack-000000"), &rec);
    let b = Blobs::open(dir.path());
    assert!(!b.has(&id).expect("has"));
    assert_eq!(b.get(&id).expect("get"), None);
    // Stored for real now, and found.
    put(&b, 42..43);
    b.sync().expect("sync");
    drop(b);
    let b = Blobs::open(dir.path());
    all_there(&b, 42..43);
    all_there(&b, 0..3);
}

/// An index record naming bytes past the end of its pack (the pack lost its tail) is
/// dropped, not trusted.
#[test]
fn an_index_record_past_its_pack_is_dropped() {
    let dir = tempfile::tempdir().expect("dir");
    let b = Blobs::open(dir.path());
    put(&b, 0..4);
    b.sync().expect("sync");
    drop(b);
    let pack = dir.path().join("pack-000000");
    let len = std::fs::metadata(&pack).expect("pack").len();
    let (id3, b3) = body(3);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&pack)
        .expect("open")
        .set_len(len - Packs::record_size(b3.len() as u32))
        .expect("cut");
    let b = Blobs::open(dir.path());
    assert!(!b.has(&id3).expect("has"));
    all_there(&b, 0..3);
}

/// Garbage collection drops what is not live, and a reload does not bring it back;
/// packs mostly garbage are rewritten, and what moved is found after a reload.
#[test]
fn collected_bodies_stay_gone_and_moved_ones_are_found() {
    let dir = tempfile::tempdir().expect("dir");
    let b = Blobs::open(dir.path());
    put(&b, 0..100);
    b.sync().expect("sync");
    // Roll to a second pack so the first can be compacted.
    let live = |id: &[u8; 32]| (0..100).filter(|i| i % 10 == 0).any(|i| body(i).0 == *id);
    drop(b);
    {
        let p = Packs::open(dir.path()).expect("packs");
        p.roll().expect("roll");
    }
    let b = Blobs::open(dir.path());
    put(&b, 100..110);
    b.sync().expect("sync");
    let live_too = |id: &[u8; 32]| live(id) || (100..110).any(|i| body(i).0 == *id);
    let stats = b.gc(&live_too).expect("gc");
    assert_eq!((stats.kept, stats.dropped), (20, 90));
    assert_eq!(stats.packs_rewritten, 1);
    assert!(!dir.path().join("pack-000000").exists());
    assert!(!dir.path().join("pack-000000.idx").exists());
    drop(b);
    let b = Blobs::open(dir.path());
    assert_eq!(b.count().expect("count"), 20);
    for i in 0..110 {
        let (id, _) = body(i);
        assert_eq!(b.has(&id).expect("has"), live_too(&id), "body {i}");
    }
    all_there(&b, 100..110);
    // Nothing to drop any more.
    let stats = b.gc(&live_too).expect("gc");
    assert_eq!((stats.kept, stats.dropped), (20, 0));
    // Dropped bodies can be stored again.
    put(&b, 1..2);
    drop(b);
    let b = Blobs::open(dir.path());
    all_there(&b, 1..2);
    assert_eq!(b.count().expect("count"), 21);
}

/// Dropping from a pack that is kept (mostly live) writes tombstones: a reload keeps them
/// dropped although their bytes are still in the pack.
#[test]
fn tombstones_keep_bodies_dropped_in_a_kept_pack() {
    let dir = tempfile::tempdir().expect("dir");
    let b = Blobs::open(dir.path());
    put(&b, 0..10);
    b.sync().expect("sync");
    let live = |id: &[u8; 32]| body(3).0 != *id;
    let stats = b.gc(&live).expect("gc");
    assert_eq!((stats.kept, stats.dropped), (9, 1));
    assert_eq!(stats.packs_rewritten + stats.packs_deleted, 0);
    drop(b);
    let b = Blobs::open(dir.path());
    assert!(!b.has(&body(3).0).expect("has"));
    assert_eq!(b.count().expect("count"), 9);
}

/// `get_many` gives each stored body asked for once, checked, not the dropped or unknown
/// ones, in pack order.
#[test]
fn get_many_gives_the_stored_bodies_asked_for() {
    let dir = tempfile::tempdir().expect("dir");
    let b = Blobs::open(dir.path());
    put(&b, 0..50);
    put(&b, 25..60);
    b.gc(&|id: &[u8; 32]| body(7).0 != *id).expect("gc");
    let mut ids: Vec<[u8; 32]> = (0..70).rev().map(|i| body(i).0).collect();
    ids.push([0; 32]);
    let mut seen = Vec::new();
    b.get_many(&ids, &mut |id, bytes| {
        assert_eq!(<[u8; 32]>::from(Sha256::digest(bytes)), *id);
        seen.push(*id);
        true
    })
    .expect("get many");
    let want: Vec<[u8; 32]> = (0..60).filter(|i| *i != 7).map(|i| body(i).0).collect();
    assert_eq!(
        seen, want,
        "every stored one, once, in the order they were stored"
    );
}

/// An index from elsewhere (sled's `blobidx` tree of format 4) replaces the index files.
#[test]
fn an_adopted_index_is_the_index() {
    let dir = tempfile::tempdir().expect("dir");
    let mut locs = Vec::new();
    {
        let p = Packs::open(dir.path()).expect("packs");
        for i in 0..20 {
            let (id, bytes) = body(i);
            locs.push((id, p.append(&id, &bytes).expect("append")));
        }
        p.sync().expect("sync");
    }
    // Body 19 is an orphan: written, never indexed, found past the index's end.
    let (orphan, _) = locs.pop().expect("last");
    // Body 0 was dropped by the old index: not adopted, and not found again (it is
    // before the index's end).
    locs.remove(0);
    let b = Blobs::open(dir.path());
    b.adopt_index(locs.clone()).expect("adopt");
    assert_eq!(b.count().expect("count"), 19);
    all_there(&b, 1..19);
    assert!(!b.has(&body(0).0).expect("has"));
    assert!(b.has(&orphan).expect("has"));
}

/// Puts on one thread while another syncs (as an offline sync's body copier does beside
/// the deliveries' flushes): every body put is there, and after a reload every body is
/// found from the index files alone (the syncs appended a record for each, none lost
/// between a sync that took them and one that wrote later records).
#[test]
fn bodies_put_while_another_thread_syncs_are_all_indexed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = Blobs::open(dir.path());
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            for k in 0..100u32 {
                put(&b, k * 20..(k + 1) * 20);
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        s.spawn(|| {
            let mut syncs = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) || syncs == 0 {
                b.sync().expect("sync");
                syncs += 1;
            }
        });
    });
    b.sync().expect("last sync");
    all_there(&b, 0..2000);
    drop(b);
    // Every record is in the index files: the packs' bytes are exactly what they cover.
    let mut indexed = 0u64;
    for n in Packs::numbers(dir.path(), ".idx").expect("idx files") {
        let len = std::fs::metadata(dir.path().join(format!("pack-{n:06}.idx")))
            .expect("idx")
            .len();
        indexed += len / REC as u64;
    }
    assert_eq!(indexed, 2000, "index records for 2000 bodies");
    let b = Blobs::open(dir.path());
    all_there(&b, 0..2000);
}

/// `read_many` reads neighbouring bodies in one span and far or large ones apart, and gives
/// exactly the intact ones, in order: not a damaged body, not one past the file's end
/// (whose span falls back to body-by-body reads), and a body larger than a span whole.
#[test]
fn read_many_gives_the_intact_bodies_in_spans() {
    use super::packs::Loc;
    let dir = tempfile::tempdir().expect("dir");
    let p = Packs::open(dir.path()).expect("packs");
    let mut bodies: Vec<([u8; 32], Vec<u8>)> = (0..40).map(body).collect();
    // A body larger than a span, and one after a gap larger than the gap read over.
    let big = vec![b'b'; 3 << 19];
    bodies.insert(20, (Sha256::digest(&big).into(), big));
    let mut locs = Vec::new();
    for (k, (id, bytes)) in bodies.iter().enumerate() {
        if k == 30 {
            let pad = vec![b'p'; 40 << 10];
            p.append(&Sha256::digest(&pad).into(), &pad).expect("pad");
        }
        locs.push(p.append(id, bytes).expect("append"));
    }
    p.sync().expect("sync");
    // Damage body 5 in the pack.
    let path = Packs::path(dir.path(), locs[5].pack);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open");
    std::os::unix::fs::FileExt::write_all_at(&f, b"X", locs[5].offset + 1).expect("damage");
    let last = *locs.last().expect("last");
    let ghost = (
        [9u8; 32],
        Loc {
            offset: last.offset + u64::from(last.len) + 36,
            len: 100,
            ..last
        },
    );
    let mut at: Vec<(Loc, &[u8; 32])> = locs
        .iter()
        .zip(&bodies)
        .map(|(l, (id, _))| (*l, id))
        .collect();
    at.push((ghost.1, &ghost.0));
    let mut got = Vec::new();
    p.read_many(&at, &mut |id, bytes| {
        got.push((*id, bytes.to_vec()));
        true
    })
    .expect("read many");
    let want: Vec<([u8; 32], Vec<u8>)> = bodies
        .iter()
        .enumerate()
        .filter(|(k, _)| *k != 5)
        .map(|(_, b)| b.clone())
        .collect();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "every intact body, whole, in order");
    // Stopping early stops.
    let mut n = 0;
    p.read_many(&at, &mut |_, _| {
        n += 1;
        n < 3
    })
    .expect("read many");
    assert_eq!(n, 3);
}

/// Appends of 128 KiB and more start on a 4 KiB boundary (written with `O_DIRECT` where
/// the file system has it) and small ones after them: every body reads back, and a load
/// whose index files were lost finds them all in the packs, past the padding.
#[test]
fn large_appends_are_aligned_and_found_past_their_padding() {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = tempfile::tempdir().expect("dir");
    let direct = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .custom_flags(libc::O_DIRECT)
        .open(dir.path().join("probe"))
        .is_ok();
    std::fs::remove_file(dir.path().join("probe")).expect("rm probe");
    let p = Packs::open(dir.path()).expect("packs");
    let small: Vec<_> = (0..3).map(body).collect();
    let big: Vec<_> = (1000..4000).map(body).collect();
    let more: Vec<_> = (4000..7000).map(body).collect();
    let l_small = append(&p, &small);
    let l_big = append(&p, &big);
    let l_small2 = append(&p, &small);
    let l_more = append(&p, &more);
    p.sync().expect("sync");
    for l in [&l_big, &l_more] {
        let start = l[0].offset - Packs::record_size(0);
        assert!(
            start.is_multiple_of(4096) || !direct,
            "a large append starts at {start}, not on a 4 KiB boundary"
        );
    }
    assert!(l_small2[0].offset > l_big.last().expect("big").offset);
    for (v, l) in [
        (&small, &l_small),
        (&big, &l_big),
        (&small, &l_small2),
        (&more, &l_more),
    ] {
        for ((id, bytes), loc) in v.iter().zip(l) {
            assert_eq!(p.read(id, *loc).expect("read").as_ref(), Some(bytes));
        }
    }
    drop(p);
    let _ = std::fs::remove_file(dir.path().join("pack-000000.idx"));
    let b = Blobs::open(dir.path());
    all_there(&b, 0..3);
    all_there(&b, 1000..7000);
    assert_eq!(b.count().expect("count"), 3 + 6000);
    drop(b);
    // Nothing was cut: every byte of the pack is still there.
    let size = std::fs::metadata(dir.path().join("pack-000000"))
        .expect("pack")
        .len();
    assert!(size >= l_more.last().expect("more").offset);
}

/// A body of `len` bytes made from `tag` (never zero bytes).
fn sized(tag: u32, len: usize) -> ([u8; 32], Vec<u8>) {
    let seed = format!("body {tag} ");
    let b: Vec<u8> = seed.bytes().cycle().take(len).collect();
    (Sha256::digest(&b).into(), b)
}

/// Gaps around direct writes never read as a record: whatever a buffered append leaves
/// before the next 4 KiB boundary (1 to 40 bytes here, around the 36 of a record header),
/// and whatever a direct append's last record leaves before the next one, a load without
/// index files finds every body, and cuts nothing.
#[test]
fn every_gap_around_a_direct_append_is_skipped_by_the_scan() {
    for short in [1usize, 3, 10, 35, 36, 37, 40] {
        let dir = tempfile::tempdir().expect("dir");
        let p = Packs::open(dir.path()).expect("packs");
        let mut all = Vec::new();
        let mut put = |items: Vec<([u8; 32], Vec<u8>)>| {
            append(&p, &items);
            all.extend(items);
        };
        // A buffered record ending `short` bytes before the first boundary.
        put(vec![sized(0, 4096 - short - 36)]);
        // A direct append of 40 records whose last one ends `short` bytes before a boundary.
        let mut big: Vec<_> = (1..40).map(|t| sized(t, 4000)).collect();
        let used: usize = big.iter().map(|(_, b)| b.len() + 36).sum();
        let last = (used / 4096 + 2) * 4096 - short - used - 36;
        big.push(sized(40, last));
        put(big);
        // Then a small (buffered) one, and another direct one.
        put(vec![sized(41, 100)]);
        put((42..80).map(|t| sized(t, 4000)).collect());
        p.sync().expect("sync");
        drop(p);
        let pack = dir.path().join("pack-000000");
        let size = std::fs::metadata(&pack).expect("pack").len();
        let _ = std::fs::remove_file(dir.path().join("pack-000000.idx"));
        let b = Blobs::open(dir.path());
        assert_eq!(b.count().expect("count"), all.len(), "gap of {short} bytes");
        for (id, bytes) in &all {
            assert_eq!(
                b.get(id).expect("get").as_ref(),
                Some(bytes),
                "gap of {short} bytes"
            );
        }
        drop(b);
        assert_eq!(
            std::fs::metadata(&pack).expect("pack").len(),
            size,
            "nothing cut"
        );
    }
}
