//! The libp2p network of a node: TCP (+ pnet with a cluster key) + Noise + Yamux; gossipsub
//! announces changed documents; request-response ([`protocol`]) carries sync messages,
//! summaries and blobs; identify + kad make one bootstrap address enough to find every node;
//! mDNS when asked. One [`EventLoop`] task owns the Swarm; [`Client`] handles (cloneable)
//! send it commands, and what peers send comes out as [`Event`]s. The loop knows nothing of
//! replicas: the node layer decides what to do with requests.

pub mod protocol;

use futures::StreamExt;
use libp2p::core::transport::upgrade::Version;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{DialError, ListenError, NetworkBehaviour, SwarmEvent};
use libp2p::{
    allow_block_list, gossipsub, identify, identity, kad, mdns, noise, ping, pnet, tcp, yamux,
    Multiaddr, PeerId, StreamProtocol, Swarm, Transport,
};
use protocol::{Codec, Framed, Request, Response, Traffic};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, oneshot};

pub use libp2p::pnet::PreSharedKey;

/// Errors of the network layer.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("bad network identity: {0}")]
    Identity(String),
    #[error("bad cluster key {path}: {why}")]
    ClusterKey { path: String, why: String },
    #[error("building the network: {0}")]
    Build(String),
    #[error("cannot listen on {addr}: {why}")]
    Listen { addr: String, why: String },
    #[error("request to {peer} failed: {why}")]
    Request { peer: PeerId, why: String },
    #[error("the network event loop has stopped")]
    Stopped,
}

/// The gossipsub topic of document announcements.
const TOPIC: &str = "dovetail/heads/1";

/// How a node joins the network.
#[derive(Clone, Debug, Default)]
pub struct NetConfig {
    /// Addresses to listen on (default: 127.0.0.1, any port).
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start (and again whenever no peer is connected).
    pub bootstrap: Vec<Multiaddr>,
    /// Discover peers on the LAN.
    pub mdns: bool,
    /// The cluster key: only nodes holding it can connect.
    pub cluster_key: Option<PreSharedKey>,
    /// When not empty, only these peers may connect.
    pub allow_peers: Vec<PeerId>,
}

/// Reads a cluster key file (the go-libp2p `swarm.key` format `dovetail keygen` writes).
pub fn read_cluster_key(path: &std::path::Path) -> Result<PreSharedKey, NetError> {
    let err = |why: String| NetError::ClusterKey {
        path: path.display().to_string(),
        why,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    text.parse::<PreSharedKey>().map_err(|e| err(e.to_string()))
}

/// A fresh random cluster key in the file format [`read_cluster_key`] reads.
pub fn generate_cluster_key() -> String {
    let key: [u8; 32] = rand::random();
    PreSharedKey::new(key).to_string()
}

/// The ed25519 public key inside a peer id (dovetail node ids are these 32 bytes).
pub fn peer_public_key(peer: &PeerId) -> Option<[u8; 32]> {
    let mh: &libp2p::multihash::Multihash<64> = peer.as_ref();
    // Ed25519 peer ids are "identity" multihashes of the protobuf-encoded public key.
    if mh.code() != 0 {
        return None;
    }
    let pk = identity::PublicKey::try_decode_protobuf(mh.digest()).ok()?;
    Some(pk.try_into_ed25519().ok()?.to_bytes())
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    allow: Toggle<allow_block_list::Behaviour<allow_block_list::AllowedPeers>>,
    gossip: gossipsub::Behaviour,
    rr: request_response::Behaviour<Codec>,
    identify: identify::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    mdns: Toggle<mdns::tokio::Behaviour>,
    ping: ping::Behaviour,
}

/// What the network reports to the node.
#[derive(Debug)]
pub enum Event {
    /// A peer asks something; answer with [`Client::respond`].
    Request {
        peer: PeerId,
        request: Request,
        channel: ResponseChannel<Response>,
    },
    /// A peer announced documents (`source` made the announcement).
    Announce { source: PeerId, data: Vec<u8> },
    /// A connection to a peer is up (the first one, if several).
    Connected { peer: PeerId, addr: Multiaddr },
    /// The last connection to a peer closed.
    Disconnected { peer: PeerId },
    /// The node listens on a new address (with `/p2p/<id>`).
    Listening { addr: Multiaddr },
}

/// A connected peer as `status` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PeerInfo {
    pub peer: String,
    pub addr: String,
    /// Seconds since the Unix epoch when the connection came up.
    pub since: u64,
    /// Bytes of request-response frames sent to the peer since the connection came up.
    pub sent: u64,
    /// Bytes of request-response frames received from the peer since then.
    pub received: u64,
}

