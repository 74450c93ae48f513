//! Per-peer, per-document sync sessions: automerge's sync protocol, pumped by the caller
//! (the network event loop, or the offline sync of two data dirs). Sans-IO: messages are
//! bytes in and bytes out.

use automerge::sync::{self, SyncDoc};
use automerge::AutoCommit;

/// Errors of the sync layer: undecodable or unappliable messages from a peer.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("bad sync message: {0}")]
    BadMessage(String),
    #[error("bad sync state: {0}")]
    BadState(String),
    #[error("applying sync message: {0}")]
    Apply(Box<automerge::AutomergeError>),
}

/// The state of syncing one document with one peer. Persisted between sessions so that a
/// reconnecting peer exchanges heads, not a summary of all history.
pub struct DocSession {
    state: sync::State,
}

impl Default for DocSession {
    fn default() -> Self {
        DocSession::new()
    }
}

impl DocSession {
    pub fn new() -> DocSession {
        DocSession {
            state: sync::State::new(),
        }
    }

    /// Restores a persisted session.
    pub fn decode(bytes: &[u8]) -> Result<DocSession, SyncError> {
        sync::State::decode(bytes)
            .map(|state| DocSession { state })
            .map_err(|e| SyncError::BadState(e.to_string()))
    }

    /// The persistent part of the session (automerge keeps only what survives a reconnect).
    pub fn encode(&self) -> Vec<u8> {
        self.state.encode()
    }

    /// The next message for the peer, if there is anything to say.
    ///
    /// automerge sends its whole document (compressed) instead of the changes a peer lacks
    /// when they are more than a third of the document's changes, counted in changes, not
    /// bytes. A segment holds few, large changes (one per appended batch, one per flag
    /// command): a node back from a week away lacked 17 of 34 changes (110 KB) and got the
    /// whole 2 MB segment. So the whole document goes only to a peer that has none of it
    /// (an initial sync, where it is the cheapest form); any other peer gets its changes.
    pub fn generate(&mut self, doc: &mut AutoCommit) -> Option<Vec<u8>> {
        self.generate_listing(doc).map(|(m, _)| m)
    }

    /// [`DocSession::generate`], with the hashes of the changes the message carries (what
    /// the session had not sent before), so the caller can send what they name along.
    pub fn generate_listing(
        &mut self,
        doc: &mut AutoCommit,
    ) -> Option<(Vec<u8>, Vec<automerge::ChangeHash>)> {
        // automerge prunes `sent_hashes` to what the peer has not acknowledged: small.
        let before = self.state.sent_hashes.clone();
        let msg = self.generate_inner(doc)?;
        let sent = self
            .state
            .sent_hashes
            .difference(&before)
            .copied()
            .collect();
        Some((msg, sent))
    }

    fn generate_inner(&mut self, doc: &mut AutoCommit) -> Option<Vec<u8>> {
        let peer_has_some = self
            .state
            .their_heads
            .as_ref()
            .is_some_and(|h| !h.is_empty());
        if self.sends_whole_doc() {
            return self.generate_whole(doc);
        }
        let caps = self.state.their_capabilities.clone();
        if peer_has_some {
            if let Some(c) = self.state.their_capabilities.as_mut() {
                c.retain(|c| *c != sync::Capability::MessageV2);
            }
        }
        let msg = doc
            .sync()
            .generate_sync_message(&mut self.state)
            .map(|m| m.encode());
        self.state.their_capabilities = caps;
        msg
    }

    /// Whether automerge would answer with the whole document: the peer told it has
    /// nothing (its heads are empty) and reads version 2 messages.
    fn sends_whole_doc(&self) -> bool {
        self.state
            .their_heads
            .as_ref()
            .is_some_and(|h| h.is_empty())
            && self.state.their_have.is_some()
            && self.state.their_need.is_some()
            && self
                .state
                .their_capabilities
                .as_ref()
                .is_some_and(|c| c.contains(&sync::Capability::MessageV2))
    }

