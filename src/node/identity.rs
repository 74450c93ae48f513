//! The node identity: an ed25519 keypair kept in the data dir. Its public key is the node id
//! and will be the libp2p PeerId.

use super::NodeError;
use crate::model::NodeId;
use libp2p_identity::Keypair;

/// Generates a fresh identity; `seed` makes it deterministic (simulations, tests).
pub fn generate(seed: Option<[u8; 32]>) -> Keypair {
    match seed {
        Some(mut s) => Keypair::ed25519_from_bytes(&mut s).expect("32-byte ed25519 seed"),
        None => Keypair::generate_ed25519(),
    }
}

pub fn encode(k: &Keypair) -> Vec<u8> {
    k.to_protobuf_encoding().expect("ed25519 keys encode")
}

pub fn decode(b: &[u8]) -> Result<Keypair, NodeError> {
    Keypair::from_protobuf_encoding(b).map_err(|e| NodeError::Identity(e.to_string()))
}

pub fn node_id(k: &Keypair) -> NodeId {
    let pk = k
        .public()
        .try_into_ed25519()
        .expect("dovetail identities are ed25519");
    NodeId(pk.to_bytes())
}
