//! Announcing and pushing the documents this node changed: after every write, received
//! change or renumbering (every 5 ms at most), the heads of the documents saved since the
//! last time are read; local changes are pushed to the peers that replicate the account,
//! and what was not pushed to every peer is announced over gossipsub.

use super::*;
use crate::net::protocol::DocHeads;

impl Core {
    /// Re-reads the heads of the documents saved since the last call (all of them the first
    /// time); announces the ones that changed.
    pub(super) async fn refresh(&mut self) -> Result<(), DaemonError> {
        self.dirty = false;
        let full = !self.heads_loaded;
        let read = if full {
            self.replica.call(|r| r.all_heads_from_now()).await??
        } else {
            self.replica.call(|r| r.take_touched_heads()).await??
        };
        self.heads_loaded = true;
        let mut changed = Vec::new();
        for (doc, mut hs) in read {
            hs.sort();
            if self.heads.get(&doc) != Some(&hs) {
                changed.push((doc.clone(), hs.clone()));
                self.heads.insert(doc, hs);
            }
        }
        let relayed = std::mem::take(&mut self.relayed);
        if !changed.is_empty() {
            self.summary = None;
        }
        // Push: a peer that replicates the account gets the new changes at once (automerge's
        // sync state knows what it has), instead of after an announcement and its poke back:
        // one message instead of three on the path from a write to the peers' views. A
        // document pushed to every connected peer is not announced too: the push tells them
        // more, and an announcement costs every peer a message to read.
        let mut announce = Vec::new();
        if full {
            announce = changed;
        } else {
            let peers: Vec<PeerId> = self.peers.keys().copied().collect();
            for (doc, hs) in changed {
                let acc = doc_account(&doc);
                // Changes received from a peer are announced, not pushed on: in a full mesh
                // every peer had them from their writer, and a second copy would cost each
                // a message, an apply and an answer. A peer that lacks them pokes back. They
                // are announced with the acknowledging answers (`relay_later`): in a full
                // mesh the announcement tells nobody anything, so one per document every
                // 100 ms instead of one per change; a chain of nodes pays that per hop.
                let received = relayed.contains(&doc);
                if received {
                    self.relay_later.insert(doc);
                    continue;
                }
                let mut everyone = true;
                for p in &peers {
                    let theirs = acc
                        .is_some_and(|a| self.peer_accounts.get(p).is_some_and(|s| s.contains(a)));
                    if theirs {
                        self.poke(*p, doc.clone());
                    } else {
                        everyone = false;
                    }
                }
                if !everyone {
                    announce.push((doc, hs));
                }
            }
        }
        self.announce(&announce);
        Ok(())
    }

    /// Announces the documents changed by peers' messages since the last call, with their
    /// heads now.
    pub(super) fn announce_relayed(&mut self) {
        let docs: Vec<DocHeads> = std::mem::take(&mut self.relay_later)
            .into_iter()
            .filter_map(|d| self.heads.get(&d).map(|hs| (d, hs.clone())))
            .collect();
        self.announce(&docs);
    }

    fn announce(&self, announce: &[DocHeads]) {
        for batch in announce.chunks(protocol::ANNOUNCE_BATCH) {
            tracing::debug!(docs = batch.len(), "announcing changed documents");
            self.net.publish(
                Announce {
                    docs: batch.to_vec(),
                }
                .encode(),
            );
        }
    }
}
