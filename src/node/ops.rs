//! The local operations on accounts, mailboxes and messages. Each validates everything
//! first, then writes in one transaction that is flushed before it returns.

use super::doc_id::account_doc;
use super::message::{check_message, NewMessage, StoredMessage};
use super::replica::{LocalChange, Replica};
use super::NodeError;
use crate::crdt::account::Account;
use crate::crdt::segment::{LocalOp, SegmentRef};
use crate::crdt::view::{MailboxMeta, ViewRow};
use crate::model::{
    AccountName, BlobId, Flag, FlagSet, Guid, MailboxId, MailboxName, Uid, UidSet, UidValidity,
};
use crate::store::tables;
use crate::store::Tx;
use std::collections::BTreeMap;

/// Stores bodies ahead of their appends ([`Replica::stager`]); usable from several threads.
#[derive(Clone)]
pub struct Stager(std::sync::Arc<dyn crate::store::Kv>);

impl Stager {
    /// Stores bodies whose ids are their sha256 (one pack write for the lot).
    pub fn put(&self, bodies: &[(BlobId, &[u8])]) -> Result<(), NodeError> {
        let raw: Vec<([u8; 32], &[u8])> = bodies.iter().map(|(id, b)| (id.0, *b)).collect();
        Ok(self.0.blob_put_many(&raw)?)
    }
}

/// An append of at least this many messages, or bytes, writes its bodies on a second
/// thread (below it, starting the thread costs more than it saves).
const PARALLEL_BODIES_MIN: usize = 32;
const PARALLEL_BYTES_MIN: usize = 1 << 20;

/// A message to add whose blob is stored.
struct NewRecord<'f> {
    blob: BlobId,
    size: u64,
    internal_date: i64,
    flags: &'f FlagSet,
}

/// How `flags` changes the flags of the selected messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlagOp {
    Add(FlagSet),
    Remove(FlagSet),
    Replace(FlagSet),
}

impl TryFrom<&str> for FlagOp {
    type Error = NodeError;
    /// `+FLAGS`, `-FLAGS` or `=FLAGS`, e.g. `+\Seen $Work`.
    fn try_from(s: &str) -> Result<Self, NodeError> {
        let s = s.trim();
        let (op, rest) = s.split_at(s.chars().next().map_or(0, char::len_utf8));
        let make: fn(FlagSet) -> FlagOp = match op {
            "+" => FlagOp::Add,
            "-" => FlagOp::Remove,
            "=" => FlagOp::Replace,
            _ => return Err(NodeError::FlagChange(s.to_string())),
        };
        let flags = Flag::parse_list(rest)?;
        // `=` with nothing clears every flag; `+` or `-` with nothing is a mistake.
        if flags.is_empty() && op != "=" {
            return Err(NodeError::FlagChange(s.to_string()));
        }
        Ok(make(flags))
    }
}

/// One mailbox as `status` reports it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MailboxStatus {
    pub account: String,
    pub name: String,
    pub id: String,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub messages: u64,
    pub unseen: u64,
    pub highest_modseq: u64,
    pub digest: String,
}

impl Replica {
    /// Creates an account with its INBOX.
    pub fn create_account(&mut self, a: &AccountName) -> Result<(), NodeError> {
        self.write(|r, tx| {
            if r.account(tx, a)?.is_some() {
                return Err(NodeError::AccountExists(a.to_string()));
            }
            r.create_account_in(tx, a)
        })
    }

    fn create_account_in(&mut self, tx: &mut Tx<'_>, a: &AccountName) -> Result<(), NodeError> {
        let mut acc = Account::new(&self.node);
        acc.create(a, &MailboxName::inbox())?;
        self.put_account(tx, a, acc);
        Ok(())
    }

    /// Creates a mailbox (and the account, with its INBOX, if it does not exist yet).
    pub fn create_mailbox(
        &mut self,
        a: &AccountName,
        name: &MailboxName,
    ) -> Result<UidValidity, NodeError> {
        self.write(|r, tx| {
            if r.account(tx, a)?.is_none() {
                r.create_account_in(tx, a)?;
                if name.is_inbox() {
                    return Ok(r.find(tx, a, name)?.uidvalidity);
                }
            }
            let mut acc = r.account_or_err(tx, a)?;
            if r.listed(tx, &acc)?.iter().any(|l| &l.name == name) {
                return Err(NodeError::MailboxExists(name.to_string()));
            }
            let e = acc.create(a, name)?;
            r.put_account(tx, a, acc);
            Ok(e.uidvalidity)
        })
    }

