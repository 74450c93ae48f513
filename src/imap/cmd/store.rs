//! STORE and UID STORE: `+FLAGS`, `-FLAGS`, `FLAGS` and their `.SILENT` forms, and
//! CONDSTORE's `(UNCHANGEDSINCE m)`: the check and the change are one job on the replica
//! thread, so nothing can change a message between them. The answer (FETCH of the new
//! flags) is sent after the change is durable; the change then reaches other sessions and
//! nodes as view events.

use crate::imap::convert::{flags_in, model_set};
use crate::imap::selected::{flags_data, Current};
use crate::imap::session::{highest, Reply, Session, State};
use crate::model::Uid;
use crate::node::FlagOp;
use imap_codec::imap_types::command::StoreModifier;
use imap_codec::imap_types::flag::{Flag as ImapFlag, StoreResponse, StoreType};
use imap_codec::imap_types::response::Code;
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use std::num::NonZeroU32;

/// How a STORE changes flags.
pub struct Args {
    pub kind: StoreType,
    pub response: StoreResponse,
    pub by_uid: bool,
    pub modifiers: Vec<StoreModifier>,
}

pub async fn store(
    s: &mut Session,
    set: &SequenceSet,
    flags: &[ImapFlag<'static>],
    args: Args,
) -> Reply {
    let State::Selected { account, mailbox } = &s.state else {
        return Reply::bad("no mailbox selected");
    };
    if mailbox.read_only {
        return Reply::no("the mailbox is read-only (EXAMINE)").other("READ-ONLY");
    }
    let uids = match mailbox.resolve(set, args.by_uid) {
        Ok(u) => u,
        Err(_) => return Reply::bad("invalid message sequence number"),
    };
    let fs = match flags_in(flags) {
        Ok(f) => f,
        Err(e) => return Reply::bad(e.to_string()),
    };
    let op = match args.kind {
        StoreType::Add => FlagOp::Add(fs),
        StoreType::Remove => FlagOp::Remove(fs),
        StoreType::Replace => FlagOp::Replace(fs),
    };
    let unchanged_since = args
        .modifiers
        .iter()
        .map(|m| match m {
            StoreModifier::UnchangedSince(v) => *v,
        })
        .next();
    let (a, name, id) = (account.clone(), mailbox.name.clone(), mailbox.id);
    let issuer = s.ctx.issuer;
    s.condstore |= unchanged_since.is_some();
    let now = crate::node::daemon::now();
    let res = s
        .call(move |r| {
            // UNCHANGEDSINCE: messages changed after the client's value fail (all of them
            // when the value is not this node's: docs/design.md 8).
            let mut failed: Vec<Uid> = vec![];
            let mut todo = uids;
            if let Some(m) = unchanged_since {
                let limit = issuer.local(m, highest(r, &id)?);
                let mut keep = vec![];
                for (u, row) in crate::store::tables::rows_at(r.kv(), &id, &todo)? {
                    match limit {
                        Some(l) if row.modseq.get() <= l => keep.push(u),
                        _ => failed.push(u),
                    }
                }
                todo = keep;
            }
            if let Some(uset) = model_set(&todo) {
                r.store_flags(&a, &name, &uset, &op, now)?;
            }
            // The MODSEQ of each changed message, so that the view events this change
            // makes are not told a second time.
            let out: Vec<Current> = crate::store::tables::rows_at(r.kv(), &id, &todo)?
                .iter()
                .map(|(u, row)| Current::of(*u, row))
                .collect();
            Ok((out, failed))
        })
        .await;
    let (rows, failed) = match res {
        Ok(r) => r,
        Err(r) => return r,
    };
    if !rows.is_empty() {
        s.wrote();
    }
    let condstore = s.condstore;
    let mut out = Vec::new();
    let mut modified = vec![];
    if let Some(sel) = s.selected() {
        for c in &rows {
            sel.told(c.uid, c.modseq);
            if args.response == StoreResponse::Answer {
                if let Some(seq) = sel.seq_of(c.uid) {
                    let m = condstore.then(|| issuer.wire(c.modseq));
                    out.push(flags_data(seq, c.uid, &c.flags, m));
                }
            }
        }
        for u in &failed {
            let n = if args.by_uid {
                NonZeroU32::new(u.get())
            } else {
                sel.seq_of(*u)
            };
            modified.extend(n);
        }
    }
    for d in out {
        s.data(d);
    }
    let done = Reply::ok("STORE completed");
    match modified_set(&modified) {
        Some(set) => done.code(Code::Modified(set)),
        None => done,
    }
}

fn modified_set(v: &[NonZeroU32]) -> Option<SequenceSet> {
    let seqs: Vec<Sequence> = v
        .iter()
        .map(|n| Sequence::Single(SeqOrUid::Value(*n)))
        .collect();
    imap_codec::imap_types::core::Vec1::try_from(seqs)
        .ok()
        .map(SequenceSet)
}
