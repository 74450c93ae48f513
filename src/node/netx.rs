//! What the daemon needs from a replica beyond the offline API: the network identity and
//! the check that a peer may write a document here.

use super::replica::{parse_doc_id, DocKind};
use super::{NodeError, Replica};
use crate::model::{AccountName, BlobId, NodeId};
use crate::store::tables;

/// What became of one sync message received from a peer.
#[derive(Debug)]
pub enum Received {
    /// The peer may not write this document here: nothing stored.
    Refused(String),
    /// The message was bad (or could not be stored): nothing stored.
    Failed(String),
    /// Stored durably; the new changes lack these blobs. `changed`: it brought changes
    /// (else it only told what the peer has). `new_account`: it brought an account this
    /// node did not have, whose mailboxes can be synced now.
    Applied {
        missing: Vec<BlobId>,
        changed: bool,
        new_account: bool,
    },
}

impl Replica {
    /// The node identity as the data dir keeps it (a protobuf-encoded ed25519 keypair): the
    /// libp2p identity of the node.
    pub fn identity_bytes(&self) -> Result<Vec<u8>, NodeError> {
        self.kv
            .get(tables::KEY_IDENTITY)?
            .ok_or_else(|| NodeError::Identity("the data dir has no identity".into()))
    }

    /// Checks and applies sync messages from peers, each in its own transaction (a refused
    /// or bad one changes nothing), in order (so an account document applied early in the
    /// batch makes its segments acceptable later in it), with one durable flush for all:
    /// nothing is reported `Applied` before that flush.
    pub fn receive_from_peers(
        &mut self,
        msgs: &[(NodeId, String, Vec<u8>)],
        now: i64,
    ) -> Vec<Received> {
        if let Err(e) = self.ensure_pending() {
            return msgs
                .iter()
                .map(|_| Received::Failed(e.to_string()))
                .collect();
        }
        let mut out = Vec::with_capacity(msgs.len());
        // Whether any message brought changes: a batch that only updated sync states
        // (persisted as an optimisation) needs no flush.
        let mut changed = false;
        for (peer, doc, msg) in msgs {
            let verdict = match self.accepts_doc(doc) {
                Ok(Err(why)) => Received::Refused(why),
                Err(e) => Received::Failed(e.to_string()),
                Ok(Ok(())) => {
                    let new_account = doc
                        .strip_prefix("acct/")
                        .and_then(|a| AccountName::try_from(a).ok())
                        .is_some_and(|a| !self.has_account(&a).unwrap_or(true));
                    match self.write_with(false, |r, tx| r.receive_in(tx, peer, doc, msg, now)) {
                        Ok(got) => {
                            let new = got.is_some();
                            changed |= new;
                            Received::Applied {
                                changed: new,
                                missing: got.unwrap_or_default(),
                                new_account: new_account && new,
                            }
                        }
                        Err(e) => Received::Failed(e.to_string()),
                    }
                }
            };
            out.push(verdict);
        }
        if !changed {
            return out;
        }
        if let Err(e) = self.kv.flush() {
            let why = format!("flush failed: {e}");
            for v in &mut out {
                if matches!(v, Received::Applied { .. }) {
                    *v = Received::Failed(why.clone());
                }
            }
        }
        out
    }

    /// Whether a peer may sync document `doc` into this replica: a well-formed id of an
    /// account the node's `--replicate-accounts` patterns match, and for a segment, an
    /// account it has. `Err` says why not.
    pub fn accepts_doc(&self, doc: &str) -> Result<Result<(), String>, NodeError> {
        let kind = parse_doc_id(doc);
        if let (Some(_), Some(a)) = (&kind, doc_account(doc)) {
            if !self.opts.replicate.matches(a) {
                return Ok(Err(format!(
                    "account {a:?} is not replicated here (--replicate-accounts)"
                )));
            }
        }
        match kind {
            None => Ok(Err(format!("bad document id {doc:?}"))),
            Some(DocKind::Account) => Ok(Ok(())),
            Some(DocKind::Segment(..)) => {
                let name = doc.split('/').nth(1).unwrap_or_default();
                let a = AccountName::try_from(name).map_err(NodeError::from)?;
                Ok(if self.has_account(&a)? {
                    Ok(())
                } else {
                    Err(format!("document {doc:?} of unknown account {name:?}"))
                })
            }
        }
    }
}

/// The account a document id names, if well formed.
pub fn doc_account(doc: &str) -> Option<&str> {
    let mut p = doc.split('/');
    match (p.next(), p.next()) {
        (Some("acct" | "seg"), Some(a)) if !a.is_empty() => Some(a),
        _ => None,
    }
}
