//! A running node: the replica actor, the network event loop, and the coordinator between
//! them that drives the per-(peer, document) sync sessions, blob fetches, renumbering and
//! announcements.
//!
//! How documents travel (the same steps as the offline sync in [`super::offline`]):
//! - On connection, and every [`DaemonConfig::anti_entropy`], a node compares its
//!   (document, heads) summary with each peer's by range-based reconciliation ([`recon`])
//!   and pokes the documents whose heads differ. A reconnect where nothing changed costs one
//!   round trip; otherwise the cost grows with the differences, not the documents.
//! - A local or received change makes the node announce (document, heads) over gossipsub;
//!   a peer whose heads differ pokes that document with the announcer.
//! - Poking (peer, doc) generates the next automerge sync message and sends it in parts;
//!   at most one message per (peer, doc) is in flight, so they arrive in order. The
//!   receiver stores it (durably) before acknowledging, fetches the blobs the new changes
//!   name from the sender, delivers what became deliverable, renumbers if due, and pokes
//!   back: the ping-pong ends when neither side has anything to say.
//!
//! Peer input is hostile: frames are size-limited by the codec; a sync message about a
//! malformed document id or an account this node does not replicate is rejected (logged
//! with the peer) before anything is stored.

mod addrs;
mod announce;
mod exchange;
mod front;
mod monitor;
mod receive;
pub mod recon;

use addrs::listening;
pub use addrs::{listen_addrs, ADDRS_FILE};
pub use exchange::peers;
use exchange::{blobs_answer, compare, fetch_blobs, send_sync};
pub use front::{FrontEnd, FrontEndCtx};
pub use monitor::{Behind, Counters, Monitor, NodeStatus};

use super::actor::{ActorStopped, ReplicaHandle};
use super::metrics::{Metrics, PeerLabel};
use super::{doc_account, NodeError, Options, Replica};
use crate::model::{BlobId, NodeId};
use crate::net::protocol::{self, Announce, BlobBytes, ReconAnswer, Request, Response, CHUNK};
use crate::net::{self, Client, Event, NetConfig, NetError, PeerInfo};
use libp2p::request_response::ResponseChannel;
use libp2p::PeerId;
use receive::{Incoming, BATCH_EVENTS};
use recon::Summary;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Errors of a running node.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Stopped(#[from] ActorStopped),
    #[error("{0}")]
    Io(String),
}

/// How a node runs.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    pub data_dir: PathBuf,
    pub net: NetConfig,
    pub options: Options,
    /// How often every peer's summary is compared (a cheap hash when nothing changed): it
    /// repairs lost announcements and syncs what a refused document left behind.
    pub anti_entropy: Duration,
    /// How often renumbering and delivery of waiting changes are retried.
    pub tick: Duration,
    /// Front ends to serve while the node runs (IMAP, LMTP).
    pub front_ends: Vec<FrontEnd>,
}

impl DaemonConfig {
    /// Defaults for a data dir.
    pub fn new(data_dir: PathBuf) -> DaemonConfig {
        DaemonConfig {
            data_dir,
            net: NetConfig::default(),
            options: Options::default(),
            anti_entropy: Duration::from_secs(3),
            tick: Duration::from_secs(1),
            front_ends: Vec::new(),
        }
    }
}

/// The largest sync message reassembled from parts: a renumbering of the whole 32-bit UID
/// space would not fit, but every change dovetail makes does, by far.
pub(super) const MAX_SYNC_MESSAGE: usize = 1024 * 1024 * 1024;

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Runs a node until `shutdown` resolves: opens the data dir, listens, syncs with peers.
/// Returns once everything is flushed and the connections are closed.
pub fn run(mut cfg: DaemonConfig, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
    // The replica times its flushes and counts appends into the node's metrics.
    let metrics = cfg
        .options
        .metrics
        .get_or_insert_with(Default::default)
        .clone();
    let replica = Replica::open(&cfg.data_dir, cfg.options.clone())?;
    let key = replica.identity_bytes()?;
    let node = replica.node_id();
    let (handle, join) = ReplicaHandle::spawn(replica);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| DaemonError::Io(e.to_string()))?;
    let res = rt.block_on(serve(cfg, key, node, handle, metrics, shutdown));
    // Dropping the runtime cancels the tasks still holding replica handles; then the
    // replica thread sees its channel close, flushes and ends.
    drop(rt);
    let _ = join.join();
    res
}

