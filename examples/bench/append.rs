//! The `append` scenario and the `append-phases` diagnostic.

use crate::gen::*;
use crate::support::*;
use anyhow::{Context, Result};
use dovetail::model::MailboxName;
use dovetail::node::NewMessage;
use dovetail::store::Tx;
use std::time::Instant;

pub fn scen_append(n: u64, reps: usize, rows: &mut Vec<Row>) -> Result<()> {
    println!("== append: {n} messages into one mailbox, batches of {BATCH}, one flush each");
    let mut rates = Vec::new();
    let mut reopen = Vec::new();
    for rep in 0..reps {
        let dir = bench_root().join(format!("append-{rep}"));
        let mut r = fresh_replica(&dir)?;
        let a = account();
        r.create_account(&a)?;
        let t = Instant::now();
        let cpu0 = cpu_secs();
        let gen0 = GEN_CPU_NS.load(std::sync::atomic::Ordering::Relaxed);
        let (lat, bytes) = append_stream(
            &mut r,
            &MailboxName::inbox(),
            1000 + rep as u64,
            0,
            n,
            BATCH,
            None,
        )?;
        let wall = t.elapsed().as_secs_f64();
        let cpu = cpu_secs() - cpu0;
        let gen = (GEN_CPU_NS.load(std::sync::atomic::Ordering::Relaxed) - gen0) as f64 / 1e9;
        let busy: f64 = lat.iter().sum();
        let rate = n as f64 / busy;
        let (rss, hwm) = mem_mib();
        drop(r);
        println!(
            "  run {rep}: {rate:.0} msg/s ({:.1} MB/s of messages); {busy:.1} s in append \
             ({wall:.1} s with generation, {cpu:.1} CPU s of which generation {gen:.1}: \
             {:.0} µs CPU per message appended); batch latency p50 {:.1} ms, p99 {:.1} ms, \
             max {:.0} ms; {:.0} MiB on disk; process VmRSS {rss:.0} MiB, VmHWM {hwm:.0} MiB",
            bytes as f64 / busy / 1e6,
            (cpu - gen) / n as f64 * 1e6,
            percentile(&lat, 0.5) * 1e3,
            percentile(&lat, 0.99) * 1e3,
            percentile(&lat, 1.0) * 1e3,
            du_mib(&dir),
        );
        // Latency over the run, in tenths: shows growth with the segment size.
        let tenth = lat.len().div_ceil(10);
        let by_tenth: Vec<f64> = lat
            .chunks(tenth)
            .map(|c| c.iter().sum::<f64>() / c.len() as f64 * 1e3)
            .collect();
        println!(
            "    mean batch ms per tenth of the run: {}",
            fmt_list(&by_tenth, 1)
        );
        // What a fresh process (the CLI) pays to append one more batch: opening the store
        // and loading the open segment document.
        let t = Instant::now();
        let mut r = open_dir(&dir)?;
        let open = t.elapsed().as_secs_f64();
        let (lat1, _) = append_stream(
            &mut r,
            &MailboxName::inbox(),
            1000 + rep as u64,
            n,
            BATCH as u64,
            BATCH,
            None,
        )?;
        drop(r);
        println!(
            "    reopen {:.0} ms, then one more batch of {BATCH}: {:.0} ms (loads the open segment)",
            open * 1e3,
            lat1[0] * 1e3
        );
        reopen.push((open + lat1[0]) * 1e3);
        rates.push(rate);
        if std::env::var_os("DOVETAIL_BENCH_KEEP").is_none() {
            rm(&dir)?;
        }
    }
    let m = median(&rates);
    println!(
        "  median {m:.0} msg/s over [{}]; reopen + one batch: median {:.0} ms [{}]",
        fmt_list(&rates, 0),
        median(&reopen),
        fmt_list(&reopen, 0)
    );
    rows.push(Row {
        what: format!("1. append {}k msgs, batches of {BATCH}, durable", n / 1000),
        figure: format!("{m:.0} msg/s ({})", fmt_list(&rates, 0)),
        target: ">= 5,000 msg/s".into(),
        pass: m >= 5000.0,
    });
    Ok(())
}

