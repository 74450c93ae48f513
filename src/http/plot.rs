//! The documents-behind plot of the status page: inline SVG, one line per peer over the
//! last hour, drawn on the server from the node's in-memory samples.

use super::page::esc;
use crate::node::metrics::{BehindSample, HISTORY_SECS};
use std::collections::BTreeMap;
use std::fmt::Write;

const W: f64 = 720.0;
const H: f64 = 220.0;
/// Room for the axis labels.
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 24.0;
const TOP: f64 = 10.0;
const RIGHT: f64 = 10.0;

/// Line colours, one per peer in turn (distinguishable for the common colour blindnesses).
const COLOURS: [&str; 6] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9",
];

/// The smallest of 1, 2, 5 × 10^k at or above `v`: a round top for the y axis.
fn nice_max(v: u64) -> u64 {
    let mut step = 1u64;
    loop {
        for m in [1, 2, 5] {
            if step * m >= v {
                return step * m;
            }
        }
        step = step.saturating_mul(10);
    }
}

/// The plot of `samples` (oldest first) for the hour ending at `now`.
pub fn behind_svg(samples: &[BehindSample], now: i64) -> String {
    let mut series: BTreeMap<&str, Vec<(i64, u64)>> = BTreeMap::new();
    for s in samples {
        for (p, n) in &s.peers {
            series.entry(p.as_str()).or_default().push((s.at, *n));
        }
    }
    let top = nice_max(
        series
            .values()
            .flatten()
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0)
            .max(1),
    );
    let x = |t: i64| {
        LEFT + (W - LEFT - RIGHT) * ((t - (now - HISTORY_SECS)) as f64 / HISTORY_SECS as f64)
    };
    let y = |n: u64| TOP + (H - TOP - BOTTOM) * (1.0 - n as f64 / top as f64);
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg id="behind-plot" xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" aria-label="documents behind per peer, last hour">"#
    );
    // Axes, grid and labels: 0, half and the top; an hour ago, 30 min ago, now.
    let _ = write!(
        o,
        r##"<rect x="{LEFT}" y="{TOP}" width="{}" height="{}" fill="#fafafa" stroke="#ccc"/>"##,
        W - LEFT - RIGHT,
        H - TOP - BOTTOM
    );
    for v in [0, top / 2, top] {
        let yy = y(v);
        let _ = write!(
            o,
            r##"<line x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#e4e4e4"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end" fill="#555">{v}</text>"##,
            W - RIGHT,
            LEFT - 4.0,
            yy + 4.0
        );
    }
    for (mins, anchor) in [(60, "start"), (30, "middle"), (0, "end")] {
        let label = if mins == 0 {
            "now".to_string()
        } else {
            format!("-{mins} min")
        };
        let _ = write!(
            o,
            r##"<text x="{:.1}" y="{}" font-size="11" text-anchor="{anchor}" fill="#555">{label}</text>"##,
            x(now - mins * 60),
            H - 6.0
        );
    }
    if series.is_empty() {
        let _ = write!(
            o,
            r##"<text x="{:.1}" y="{:.1}" font-size="13" text-anchor="middle" fill="#888">no peer samples yet</text>"##,
            (W + LEFT) / 2.0,
            H / 2.0
        );
    }
    for (i, (peer, pts)) in series.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        let points: Vec<String> = pts
            .iter()
            .map(|(t, n)| format!("{:.1},{:.1}", x(*t), y(*n)))
            .collect();
        let _ = write!(
            o,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"><title>{}</title></polyline>"#,
            points.join(" "),
            esc(peer)
        );
    }
    o.push_str("</svg>");
    // The legend, in HTML under the plot (peer ids are long).
    o.push_str(r#"<ul class="legend">"#);
    for (i, peer) in series.keys().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        let _ = write!(
            o,
            r#"<li><span class="swatch" style="background:{c}"></span><code>{}</code></li>"#,
            esc(peer)
        );
    }
    o.push_str("</ul>");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_tops_and_one_line_per_peer() {
        assert_eq!(nice_max(1), 1);
        assert_eq!(nice_max(3), 5);
        assert_eq!(nice_max(11), 20);
        assert_eq!(nice_max(501), 1000);
        let s = |at, a, b| BehindSample {
            at,
            peers: vec![("pa".into(), a), ("pb".into(), b)],
        };
        let svg = behind_svg(&[s(1000, 0, 4), s(1010, 2, 0)], 1010);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.starts_with("<svg") && svg.contains("</svg>"));
        assert!(behind_svg(&[], 0).contains("no peer samples yet"));
    }
}