async fn serve(
    cfg: DaemonConfig,
    key: Vec<u8>,
    node: NodeId,
    replica: ReplicaHandle,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let (client, mut events, event_loop) = net::start(&key, cfg.net.clone())?;
    tracing::info!(peer = %client.local, node = %node, "node started");
    let net_task = tokio::spawn(event_loop.run());
    let addrs_file = cfg.data_dir.join(ADDRS_FILE);
    let _ = std::fs::remove_file(&addrs_file);
    let (itx, mut irx) = mpsc::unbounded_channel();
    let behind = Behind::default();
    let counters = Arc::new(Counters {
        metrics,
        ..Counters::default()
    });
    let monitor = Monitor {
        peer_id: client.local,
        node_id: node.to_hex(),
        net: client.clone(),
        behind: behind.clone(),
        counters: counters.clone(),
    };
    let mut core = Core {
        replica: replica.clone(),
        net: client.clone(),
        heads: BTreeMap::new(),
        summary: None,
        dirty: true,
        heads_loaded: false,
        peers: HashMap::new(),
        peer_accounts: HashMap::new(),
        inflight: HashSet::new(),
        again: HashSet::new(),
        compared: HashMap::new(),
        partial: HashMap::new(),
        pulling: HashSet::new(),
        pull_again: HashSet::new(),
        internal: itx,
        allow: cfg.net.allow_peers.iter().copied().collect(),
        max_blob: cfg.options.max_message_size,
        strikes: HashMap::new(),
        behind: behind.clone(),
        counters: counters.clone(),
        progress_logged: (0, 0, 0),
        progress_at: std::time::Instant::now(),
        want: HashMap::new(),
        asked: HashSet::new(),
        fetching: HashSet::new(),
        rotate: 0,
        incoming: Vec::new(),
        relayed: HashSet::new(),
        relay_later: HashSet::new(),
        deferred: HashSet::new(),
    };
    core.refresh().await?;
    let (ctx, mut crx) = mpsc::unbounded_channel();
    let listener =
        super::control::bind(&cfg.data_dir).map_err(|e| DaemonError::Io(e.to_string()))?;
    let fronts = front::Running::start(&cfg.front_ends, &replica, &ctx, &monitor);
    let control = tokio::spawn({
        let replica = replica.clone();
        async move {
            if let Err(e) = super::control::serve(listener, replica, monitor, ctx).await {
                tracing::error!(error = %e, "the control socket failed");
            }
        }
    });
    let mut tick = tokio::time::interval(cfg.tick);
    // A connection compares summaries at once (on `Connected`); the first anti-entropy
    // round is one period later. An immediate first tick compared a second time with a peer
    // that connected during start-up: one more summary exchange (~15-20 KB at 4,000
    // documents) in every reconnect.
    let mut ae = tokio::time::interval_at(
        tokio::time::Instant::now() + cfg.anti_entropy,
        cfg.anti_entropy,
    );
    // Changed documents are pushed and announced within 5 ms (part of the replication
    // latency), at once after a quiet spell; a refresh reads only the documents saved since
    // the last one. The timer runs only while something changed: an idle node does not
    // wake up 200 times a second.
    let mut announce = tokio::time::interval(Duration::from_millis(5));
    announce.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut answers = tokio::time::interval(ANSWER_EVERY);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            ev = events.recv() => match ev {
                Some(Event::Listening { addr }) => listening(&addrs_file, &addr),
                Some(e) => core.on_event(e).await?,
                None => break,
            },
            Some(i) = irx.recv() => core.on_internal(i).await?,
            Some(()) = crx.recv() => core.dirty = true,
            _ = tick.tick() => core.tick().await?,
            _ = ae.tick() => {
                let peers: Vec<PeerId> = core.peers.keys().copied().collect();
                for p in peers {
                    core.pull(p).await?;
                }
            }
            _ = announce.tick(), if core.dirty => core.refresh().await?,
            _ = answers.tick() => {
                for (peer, doc) in std::mem::take(&mut core.deferred) {
                    core.poke(peer, doc);
                }
                if core.dirty {
                    core.refresh().await?;
                }
                core.announce_relayed();
            }
        }
        if !core.incoming.is_empty() {
            // Sync messages that arrived meanwhile join the batch: one flush for all.
            for _ in 0..BATCH_EVENTS {
                match events.try_recv() {
                    Ok(Event::Listening { addr }) => listening(&addrs_file, &addr),
                    Ok(e) => core.on_event(e).await?,
                    Err(_) => break,
                }
            }
            core.apply_incoming().await?;
        }
    }
    tracing::info!("shutting down");
    // No more writes: the front ends and the control socket go first, then the connections.
    fronts.stop().await;
    control.abort();
    let _ = std::fs::remove_file(cfg.data_dir.join(super::control::SOCKET));
    client.shutdown();
    let _ = net_task.await;
    let _ = std::fs::remove_file(&addrs_file);
    replica
        .call(|r| r.kv().flush())
        .await?
        .map_err(NodeError::from)?;
    Ok(())
}

