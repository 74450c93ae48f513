//! What the daemon needs from a replica beyond the offline API: the network identity and
//! the check that a peer may write a document here.

use super::replica::{parse_doc_id, DocKind};
use super::{NodeError, Replica};
use crate::model::AccountName;
use crate::store::tables;

impl Replica {
    /// The node identity as the data dir keeps it (a protobuf-encoded ed25519 keypair): the
    /// libp2p identity of the node.
    pub fn identity_bytes(&self) -> Result<Vec<u8>, NodeError> {
        self.kv
            .get(tables::KEY_IDENTITY)?
            .ok_or_else(|| NodeError::Identity("the data dir has no identity".into()))
    }

    /// Whether a peer may sync document `doc` into this replica: a well-formed id, and for
    /// a segment, an account this node replicates. `Err` says why not.
    pub fn accepts_doc(&self, doc: &str) -> Result<Result<(), String>, NodeError> {
        match parse_doc_id(doc) {
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