    /// The whole-document message, with the document saved without `DEFLATE`: automerge's
    /// own message compresses it, and compressing a 16k-message segment was ~15% of the CPU
    /// of a sync into an empty data dir (the receiver then inflates it again). The columns
    /// are ~2x larger; a segment's bytes are a few percent of its messages' bodies. The rest
    /// of the message (heads, have, need, flags, session bookkeeping) is automerge's: it
    /// builds an empty message when it does not know what the peer has.
    fn generate_whole(&mut self, doc: &mut AutoCommit) -> Option<Vec<u8>> {
        let have = self.state.their_have.take();
        let msg = doc.sync().generate_sync_message(&mut self.state);
        self.state.their_have = have;
        let mut msg = msg?;
        if doc.get_heads().is_empty() {
            return Some(msg.encode());
        }
        msg.changes = sync::ChunkList::from(doc.save_nocompress());
        msg.version = sync::MessageVersion::V2;
        let all = doc.get_changes_meta(&[]).into_iter().map(|c| c.hash);
        self.state.sent_hashes.extend(all);
        Some(msg.encode())
    }

    /// Applies a message from the peer to `doc`.
    pub fn receive(&mut self, doc: &mut AutoCommit, msg: &[u8]) -> Result<(), SyncError> {
        self.receive_caught_up(doc, msg).map(|_| ())
    }

    /// [`DocSession::receive`]; `true` when the document then has exactly the heads the
    /// peer had when it sent the message: the answer only acknowledges, it asks for nothing
    /// and brings nothing the peer lacks (as far as this message tells).
    pub fn receive_caught_up(
        &mut self,
        doc: &mut AutoCommit,
        msg: &[u8],
    ) -> Result<bool, SyncError> {
        let m = sync::Message::decode(msg).map_err(|e| SyncError::BadMessage(e.to_string()))?;
        let mut theirs = m.heads.clone();
        doc.sync()
            .receive_sync_message(&mut self.state, m)
            .map_err(|e| SyncError::Apply(Box::new(e)))?;
        let mut ours = doc.get_heads();
        theirs.sort();
        ours.sort();
        Ok(ours == theirs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;

    /// A document of `n` large changes (like a segment's appended batches).
    fn grow(doc: &mut AutoCommit, from: usize, n: usize) {
        for i in from..from + n {
            // Pseudo-random letters: the whole document must not compress to nothing.
            let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let v: String = (0..20_000)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    char::from(b'a' + (x % 26) as u8)
                })
                .collect();
            doc.put(automerge::ROOT, format!("k{i}"), v).expect("put");
            doc.commit();
        }
    }

    /// Runs both sessions until neither has anything to say; returns the bytes sent by `a`.
    fn run(a: &mut AutoCommit, b: &mut AutoCommit) -> usize {
        let (mut sa, mut sb) = (DocSession::new(), DocSession::new());
        let mut sent = 0;
        for _ in 0..10 {
            let ma = sa.generate(a);
            if let Some(m) = &ma {
                sent += m.len();
                sb.receive(b, m).expect("b receives");
            }
            let mb = sb.generate(b);
            if let Some(m) = &mb {
                sa.receive(a, m).expect("a receives");
            }
            if ma.is_none() && mb.is_none() {
                break;
            }
        }
        assert_eq!(a.get_heads(), b.get_heads(), "not converged");
        sent
    }

    /// A peer that has part of a document gets the changes it lacks, not the whole
    /// document, even when they are most of its changes (automerge alone sends the whole
    /// document past a third, counted in changes); a peer with nothing gets everything.
    #[test]
    fn a_peer_lacking_most_changes_gets_only_those() {
        let mut a = AutoCommit::new();
        grow(&mut a, 0, 6);
        let mut b = a.fork();
        grow(&mut a, 6, 6);
        let lacking: usize = a
            .get_changes(&b.get_heads())
            .iter()
            .map(|c| c.raw_bytes().len())
            .sum();
        let whole = a.save().len();
        let sent = run(&mut a, &mut b);
        assert!(
            sent < lacking + 4096,
            "sent {sent} B for {lacking} B of missing changes (whole document {whole} B)"
        );
        // automerge's whole-document message would have been sent before the fix.
        assert!(lacking + 4096 < whole, "test documents too small to tell");
        // The whole document goes uncompressed (see `generate_whole`), and once.
        let plain = a.save_nocompress().len();
        let mut empty = AutoCommit::new();
        let sent = run(&mut a, &mut empty);
        assert!(
            sent < plain + 4096,
            "a new peer got {sent} B of a {plain} B document"
        );
        assert_eq!(
            empty.save(),
            a.save(),
            "the new peer holds another document"
        );
    }
}
