//! What a running node counts for its operators: the Prometheus metrics (`/metrics` of the
//! HTTP front end, in the exposition format of the `prometheus-client` crate) and the short
//! in-memory histories the status page plots (documents behind, recent renumberings).
//!
//! One [`Metrics`] per node, shared by the daemon, the replica (appends, fsyncs) and the
//! front ends (sessions); every update is an atomic add, cheap enough for every write.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;

/// Labels of a per-peer metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabel {
    /// The peer's libp2p id.
    pub peer: String,
}

/// Labels of a per-front-end metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FrontLabel {
    /// `imap`, `lmtp`...
    pub front_end: String,
}

/// How long the in-memory histories reach back.
pub const HISTORY_SECS: i64 = 3600;

/// Renumberings kept for the status page.
const RECENT_RENUMBERINGS: usize = 20;

/// A node's metrics.
pub struct Metrics {
    registry: Registry,
    /// Peers connected now.
    pub peers_connected: Gauge,
    /// Per peer, documents whose heads differed at the last summary comparison.
    pub documents_behind: Family<PeerLabel, Gauge>,
    /// Bytes of sync messages received from peers.
    pub sync_bytes_received: Counter,
    /// Bytes of sync messages sent to peers.
    pub sync_bytes_sent: Counter,
    /// Bytes of message bodies fetched from peers.
    pub blob_bytes_fetched: Counter,
    /// Messages renumbered (moved off a clashing UID).
    pub renumbered: Counter,
    /// Messages appended on this node (IMAP APPEND, LMTP, Maildir, the CLI).
    pub appends: Counter,
    /// Sessions opened per front end.
    pub sessions: Family<FrontLabel, Counter>,
    /// Time the store takes to make writes durable (fsync), in seconds.
    pub fsync_seconds: Histogram,
    /// (time, messages) of the last renumberings, oldest first.
    renumberings: Mutex<VecDeque<(i64, u64)>>,
    /// (time, total documents behind, per peer) samples of the last hour, oldest first.
    behind_history: Mutex<VecDeque<BehindSample>>,
}

/// One sample of the documents-behind history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BehindSample {
    /// Seconds since the Unix epoch.
    pub at: i64,
    /// Per peer (libp2p id), documents behind.
    pub peers: Vec<(String, u64)>,
}

impl BehindSample {
    /// Documents behind, summed over peers.
    pub fn total(&self) -> u64 {
        self.peers.iter().map(|(_, n)| n).sum()
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// Fresh metrics, registered under the `dovetail_` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("dovetail");
        let peers_connected = Gauge::default();
        let documents_behind = Family::<PeerLabel, Gauge>::default();
        let sync_bytes_received = Counter::default();
        let sync_bytes_sent = Counter::default();
        let blob_bytes_fetched = Counter::default();
        let renumbered = Counter::default();
        let appends = Counter::default();
        let sessions = Family::<FrontLabel, Counter>::default();
        // 100 µs to ~3 s: an fsync on an idle SSD takes under a millisecond, on a busy
        // disk hundreds.
        let fsync_seconds = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 16),
        );
        let r = &mut registry;
        r.register(
            "peers_connected",
            "Peers connected now",
            peers_connected.clone(),
        );
        r.register(
            "documents_behind",
            "Documents whose heads differed from the peer's at the last comparison",
            documents_behind.clone(),
        );
        r.register(
            "sync_bytes_received",
            "Bytes of sync messages received from peers",
            sync_bytes_received.clone(),
        );
        r.register(
            "sync_bytes_sent",
            "Bytes of sync messages sent to peers",
            sync_bytes_sent.clone(),
        );
        r.register(
            "blob_bytes_fetched",
            "Bytes of message bodies fetched from peers",
            blob_bytes_fetched.clone(),
        );
        r.register(
            "renumbered_messages",
            "Messages moved off a clashing UID",
            renumbered.clone(),
        );
        r.register(
            "appended_messages",
            "Messages appended on this node",
            appends.clone(),
        );
        r.register(
            "sessions",
            "Sessions opened per front end",
            sessions.clone(),
        );
        r.register(
            "fsync_seconds",
            "Time the store takes to make writes durable",
            fsync_seconds.clone(),
        );
        Metrics {
            registry,
            peers_connected,
            documents_behind,
            sync_bytes_received,
            sync_bytes_sent,
            blob_bytes_fetched,
            renumbered,
            appends,
            sessions,
            fsync_seconds,
            renumberings: Mutex::new(VecDeque::new()),
            behind_history: Mutex::new(VecDeque::new()),
        }
    }

    /// The metrics in the OpenMetrics text format (which Prometheus scrapes).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Counts a session opened on front end `name`.
    pub fn session(&self, name: &str) {
        self.sessions
            .get_or_create(&FrontLabel {
                front_end: name.to_string(),
            })
            .inc();
    }

    /// Records `n` messages renumbered at `now`.
    pub fn renumbering(&self, now: i64, n: u64) {
        self.renumbered.inc_by(n);
        let mut r = self.renumberings.lock().unwrap_or_else(|e| e.into_inner());
        r.push_back((now, n));
        while r.len() > RECENT_RENUMBERINGS {
            r.pop_front();
        }
    }

    /// The last renumberings: (time, messages), newest first.
    pub fn recent_renumberings(&self) -> Vec<(i64, u64)> {
        let r = self.renumberings.lock().unwrap_or_else(|e| e.into_inner());
        r.iter().rev().copied().collect()
    }

    /// Adds a documents-behind sample; drops those older than [`HISTORY_SECS`].
    pub fn sample_behind(&self, s: BehindSample) {
        let mut h = self
            .behind_history
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let from = s.at - HISTORY_SECS;
        h.push_back(s);
        while h.front().is_some_and(|x| x.at < from) {
            h.pop_front();
        }
    }

    /// The documents-behind samples of the last hour, oldest first.
    pub fn behind_history(&self) -> Vec<BehindSample> {
        let h = self
            .behind_history
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        h.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_counters_and_keeps_an_hour_of_samples() {
        let m = Metrics::new();
        m.appends.inc_by(3);
        m.session("imap");
        m.fsync_seconds.observe(0.002);
        let t = m.encode();
        assert!(t.contains("dovetail_appended_messages_total 3"), "{t}");
        assert!(
            t.contains("dovetail_sessions_total{front_end=\"imap\"} 1"),
            "{t}"
        );
        assert!(t.contains("dovetail_fsync_seconds_count 1"), "{t}");
        for at in [0, 100, 3700, 3800] {
            m.sample_behind(BehindSample {
                at,
                peers: vec![("p".into(), at as u64)],
            });
        }
        let h = m.behind_history();
        assert_eq!(h.iter().map(|s| s.at).collect::<Vec<_>>(), [3700, 3800]);
        assert_eq!(h[1].total(), 3800);
    }
}
