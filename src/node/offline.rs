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
        a.close_docs();
        b.close_docs();
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

/// Copies blobs `to` lacks from `from`, then lets `to` apply what waited for them.
fn copy_blobs(
    from: &Replica,
    to: &mut Replica,
    missing: &[BlobId],
    now: i64,
    rep: &mut SyncReport,
) -> Result<(), NodeError> {
    if missing.is_empty() {
        return Ok(());
    }
    for id in missing {
        if let Some(bytes) = from.blob(id)? {
            if to.put_blob(id, &bytes)? {
                rep.blobs += 1;
                rep.blob_bytes += bytes.len() as u64;
            }
        }
    }
    to.deliver_all(now)?;
    Ok(())
}
