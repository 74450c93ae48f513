//! Offline sync of two replicas (two stopped data dirs) through the same per-document sync
//! sessions and causal delivery that the network uses: only documents whose heads differ are
//! synced, and only blobs the receiving side lacks are copied.

use super::copier::{copy_batches, Copied, Copier, Way};
use super::{NodeError, Replica};
use crate::model::BlobId;
use std::collections::BTreeMap;
use std::sync::Arc;

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

/// Bodies copied before what they complete is delivered, once every document is synced.
const DELIVER_EVERY: usize = 2048;

/// Bodies the copier may have queued before the sync of the next document waits for it:
/// two segments' worth keeps both threads busy, and bounds the changes waiting for their
/// bodies in memory (at 1M messages, unbounded, they were ~60 MB of the peak).
const MAX_QUEUED_BODIES: usize = 32 * 1024;

/// Syncs `a` and `b` both ways until both hold the same documents and nothing is homeless.
///
/// Bodies are copied by a second thread ([`Copier`]) while the documents after the one that
/// named them are synced, and what a finished copy completes is delivered between documents.
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
    let (ka, kb) = (Arc::clone(&a.kv), Arc::clone(&b.kv));
    std::thread::scope(|scope| {
        let mut copier = Copier::start(scope, ka, kb);
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
                sync_doc(a, b, id, now, &mut copier, &mut rep)?;
                let copied = copier.take_below(MAX_QUEUED_BODIES)?;
                take_copied(a, b, copied, now, &mut rep)?;
            }
            // The last copies: what they complete is delivered as they go, a few thousand
            // bodies at a time (each delivery ends with a flush).
            while copier.busy() {
                let copied = copier.take(DELIVER_EVERY)?;
                take_copied(a, b, copied, now, &mut rep)?;
            }
            // Then what still lacks a body, if anything, the slow way.
            let missing = b.deliver_all(now)?;
            copy_blobs(a, b, &missing, now, &mut rep)?;
            let missing = a.deliver_all(now)?;
            copy_blobs(b, a, &missing, now, &mut rep)?;
            let n = a.renumber_after(now, 0)? + b.renumber_after(now, 0)?;
            rep.renumbered += n;
            // Open documents stay cached (the replica keeps a bounded LRU): the next round
            // syncs the same segments again, and reloading one costs far more than keeping it.
            if n == 0 {
                break;
            }
        }
        Ok(rep)
    })
}

fn sync_doc(
    a: &mut Replica,
    b: &mut Replica,
    id: &str,
    now: i64,
    copier: &mut Copier,
    rep: &mut SyncReport,
) -> Result<(), NodeError> {
    let (ida, idb) = (a.node_id(), b.node_id());
    for _ in 0..64 {
        let mut quiet = true;
        if let Some(m) = a.sync_generate(&idb, id)? {
            quiet = false;
            rep.messages += 1;
            rep.sync_bytes += m.len() as u64;
            copier.send(Way::AtoB, b.sync_receive(&ida, id, &m, now)?);
        }
        if let Some(m) = b.sync_generate(&ida, id)? {
            quiet = false;
            rep.messages += 1;
            rep.sync_bytes += m.len() as u64;
            copier.send(Way::BtoA, a.sync_receive(&idb, id, &m, now)?);
        }
        if quiet {
            return Ok(());
        }
    }
    Err(NodeError::Io(format!("sync of {id} did not settle")))
}

/// Tells each replica the bodies the copier stored for it, and delivers what they complete.
fn take_copied(
    a: &mut Replica,
    b: &mut Replica,
    copied: Vec<Copied>,
    now: i64,
    rep: &mut SyncReport,
) -> Result<(), NodeError> {
    let (mut to_a, mut to_b) = (false, false);
    for c in copied {
        rep.blobs += c.ids.len();
        rep.blob_bytes += c.bytes;
        match c.way {
            Way::AtoB => {
                b.blobs_stored(&c.ids);
                to_b = true;
            }
            Way::BtoA => {
                a.blobs_stored(&c.ids);
                to_a = true;
            }
        }
    }
    if to_b {
        b.deliver_all(now)?;
    }
    if to_a {
        a.deliver_all(now)?;
    }
    Ok(())
}