/// The label of a per-peer metric.
fn label(peer: PeerId) -> PeerLabel {
    PeerLabel {
        peer: peer.to_string(),
    }
}

/// Work finished by a spawned task, reported back to the coordinator.
enum Internal {
    /// A sync message to `peer` about `doc` was sent (or failed).
    Sent { peer: PeerId, doc: String, ok: bool },
    /// A summary comparison with `peer` found these documents to sync (`ok` false: it
    /// failed).
    Pulled {
        peer: PeerId,
        docs: Vec<String>,
        accounts: BTreeSet<String>,
        ok: bool,
    },
    /// A fetch of these blobs from `peer` ended (stored and delivered, or failed).
    Fetched { peer: PeerId, ids: Vec<BlobId> },
}

struct Core {
    replica: ReplicaHandle,
    net: Client,
    /// This node's documents and heads as last announced.
    heads: BTreeMap<String, Vec<[u8; 32]>>,
    /// `heads` prepared for reconciliation (`None`: to rebuild, the heads changed).
    summary: Option<Arc<Summary>>,
    /// Documents may have changed since `heads` was read.
    dirty: bool,
    /// `heads` holds every document (read once in full, then kept up to date).
    heads_loaded: bool,
    peers: HashMap<PeerId, NodeId>,
    /// The accounts each peer replicates (from its summary): a document is offered to a
    /// peer only if it replicates the account, so the peer has no reason to refuse it.
    peer_accounts: HashMap<PeerId, BTreeSet<String>>,
    inflight: HashSet<(PeerId, String)>,
    again: HashSet<(PeerId, String)>,
    /// When this node last finished comparing summaries with each peer.
    compared: HashMap<PeerId, std::time::Instant>,
    /// Sync messages being reassembled: next part expected, bytes so far.
    partial: HashMap<(PeerId, String), (u32, Vec<u8>)>,
    pulling: HashSet<PeerId>,
    pull_again: HashSet<PeerId>,
    internal: mpsc::UnboundedSender<Internal>,
    allow: HashSet<PeerId>,
    max_blob: u64,
    /// Refused sync messages per peer since its last good one.
    strikes: HashMap<PeerId, u32>,
    behind: Behind,
    counters: std::sync::Arc<Counters>,
    /// (changes waiting, blobs missing, blobs fetched) as last logged, and when.
    progress_logged: (usize, usize, u64),
    progress_at: std::time::Instant,
    /// Blobs to fetch, per peer that named them.
    want: HashMap<PeerId, BTreeSet<BlobId>>,
    /// Blobs being fetched (by any peer's worker).
    asked: HashSet<BlobId>,
    /// Peers with a fetch worker running.
    fetching: HashSet<PeerId>,
    rotate: usize,
    /// Whole sync messages received, to apply in one batch.
    incoming: Vec<Incoming>,
    /// Documents changed by peers' messages since the last refresh (announced, not pushed).
    relayed: HashSet<String>,
    /// Of those, the ones to announce at the next [`ANSWER_EVERY`] tick.
    relay_later: HashSet<String>,
    /// Answers that only acknowledge (see [`crate::node::Received::Applied`]'s
    /// `caught_up`), sent every [`ANSWER_EVERY`]: one answers every change a peer pushed
    /// meanwhile.
    deferred: HashSet<(PeerId, String)>,
}

