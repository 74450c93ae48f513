//! What a running node shows of itself besides its replica: the peers with their sync lag,
//! the sync progress and the metrics. The control socket (`dovetail status`) and the HTTP
//! front end read the same [`Monitor`], so the page and the command agree.

use crate::net::{Client, PeerInfo};
use crate::node::control::{PeerRow, SyncProgress};
use crate::node::metrics::{BehindSample, Metrics};
use libp2p::PeerId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Per peer, the documents whose heads differed at the last summary comparison: what
/// `status` reports as "behind" (0 once in sync).
pub type Behind = Arc<Mutex<HashMap<PeerId, usize>>>;

/// Blobs fetched from peers since the node started, and their bytes (for `status`), and
/// the node's metrics.
#[derive(Debug, Default)]
pub struct Counters {
    pub blobs: AtomicU64,
    pub bytes: AtomicU64,
    pub metrics: Arc<Metrics>,
}

/// A read-only view of a running node, for the control socket and the front ends.
#[derive(Clone)]
pub struct Monitor {
    /// This node's libp2p peer id.
    pub peer_id: PeerId,
    /// This node's id (hex), as `init` printed it.
    pub node_id: String,
    pub(super) net: Client,
    pub(super) behind: Behind,
    pub(super) counters: Arc<Counters>,
}

impl Monitor {
    /// The node's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.counters.metrics
    }

    fn behind_of(&self, peer: &str) -> u64 {
        let b = self.behind.lock().unwrap_or_else(|e| e.into_inner());
        peer.parse::<PeerId>()
            .ok()
            .and_then(|id| b.get(&id).copied())
            .unwrap_or(0) as u64
    }

    /// The connected peers, with their lag, as `status` shows them.
    pub async fn peers(&self) -> Vec<PeerRow> {
        self.net
            .peers()
            .await
            .into_iter()
            .map(|p: PeerInfo| PeerRow {
                behind: self.behind_of(&p.peer),
                peer: p.peer,
                addr: p.addr,
                since: p.since,
                sent: p.sent,
                received: p.received,
            })
            .collect()
    }

    /// The sync progress counters this monitor knows (the replica adds what waits).
    pub fn fill_progress(&self, sync: &mut SyncProgress) {
        sync.blobs_fetched = self.counters.blobs.load(Relaxed);
        sync.blob_bytes_fetched = self.counters.bytes.load(Relaxed);
        sync.documents_behind = self
            .behind
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|&n| n as u64)
            .sum();
    }

    /// The documents behind per peer now, as a history sample taken at `at`.
    pub fn behind_sample(&self, at: i64) -> BehindSample {
        let b = self.behind.lock().unwrap_or_else(|e| e.into_inner());
        let mut peers: Vec<(String, u64)> =
            b.iter().map(|(p, n)| (p.to_string(), *n as u64)).collect();
        peers.sort();
        BehindSample { at, peers }
    }
}

/// What `dovetail status` shows of a running node.
#[derive(Clone, Debug)]
pub struct NodeStatus {
    /// Every mailbox of every account.
    pub mailboxes: Vec<crate::node::control::StatusRow>,
    /// The connected peers and their lag.
    pub peers: Vec<PeerRow>,
    /// The sync progress.
    pub sync: SyncProgress,
}

impl Monitor {
    /// The node's status, read from `replica` and this monitor (as the control socket
    /// answers `status`).
    pub async fn status(
        &self,
        replica: &crate::node::ReplicaHandle,
    ) -> Result<NodeStatus, super::DaemonError> {
        let (mailboxes, (waiting, missing)) = replica
            .call(|r| {
                crate::node::control::statuses(r, None)
                    .map(|m| (m, r.pending_counts().unwrap_or((0, 0))))
            })
            .await??;
        let mut sync = SyncProgress {
            changes_waiting: waiting as u64,
            blobs_missing: missing as u64,
            ..SyncProgress::default()
        };
        self.fill_progress(&mut sync);
        Ok(NodeStatus {
            mailboxes,
            peers: self.peers().await,
            sync,
        })
    }
}
