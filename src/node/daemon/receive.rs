//! Receiving sync messages: reassembling a message from its parts, and applying the whole
//! messages that arrived together in one batch with one durable flush.

use super::{now, Core, DaemonError, MAX_SYNC_MESSAGE};
use crate::model::{BlobId, NodeId};
use crate::net::protocol::{BlobBytes, Response, CHUNK, MAX_ATTACHED_BLOBS, MAX_ATTACHED_BYTES};
use crate::node::Received;
use libp2p::request_response::ResponseChannel;
use libp2p::PeerId;

/// A whole sync message waiting to be applied with its batch.
pub(super) struct Incoming {
    peer: PeerId,
    node: NodeId,
    doc: String,
    msg: Vec<u8>,
    blobs: Vec<(BlobId, Vec<u8>)>,
    channel: ResponseChannel<Response>,
}

/// Events taken into one batch of received sync messages at most.
pub(super) const BATCH_EVENTS: usize = 256;

impl Core {
    /// One part of a sync message from `peer` about `doc`: parts must come in order and
    /// within bounds; the last one completes the message, which joins the batch.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_sync_part(
        &mut self,
        peer: PeerId,
        node: NodeId,
        doc: String,
        part: u32,
        parts: u32,
        bytes: Vec<u8>,
        blobs: Vec<BlobBytes>,
        channel: ResponseChannel<Response>,
    ) {
        let key = (peer, doc.clone());
        // Blobs come only with the last part, few and small (the frame limit bounds them
        // too); each is checked against its id when stored.
        let ok_blobs = blobs.is_empty()
            || part + 1 == parts
                && blobs.len() <= MAX_ATTACHED_BLOBS
                && blobs.iter().map(|b| b.bytes.len()).sum::<usize>() <= MAX_ATTACHED_BYTES;
        let ok_part = parts > 0
            && part < parts
            && (parts as usize) <= MAX_SYNC_MESSAGE / CHUNK
            && bytes.len() <= CHUNK
            && ok_blobs;
        let expected = self.partial.get(&key).map(|p| p.0).unwrap_or(0);
        if !ok_part || part != expected {
            self.partial.remove(&key);
            self.strike(peer);
            tracing::warn!(%peer, %doc, part, parts, "rejected a sync message part out of order or oversized");
            self.net.respond(
                channel,
                Response::Rejected {
                    why: "bad sync message part".into(),
                },
            );
            return;
        }
        self.counters
            .metrics
            .sync_bytes_received
            .inc_by(bytes.len() as u64);
        let entry = self.partial.entry(key.clone()).or_insert((0, Vec::new()));
        entry.0 += 1;
        entry.1.extend_from_slice(&bytes);
        if part + 1 < parts {
            self.net.respond(channel, Response::Ack);
            return;
        }
        let (_, msg) = self.partial.remove(&key).unwrap_or_default();
        // Applied with the other messages of the batch (see `apply_incoming`).
        self.incoming.push(Incoming {
            peer,
            node,
            doc,
            msg,
            blobs: blobs.into_iter().map(|b| (BlobId(b.id), b.bytes)).collect(),
            channel,
        });
    }

    /// Applies the whole sync messages received since the last batch, with one durable
    /// flush for all; then acknowledges each (or refuses it), fetches the blobs the new
    /// changes lack, and answers with this node's next message.
    pub(super) async fn apply_incoming(&mut self) -> Result<(), DaemonError> {
        // The messages go to the replica thread; what answers them stays here (the bytes
        // are moved, not copied: a batch of an initial sync holds megabytes).
        let (msgs, batch): (Vec<_>, Vec<_>) = std::mem::take(&mut self.incoming)
            .into_iter()
            .map(|i| {
                let answer = (i.peer, i.doc.clone(), i.channel, i.msg.len());
                ((i.node, i.doc, i.msg, i.blobs), answer)
            })
            .unzip();
        let n = msgs.len();
        let verdicts = self
            .replica
            .call(move |r| r.receive_from_peers(&msgs, now()))
            .await?;
        tracing::debug!(messages = n, "applied a batch of sync messages");
        let mut applied = false;
        let mut pull = Vec::new();
        for ((peer, doc, channel, bytes), verdict) in batch.into_iter().zip(verdicts) {
            match verdict {
                Received::Refused(why) => {
                    self.strike(peer);
                    tracing::warn!(%peer, %doc, "rejected a sync message: {why}");
                    self.net.respond(channel, Response::Rejected { why });
                }
                Received::Failed(why) => {
                    self.strike(peer);
                    tracing::warn!(%peer, %doc, error = %why, "rejected a sync message");
                    self.net.respond(channel, Response::Rejected { why });
                }
                Received::Applied {
                    missing,
                    changed,
                    caught_up,
                    attached: (blobs, blob_bytes),
                    new_account,
                } => {
                    // Blobs that came with the message count as fetched (`status`).
                    use std::sync::atomic::Ordering::Relaxed;
                    self.counters.blobs.fetch_add(blobs, Relaxed);
                    self.counters.bytes.fetch_add(blob_bytes, Relaxed);
                    self.metrics().blob_bytes_fetched.inc_by(blob_bytes);
                    // Only new changes can make heads to announce or messages to renumber.
                    applied |= changed;
                    self.strikes.remove(&peer);
                    self.net.respond(channel, Response::Ack);
                    self.dirty |= changed;
                    if changed {
                        self.relayed.insert(doc.clone());
                    }
                    tracing::debug!(%peer, %doc, bytes, changed, missing = missing.len(), "sync message applied");
                    if !missing.is_empty() {
                        self.fetch(peer, missing);
                    }
                    // The sync goes on while blobs come: automerge's protocol does not
                    // need them, only delivery to the view does. An answer that only
                    // acknowledges waits, to answer several pushes at once.
                    if caught_up {
                        self.deferred.insert((peer, doc));
                    } else {
                        self.poke(peer, doc);
                    }
                    if new_account {
                        // A new account: its mailboxes' segments can be synced now.
                        pull.push(peer);
                    }
                }
            }
        }
        if applied {
            self.renumber_delivered().await?;
        }
        pull.dedup();
        for peer in pull {
            self.pull(peer).await?;
        }
        Ok(())
    }
}