enum Command {
    Request {
        peer: PeerId,
        request: Request,
        reply: oneshot::Sender<Result<Response, NetError>>,
    },
    Respond {
        channel: ResponseChannel<Response>,
        response: Response,
    },
    Publish(Vec<u8>),
    Dial(Multiaddr),
    Disconnect(PeerId),
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    Shutdown,
}

/// A cloneable handle on the event loop.
#[derive(Clone)]
pub struct Client {
    tx: mpsc::UnboundedSender<Command>,
    /// This node's peer id.
    pub local: PeerId,
}

impl Client {
    fn send(&self, c: Command) -> Result<(), NetError> {
        self.tx.send(c).map_err(|_| NetError::Stopped)
    }

    /// Sends a request and waits for the answer (or the request timeout).
    pub async fn request(&self, peer: PeerId, request: Request) -> Result<Response, NetError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Request {
            peer,
            request,
            reply,
        })?;
        rx.await.map_err(|_| NetError::Stopped)?
    }

    /// Answers a request.
    pub fn respond(&self, channel: ResponseChannel<Response>, response: Response) {
        let _ = self.send(Command::Respond { channel, response });
    }

    /// Publishes an announcement to every peer.
    pub fn publish(&self, data: Vec<u8>) {
        let _ = self.send(Command::Publish(data));
    }

    pub fn dial(&self, addr: Multiaddr) {
        let _ = self.send(Command::Dial(addr));
    }

    /// Closes every connection to `peer` (a peer that misbehaved).
    pub fn disconnect(&self, peer: PeerId) {
        let _ = self.send(Command::Disconnect(peer));
    }

    /// The connected peers.
    pub async fn peers(&self) -> Vec<PeerInfo> {
        let (tx, rx) = oneshot::channel();
        if self.send(Command::Peers(tx)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Stops the event loop (connections close).
    pub fn shutdown(&self) {
        let _ = self.send(Command::Shutdown);
    }
}

/// Owns the Swarm; runs until [`Client::shutdown`] or until every client is dropped.
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
    pending: HashMap<OutboundRequestId, oneshot::Sender<Result<Response, NetError>>>,
    connected: HashMap<PeerId, PeerInfo>,
    /// Request-response bytes per connected peer (since its first connection came up).
    traffic: HashMap<PeerId, Arc<Traffic>>,
    bootstrap: Vec<Multiaddr>,
    topic: gossipsub::IdentTopic,
    dialing: HashSet<PeerId>,
    /// Peers mDNS says are on the LAN now (until it reports them expired), with their
    /// addresses: re-dialled while not connected, since mDNS announces a peer only once
    /// per query interval (minutes) and a first dial can fail.
    lan: HashMap<PeerId, Vec<Multiaddr>>,
}

/// Dial options for an address: always from a fresh source port. libp2p's default dials
/// from the listen port (port reuse, for NAT hole punching), so two nodes that discover
/// each other at the same instant (mDNS answers both at once) open the *same* TCP
/// connection from both ends (a TCP simultaneous open): both run the Noise initiator and
/// the handshake fails on both sides.
fn fresh_port(addr: Multiaddr) -> libp2p::swarm::dial_opts::DialOpts {
    libp2p::swarm::dial_opts::DialOpts::unknown_peer_id()
        .address(addr)
        .allocate_new_port()
        .build()
}