/// Copies blobs `to` lacks from `from` on this thread, then lets `to` apply what waited for
/// them; again while that reveals more blobs `from` can give.
fn copy_blobs(
    from: &Replica,
    to: &mut Replica,
    missing: &[BlobId],
    now: i64,
    rep: &mut SyncReport,
) -> Result<(), NodeError> {
    let mut missing = missing.to_vec();
    let to_kv = Arc::clone(&to.kv);
    while !missing.is_empty() {
        let mut copied = false;
        copy_batches(
            from.kv.as_ref(),
            to_kv.as_ref(),
            &missing,
            &mut |ids, bytes| {
                rep.blobs += ids.len();
                rep.blob_bytes += bytes;
                to.blobs_stored(&ids);
                copied = true;
            },
        )?;
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
    /// sled splits a tree leaf by its count of values (16), not its bytes, and writes a
    /// leaf over 128 KiB to a file of its own: no table may hold a value over 8 KiB, however
    /// many messages share a GUID window (a bulk append), on the appending side or on the
    /// side a sync fills.
    #[test]
    fn no_stored_value_outgrows_a_sled_page_share() {
        let a_name = AccountName::try_from("alice").expect("account");
        let inbox = MailboxName::inbox();
        let mut a = replica(1);
        a.create_account(&a_name).expect("account");
        let msgs = (0..1500)
            .map(|i| NewMessage {
                name: format!("m{i}"),
                bytes: format!("Subject: {i}\r\n\r\nbody\r\n").into_bytes(),
                flags: FlagSet::new(),
                internal_date: 0,
            })
            .collect();
        a.append(&a_name, &inbox, msgs, 0).expect("append");
        let mut b = replica(2);
        sync_pair(&mut a, &mut b, 0).expect("sync");
        assert_eq!(b.status(&a_name).expect("b")[0].messages, 1500);
        for r in [&a, &b] {
            let (mut longest, mut blocks) = ((0, Vec::new()), 0);
            r.kv()
                .scan(b"", &mut |k, v| {
                    if v.len() > longest.0 {
                        longest = (v.len(), k.to_vec());
                    }
                    blocks += usize::from(k.starts_with(b"N"));
                    true
                })
                .expect("scan");
            assert!(
                longest.0 <= 8192,
                "{} bytes under {}",
                longest.0,
                String::from_utf8_lossy(&longest.1)
            );
            // The records do share blocks (stored in parts): this test sees big blocks.
            assert!(blocks > 10, "{blocks} values under N");
        }
    }

    /// Bodies shared by messages of two mailboxes (a copy), synced between two data dirs
    /// on disk: each body is copied once, and every message of both mailboxes reads back
    /// on the receiving side.
    #[test]
    fn shared_bodies_are_copied_once_and_every_message_reads_back() {
        let (da, db) = (
            tempfile::tempdir().expect("a"),
            tempfile::tempdir().expect("b"),
        );
        Replica::init(da.path()).expect("init a");
        Replica::init(db.path()).expect("init b");
        let mut a = Replica::open(da.path(), Options::default()).expect("open a");
        let mut b = Replica::open(db.path(), Options::default()).expect("open b");
        let a_name = AccountName::try_from("alice").expect("account");
        let (inbox, work) = (
            MailboxName::inbox(),
            MailboxName::try_from("Work").expect("name"),
        );
        a.create_account(&a_name).expect("account");
        a.create_mailbox(&a_name, &work).expect("mailbox");
        for batch in 0..4 {
            let msgs = (0..300)
                .map(|i| NewMessage {
                    name: format!("m{batch}-{i}"),
                    bytes: format!("Subject: {batch}-{i}\r\n\r\n{}\r\n", "y".repeat(4000))
                        .into_bytes(),
                    flags: FlagSet::new(),
                    internal_date: 0,
                })
                .collect();
            a.append(&a_name, &inbox, msgs, 0).expect("append");
        }
        let all = crate::model::UidSet::try_from("1:*").expect("set");
        a.copy(&a_name, &inbox, &all, &work, false, 0)
            .expect("copy");
        let rep = sync_pair(&mut a, &mut b, 0).expect("sync");
        assert_eq!(rep.blobs, 1200, "{rep:?}");
        assert_eq!(a.status(&a_name).expect("a"), b.status(&a_name).expect("b"));
        for name in [&inbox, &work] {
            let rows = b.list(&a_name, name).expect("list");
            assert_eq!(rows.len(), 1200);
            for (_, r) in rows {
                let body = b.blob(&r.blob).expect("read").expect("body there");
                assert_eq!(crate::model::BlobId::of(&body), r.blob);
            }
        }
    }
}