/// `append-phases`: the steps of [`Replica::append`] done one by one on the public layers
/// (sled store, segment document, UID engine), each timed, to see what limits `append`.
/// It mirrors `ops.rs`/`replica.rs` (one segment, no account lookup) and is not the
/// measured figure itself.
pub fn scen_append_phases(n: u64) -> Result<()> {
    use dovetail::crdt::meta::ChangeMeta;
    use dovetail::crdt::segment::{LocalOp, Segment, SegmentRef};
    use dovetail::crdt::view::{apply_facts, MailboxMeta};
    use dovetail::model::{BlobId, Guid, MailboxId, NodeId, Uid};
    use dovetail::store::{DocMeta, Kv, SledKv};

    println!(
        "== append-phases: {n} messages, batches of {BATCH}, the steps of append timed one by one"
    );
    let dir = bench_root().join("append-phases");
    rm(&dir)?;
    std::fs::create_dir_all(&dir)?;
    let kv = SledKv::open(&dir)?;
    let node = NodeId([7; 32]);
    let mb = MailboxId::derive(ACCOUNT, "INBOX", 0);
    // Segments roll over at `segment_capacity` messages, as in the replica.
    let capacity = options().segment_capacity;
    let mut seg = SegmentRef { node, gen: 0 };
    let mut doc_id = format!("seg/{ACCOUNT}/{mb}/{node}/0");
    let mut doc = Segment::new(&node, seg);
    let mut dmeta = DocMeta::default();
    let mut in_segment = 0u64;
    let mut meta = MailboxMeta::new();
    let names = [
        "check", "blobs", "commit", "save_doc", "compact", "view", "apply", "flush",
    ];
    let mut t = [0f64; 8];
    let mut tenth = vec![[0f64; 8]];
    let batches_per_tenth = (n / BATCH as u64 / 10).max(1);
    let mut i = 0u64;
    while i < n {
        let msgs: Vec<NewMessage> = (i..i + BATCH as u64).map(|j| message(77, j)).collect();
        if in_segment + BATCH as u64 > capacity {
            seg.gen += 1;
            doc_id = format!("seg/{ACCOUNT}/{mb}/{node}/{}", seg.gen);
            doc = Segment::new(&node, seg);
            dmeta = DocMeta::default();
            in_segment = 0;
        }
        in_segment += BATCH as u64;
        let mut lap = Instant::now();
        let mut step = |k: usize, t: &mut [f64; 8], tenth: &mut Vec<[f64; 8]>| {
            let d = lap.elapsed().as_secs_f64();
            t[k] += d;
            tenth.last_mut().expect("one")[k] += d;
            lap = Instant::now();
        };
        for m in &msgs {
            dovetail::node::check_message(&m.name, &m.bytes, 64 << 20)?;
        }
        step(0, &mut t, &mut tenth);
        let mut ops = Vec::new();
        let mut blobs = Vec::new();
        for (k, m) in msgs.iter().enumerate() {
            let blob = BlobId::of(&m.bytes);
            kv.blob_put(blob.as_bytes(), &m.bytes)?;
            let guid = Guid::mint();
            let uid = Uid::new((meta.uidnext + k as u64) as u32).context("uid")?;
            ops.push(LocalOp::Add {
                guid,
                blob,
                size: m.bytes.len() as u64,
                internal_date: m.internal_date,
            });
            ops.push(LocalOp::Claim { guid, uid });
            for f in &m.flags {
                ops.push(LocalOp::SetFlag {
                    guid,
                    flag: f.clone(),
                });
            }
            blobs.push(blob);
        }
        step(1, &mut t, &mut tenth);
        let seq = meta.next_seq(&node);
        let mut clock = meta.applied.clone();
        clock.insert(node, seq);
        let cm = ChangeMeta {
            node,
            clock,
            lamport: meta.lamport + 1,
            blobs,
        };
        let facts = doc.commit(&ops, &cm)?;
        step(2, &mut t, &mut tenth);
        let mut tx = Tx::new(&kv);
        let first = dmeta.first_chunk;
        tx.save_doc(&doc_id, &mut doc.doc, &mut dmeta);
        step(
            if dmeta.first_chunk != first { 4 } else { 3 },
            &mut t,
            &mut tenth,
        );
        meta.applied.insert(node, seq);
        meta.lamport = cm.lamport;
        apply_facts(&mut tx.view(mb), &mut meta, &facts, now())?;
        tx.put_mailbox_meta(&mb, &meta);
        step(5, &mut t, &mut tenth);
        tx.commit()?;
        step(6, &mut t, &mut tenth);
        kv.flush()?;
        step(7, &mut t, &mut tenth);
        i += BATCH as u64;
        if i.is_multiple_of(batches_per_tenth * BATCH as u64) && i < n {
            tenth.push([0f64; 8]);
        }
    }
    let total: f64 = t.iter().sum();
    println!(
        "  {:.0} msg/s if nothing else ran; {total:.2} s in all:",
        n as f64 / total
    );
    for (k, name) in names.iter().enumerate() {
        let per: Vec<f64> = tenth
            .iter()
            .map(|x| x[k] * 1e3 / batches_per_tenth as f64)
            .collect();
        println!(
            "  {name:>9}: {:6.2} s ({:4.1}%), ms per batch by tenth of the run: {}",
            t[k],
            100.0 * t[k] / total,
            fmt_list(&per, 1)
        );
    }
    // Loading the segment back: as `load_doc` does (snapshot, then each incremental chunk),
    // as snapshot + one batch of all the rest, and the snapshot of the whole doc alone.
    let chunk = |i: u64| -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        Tx::new(&kv).read_chunk(&doc_id, i, &mut bytes)?;
        anyhow::ensure!(!bytes.is_empty(), "chunk {i} missing");
        Ok(bytes)
    };
    let snapshot = doc.doc.save();
    let (mut per_chunk, mut batched, mut alone, mut save) = (vec![], vec![], vec![], vec![]);
    let (mut save_raw, mut load_raw, mut raw_len) = (vec![], vec![], 0);
    for _ in 0..3 {
        let lt = Instant::now();
        let (mut loaded, _) = Tx::new(&kv).load_doc(&doc_id)?.context("doc")?;
        per_chunk.push(lt.elapsed().as_secs_f64() * 1e3);
        let lt = Instant::now();
        let mut b = automerge::AutoCommit::new();
        b.load_incremental(&chunk(dmeta.first_chunk)?)?;
        let mut rest = Vec::new();
        for i in dmeta.first_chunk + 1..dmeta.next_chunk {
            rest.extend(chunk(i)?);
        }
        b.load_incremental(&rest)?;
        batched.push(lt.elapsed().as_secs_f64() * 1e3);
        assert_eq!(b.get_heads(), loaded.get_heads());
        let lt = Instant::now();
        let _ = automerge::AutoCommit::load(&snapshot)?;
        alone.push(lt.elapsed().as_secs_f64() * 1e3);
        let lt = Instant::now();
        let _ = loaded.save();
        save.push(lt.elapsed().as_secs_f64() * 1e3);
        let lt = Instant::now();
        let raw = loaded.save_nocompress();
        save_raw.push(lt.elapsed().as_secs_f64() * 1e3);
        let lt = Instant::now();
        let _ = automerge::AutoCommit::load(&raw)?;
        load_raw.push(lt.elapsed().as_secs_f64() * 1e3);
        raw_len = raw.len();
    }
    println!(
        "  uncompressed snapshot: save [{}] ms, load [{}] ms, {} KiB",
        fmt_list(&save_raw, 0),
        fmt_list(&load_raw, 0),
        raw_len / 1024
    );
    println!(
        "  last segment ({in_segment} messages), {} chunks: load_doc [{}] ms; snapshot + the rest as one batch [{}] ms; \
         a snapshot of it all alone [{}] ms; a full save [{}] ms, {} KiB",
        dmeta.next_chunk - dmeta.first_chunk,
        fmt_list(&per_chunk, 0),
        fmt_list(&batched, 0),
        fmt_list(&alone, 0),
        fmt_list(&save, 0),
        snapshot.len() / 1024
    );
    drop(kv);
    println!("  {:.0} MiB on disk", du_mib(&dir));
    rm(&dir)?;
    Ok(())
}