/// Builds the swarm and starts listening. `key` is the node's identity, protobuf-encoded
/// (as the data dir keeps it).
pub fn start(
    key: &[u8],
    cfg: NetConfig,
) -> Result<(Client, mpsc::UnboundedReceiver<Event>, EventLoop), NetError> {
    let key = identity::Keypair::from_protobuf_encoding(key)
        .map_err(|e| NetError::Identity(e.to_string()))?;
    let local = key.public().to_peer_id();
    let psk = cfg.cluster_key;
    let build = |e: &dyn std::fmt::Display| NetError::Build(e.to_string());
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_other_transport(|key| {
            let noise = noise::Config::new(key)?;
            let base = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
            // With a cluster key every connection first proves it over pnet: a node without
            // the key fails that handshake before Noise, so it learns nothing.
            let base = match psk {
                Some(psk) => either::Either::Left(
                    base.and_then(move |socket, _| pnet::PnetConfig::new(psk).handshake(socket)),
                ),
                None => either::Either::Right(base),
            };
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                base.upgrade(Version::V1Lazy)
                    .authenticate(noise)
                    .multiplex(yamux::Config::default())
                    .timeout(Duration::from_secs(20)),
            )
        })
        .map_err(|e| build(&e))?
        .with_behaviour(|key| {
            // Announcements are not signed: every connection is already authenticated
            // (Noise, and pnet with a cluster key), and an announcement is only a hint
            // (the receiver compares heads and at most asks the named author for a sync
            // message, which it checks like any other). Signing and verifying each one cost
            // an ed25519 signature per write and a verification per peer. A message that
            // does carry a signature is still verified (`Permissive`).
            let gossip_cfg = gossipsub::ConfigBuilder::default()
                .heartbeat_interval(Duration::from_millis(500))
                .max_transmit_size(256 * 1024)
                .validation_mode(gossipsub::ValidationMode::Permissive)
                .build()
                .map_err(std::io::Error::other)?;
            let gossip = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Author(key.public().to_peer_id()),
                gossip_cfg,
            )
            .map_err(std::io::Error::other)?;
            let rr = request_response::Behaviour::with_codec(
                Codec::default(),
                [(protocol::PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(60))
                    .with_max_concurrent_streams(256),
            );
            let mut kad_cfg = kad::Config::new(StreamProtocol::new("/dovetail/kad/1"));
            kad_cfg.set_periodic_bootstrap_interval(Some(Duration::from_secs(30)));
            let mut kad = kad::Behaviour::with_config(
                key.public().to_peer_id(),
                kad::store::MemoryStore::new(key.public().to_peer_id()),
                kad_cfg,
            );
            kad.set_mode(Some(kad::Mode::Server));
            let mdns = if cfg.mdns {
                Some(mdns::tokio::Behaviour::new(
                    mdns::Config::default(),
                    key.public().to_peer_id(),
                )?)
            } else {
                None
            };
            let allow = if cfg.allow_peers.is_empty() {
                None
            } else {
                let mut a =
                    allow_block_list::Behaviour::<allow_block_list::AllowedPeers>::default();
                for p in &cfg.allow_peers {
                    a.allow_peer(*p);
                }
                Some(a)
            };
            Ok(Behaviour {
                allow: allow.into(),
                gossip,
                rr,
                identify: identify::Behaviour::new(identify::Config::new(
                    "/dovetail/1".into(),
                    key.public(),
                )),
                kad,
                mdns: mdns.into(),
                ping: ping::Behaviour::new(ping::Config::new()),
            })
        })
        .map_err(|e| build(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    let topic = gossipsub::IdentTopic::new(TOPIC);
    swarm
        .behaviour_mut()
        .gossip
        .subscribe(&topic)
        .map_err(|e| build(&e))?;
    let listen = if cfg.listen.is_empty() {
        vec!["/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr")]
    } else {
        cfg.listen
    };
    for addr in listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| NetError::Listen {
                addr: addr.to_string(),
                why: e.to_string(),
            })?;
    }
    for addr in &cfg.bootstrap {
        if let Err(e) = swarm.dial(fresh_port(addr.clone())) {
            tracing::warn!(%addr, error = %e, "cannot dial bootstrap address");
        }
    }
    let (tx, commands) = mpsc::unbounded_channel();
    let (events_tx, events) = mpsc::unbounded_channel();
    Ok((
        Client { tx, local },
        events,
        EventLoop {
            swarm,
            commands,
            events: events_tx,
            pending: HashMap::new(),
            connected: HashMap::new(),
            traffic: HashMap::new(),
            bootstrap: cfg.bootstrap,
            topic,
            dialing: HashSet::new(),
            lan: HashMap::new(),
        },
    ))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl EventLoop {
    /// Runs until shut down.
    pub async fn run(mut self) {
        let mut redial = tokio::time::interval(Duration::from_secs(5));
        redial.tick().await;
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm(ev),
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Shutdown) | None => break,
                    Some(c) => self.on_command(c),
                },
                _ = redial.tick() => {
                    // Bootstrap peers that were down at start, or a node cut off: try again.
                    if self.connected.is_empty() {
                        for addr in self.bootstrap.clone() {
                            let _ = self.swarm.dial(fresh_port(addr));
                        }
                    }
                    // LAN peers whose dial failed or whose connection dropped.
                    let lan: Vec<_> = self.lan.iter().map(|(p, a)| (*p, a.clone())).collect();
                    for (peer, addrs) in lan {
                        self.dial_peer(peer, addrs);
                    }
                }
            }
        }
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(NetError::Stopped));
        }
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for p in peers {
            let _ = self.swarm.disconnect_peer_id(p);
        }
    }

    fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    fn on_command(&mut self, c: Command) {
        match c {
            Command::Request {
                peer,
                request,
                reply,
            } => {
                let traffic = self.traffic.entry(peer).or_default().clone();
                let id = self
                    .swarm
                    .behaviour_mut()
                    .rr
                    .send_request(&peer, Framed::outbound(request, traffic));
                self.pending.insert(id, reply);
            }
            Command::Respond { channel, response } => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .rr
                    .send_response(channel, response);
            }
            Command::Publish(data) => {
                let topic = self.topic.clone();
                if let Err(e) = self.swarm.behaviour_mut().gossip.publish(topic, data) {
                    // No subscribed peer yet: the summary exchange on connection covers it.
                    tracing::debug!(error = %e, "announcement not published");
                }
            }
            Command::Dial(addr) => {
                if let Err(e) = self.swarm.dial(fresh_port(addr.clone())) {
                    tracing::warn!(%addr, error = %e, "cannot dial");
                }
            }
            Command::Disconnect(peer) => {
                let _ = self.swarm.disconnect_peer_id(peer);
            }
            Command::Peers(reply) => {
                let peers = self
                    .connected
                    .iter()
                    .map(|(id, p)| {
                        let t = self.traffic.get(id);
                        let get = |f: fn(&Traffic) -> &std::sync::atomic::AtomicU64| {
                            t.map_or(0, |t| f(t).load(std::sync::atomic::Ordering::Relaxed))
                        };
                        PeerInfo {
                            sent: get(|t| &t.sent),
                            received: get(|t| &t.received),
                            ..p.clone()
                        }
                    })
                    .collect();
                let _ = reply.send(peers);
            }
            Command::Shutdown => {}
        }
    }

    fn dial_peer(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        if peer == *self.swarm.local_peer_id()
            || self.swarm.is_connected(&peer)
            || !self.dialing.insert(peer)
        {
            return;
        }
        let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
            .addresses(addrs)
            .allocate_new_port()
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            self.dialing.remove(&peer);
            tracing::debug!(%peer, error = %e, "cannot dial a discovered peer");
        }
    }

    fn on_swarm(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                let full = address.with(Protocol::P2p(*self.swarm.local_peer_id()));
                tracing::info!(addr = %full, "listening");
                self.emit(Event::Listening { addr: full });
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                self.dialing.remove(&peer_id);
                if num_established.get() == 1 {
                    let addr = endpoint.get_remote_address().clone();
                    tracing::debug!(peer = %peer_id, %addr, "connected");
                    self.connected.insert(
                        peer_id,
                        PeerInfo {
                            peer: peer_id.to_string(),
                            addr: addr.to_string(),
                            since: now_secs(),
                            sent: 0,
                            received: 0,
                        },
                    );
                    self.traffic.insert(peer_id, Arc::default());
                    self.swarm
                        .behaviour_mut()
                        .gossip
                        .add_explicit_peer(&peer_id);
                    self.emit(Event::Connected {
                        peer: peer_id,
                        addr,
                    });
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                cause,
                ..
            } => {
                tracing::debug!(peer = %peer_id, ?cause, "disconnected");
                self.connected.remove(&peer_id);
                self.traffic.remove(&peer_id);
                self.swarm
                    .behaviour_mut()
                    .gossip
                    .remove_explicit_peer(&peer_id);
                self.emit(Event::Disconnected { peer: peer_id });
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                peer_id,
                ..
            } => {
                let why = match &error {
                    ListenError::Denied { cause } => format!("refused: {cause}"),
                    e => format!("handshake failed (another cluster key?): {e}"),
                };
                tracing::warn!(peer = ?peer_id, addr = %send_back_addr, "refused a connection: {why}");
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                if let Some(p) = peer_id {
                    self.dialing.remove(&p);
                }
                match &error {
                    DialError::Denied { cause } => {
                        tracing::warn!(peer = ?peer_id, "refused a connection: {cause}")
                    }
                    e => tracing::debug!(peer = ?peer_id, error = %e, "dial failed"),
                }
            }
            SwarmEvent::Behaviour(ev) => self.on_behaviour(ev),
            _ => {}
        }
    }

    fn on_behaviour(&mut self, ev: BehaviourEvent) {
        match ev {
            BehaviourEvent::Rr(request_response::Event::Message { peer, message, .. }) => {
                match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => {
                        let traffic = self.traffic.entry(peer).or_default();
                        traffic
                            .received
                            .fetch_add(request.bytes, std::sync::atomic::Ordering::Relaxed);
                        // The answer's frame counts towards the same peer.
                        let _ = request.slot.set(traffic.clone());
                        self.emit(Event::Request {
                            peer,
                            request: request.msg,
                            channel,
                        })
                    }
                    request_response::Message::Response {
                        request_id,
                        response,
                    } => {
                        if let Some(reply) = self.pending.remove(&request_id) {
                            let _ = reply.send(Ok(response));
                        }
                    }
                }
            }
            BehaviourEvent::Rr(request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            }) => {
                if let Some(reply) = self.pending.remove(&request_id) {
                    let _ = reply.send(Err(NetError::Request {
                        peer,
                        why: error.to_string(),
                    }));
                }
            }
            BehaviourEvent::Rr(request_response::Event::InboundFailure { peer, error, .. }) => {
                // Undecodable or oversized frames end here: the stream is dropped, nothing
                // reached the replica.
                tracing::warn!(%peer, %error, "bad request from peer");
            }
            BehaviourEvent::Gossip(gossipsub::Event::Message {
                propagation_source,
                message,
                ..
            }) => {
                let source = message.source.unwrap_or(propagation_source);
                self.emit(Event::Announce {
                    source,
                    data: message.data,
                });
            }
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                for addr in info.listen_addrs {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
                // Ask the new peer (and through it, the cluster) for the nodes near us: the
                // answers land in the routing table, and every new entry is dialled.
                let _ = self.swarm.behaviour_mut().kad.bootstrap();
            }
            BehaviourEvent::Kad(kad::Event::RoutingUpdated {
                peer, addresses, ..
            }) => {
                let addrs = addresses.into_vec();
                self.dial_peer(peer, addrs);
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(list)) => {
                let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
                for (p, a) in list {
                    by_peer.entry(p).or_default().push(a);
                }
                for (p, addrs) in by_peer {
                    tracing::debug!(peer = %p, "discovered by mDNS");
                    self.lan.insert(p, addrs.clone());
                    self.dial_peer(p, addrs);
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Expired(list)) => {
                for (p, a) in list {
                    if let Some(addrs) = self.lan.get_mut(&p) {
                        addrs.retain(|x| *x != a);
                        if addrs.is_empty() {
                            self.lan.remove(&p);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}
