//! The `sync` scenario: `sync_pair` of two dirs sharing 99k messages.

use crate::support::*;
use anyhow::{bail, Result};
use dovetail::model::MailboxName;
use dovetail::node::{sync_pair, Replica, SyncReport};
use dovetail::store::Tx;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

/// Bytes of the automerge changes made since `base` (per document), on replica `r`.
pub fn changes_since(
    r: &Replica,
    base: &BTreeMap<String, Vec<[u8; 32]>>,
) -> Result<(usize, u64, u64)> {
    let tx = Tx::new(r.kv());
    let (mut n, mut raw, mut compressed) = (0usize, 0u64, 0u64);
    for (id, _) in r.doc_heads()? {
        let Some((mut am, _)) = tx.load_doc(&id)? else {
            continue;
        };
        let have: Vec<automerge::ChangeHash> = base
            .get(&id)
            .map(|hs| hs.iter().map(|h| automerge::ChangeHash(*h)).collect())
            .unwrap_or_default();
        for mut c in am.get_changes(&have) {
            n += 1;
            raw += c.raw_bytes().len() as u64;
            compressed += c.bytes().len() as u64;
        }
    }
    Ok((n, raw, compressed))
}

pub fn scen_sync(reps: usize, rows: &mut Vec<Row>) -> Result<()> {
    const SHARED: u64 = 99_000;
    const EACH: u64 = 1_000;
    let base = bench_root().join("sync-base");
    let spec = format!(
        "v{DATASET_VERSION} shared={SHARED} batch={BATCH} segment_capacity={}",
        options().segment_capacity
    );
    let (ba, bb) = (base.join("a"), base.join("b"));
    if !built(&base, &spec) {
        eprintln!("building {} ...", base.display());
        rm(&base)?;
        std::fs::create_dir_all(&base)?;
        let mut a = fresh_replica(&ba)?;
        a.create_account(&account())?;
        append_stream(
            &mut a,
            &MailboxName::inbox(),
            400,
            0,
            SHARED,
            BATCH,
            Some("sync base"),
        )?;
        a.close_docs();
        let mut b = fresh_replica(&bb)?;
        let t = Instant::now();
        let rep = sync_pair(&mut a, &mut b, now())?;
        let secs = t.elapsed().as_secs_f64();
        let (sa, sb) = (a.status(&account())?, b.status(&account())?);
        if sa != sb || sa[0].messages != SHARED {
            bail!("the initial sync did not converge: {sa:?} vs {sb:?}");
        }
        let info =
            format!("initial sync of {SHARED} messages into an empty dir: {secs:.1} s, {rep:?}");
        eprintln!("{info}");
        std::fs::write(base.join("INITIAL"), &info)?;
        mark_built(&base, &spec)?;
    }
    println!(
        "== sync: two dirs sharing {SHARED} messages, {EACH} new on each side (same mailbox, so \
         their UIDs clash and are renumbered)"
    );
    if let Ok(s) = std::fs::read_to_string(base.join("INITIAL")) {
        println!("  (dataset: {s})");
    }
    let (mut times, mut ratios, mut ratios_c) = (vec![], vec![], vec![]);
    let mut last_bytes = String::new();
    for rep in 0..reps {
        let work = bench_root().join(format!("sync-{rep}"));
        rm(&work)?;
        std::fs::create_dir_all(&work)?;
        let (wa, wb) = (work.join("a"), work.join("b"));
        for (from, to) in [(&ba, &wa), (&bb, &wb)] {
            let st = Command::new("cp").arg("-a").arg(from).arg(to).status()?;
            if !st.success() {
                bail!("cp failed");
            }
        }
        let mut new_blob_bytes = 0u64;
        let heads0: BTreeMap<String, Vec<[u8; 32]>>;
        {
            let mut a = open_dir(&wa)?;
            let mut b = open_dir(&wb)?;
            heads0 = a.doc_heads()?.into_iter().collect();
            let hb: BTreeMap<String, Vec<[u8; 32]>> = b.doc_heads()?.into_iter().collect();
            if heads0 != hb {
                bail!("the base dirs differ");
            }
            let seed = 10_000 + 2 * rep as u64;
            new_blob_bytes +=
                append_stream(&mut a, &MailboxName::inbox(), seed, 0, EACH, BATCH, None)?.1;
            new_blob_bytes += append_stream(
                &mut b,
                &MailboxName::inbox(),
                seed + 1,
                0,
                EACH,
                BATCH,
                None,
            )?
            .1;
        }
        // Like `dovetail sync`: two freshly opened dirs.
        let t = Instant::now();
        let mut a = open_dir(&wa)?;
        let mut b = open_dir(&wb)?;
        let open = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let rep_: SyncReport = sync_pair(&mut a, &mut b, now())?;
        let secs = t.elapsed().as_secs_f64();
        // Check the result: both sides hold every message, the same way.
        let (sa, sb) = (a.status(&account())?, b.status(&account())?);
        if sa != sb || sa[0].messages != SHARED + 2 * EACH {
            bail!("sync did not converge: {sa:?} vs {sb:?}");
        }
        let (nchanges, raw, compressed) = changes_since(&a, &heads0)?;
        let exchanged = rep_.sync_bytes + rep_.blob_bytes;
        let changed = new_blob_bytes + raw;
        let ratio = exchanged as f64 / changed as f64;
        let ratio_c = exchanged as f64 / (new_blob_bytes + compressed) as f64;
        println!(
            "  run {rep}: sync_pair {:.0} ms (+ {:.0} ms to open both dirs); {} docs, {} messages, \
             {} rounds, {} renumbered; exchanged {} B sync + {} B blobs ({} blobs) = {exchanged} B; \
             changed: {new_blob_bytes} B blobs of the {} new messages + {raw} B automerge \
             ({nchanges} changes, {compressed} B compressed) = {changed} B; ratio {ratio:.2} \
             ({ratio_c:.2} against compressed changes)",
            secs * 1e3,
            open * 1e3,
            rep_.docs_synced,
            rep_.messages,
            rep_.rounds,
            rep_.renumbered,
            rep_.sync_bytes,
            rep_.blob_bytes,
            rep_.blobs,
            2 * EACH,
        );
        last_bytes = format!(
            "sync {} B + blobs {} B vs new blobs {new_blob_bytes} B + changes {raw} B",
            rep_.sync_bytes, rep_.blob_bytes
        );
        times.push(secs * 1e3);
        ratios.push(ratio);
        ratios_c.push(ratio_c);
        drop((a, b));
        rm(&work)?;
    }
    let (mt, mr) = (median(&times), median(&ratios));
    println!(
        "  median {mt:.0} ms [{}], ratio {mr:.2} [{}] ({:.2} against compressed changes)",
        fmt_list(&times, 0),
        fmt_list(&ratios, 2),
        median(&ratios_c)
    );
    rows.push(Row {
        what: "4a. sync_pair 100k+100k dirs sharing 99k (time)".into(),
        figure: format!("{mt:.0} ms (runs {})", fmt_list(&times, 0)),
        target: "<= 2 s".into(),
        pass: mt <= 2000.0,
    });
    rows.push(Row {
        what: "4b. sync bytes exchanged / changed records".into(),
        figure: format!("{mr:.2}x ({last_bytes})"),
        target: "<= 3x".into(),
        pass: mr <= 3.0,
    });
    Ok(())
}