    /// Renames a mailbox.
    pub fn rename_mailbox(
        &mut self,
        a: &AccountName,
        from: &MailboxName,
        to: &MailboxName,
    ) -> Result<(), NodeError> {
        self.write(|r, tx| {
            if from.is_inbox() {
                return Err(NodeError::Inbox("renamed"));
            }
            let e = r.find(tx, a, from)?;
            let mut acc = r.account_or_err(tx, a)?;
            if r.listed(tx, &acc)?.iter().any(|l| &l.name == to) {
                return Err(NodeError::MailboxExists(to.to_string()));
            }
            acc.rename(a, &e.id, to)?;
            r.put_account(tx, a, acc);
            Ok(())
        })
    }

    /// Deletes a mailbox: expunges the messages this node sees in it and marks it deleted.
    /// A message appended concurrently elsewhere survives and brings the mailbox back.
    pub fn delete_mailbox(
        &mut self,
        a: &AccountName,
        name: &MailboxName,
        now: i64,
    ) -> Result<(), NodeError> {
        self.write(|r, tx| {
            if name.is_inbox() {
                return Err(NodeError::Inbox("deleted"));
            }
            let e = r.find(tx, a, name)?;
            // Every message this node knows in the mailbox, visible or homeless (waiting
            // for a renumbering): a delete removes all that the deleting node observed.
            let guids = tables::live_messages(tx.kv(), &e.id)?;
            r.expunge_guids(tx, a, &e.id, &guids, now)?;
            let mut acc = r.account_or_err(tx, a)?;
            acc.delete(&e.id)?;
            r.put_account(tx, a, acc);
            Ok(())
        })
    }

    /// The mailboxes of an account, as listed, with their status.
    pub fn status(&mut self, a: &AccountName) -> Result<Vec<MailboxStatus>, NodeError> {
        let kv = std::sync::Arc::clone(&self.kv);
        let tx = Tx::new(kv.as_ref());
        let acc = self.account_or_err(&tx, a)?;
        let mut out = Vec::new();
        for l in self.listed(&tx, &acc)? {
            let m = tx
                .mailbox_meta(&l.entry.id)?
                .unwrap_or_else(MailboxMeta::new);
            out.push(MailboxStatus {
                account: a.to_string(),
                name: l.name.to_string(),
                id: l.entry.id.to_hex(),
                uidvalidity: l.entry.uidvalidity.get(),
                uidnext: m.uidnext_u32(),
                messages: m.exists,
                unseen: m.unseen,
                highest_modseq: m.highest_modseq,
                digest: format!("{:032x}", m.digest),
            });
        }
        Ok(out)
    }

    /// Calls `f` for each visible message of a mailbox in UID order, until it returns
    /// false, without holding the mailbox in memory.
    pub fn list_each(
        &mut self,
        a: &AccountName,
        name: &MailboxName,
        f: &mut dyn FnMut(Uid, ViewRow) -> bool,
    ) -> Result<(), NodeError> {
        let kv = std::sync::Arc::clone(&self.kv);
        let tx = Tx::new(kv.as_ref());
        let e = self.find(&tx, a, name)?;
        Ok(tables::each_row(kv.as_ref(), &e.id, f)?)
    }

    /// The visible messages of a mailbox in UID order.
    pub fn list(
        &mut self,
        a: &AccountName,
        name: &MailboxName,
    ) -> Result<Vec<(Uid, ViewRow)>, NodeError> {
        let kv = std::sync::Arc::clone(&self.kv);
        let tx = Tx::new(kv.as_ref());
        let e = self.find(&tx, a, name)?;
        Ok(tables::rows(kv.as_ref(), &e.id)?)
    }

    /// Appends messages (validated first; none is stored if one is bad). Returns each
    /// message's UID and GUID, in order, once they are durable.
    pub fn append(
        &mut self,
        a: &AccountName,
        name: &MailboxName,
        msgs: Vec<NewMessage>,
        now: i64,
    ) -> Result<Vec<(Uid, Guid)>, NodeError> {
        for m in &msgs {
            check_message(&m.name, &m.bytes, self.opts.max_message_size)?;
        }
        let ids: Vec<BlobId> = msgs.iter().map(|m| BlobId::of(&m.bytes)).collect();
        // One pack write and one index batch for the whole batch, not one per body.
        let blobs: Vec<(BlobId, &[u8])> = ids
            .iter()
            .zip(&msgs)
            .map(|(b, m)| (*b, m.bytes.as_slice()))
            .collect();
        let items: Vec<NewRecord> = ids
            .iter()
            .zip(&msgs)
            .map(|(blob, m)| NewRecord {
                blob: *blob,
                size: m.bytes.len() as u64,
                internal_date: m.internal_date,
                flags: &m.flags,
            })
            .collect();
        self.append_records(a, name, &items, Some(&blobs), now)
    }

