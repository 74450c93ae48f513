//! The `list` and `rss` scenarios (fresh processes on the large datasets) and their child
//! processes, and the `load-docs` diagnostic.

use crate::support::*;
use anyhow::{bail, Context, Result};
use dovetail::model::MailboxName;
use dovetail::node::Replica;
use dovetail::store::Tx;
use std::path::Path;
use std::time::Instant;

/// `open-list DIR MAILBOX`: open the replica, list one mailbox, print the timings.
pub fn run_open_list(dir: &str, mb: &str) -> Result<()> {
    let t = Instant::now();
    let mut r = Replica::open(Path::new(dir), options())?;
    let open = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let rows = r.list(&account(), &mailbox(mb))?;
    let list = t.elapsed().as_secs_f64();
    let n = rows.len();
    std::hint::black_box(&rows);
    let (rss, hwm) = mem_mib();
    println!(
        "open_ms={:.2} list_ms={:.2} total_ms={:.2} rows={n} rss_mib={rss:.1} hwm_mib={hwm:.1}",
        open * 1e3,
        list * 1e3,
        (open + list) * 1e3
    );
    Ok(())
}

pub fn scen_list(reps: usize, rows: &mut Vec<Row>) -> Result<()> {
    for (dir, n, target_ms) in [
        (ds_100k()?, 100_000usize, 100.0),
        (ds_1m()?, 1_000_000, 1000.0),
    ] {
        let label = format!("{}k", n / 1000);
        println!(
            "== list: open a {label}-message mailbox and list it ({})",
            dir.display()
        );
        let d = dir.to_str().context("path")?;
        child(&["open-list", d, "INBOX"])?; // warm the page cache; not counted
        let (mut open, mut list, mut total) = (vec![], vec![], vec![]);
        for _ in 0..reps {
            let out = child(&["open-list", d, "INBOX"])?;
            let v = kv_line(&out);
            if v.get("rows").copied() != Some(n as f64) {
                bail!("expected {n} rows, got {out}");
            }
            open.push(v["open_ms"]);
            list.push(v["list_ms"]);
            total.push(v["total_ms"]);
            println!("  fresh process: {}", out.trim());
        }
        println!(
            "  fresh process, median: open {:.1} ms + list {:.1} ms = {:.1} ms [{}]",
            median(&open),
            median(&list),
            median(&total),
            fmt_list(&total, 1)
        );
        let (mut iopen, mut ilist) = (vec![], vec![]);
        for _ in 0..reps {
            let t = Instant::now();
            let mut r = open_dir(&dir)?;
            iopen.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            let got = r.list(&account(), &MailboxName::inbox())?;
            ilist.push(t.elapsed().as_secs_f64() * 1e3);
            assert_eq!(got.len(), n);
            drop(got);
            drop(r);
        }
        println!(
            "  fresh Replica::open in this process, median: open {:.1} ms + list {:.1} ms [lists: {}]",
            median(&iopen),
            median(&ilist),
            fmt_list(&ilist, 1)
        );
        let m = median(&total);
        rows.push(Row {
            what: format!("2. open + list a {label}-msg mailbox (fresh process)"),
            figure: format!(
                "{m:.0} ms (open {:.0} + list {:.0}; runs {})",
                median(&open),
                median(&list),
                fmt_list(&total, 0)
            ),
            target: format!("<= {target_ms:.0} ms"),
            pass: m <= target_ms,
        });
    }
    Ok(())
}

/// `measure-rss DIR`: open, status, list every mailbox; print memory figures.
pub fn run_measure_rss(dir: &str) -> Result<()> {
    let (rss0, _) = mem_mib();
    let t = Instant::now();
    let mut r = Replica::open(Path::new(dir), options())?;
    let (rss_open, _) = mem_mib();
    let a = account();
    let st = r.status(&a)?;
    let (rss_status, _) = mem_mib();
    let mut total = 0u64;
    let mut largest = 0f64;
    for s in &st {
        let rows = r.list(&a, &mailbox(&s.name))?;
        if rows.len() as u64 != s.messages {
            bail!(
                "{}: listed {} of {} messages",
                s.name,
                rows.len(),
                s.messages
            );
        }
        total += rows.len() as u64;
        largest = largest.max(mem_mib().0);
        drop(rows);
    }
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let (rss_end, hwm) = mem_mib();
    println!(
        "mailboxes={} messages={total} ms={ms:.0} rss_start_mib={rss0:.1} rss_open_mib={rss_open:.1} \
         rss_status_mib={rss_status:.1} rss_max_listing_mib={largest:.1} rss_end_mib={rss_end:.1} hwm_mib={hwm:.1}",
        st.len()
    );
    Ok(())
}

pub fn scen_rss(reps: usize, rows: &mut Vec<Row>) -> Result<()> {
    let dir = ds_acct1m()?;
    println!(
        "== rss: fresh process opens a 1M-message account (10 x 100k), status, lists every mailbox ({})",
        dir.display()
    );
    let d = dir.to_str().context("path")?;
    let (mut rss, mut hwm) = (vec![], vec![]);
    for _ in 0..reps {
        let out = child(&["measure-rss", d])?;
        let v = kv_line(&out);
        if v.get("messages").copied() != Some(1_000_000.0) {
            bail!("expected 1M messages: {out}");
        }
        println!("  {}", out.trim());
        rss.push(v["rss_end_mib"]);
        hwm.push(v["hwm_mib"]);
    }
    let (mr, mh) = (median(&rss), median(&hwm));
    println!("  median VmRSS at end {mr:.0} MiB, VmHWM {mh:.0} MiB");
    rows.push(Row {
        what: "3. memory: open 1M-msg account, status, list all (VmHWM; VmRSS at end)".into(),
        figure: format!(
            "VmHWM {mh:.0} MiB, VmRSS {mr:.0} MiB (HWM runs {})",
            fmt_list(&hwm, 0)
        ),
        target: "<= 300 MB".into(),
        pass: mh * 1.048_576 <= 300.0,
    });
    Ok(())
}

/// `load-docs DIR`: how long loading each document of a data dir takes (the first thing a
/// fresh process does with a segment it appends to or syncs), and how many chunks it has.
pub fn run_load_docs(dir: &str) -> Result<()> {
    let r = open_dir(Path::new(dir))?;
    let tx = Tx::new(r.kv());
    for (id, _) in r.doc_heads()? {
        let meta = tx.doc_meta(&id)?.context("meta")?;
        let t = Instant::now();
        let (mut am, _) = tx.load_doc(&id)?.context("doc")?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        println!(
            "{id}: {} chunks, {} changes, loaded in {ms:.0} ms",
            meta.next_chunk - meta.first_chunk,
            am.get_changes(&[]).len()
        );
    }
    Ok(())
}
