//! STORE and UID STORE: `+FLAGS`, `-FLAGS`, `FLAGS` and their `.SILENT` forms. The
//! answer (FETCH of the new flags) is sent after the change is durable; the change then
//! reaches other sessions and nodes as view events.

use crate::imap::convert::{flags_in, model_set};
use crate::imap::selected::flags_data;
use crate::imap::selected::Current;
use crate::imap::session::{Reply, Session, State};
use crate::node::FlagOp;
use imap_codec::imap_types::flag::{Flag as ImapFlag, StoreResponse, StoreType};
use imap_codec::imap_types::sequence::SequenceSet;

pub async fn store(
    s: &mut Session,
    set: &SequenceSet,
    kind: StoreType,
    response: StoreResponse,
    flags: &[ImapFlag<'static>],
    by_uid: bool,
) -> Reply {
    let State::Selected { account, mailbox } = &s.state else {
        return Reply::bad("no mailbox selected");
    };
    if mailbox.read_only {
        return Reply::no("the mailbox is read-only (EXAMINE)").other("READ-ONLY");
    }
    let uids = match mailbox.resolve(set, by_uid) {
        Ok(u) => u,
        Err(_) => return Reply::bad("invalid message sequence number"),
    };
    let fs = match flags_in(flags) {
        Ok(f) => f,
        Err(e) => return Reply::bad(e.to_string()),
    };
    let op = match kind {
        StoreType::Add => FlagOp::Add(fs),
        StoreType::Remove => FlagOp::Remove(fs),
        StoreType::Replace => FlagOp::Replace(fs),
    };
    let Some(uset) = model_set(&uids) else {
        return Reply::ok("STORE completed (nothing to change)");
    };
    let (a, name, id) = (account.clone(), mailbox.name.clone(), mailbox.id);
    let now = crate::node::daemon::now();
    let res = s
        .call(move |r| {
            r.store_flags(&a, &name, &uset, &op, now)?;
            // The MODSEQ of each changed message, so that the view events this change
            // makes are not told a second time.
            let mut out = Vec::with_capacity(uids.len());
            for u in uids {
                if let Some(row) = crate::store::tables::row(r.kv(), &id, u)? {
                    out.push(Current::of(u, &row));
                }
            }
            Ok(out)
        })
        .await;
    let rows = match res {
        Ok(r) => r,
        Err(r) => return r,
    };
    s.wrote();
    let mut out = Vec::new();
    if let Some(sel) = s.selected() {
        for c in &rows {
            sel.told(c.uid, c.modseq);
            if response == StoreResponse::Answer {
                if let Some(seq) = sel.seq_of(c.uid) {
                    out.push(flags_data(seq, c.uid, &c.flags));
                }
            }
        }
    }
    for d in out {
        s.data(d);
    }
    Reply::ok("STORE completed")
}
