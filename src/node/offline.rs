//! Offline sync of two replicas (two stopped data dirs) through the same per-document sync
//! sessions and causal delivery that the network uses: only documents whose heads differ are
//! synced, and only blobs the receiving side lacks are copied.

use super::{NodeError, Replica};
use crate::model::BlobId;
use std::collections::BTreeMap;

/// What an offline sync did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SyncReport {
    /// Documents whose heads differed and were synced (summed over rounds).
    pub docs_synced: usize,
    /// Sync messages exchanged.
    pub messages: usize,
    /// Bytes of sync messages, both directions.
    pub sync_bytes: u64,
    /// Blobs copied and their bytes.
    pub blobs: usize,
    pub blob_bytes: u64,
    /// Messages renumbered (both sides).
    pub renumbered: usize,
    /// Rounds of (sync, renumber).
    pub rounds: usize,
}

/// Syncs `a` and `b` both ways until both hold the same documents and nothing is homeless.
pub fn sync_pair(a: &mut Replica, b: &mut Replica, now: i64) -> Result<SyncReport, NodeError> {
    let mut rep = SyncReport::default();
    if a.node_id() == b.node_id() {
        return Err(NodeError::Io(format!(
            "both data dirs are node {} (a copied data dir?): nothing to sync",
            a.node_id()
        )));
    }
    // Changes stored by an earlier sync that was cut short (a crash) may still wait for
    // their blobs; their documents' heads already match, so no document sync would bring
    // those blobs up again: fetch them first.
    let missing = b.deliver_all(now)?;
    copy_blobs(a, b, &missing, now, &mut rep)?;
    let missing = a.deliver_all(now)?;
    copy_blobs(b, a, &missing, now, &mut rep)?;
    for _ in 0..16 {
        rep.rounds += 1;
        let ha: BTreeMap<String, Vec<[u8; 32]>> = a.doc_heads()?.into_iter().collect();
        let hb: BTreeMap<String, Vec<[u8; 32]>> = b.doc_heads()?.into_iter().collect();
        let mut ids: Vec<&String> = ha.keys().chain(hb.keys()).collect();
        ids.sort();
        ids.dedup();
        // Account documents first, so mailboxes are known before their messages.
        ids.sort_by_key(|id| !id.starts_with("acct/"));
        for id in ids {
            if ha.get(id) == hb.get(id) {
                continue;
            }
            rep.docs_synced += 1;
            sync_doc(a, b, id, now, &mut rep)?;
        }
        let n = a.renumber_after(now, 0)? + b.renumber_after(now, 0)?;
        rep.renumbered += n;
        // Open documents stay cached (the replica keeps a bounded LRU): the next round
        // syncs the same segments again, and reloading one costs far more than keeping it.
        if n == 0 {
            break;
        }
    }
    Ok(rep)
}

fn sync_doc(
    a: &mut Replica,
    b: &mut Replica,
    id: &str,
    now: i64,
    rep: &mut SyncReport,
) -> Result<(), NodeError> {
    let (ida, idb) = (a.node_id(), b.node_id());
    for _ in 0..64 {
        let mut quiet = true;
        if let Some(m) = a.sync_generate(&idb, id)? {
            quiet = false;
            rep.messages += 1;
            rep.sync_bytes += m.len() as u64;
            let missing = b.sync_receive(&ida, id, &m, now)?;
            copy_blobs(a, b, &missing, now, rep)?;
        }
        if let Some(m) = b.sync_generate(&ida, id)? {
            quiet = false;
            rep.messages += 1;
            rep.sync_bytes += m.len() as u64;
            let missing = a.sync_receive(&idb, id, &m, now)?;
            copy_blobs(b, a, &missing, now, rep)?;
        }
        if quiet {
            return Ok(());
        }
    }
    Err(NodeError::Io(format!("sync of {id} did not settle")))
}

/// Bytes of blobs read before they are stored in one pack write.
const COPY_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// Stores (and empties) a batch of blobs read from the other dir (read checked against
/// their ids); whether any was stored.
fn store_batch(
    to: &mut Replica,
    batch: &mut Vec<(BlobId, Vec<u8>)>,
    rep: &mut SyncReport,
) -> Result<bool, NodeError> {
    let items: Vec<(BlobId, &[u8])> = batch.iter().map(|(id, b)| (*id, b.as_slice())).collect();
    to.store_blobs(&items)?;
    rep.blobs += items.len();
    rep.blob_bytes += items.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
    let any = !items.is_empty();
    batch.clear();
    Ok(any)
}

/// Copies blobs `to` lacks from `from`, then lets `to` apply what waited for them; again
/// while that reveals more blobs `from` can give.
fn copy_blobs(
    from: &Replica,
    to: &mut Replica,
    missing: &[BlobId],
    now: i64,
    rep: &mut SyncReport,
) -> Result<(), NodeError> {
    let mut missing = missing.to_vec();
    while !missing.is_empty() {
        let mut copied = false;
        // Read in the order they lie in `from`'s packs, in batches of up to 8 MiB, each
        // stored with one pack write.
        let ids: Vec<[u8; 32]> = missing.iter().map(|b| b.0).collect();
        let mut batch: Vec<(BlobId, Vec<u8>)> = Vec::new();
        let mut bytes = 0;
        let mut failed = None;
        from.kv.blob_get_many(&ids, &mut |id, b| {
            bytes += b.len();
            batch.push((BlobId(*id), b));
            if bytes >= COPY_BATCH_BYTES {
                bytes = 0;
                match store_batch(to, &mut batch, rep) {
                    Ok(any) => copied |= any,
                    Err(e) => {
                        failed = Some(e);
                        return false;
                    }
                }
            }
            true
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        copied |= store_batch(to, &mut batch, rep)?;
        let still = to.deliver_all(now)?;
        if !copied || still == missing {
            break;
        }
        missing = still;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AccountName, FlagSet, MailboxName};
    use crate::node::{NewMessage, Options};
    use crate::store::MemKv;
    use std::sync::Arc;

    fn replica(seed: u8) -> Replica {
        Replica::with_kv(Arc::new(MemKv::new()), Some([seed; 32]), Options::default())
            .expect("replica")
    }

    /// A document brings several changes, each waiting for its own blobs: the receiver
    /// must get every blob, not only those of the first deliverable change.
    #[test]
    fn sync_into_an_empty_replica_copies_every_change_and_blob() {
        let a_name = AccountName::try_from("alice").expect("account");
        let inbox = MailboxName::inbox();
        let mut a = replica(1);
        a.create_account(&a_name).expect("account");
        for batch in 0..3 {
            let msgs = (0..4)
                .map(|i| NewMessage {
                    name: format!("m{batch}-{i}"),
                    bytes: format!("Subject: {batch}-{i}\r\n\r\nbody\r\n").into_bytes(),
                    flags: FlagSet::new(),
                    internal_date: 0,
                })
                .collect();
            a.append(&a_name, &inbox, msgs, 0).expect("append");
        }
        let mut b = replica(2);
        let rep = sync_pair(&mut a, &mut b, 0).expect("sync");
        assert_eq!(rep.blobs, 12);
        let (sa, sb) = (a.status(&a_name).expect("a"), b.status(&a_name).expect("b"));
        assert_eq!(sa[0].messages, 12);
        assert_eq!(sa, sb);
    }
}