/// How long an answer that only acknowledges may wait. A pushed change is in the view
/// before it is answered; the answer keeps the sender's sync state short (what it must
/// summarise grows with the changes not yet acknowledged), so it may come late, and one
/// answer for several pushes saves a request and two replica calls per push.
const ANSWER_EVERY: Duration = Duration::from_millis(100);

/// Refused sync messages in a row after which a peer is disconnected.
const MAX_STRIKES: u32 = 16;

impl Core {
    /// Counts a refused message; a peer that keeps sending them is disconnected.
    fn strike(&mut self, peer: PeerId) {
        let n = self.strikes.entry(peer).or_default();
        *n += 1;
        if *n >= MAX_STRIKES {
            tracing::warn!(%peer, "disconnecting a peer after {MAX_STRIKES} refused messages");
            self.strikes.remove(&peer);
            self.net.disconnect(peer);
        }
    }

    fn metrics(&self) -> &Arc<Metrics> {
        &self.counters.metrics
    }

    fn allowed(&self, peer: &PeerId) -> bool {
        self.allow.is_empty() || self.allow.contains(peer)
    }

    async fn on_event(&mut self, e: Event) -> Result<(), DaemonError> {
        match e {
            Event::Connected { peer, addr } => {
                if !self.allowed(&peer) {
                    tracing::warn!(%peer, %addr, "refused peer: not in --allow-peer");
                    self.net.disconnect(peer);
                    return Ok(());
                }
                let Some(pk) = net::peer_public_key(&peer) else {
                    tracing::warn!(%peer, %addr, "refused peer: not an ed25519 identity");
                    self.net.disconnect(peer);
                    return Ok(());
                };
                tracing::info!(%peer, %addr, "peer connected");
                self.peers.insert(peer, NodeId(pk));
                self.metrics().peers_connected.set(self.peers.len() as i64);
                self.pull(peer).await?;
            }
            Event::Disconnected { peer } => {
                tracing::info!(%peer, "peer disconnected");
                if let Some(node) = self.peers.remove(&peer) {
                    self.replica.call(move |r| r.end_sessions(&node)).await?;
                }
                let m = self.metrics();
                m.peers_connected.set(self.peers.len() as i64);
                m.documents_behind.remove(&label(peer));
                self.peer_accounts.remove(&peer);
                self.compared.remove(&peer);
                self.strikes.remove(&peer);
                self.want.remove(&peer);
                self.behind
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&peer);
                self.partial.retain(|(p, _), _| *p != peer);
                self.again.retain(|(p, _)| *p != peer);
                self.deferred.retain(|(p, _)| *p != peer);
            }
            Event::Announce { source, data } => {
                if !self.peers.contains_key(&source) {
                    return Ok(());
                }
                let Some(a) = Announce::decode(&data) else {
                    tracing::warn!(peer = %source, "undecodable announcement");
                    return Ok(());
                };
                for (doc, mut hs) in a.docs {
                    hs.sort();
                    if self.heads.get(&doc) == Some(&hs) {
                        continue;
                    }
                    if let Some(acc) = doc_account(&doc) {
                        self.peer_accounts
                            .entry(source)
                            .or_default()
                            .insert(acc.to_string());
                    }
                    let d = doc.clone();
                    let wanted = self
                        .replica
                        .call(move |r| r.wants_announced(&d, &hs))
                        .await??;
                    if wanted {
                        self.poke(source, doc);
                    }
                }
            }
            Event::Request {
                peer,
                request,
                channel,
            } => self.on_request(peer, request, channel).await?,
            Event::Listening { .. } => {}
        }
        Ok(())
    }

    /// Whether this node would take `doc` from a peer.
    async fn may_sync(&self, doc: &str) -> Result<bool, DaemonError> {
        let d = doc.to_string();
        Ok(self
            .replica
            .call(move |r| r.accepts_doc(&d))
            .await??
            .is_ok())
    }

    async fn on_request(
        &mut self,
        peer: PeerId,
        request: Request,
        channel: ResponseChannel<Response>,
    ) -> Result<(), DaemonError> {
        let reject = |why: String| Response::Rejected { why };
        let Some(&node) = self.peers.get(&peer) else {
            self.net
                .respond(channel, reject("not a cluster peer".into()));
            return Ok(());
        };
        match request {
            Request::Recon { ranges } => {
                let whole = ranges
                    .first()
                    .is_some_and(|r| r.lower.is_empty() && r.upper.is_none());
                let mine = self.summary().await?;
                match recon::answer(&mine, &ranges) {
                    Ok(answers) => {
                        // The peer's summary differs from ours: compare from this side
                        // too (the peer offers only the accounts we replicate), unless a
                        // comparison with it is already running.
                        let differ = whole && !matches!(answers.first(), Some(ReconAnswer::Same));
                        self.net.respond(channel, Response::Recon { answers });
                        // Nor when this side finished one within the last second: what it
                        // found is being synced, and the peer's query is the other half of
                        // the same reconnect (both sides compare when they connect).
                        let recent = self
                            .compared
                            .get(&peer)
                            .is_some_and(|t| t.elapsed() < Duration::from_secs(1));
                        if differ && !self.pulling.contains(&peer) && !recent {
                            self.pull(peer).await?;
                        }
                    }
                    Err(e) => {
                        self.strike(peer);
                        tracing::warn!(%peer, error = %e, "rejected a reconciliation request");
                        self.net.respond(channel, reject(e.to_string()));
                    }
                }
            }
            Request::Blobs { ids } => {
                let resp = self.replica.call(move |r| blobs_answer(r, &ids)).await??;
                self.net.respond(channel, resp);
            }
            Request::Blob { id, offset } => {
                let id = BlobId(id);
                let blob = self.replica.call(move |r| r.blob(&id)).await??;
                let resp = match blob {
                    Some(b) => {
                        let start = (offset as usize).min(b.len());
                        let end = (start + CHUNK).min(b.len());
                        Response::Blob {
                            total: b.len() as u64,
                            bytes: b[start..end].to_vec(),
                        }
                    }
                    None => Response::NoBlob,
                };
                self.net.respond(channel, resp);
            }
            Request::Sync {
                doc,
                part,
                parts,
                bytes,
                blobs,
            } => self.on_sync_part(peer, node, doc, part, parts, bytes, blobs, channel),
        }
        Ok(())
    }

    async fn renumber(&mut self) -> Result<(), DaemonError> {
        let n = self.replica.call(|r| r.renumber_due(now())).await??;
        self.renumbered(n);
        Ok(())
    }

    /// [`Core::renumber`] of only the mailboxes that had changes delivered since the last
    /// time (after received changes or blobs; the tick checks all of them).
    async fn renumber_delivered(&mut self) -> Result<(), DaemonError> {
        let n = self.replica.call(|r| r.renumber_delivered(now())).await??;
        self.renumbered(n);
        Ok(())
    }

    fn renumbered(&mut self, n: usize) {
        if n > 0 {
            self.metrics().renumbering(now(), n as u64);
            tracing::info!(messages = n, "renumbered homeless messages");
            self.dirty = true;
        }
    }

    /// Queues blobs to fetch from `peer`; one worker per peer fetches them in batches,
    /// stores them and delivers what waited for them.
    fn fetch(&mut self, peer: PeerId, missing: Vec<BlobId>) {
        let want = self.want.entry(peer).or_default();
        for id in missing {
            if !self.asked.contains(&id) {
                want.insert(id);
            }
        }
        if want.is_empty() || self.fetching.contains(&peer) {
            return;
        }
        let ids: Vec<BlobId> = std::mem::take(want).into_iter().collect();
        self.asked.extend(ids.iter().copied());
        self.fetching.insert(peer);
        let net = self.net.clone();
        let replica = self.replica.clone();
        let internal = self.internal.clone();
        let max = self.max_blob;
        let counters = self.counters.clone();
        tokio::spawn(async move {
            let res = fetch_blobs(&net, &replica, &counters, peer, &ids, max).await;
            if let Err(e) = &res {
                tracing::warn!(%peer, error = %e, "blob fetch failed");
            }
            let _ = internal.send(Internal::Fetched { peer, ids });
        });
    }

    /// Sends the next sync message about `doc` to `peer`, unless one is in flight (then
    /// once that one is acknowledged).
    fn poke(&mut self, peer: PeerId, doc: String) {
        let Some(&node) = self.peers.get(&peer) else {
            return;
        };
        let key = (peer, doc.clone());
        if self.inflight.contains(&key) {
            self.again.insert(key);
            return;
        }
        self.inflight.insert(key);
        let net = self.net.clone();
        let replica = self.replica.clone();
        let internal = self.internal.clone();
        let metrics = self.metrics().clone();
        tokio::spawn(async move {
            let d = doc.clone();
            let generated = replica.call(move |r| r.sync_generate_attaching(&node, &d));
            let ok = match generated.await {
                Ok(Ok(Some((msg, blobs)))) => {
                    metrics.sync_bytes_sent.inc_by(msg.len() as u64);
                    send_sync(&net, peer, &doc, &msg, blobs).await
                }
                Ok(Ok(None)) => true,
                Ok(Err(e)) => {
                    tracing::warn!(%doc, error = %e, "cannot generate a sync message");
                    true
                }
                Err(_) => true,
            };
            let _ = internal.send(Internal::Sent { peer, doc, ok });
        });
    }

    /// Compares summaries with `peer` in a task; pokes what differs when it reports back.
    async fn pull(&mut self, peer: PeerId) -> Result<(), DaemonError> {
        if !self.peers.contains_key(&peer) {
            return Ok(());
        }
        if self.pulling.contains(&peer) {
            self.pull_again.insert(peer);
            return Ok(());
        }
        let mine = self.summary().await?;
        self.pulling.insert(peer);
        let net = self.net.clone();
        let internal = self.internal.clone();
        tokio::spawn(async move {
            let (docs, accounts, ok) = match compare(&net, peer, &mine).await {
                Ok((d, a)) => (d, a, true),
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "summary comparison failed");
                    (Vec::new(), BTreeSet::new(), false)
                }
            };
            let _ = internal.send(Internal::Pulled {
                peer,
                docs,
                accounts,
                ok,
            });
        });
        Ok(())
    }

    async fn on_internal(&mut self, i: Internal) -> Result<(), DaemonError> {
        match i {
            Internal::Sent { peer, doc, ok } => {
                let key = (peer, doc);
                self.inflight.remove(&key);
                if !ok {
                    // The peer lost or refused our message: automerge would wait for an
                    // answer that never comes. Start the sessions with it afresh.
                    if let Some(&node) = self.peers.get(&peer) {
                        self.replica.call(move |r| r.end_sessions(&node)).await?;
                    }
                }
                if self.again.remove(&key) {
                    self.poke(key.0, key.1);
                }
            }
            Internal::Pulled {
                peer,
                docs,
                accounts,
                ok,
            } => {
                self.pulling.remove(&peer);
                // A failed comparison (or a peer gone meanwhile) teaches nothing: the next
                // round of anti-entropy tries again.
                if !ok || !self.peers.contains_key(&peer) {
                    self.pull_again.remove(&peer);
                    return Ok(());
                }
                self.compared.insert(peer, std::time::Instant::now());
                // Only documents of accounts both sides replicate count and are synced: a
                // node with --replicate-accounts differs from a full one forever in the
                // others, and is not behind for them.
                let mut wanted = Vec::with_capacity(docs.len());
                for doc in docs {
                    let theirs = doc_account(&doc).is_some_and(|a| accounts.contains(a));
                    if theirs && self.may_sync(&doc).await? {
                        wanted.push(doc);
                    }
                }
                let before = {
                    let mut b = self.behind.lock().unwrap_or_else(|e| e.into_inner());
                    b.insert(peer, wanted.len()).unwrap_or(0)
                };
                let m = self.metrics();
                m.documents_behind
                    .get_or_create(&label(peer))
                    .set(wanted.len() as i64);
                match (before, wanted.len()) {
                    (0, 0) => {}
                    (0, n) => tracing::info!(%peer, documents = n, "syncing documents that differ"),
                    (_, 0) => tracing::info!(%peer, "in sync"),
                    (_, n) => tracing::debug!(%peer, documents = n, "documents still differ"),
                }
                self.peer_accounts.insert(peer, accounts);
                // Account documents first, so mailboxes are known before their segments.
                wanted.sort_by_key(|d| !d.starts_with("acct/"));
                for doc in wanted {
                    self.poke(peer, doc);
                }
                if self.pull_again.remove(&peer) {
                    self.pull(peer).await?;
                }
            }
            Internal::Fetched { peer, ids } => {
                self.fetching.remove(&peer);
                for id in &ids {
                    self.asked.remove(id);
                }
                self.dirty = true;
                self.renumber_delivered().await?;
                // Blobs queued while this fetch ran.
                self.fetch(peer, Vec::new());
            }
        }
        Ok(())
    }

    /// Logs how much received data still waits (an initial sync's progress), at most every
    /// 5 seconds and only when it changed.
    async fn log_progress(&mut self) -> Result<(), DaemonError> {
        let (waiting, missing) = self
            .replica
            .call(|r| r.pending_counts())
            .await?
            .unwrap_or((0, 0));
        use std::sync::atomic::Ordering::Relaxed;
        let blobs = self.counters.blobs.load(Relaxed);
        let bytes = self.counters.bytes.load(Relaxed);
        if (waiting, missing, blobs) == self.progress_logged
            || self.progress_at.elapsed() < Duration::from_secs(5) && waiting > 0
        {
            return Ok(());
        }
        if waiting == 0 {
            tracing::info!(
                blobs_fetched = blobs,
                bytes_fetched = bytes,
                "every received change is delivered"
            );
        } else {
            tracing::info!(
                changes_waiting = waiting,
                blobs_missing = missing,
                blobs_fetched = blobs,
                bytes_fetched = bytes,
                "sync progress"
            );
        }
        self.progress_logged = (waiting, missing, blobs);
        self.progress_at = std::time::Instant::now();
        Ok(())
    }

    async fn tick(&mut self) -> Result<(), DaemonError> {
        self.renumber().await?;
        // Changes still waiting for blobs (a fetch failed, or the sender lacked them):
        // ask any peer.
        let missing = self.replica.call(|r| r.deliver_all(now())).await??;
        self.log_progress().await?;
        if !missing.is_empty() && self.fetching.is_empty() {
            // Rotate through the peers, so a peer that lacks a blob does not stall it.
            let peers: Vec<PeerId> = self.peers.keys().copied().collect();
            if !peers.is_empty() {
                self.rotate = self.rotate.wrapping_add(1);
                let peer = peers[self.rotate % peers.len()];
                self.fetch(peer, missing);
            }
        }
        Ok(())
    }
}
