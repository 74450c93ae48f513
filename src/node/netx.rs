//! What the daemon needs from a replica beyond the offline API: the network identity, the
//! check that a peer may write a document here, and sync messages with their blobs.

use super::doc_id::{parse_doc_id, DocKind};
use super::{NodeError, Replica};
use crate::crdt::meta::ChangeMeta;
use crate::model::{AccountName, BlobId, MailboxId, NodeId};
use crate::net::protocol::{MAX_ATTACHED_BLOBS, MAX_ATTACHED_BYTES};
use crate::store::{tables, Tx};
use automerge::ChangeHash;

/// A message with more new changes than this is a catch-up, not a live push: its blobs
/// are fetched (looking them up would cost more than it saves).
const ATTACH_CHANGES: usize = 64;

/// A sync message and the blobs sent along with it.
pub type Generated = (Vec<u8>, Vec<(BlobId, Vec<u8>)>);

/// A sync message received from a peer: the peer, the document, the message and the blobs
/// that came with it.
pub type FromPeer = (NodeId, String, Vec<u8>, Vec<(BlobId, Vec<u8>)>);

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
    /// `caught_up`: it brought changes and this node now has the sender's heads (the
    /// answer only acknowledges, so it can wait). `attached`: blobs and bytes stored from
    /// those that came with it.
    Applied {
        missing: Vec<BlobId>,
        changed: bool,
        caught_up: bool,
        attached: (u64, u64),
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
    pub fn receive_from_peers(&mut self, msgs: &[FromPeer], now: i64) -> Vec<Received> {
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
        for (peer, doc, msg, blobs) in msgs {
            let verdict = match self.accepts_doc(doc) {
                Ok(Err(why)) => Received::Refused(why),
                Err(e) => Received::Failed(e.to_string()),
                Ok(Ok(())) => {
                    let new_account = doc
                        .strip_prefix("acct/")
                        .and_then(|a| AccountName::try_from(a).ok())
                        .is_some_and(|a| !self.has_account(&a).unwrap_or(true));
                    match self
                        .write_with(false, |r, tx| r.receive_in(tx, peer, doc, msg, blobs, now))
                    {
                        Ok(got) => {
                            changed |= got.is_some();
                            Received::Applied {
                                changed: got.is_some(),
                                caught_up: got.as_ref().is_some_and(|g| g.caught_up),
                                attached: got.as_ref().map_or((0, 0), |g| g.attached),
                                new_account: new_account && got.is_some(),
                                missing: got.map(|g| g.missing).unwrap_or_default(),
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

    /// The next sync message for `peer` about `doc` (as [`Replica::sync_generate`]), with
    /// the blobs its new changes name, while they fit in [`MAX_ATTACHED_BYTES`] and
    /// [`MAX_ATTACHED_BLOBS`]: the peer stores them with the changes instead of fetching them.
    pub fn sync_generate_attaching(
        &mut self,
        peer: &NodeId,
        doc: &str,
    ) -> Result<Option<Generated>, NodeError> {
        self.generate_message(peer, doc, true)
    }

    /// The next sync message for `peer` about `doc`, with its blobs if `attach`. Nothing is
    /// written: generating never changes the persistent part of a session (the heads both
    /// sides share; only a received message moves them).
    pub(crate) fn generate_message(
        &mut self,
        peer: &NodeId,
        doc: &str,
        attach: bool,
    ) -> Result<Option<Generated>, NodeError> {
        let segment = attach && matches!(parse_doc_id(doc), Some(DocKind::Segment(..)));
        self.write_with(false, |r, tx| {
            let mut session = r.session(tx, peer, doc)?;
            let mut out = None;
            if let Some((am, _)) = r.doc(tx, doc, true)? {
                if let Some((msg, sent)) = session.generate_listing(am) {
                    let mut ids = Vec::new();
                    if segment && sent.len() <= ATTACH_CHANGES {
                        for h in &sent {
                            let meta = am
                                .get_change_by_hash(h)
                                .and_then(|c| c.message().and_then(|m| ChangeMeta::decode(m).ok()));
                            ids.extend(meta.map(|m| m.blobs).unwrap_or_default());
                        }
                    }
                    out = Some((msg, ids));
                }
            }
            r.cache_session(peer, doc, session);
            let Some((msg, ids)) = out else {
                return Ok(None);
            };
            let mut blobs = Vec::new();
            let mut bytes = 0;
            for id in ids.into_iter().take(MAX_ATTACHED_BLOBS) {
                if let Some(b) = r.kv.blob_get(id.as_bytes())? {
                    if bytes + b.len() > MAX_ATTACHED_BYTES {
                        break;
                    }
                    bytes += b.len();
                    blobs.push((id, b));
                }
            }
            Ok(Some((msg, blobs)))
        })
    }

    /// Stores the blobs that came with a sync message and that its new changes lack
    /// (`missing`, sorted), and delivers what they complete; returns the blobs still
    /// missing, and the blobs and bytes stored. A blob that does not match its id, or that
    /// no new change names, is not stored.
    pub(crate) fn take_attached(
        &mut self,
        tx: &mut Tx<'_>,
        mb: &MailboxId,
        mut missing: Vec<BlobId>,
        blobs: &[(BlobId, Vec<u8>)],
        now: i64,
    ) -> Result<(Vec<BlobId>, (u64, u64)), NodeError> {
        let wanted: Vec<(BlobId, &[u8])> = blobs
            .iter()
            .filter(|(id, _)| missing.binary_search(id).is_ok())
            .map(|(id, b)| (*id, b.as_slice()))
            .collect();
        let mut stored = Vec::new();
        let mut bytes_stored = 0;
        for ((id, bytes), ok) in wanted.iter().zip(self.put_blobs(&wanted)?) {
            if ok {
                stored.push(*id);
                bytes_stored += bytes.len() as u64;
            }
        }
        if stored.is_empty() {
            return Ok((missing, (0, 0)));
        }
        // The blobs are in the pack before the view names them, and the caller's flush
        // syncs the packs before the store: blobs before claims.
        self.deliver(tx, mb, now)?;
        missing.retain(|b| !stored.contains(b));
        Ok((missing, (stored.len() as u64, bytes_stored)))
    }

    /// Whether an announcement that a peer's `doc` has `heads` is worth a sync with it:
    /// this node would take the document from a peer ([`Replica::accepts_doc`]) and may
    /// lack some of those changes. When it has every announced head it has all the peer
    /// has: an announcement of a busy document is often older than what this node already
    /// holds, and syncing it would only send the peer what it gets anyway. A document
    /// that is not open is not loaded to tell (that can take 0.1 s): it may lack them.
    pub fn wants_announced(&mut self, doc: &str, heads: &[[u8; 32]]) -> Result<bool, NodeError> {
        if self.accepts_doc(doc)?.is_err() {
            return Ok(false);
        }
        Ok(match self.open_doc(doc) {
            Some(am) => heads
                .iter()
                .any(|h| am.get_change_meta_by_hash(&ChangeHash(*h)).is_none()),
            None => true,
        })
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

#[cfg(test)]
mod tests {
    use crate::model::{AccountName, BlobId, FlagSet, MailboxName};
    use crate::node::{NewMessage, Options, Received, Replica};
    use crate::store::MemKv;
    use std::sync::Arc;

    fn replica(seed: u8) -> Replica {
        Replica::with_kv(Arc::new(MemKv::new()), Some([seed; 32]), Options::default())
            .expect("replica")
    }

    /// A live append reaches a peer whole: its body goes with the change, so the receiver
    /// shows it at once, fetching nothing; a blob that does not match its id is not stored.
    #[test]
    fn a_pushed_change_carries_its_blob() {
        let alice = AccountName::try_from("alice").expect("account");
        let inbox = MailboxName::inbox();
        let (mut a, mut b) = (replica(1), replica(2));
        let (ida, idb) = (a.node_id(), b.node_id());
        a.create_account(&alice).expect("account");
        // Sync everything there is (the account document, the empty segment), then append.
        let sync_all = |a: &mut Replica, b: &mut Replica| {
            let mut docs: Vec<String> = a
                .doc_heads()
                .expect("heads")
                .into_iter()
                .map(|x| x.0)
                .collect();
            docs.sort_by_key(|id| !id.starts_with("acct/"));
            let mut missing = Vec::new();
            for doc in &docs {
                for _ in 0..8 {
                    let ma = a.sync_generate_attaching(&idb, doc).expect("generate");
                    if let Some((m, blobs)) = &ma {
                        let got = b
                            .receive_from_peers(&[(ida, doc.clone(), m.clone(), blobs.clone())], 0);
                        match &got[..] {
                            [Received::Applied { missing: m, .. }] => missing.extend(m.clone()),
                            other => panic!("not applied: {other:?}"),
                        }
                    }
                    let mb = b.sync_generate_attaching(&ida, doc).expect("generate");
                    if let Some((m, _)) = &mb {
                        a.receive_from_peers(&[(idb, doc.clone(), m.clone(), Vec::new())], 0);
                    }
                    if ma.is_none() && mb.is_none() {
                        break;
                    }
                }
            }
            missing
        };
        assert!(sync_all(&mut a, &mut b).is_empty());
        let m = |i: usize| NewMessage {
            name: format!("m{i}"),
            bytes: format!("Subject: {i}\r\n\r\nbody {i}\r\n").into_bytes(),
            flags: FlagSet::new(),
            internal_date: 0,
        };
        a.append(&alice, &inbox, vec![m(0)], 0).expect("append");
        assert!(sync_all(&mut a, &mut b).is_empty(), "nothing to fetch");
        assert_eq!(
            a.list(&alice, &inbox).expect("a"),
            b.list(&alice, &inbox).expect("b")
        );
        assert_eq!(b.list(&alice, &inbox).expect("b").len(), 1);

        // A forged body under the right id is refused; the change then waits for a fetch.
        a.append(&alice, &inbox, vec![m(1)], 0).expect("append");
        let doc = a
            .doc_heads()
            .expect("heads")
            .into_iter()
            .map(|x| x.0)
            .find(|d| d.starts_with("seg/"))
            .expect("segment");
        let (msg, blobs) = a
            .sync_generate_attaching(&idb, &doc)
            .expect("generate")
            .expect("a message");
        assert_eq!(blobs.len(), 1);
        let forged: Vec<(BlobId, Vec<u8>)> = blobs
            .iter()
            .map(|(id, _)| (*id, b"forged".to_vec()))
            .collect();
        match &b.receive_from_peers(&[(ida, doc.clone(), msg, forged)], 0)[..] {
            [Received::Applied { missing, .. }] => assert_eq!(missing, &vec![blobs[0].0]),
            other => panic!("not applied: {other:?}"),
        }
        assert!(b.blob(&blobs[0].0).expect("read").is_none());
        assert_eq!(b.list(&alice, &inbox).expect("b").len(), 1);
    }
}
