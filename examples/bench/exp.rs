//! Diagnostics on sled: `exp-rows` (row scans) and `exp-blobs` (blob puts).

use crate::gen::*;
use crate::support::*;
use anyhow::Result;
use dovetail::model::{Flag, FlagSet};
use std::time::Instant;

/// `exp-rows`: how fast sled gives back `--n` view rows stored one per key (today's layout)
/// or packed into blocks of B rows per key: write, reopen, scan and decode.
pub fn scen_exp_rows(n: u64) -> Result<()> {
    use dovetail::crdt::view::ViewRow;
    use dovetail::model::{BlobId, Guid, ModSeq};
    let mut r = Rng::new(5, 5);
    let seen = Flag::seen();
    let rows: Vec<(u32, ViewRow)> = (1..=n as u32)
        .map(|u| {
            let mut b = [0u8; 32];
            b.iter_mut().for_each(|x| *x = r.next() as u8);
            let mut g = [0u8; 16];
            g.iter_mut().for_each(|x| *x = r.next() as u8);
            let mut flags = FlagSet::new();
            if r.chance(60) {
                flags.insert(seen.clone());
            }
            (
                u,
                ViewRow {
                    guid: Guid(g),
                    blob: BlobId(b),
                    size: 2000 + r.below(2000),
                    internal_date: 1_700_000_000 + u as i64,
                    flags,
                    modseq: ModSeq::new(u as u64).expect("modseq"),
                },
            )
        })
        .collect();
    for block in [1usize, 16, 64, 256] {
        let dir = bench_root().join(format!("exp-rows-{block}"));
        rm(&dir)?;
        let db = sled::Config::new()
            .path(&dir)
            .cache_capacity(64 << 20)
            .open()?;
        // Blocks hold the UIDs u with the same u / block, like a table keyed by UID would.
        let blocks: Vec<&[(u32, ViewRow)]> = rows
            .chunk_by(|x, y| x.0 / block as u32 == y.0 / block as u32)
            .collect();
        for chunk in blocks.chunks(1024 / block.min(1024)) {
            let mut b = sled::Batch::default();
            for part in chunk {
                if block == 1 {
                    b.insert(
                        [b"V".as_slice(), &[9; 16], &part[0].0.to_be_bytes()].concat(),
                        postcard::to_allocvec(&part[0].1)?,
                    );
                } else {
                    let k = part[0].0 / block as u32;
                    b.insert(
                        [b"W".as_slice(), &[9; 16], &k.to_be_bytes()].concat(),
                        postcard::to_allocvec(part)?,
                    );
                }
            }
            db.apply_batch(b)?;
        }
        db.flush()?;
        drop(db);
        let (mut topen, mut tscan) = (vec![], vec![]);
        for _ in 0..3 {
            let t = Instant::now();
            let db = sled::Config::new()
                .path(&dir)
                .cache_capacity(64 << 20)
                .open()?;
            topen.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            let mut out: Vec<(u32, ViewRow)> = Vec::new();
            if block == 1 {
                for kv in db.scan_prefix([b"V".as_slice(), &[9; 16]].concat()) {
                    let (k, v) = kv?;
                    out.push((
                        u32::from_be_bytes(k[17..21].try_into()?),
                        postcard::from_bytes(&v)?,
                    ));
                }
            } else {
                for kv in db.scan_prefix([b"W".as_slice(), &[9; 16]].concat()) {
                    let (_, v) = kv?;
                    out.extend(postcard::from_bytes::<Vec<(u32, ViewRow)>>(&v)?);
                }
            }
            tscan.push(t.elapsed().as_secs_f64() * 1e3);
            assert_eq!(out.len() as u64, n);
        }
        println!(
            "  {block:>3} rows per key: open {} ms, scan+decode {} ms, {:.0} MiB on disk",
            fmt_list(&topen, 0),
            fmt_list(&tscan, 0),
            du_mib(&dir)
        );
        rm(&dir)?;
    }
    Ok(())
}

/// `exp-blobs`: inserting `--n` ~3 KB messages under random (sha256) keys into a sled tree,
/// 100 per flush, with sled caches of 64 MiB (today's setting) and more.
pub fn scen_exp_blobs(n: u64) -> Result<()> {
    let msgs: Vec<Vec<u8>> = (0..n).map(|i| message(9, i).bytes).collect();
    for (cache_mib, seq) in [(64u64, false), (64, true), (256, false)] {
        let dir = bench_root().join(format!("exp-blobs-{cache_mib}"));
        rm(&dir)?;
        let db = sled::Config::new()
            .path(&dir)
            .cache_capacity(cache_mib << 20)
            .open()?;
        let tree = db.open_tree("blobs")?;
        let index = db.open_tree("blob-index")?;
        let t = Instant::now();
        let mut tenths = vec![];
        let mut lap = Instant::now();
        let per_tenth = (msgs.len() / 100 / 10).max(1);
        for (i, chunk) in msgs.chunks(100).enumerate() {
            for m in chunk {
                let id = dovetail::model::BlobId::of(m);
                if seq {
                    // Bodies under an increasing number, and a small index sha256 -> number.
                    if index.contains_key(id.as_bytes())? {
                        continue;
                    }
                    let num = db.generate_id()?.to_be_bytes();
                    tree.insert(num, m.as_slice())?;
                    index.insert(id.as_bytes(), &num)?;
                } else {
                    tree.insert(id.as_bytes(), m.as_slice())?;
                }
            }
            db.flush()?;
            if (i + 1) % per_tenth == 0 {
                tenths.push(lap.elapsed().as_secs_f64() * 1e3 / per_tenth as f64);
                lap = Instant::now();
            }
        }
        let secs = t.elapsed().as_secs_f64();
        let (rss, hwm) = mem_mib();
        drop((tree, index));
        drop(db);
        println!(
            "  cache {cache_mib:>4} MiB, {}: {:.0} blobs/s; ms per 100 by tenth: {}; {:.0} MiB on disk; VmRSS {rss:.0} VmHWM {hwm:.0} MiB",
            if seq { "by number + index" } else { "by sha256" },
            n as f64 / secs,
            fmt_list(&tenths, 1),
            du_mib(&dir)
        );
        rm(&dir)?;
    }
    Ok(())
}

/// `exp-sizes DIR`: the sizes of the values in a data dir's sled tree, per key prefix.
pub fn run_exp_sizes(dir: &str) -> Result<()> {
    use dovetail::store::Kv;
    let kv = dovetail::store::open_sled(std::path::Path::new(dir))?;
    let mut by: std::collections::BTreeMap<u8, Vec<f64>> = Default::default();
    kv.scan(b"", &mut |k, v| {
        by.entry(k[0]).or_default().push(v.len() as f64);
        true
    })?;
    for (p, mut v) in by {
        v.sort_by(|a, b| a.total_cmp(b));
        let sum: f64 = v.iter().sum();
        println!(
            "{}: {} values, {:.1} MB, median {:.0} B, p90 {:.0}, max {:.0}",
            p as char,
            v.len(),
            sum / 1e6,
            median(&v),
            percentile(&v, 0.9),
            percentile(&v, 1.0)
        );
    }
    Ok(())
}
