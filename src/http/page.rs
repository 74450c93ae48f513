//! The status page (`/`): rendered on the server from the same [`NodeStatus`] that
//! `dovetail status` prints, so the two agree. Numbers sit in cells marked `data-k` (and
//! rows in `data-account`, `data-mailbox`, `data-peer`), which a test or a scraper can
//! read without guessing at the layout.

use crate::node::daemon::{Monitor, NodeStatus};
use std::fmt::Write;

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// A Unix time as UTC text.
fn utc(t: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| t.to_string())
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:1100px;\
color:#222;padding:0 1em}h1{font-size:1.4em;margin:0}h2{font-size:1.1em;margin-top:1.6em;\
border-bottom:1px solid #ddd}table{border-collapse:collapse;width:100%}th,td{text-align:left;\
padding:3px 8px;border-bottom:1px solid #eee}td.n,th.n{text-align:right;\
font-variant-numeric:tabular-nums}code{font-size:12px}.cards{display:flex;gap:12px;\
flex-wrap:wrap;margin:1em 0}.card{border:1px solid #ddd;border-radius:6px;padding:8px 14px;\
min-width:120px}.card b{display:block;font-size:1.6em}.ok{color:#197a3a}.warn{color:#b35c00}\
.legend{list-style:none;padding:0;display:flex;gap:14px;flex-wrap:wrap}.swatch{display:inline-block;\
width:12px;height:12px;margin-right:4px;vertical-align:middle}.muted{color:#777}";

/// The whole page.
pub fn render(m: &Monitor, st: &NodeStatus, now: i64) -> String {
    let metrics = m.metrics();
    let behind = st.sync.documents_behind;
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="10"><title>dovetail node {}</title><style>{STYLE}</style></head><body>"#,
        esc(&short(&m.peer_id.to_string()))
    );
    let _ = write!(
        o,
        r#"<h1>dovetail node</h1><p class="muted">peer <code id="peer-id">{}</code> · node <code id="node-id">{}</code> · {}</p>"#,
        esc(&m.peer_id.to_string()),
        esc(&m.node_id),
        utc(now)
    );
    let state = if st.peers.is_empty() {
        r#"<span class="warn">no peers</span>"#
    } else if behind == 0 && st.sync.changes_waiting == 0 {
        r#"<span class="ok">in sync</span>"#
    } else {
        r#"<span class="warn">syncing</span>"#
    };
    o.push_str(r#"<div class="cards">"#);
    card(&mut o, "state", "", state);
    let cards = [
        ("peers", "peers connected", st.peers.len() as u64),
        ("documents-behind", "documents behind", behind),
        (
            "changes-waiting",
            "changes waiting",
            st.sync.changes_waiting,
        ),
        ("blobs-missing", "blobs missing", st.sync.blobs_missing),
        ("appended", "messages appended", metrics.appends.get()),
        (
            "renumbered",
            "messages renumbered",
            metrics.renumbered.get(),
        ),
    ];
    for (id, label, v) in cards {
        card(&mut o, label, id, &v.to_string());
    }
    o.push_str("</div>");
    peers(&mut o, st, now);
    o.push_str("<h2>Documents behind, last hour</h2>");
    o.push_str(&super::plot::behind_svg(&metrics.behind_history(), now));
    mailboxes(&mut o, st);
    renumberings(&mut o, &metrics.recent_renumberings());
    o.push_str(
        r#"<p class="muted">Refreshes every 10 s. Metrics for Prometheus: <a href="/metrics">/metrics</a>.</p></body></html>"#,
    );
    o
}

fn short(s: &str) -> String {
    let n = s.chars().count();
    if n <= 16 {
        return s.to_string();
    }
    let tail: String = s.chars().skip(n - 8).collect();
    format!("…{tail}")
}

fn card(o: &mut String, label: &str, id: &str, value: &str) {
    let id = if id.is_empty() {
        String::new()
    } else {
        format!(r#" id="{id}""#)
    };
    let _ = write!(
        o,
        r#"<div class="card"><b{id}>{value}</b>{}</div>"#,
        esc(label)
    );
}

fn peers(o: &mut String, st: &NodeStatus, now: i64) {
    o.push_str("<h2>Peers</h2>");
    if st.peers.is_empty() {
        o.push_str(r#"<p class="muted">No peer connected.</p>"#);
        return;
    }
    o.push_str(r#"<table id="peers"><tr><th>peer</th><th>address</th><th>connected</th><th class="n">documents behind</th><th class="n">bytes sent</th><th class="n">bytes received</th></tr>"#);
    for p in &st.peers {
        let since = now.saturating_sub(p.since as i64);
        let _ = write!(
            o,
            r#"<tr class="peer" data-peer="{peer}"><td><code>{peer}</code></td><td><code>{}</code></td><td title="{}">{} ago</td><td class="n" data-k="behind">{}</td><td class="n" data-k="sent">{}</td><td class="n" data-k="received">{}</td></tr>"#,
            esc(&p.addr),
            utc(p.since as i64),
            ago(since),
            p.behind,
            p.sent,
            p.received,
            peer = esc(&p.peer),
        );
    }
    o.push_str("</table>");
}

fn ago(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

fn mailboxes(o: &mut String, st: &NodeStatus) {
    let accounts: std::collections::BTreeSet<&str> =
        st.mailboxes.iter().map(|m| m.account.as_str()).collect();
    let _ = write!(
        o,
        r#"<h2>Accounts and mailboxes <span class="muted">({} accounts, {} mailboxes)</span></h2>"#,
        accounts.len(),
        st.mailboxes.len()
    );
    if st.mailboxes.is_empty() {
        o.push_str(r#"<p class="muted">No account.</p>"#);
        return;
    }
    o.push_str(r#"<table id="mailboxes"><tr><th>account</th><th>mailbox</th><th class="n">UIDVALIDITY</th><th class="n">UIDNEXT</th><th class="n">messages</th><th class="n">unseen</th><th class="n">modseq</th><th>digest</th></tr>"#);
    for m in &st.mailboxes {
        let _ = write!(
            o,
            r#"<tr class="mailbox" data-account="{a}" data-mailbox="{n}"><td>{a}</td><td>{n}</td><td class="n" data-k="uidvalidity">{}</td><td class="n" data-k="uidnext">{}</td><td class="n" data-k="messages">{}</td><td class="n" data-k="unseen">{}</td><td class="n" data-k="highest_modseq">{}</td><td><code data-k="digest">{}</code></td></tr>"#,
            m.uidvalidity,
            m.uidnext,
            m.messages,
            m.unseen,
            m.highest_modseq,
            esc(&m.digest),
            a = esc(&m.account),
            n = esc(&m.name),
        );
    }
    o.push_str("</table>");
}

fn renumberings(o: &mut String, recent: &[(i64, u64)]) {
    o.push_str("<h2>Recent renumberings</h2>");
    if recent.is_empty() {
        o.push_str(r#"<p class="muted">None since the node started.</p>"#);
        return;
    }
    o.push_str(r#"<table id="renumberings"><tr><th>when</th><th class="n">messages</th></tr>"#);
    for (t, n) in recent {
        let _ = write!(o, r#"<tr><td>{}</td><td class="n">{n}</td></tr>"#, utc(*t));
    }
    o.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_formats() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(ago(5), "5 s");
        assert_eq!(ago(600), "10 min");
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(short("12D3KooWabcdefghijklmnop"), "…ijklmnop");
    }
}