    /// Adds the messages `items` to a mailbox in one write, storing their bodies first
    /// when `bodies` are given (else they are stored already).
    fn append_records(
        &mut self,
        a: &AccountName,
        name: &MailboxName,
        items: &[NewRecord<'_>],
        bodies: Option<&[(BlobId, &[u8])]>,
        now: i64,
    ) -> Result<Vec<(Uid, Guid)>, NodeError> {
        self.write(|r, tx| {
            let e = r.find(tx, a, name)?;
            let mut meta = tx.mailbox_meta(&e.id)?.unwrap_or_else(MailboxMeta::new);
            let bytes: usize = bodies.map_or(0, |b| b.iter().map(|(_, b)| b.len()).sum());
            let out = match bodies {
                None => r.add_messages(tx, a, &e.id, name, &mut meta, items, now)?,
                // A large batch writes its bodies on a second thread while this one builds
                // the change and the view records: the two are independent until the
                // commit, which waits for both (bodies before the batch that names them).
                Some(blobs)
                    if blobs.len() >= PARALLEL_BODIES_MIN || bytes >= PARALLEL_BYTES_MIN =>
                {
                    let kv = std::sync::Arc::clone(&r.kv);
                    let raw: Vec<([u8; 32], &[u8])> =
                        blobs.iter().map(|(id, b)| (id.0, *b)).collect();
                    let (stored, out) = std::thread::scope(|s| {
                        let put = s.spawn(move || kv.blob_put_many(&raw));
                        let out = r.add_messages(tx, a, &e.id, name, &mut meta, items, now);
                        (
                            put.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                            out,
                        )
                    });
                    stored?;
                    r.blobs_stored(blobs.iter().map(|(id, _)| id));
                    out?
                }
                Some(blobs) => {
                    r.store_blobs(blobs)?;
                    r.add_messages(tx, a, &e.id, name, &mut meta, items, now)?
                }
            };
            tx.put_mailbox_meta(&e.id, &meta);
            Ok(out)
        })
        .inspect(|out| {
            if let Some(m) = &self.opts.metrics {
                m.appends.inc_by(out.len() as u64);
            }
        })
    }

    /// Something that stores bodies from any thread, ahead of the appends that will name
    /// them ([`Replica::append_stored`]): not durable until the next write's flush, which
    /// makes the packs durable before the batch; a body no append names stays an orphan
    /// (harmless, and `gc` drops it).
    pub fn stager(&self) -> Stager {
        Stager(std::sync::Arc::clone(&self.kv))
    }

    /// Appends messages whose bodies were stored by [`Replica::stager`] (each checked to
    /// be there: a row never names a missing body). Like [`Replica::append`] otherwise.
    pub fn append_stored(
        &mut self,
        a: &AccountName,
        name: &MailboxName,
        msgs: &[StoredMessage],
        now: i64,
    ) -> Result<Vec<(Uid, Guid)>, NodeError> {
        for m in msgs {
            if !self.kv.blob_has(m.blob.as_bytes())? {
                return Err(NodeError::Io(format!("body {} was not stored", m.blob)));
            }
        }
        let items: Vec<NewRecord> = msgs
            .iter()
            .map(|m| NewRecord {
                blob: m.blob,
                size: m.size,
                internal_date: m.internal_date,
                flags: &m.flags,
            })
            .collect();
        self.append_records(a, name, &items, None, now)
    }

    /// Changes flags of the messages in `set`. Returns (UID, new flags) per message.
    pub fn store_flags(
        &mut self,
        a: &AccountName,
        name: &MailboxName,
        set: &UidSet,
        op: &FlagOp,
        now: i64,
    ) -> Result<Vec<(Uid, FlagSet)>, NodeError> {
        self.write(|r, tx| {
            let e = r.find(tx, a, name)?;
            let rows = select(tx, &e.id, set)?;
            let mut meta = tx.mailbox_meta(&e.id)?.unwrap_or_else(MailboxMeta::new);
            let mut by_seg: BTreeMap<SegmentRef, Vec<LocalOp>> = BTreeMap::new();
            for (_, row) in &rows {
                // What this node shows decides: a remote change stored but not yet applied
                // to the view neither satisfies a `+FLAGS` nor is removed by a `-FLAGS`.
                let rec = tx
                    .view(e.id)
                    .msg_rec(&row.guid)?
                    .ok_or_else(|| NodeError::Io(format!("message {} has no record", row.guid)))?;
                let have = &rec.flags;
                let (add, del): (Vec<&Flag>, Vec<&Flag>) = match op {
                    FlagOp::Add(f) => (f.difference(have).collect(), vec![]),
                    FlagOp::Remove(f) => (vec![], f.intersection(have).collect()),
                    FlagOp::Replace(f) => {
                        (f.difference(have).collect(), have.difference(f).collect())
                    }
                };
                let ops = by_seg.entry(rec.home).or_default();
                for f in add {
                    ops.push(LocalOp::SetFlag {
                        guid: row.guid,
                        flag: f.clone(),
                    });
                }
                for f in del {
                    ops.push(LocalOp::ClearFlag {
                        guid: row.guid,
                        flag: f.clone(),
                        tags: rec
                            .tags
                            .get(f)
                            .map(|t| t.iter().cloned().collect())
                            .unwrap_or_default(),
                    });
                }
            }
            for (seg, ops) in by_seg {
                r.local_change(
                    tx,
                    a,
                    &e.id,
                    &mut meta,
                    LocalChange {
                        seg,
                        ops: &ops,
                        blobs: vec![],
                    },
                    now,
                )?;
            }
            tx.put_mailbox_meta(&e.id, &meta);
            let mut out = Vec::new();
            for (uid, row) in rows {
                let rec = tx.view(e.id).msg_rec(&row.guid)?;
                out.push((uid, rec.map(|m| m.flags).unwrap_or_default()));
            }
            Ok(out)
        })
    }

    /// Expunges the messages in `set`. Returns their UIDs.
    pub fn expunge(
        &mut self,
        a: &AccountName,
        name: &MailboxName,
        set: &UidSet,
        now: i64,
    ) -> Result<Vec<Uid>, NodeError> {
        self.write(|r, tx| {
            let e = r.find(tx, a, name)?;
            let rows = select(tx, &e.id, set)?;
            let guids: Vec<Guid> = rows.iter().map(|(_, row)| row.guid).collect();
            r.expunge_guids(tx, a, &e.id, &guids, now)?;
            Ok(rows.into_iter().map(|(u, _)| u).collect())
        })
    }

    /// Adds messages (blobs already stored) to a mailbox: one change per segment they go
    /// into, claiming UIDs from UIDNEXT up, opening a new segment when one is full.
    #[allow(clippy::too_many_arguments)]
    fn add_messages(
        &mut self,
        tx: &mut Tx<'_>,
        a: &AccountName,
        mb: &MailboxId,
        name: &MailboxName,
        meta: &mut MailboxMeta,
        items: &[NewRecord<'_>],
        now: i64,
    ) -> Result<Vec<(Uid, Guid)>, NodeError> {
        let mut out = Vec::with_capacity(items.len());
        let mut rest = items;
        while !rest.is_empty() {
            let seg = self.open_segment(meta);
            let (gen, count) = meta.open_segment.expect("set by open_segment");
            let room = (self.opts.segment_capacity - count).max(1) as usize;
            let (batch, later) = rest.split_at(room.min(rest.len()));
            rest = later;
            let mut ops = Vec::with_capacity(batch.len() * 3);
            let mut blobs = Vec::with_capacity(batch.len());
            // Distinct blobs in first-seen order; the set keeps a big batch linear.
            let mut seen = std::collections::HashSet::with_capacity(batch.len());
            for (i, m) in batch.iter().enumerate() {
                let uid = uid_at(meta.uidnext + i as u64)
                    .ok_or_else(|| NodeError::UidsExhausted(name.to_string()))?;
                let guid = Guid::mint();
                ops.push(LocalOp::Add {
                    guid,
                    blob: m.blob,
                    size: m.size,
                    internal_date: m.internal_date,
                });
                ops.push(LocalOp::Claim { guid, uid });
                for f in m.flags {
                    ops.push(LocalOp::SetFlag {
                        guid,
                        flag: f.clone(),
                    });
                }
                if seen.insert(m.blob) {
                    blobs.push(m.blob);
                }
                out.push((uid, guid));
            }
            meta.open_segment = Some((gen, count + batch.len() as u64));
            let change = LocalChange {
                seg,
                ops: &ops,
                blobs,
            };
            self.local_change(tx, a, mb, meta, change, now)?;
        }
        Ok(out)
    }

    fn expunge_guids(
        &mut self,
        tx: &mut Tx<'_>,
        a: &AccountName,
        mb: &crate::model::MailboxId,
        guids: &[Guid],
        now: i64,
    ) -> Result<(), NodeError> {
        let mut meta = tx.mailbox_meta(mb)?.unwrap_or_else(MailboxMeta::new);
        let mut by_seg: BTreeMap<SegmentRef, Vec<LocalOp>> = BTreeMap::new();
        for g in guids {
            let home = home_of(tx, mb, g)?;
            by_seg
                .entry(home)
                .or_default()
                .push(LocalOp::Expunge { guid: *g });
        }
        for (seg, ops) in by_seg {
            self.local_change(
                tx,
                a,
                mb,
                &mut meta,
                LocalChange {
                    seg,
                    ops: &ops,
                    blobs: vec![],
                },
                now,
            )?;
        }
        tx.put_mailbox_meta(mb, &meta);
        Ok(())
    }

    /// Copies (or moves) the messages in `set` to mailbox `to`: each copy is a new message
    /// sharing the blob, with the same flags. Returns (source UID, new UID) pairs.
    pub fn copy(
        &mut self,
        a: &AccountName,
        name: &MailboxName,
        set: &UidSet,
        to: &MailboxName,
        remove_source: bool,
        now: i64,
    ) -> Result<Vec<(Uid, Uid)>, NodeError> {
        self.write(|r, tx| {
            let src = r.find(tx, a, name)?;
            let dst = r.find(tx, a, to)?;
            let rows = select(tx, &src.id, set)?;
            let mut out = Vec::new();
            if !rows.is_empty() {
                let mut meta = tx.mailbox_meta(&dst.id)?.unwrap_or_else(MailboxMeta::new);
                let items: Vec<NewRecord<'_>> = rows
                    .iter()
                    .map(|(_, row)| NewRecord {
                        blob: row.blob,
                        size: row.size,
                        internal_date: row.internal_date,
                        flags: &row.flags,
                    })
                    .collect();
                let added = r.add_messages(tx, a, &dst.id, to, &mut meta, &items, now)?;
                out = rows
                    .iter()
                    .zip(added)
                    .map(|((old, _), (new, _))| (*old, new))
                    .collect();
                tx.put_mailbox_meta(&dst.id, &meta);
                if remove_source {
                    let guids: Vec<Guid> = rows.iter().map(|(_, row)| row.guid).collect();
                    r.expunge_guids(tx, a, &src.id, &guids, now)?;
                }
            }
            Ok(out)
        })
    }

    /// Renumbers the homeless messages of every mailbox where this node is due to (see
    /// [`MailboxMeta::renumber_due`]). Returns how many messages got new claims.
    pub fn renumber_due(&mut self, now: i64) -> Result<usize, NodeError> {
        self.renumber_after(now, self.opts.renumber_grace_secs)
    }

    /// [`Replica::renumber_due`] with another grace period. An offline sync passes 0: once
    /// both sides hold the same documents, both make identical claims, so there is no
    /// duplicate to avoid and no reason to leave messages hidden until a later sync.
    pub fn renumber_after(&mut self, now: i64, grace: i64) -> Result<usize, NodeError> {
        // A read-only pass over the mailbox records first: a node runs this every second
        // and after every sync message, and loading every account document and writing
        // (flushing) once per mailbox cost seconds with thousands of accounts.
        let mut due = std::collections::HashSet::new();
        let mut err = None;
        self.kv.scan(b"M", &mut |k, v| {
            if k.len() != 17 {
                return true;
            }
            match tables::decode::<MailboxMeta>(k, v) {
                Ok(meta) => {
                    if meta.renumber_due(&self.node, now, grace) {
                        if let Ok(id) = <[u8; 16]>::try_from(&k[1..]) {
                            due.insert(MailboxId(id));
                        }
                    }
                    true
                }
                Err(e) => {
                    err = Some(e);
                    false
                }
            }
        })?;
        if let Some(e) = err {
            return Err(e.into());
        }
        self.renumber_mailboxes(&due, now, grace)
    }

    /// [`Replica::renumber_due`] for the mailboxes that had remote changes delivered since
    /// the last call (the only ones a delivery can have made due): what a running node
    /// runs after each batch of received changes, without reading every mailbox record.
    pub fn renumber_delivered(&mut self, now: i64) -> Result<usize, NodeError> {
        let grace = self.opts.renumber_grace_secs;
        let mut due = std::collections::HashSet::new();
        let tx = Tx::new(self.kv.as_ref());
        for mb in std::mem::take(&mut self.pending.delivered) {
            if let Some(meta) = tx.mailbox_meta(&mb)? {
                if meta.renumber_due(&self.node, now, grace) {
                    due.insert(mb);
                }
            }
        }
        drop(tx);
        self.renumber_mailboxes(&due, now, grace)
    }

    /// Renumbers the homeless messages of the mailboxes in `due` (each checked again in its
    /// own transaction).
    fn renumber_mailboxes(
        &mut self,
        due: &std::collections::HashSet<MailboxId>,
        now: i64,
        grace: i64,
    ) -> Result<usize, NodeError> {
        if due.is_empty() {
            return Ok(0);
        }
        let mut total = 0;
        for a in self.accounts()? {
            let kv = std::sync::Arc::clone(&self.kv);
            let tx = Tx::new(kv.as_ref());
            let acc = self.account_or_err(&tx, &a)?;
            let names: BTreeMap<MailboxId, String> = self
                .listed(&tx, &acc)?
                .into_iter()
                .map(|l| (l.entry.id, l.name.to_string()))
                .collect();
            let ids: Vec<_> = acc.entries().into_iter().map(|e| e.id).collect();
            drop(tx);
            for mb in ids {
                if !due.contains(&mb) {
                    continue;
                }
                let name = names.get(&mb).cloned().unwrap_or_else(|| mb.to_hex());
                let done = self.write(|r, tx| {
                    let Some(mut meta) = tx.mailbox_meta(&mb)? else {
                        return Ok(0);
                    };
                    if !meta.renumber_due(&r.node, now, grace) {
                        return Ok(0);
                    }
                    let plan = meta
                        .renumber_plan(&r.node, now, grace)
                        .ok_or_else(|| NodeError::UidsExhausted(format!("{a}/{name}")))?;
                    let ops: Vec<LocalOp> = plan
                        .iter()
                        .map(|(guid, uid)| LocalOp::Claim {
                            guid: *guid,
                            uid: *uid,
                        })
                        .collect();
                    let seg = r.open_segment(&mut meta);
                    r.local_change(
                        tx,
                        &a,
                        &mb,
                        &mut meta,
                        LocalChange {
                            seg,
                            ops: &ops,
                            blobs: vec![],
                        },
                        now,
                    )?;
                    tx.put_mailbox_meta(&mb, &meta);
                    Ok(plan.len())
                });
                match done {
                    Ok(n) => total += n,
                    // That mailbox fails on its own: the others still get renumbered.
                    Err(e @ NodeError::UidsExhausted(_)) => {
                        tracing::error!(error = %e, "cannot renumber: mailbox needs a new UIDVALIDITY (rename or recreate it)");
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(total)
    }

    /// Whether an account exists here.
    pub fn has_account(&self, a: &AccountName) -> Result<bool, NodeError> {
        Ok(self
            .kv
            .get(&tables::key_doc_meta(&account_doc(a)))?
            .is_some())
    }
}

fn uid_at(n: u64) -> Option<Uid> {
    u32::try_from(n).ok().and_then(Uid::new)
}

/// The visible rows whose UID is in `set`.
fn select(
    tx: &Tx<'_>,
    mb: &crate::model::MailboxId,
    set: &UidSet,
) -> Result<Vec<(Uid, ViewRow)>, NodeError> {
    let largest = tables::last_uid(tx.kv(), mb)?;
    let mut out = Vec::new();
    tables::each_row(tx.kv(), mb, &mut |u, row| {
        if set.contains(u, largest) {
            out.push((u, row));
        }
        true
    })?;
    Ok(out)
}

fn home_of(
    tx: &mut Tx<'_>,
    mb: &crate::model::MailboxId,
    g: &Guid,
) -> Result<SegmentRef, NodeError> {
    tx.view(*mb)
        .msg_rec(g)?
        .map(|m| m.home)
        .ok_or_else(|| NodeError::Io(format!("message {g} has no record")))
}
