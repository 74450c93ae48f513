//! Garbage collection of message bodies: a body is kept while some message that is not
//! expunged names it (in any mailbox: a copy shares its original's body), or a change that
//! waits to be applied names it; every other body is dropped and its space reclaimed.
//!
//! Mark and sweep, not reference counts: the mark reads every message record once (about a
//! second per million messages), and there is no count that a crash, a bug or an upgrade
//! could leave wrong. It runs inside the replica, which is single-threaded: no body can be
//! stored between the mark and the sweep without being named by the view or by a waiting
//! change first (appends store the body and its message in one operation; a sync stores a
//! change in the pending table before fetching its bodies).

use super::doc_id::{parse_doc_id, DocKind};
use super::{NodeError, Replica};
use crate::crdt::meta::ChangeMeta;
use crate::store::{GcStats, Tx};
use automerge::ChangeHash;
use std::collections::HashSet;

impl Replica {
    /// Drops the bodies nothing needs any more; see the module documentation.
    pub fn gc(&mut self) -> Result<GcStats, NodeError> {
        let mut live: HashSet<[u8; 32]> = HashSet::new();
        crate::store::msg_blocks::scan(self.kv.as_ref(), b"N", &mut |_, block| {
            live.extend(
                block
                    .values()
                    .filter(|rec| !rec.expunged)
                    .map(|rec| rec.blob.0),
            );
            true
        })?;
        // Waiting changes: the bodies they add must stay (they were fetched for them).
        let mut pending: Vec<(ChangeHash, String)> = Vec::new();
        self.kv.scan(b"P", &mut |k, v| {
            if let Some(h) = k.get(17..49).and_then(|h| <[u8; 32]>::try_from(h).ok()) {
                pending.push((ChangeHash(h), String::from_utf8_lossy(v).into_owned()));
            }
            true
        })?;
        let kv = std::sync::Arc::clone(&self.kv);
        let tx = Tx::new(kv.as_ref());
        for (h, doc) in pending {
            if !matches!(parse_doc_id(&doc), Some(DocKind::Segment(..))) {
                continue;
            }
            let Some((am, _)) = self.doc(&tx, &doc, false)? else {
                continue;
            };
            let meta = am
                .get_change_by_hash(&h)
                .and_then(|c| c.message().map(ChangeMeta::decode));
            if let Some(Ok(m)) = meta {
                live.extend(m.blobs.iter().map(|b| b.0));
            }
        }
        drop(tx);
        self.close_docs();
        Ok(self.kv.blob_gc(&|id| live.contains(id))?)
    }
}
