//! COPY, UID COPY, MOVE and UID MOVE, with COPYUID (UIDPLUS). A copy is a new message
//! sharing the blob; MOVE is COPY and expunge in one durable write (RFC 6851: the COPYUID
//! goes in an untagged OK before the EXPUNGE responses).

use crate::imap::convert::{mailbox_in, model_set, uidplus_set};
use crate::imap::session::{node_err, Reply, Session, State};
use crate::model::Uid;
use crate::node::NodeError;
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::response::Code;
use imap_codec::imap_types::sequence::SequenceSet;
use std::num::NonZeroU32;

pub async fn copy(
    s: &mut Session,
    set: &SequenceSet,
    to: &Mailbox<'_>,
    by_uid: bool,
    remove: bool,
) -> Reply {
    let what = if remove { "MOVE" } else { "COPY" };
    let State::Selected { account, mailbox } = &s.state else {
        return Reply::bad("no mailbox selected");
    };
    if remove && mailbox.read_only {
        return Reply::no("the mailbox is read-only (EXAMINE)").other("READ-ONLY");
    }
    let uids = match mailbox.resolve(set, by_uid) {
        Ok(u) => u,
        Err(_) => return Reply::bad("invalid message sequence number"),
    };
    let dest = match mailbox_in(to) {
        Ok(n) => n,
        // Not a name at all (bad modified UTF-7, say): NO without TRYCREATE, since a
        // CREATE of it would fail the same way.
        Err(e) => return Reply::no(e.to_string()),
    };
    let Some(uset) = model_set(&uids) else {
        return Reply::ok(format!("{what} completed (no messages)"));
    };
    let (a, name) = (account.clone(), mailbox.name.clone());
    let now = crate::node::daemon::now();
    let d = dest.clone();
    let res = s
        .ctx
        .replica
        .call(move |r| {
            let pairs = r.copy(&a, &name, &uset, &d, remove, now)?;
            let uv = r
                .status(&a)?
                .into_iter()
                .find(|st| st.name == d.as_str())
                .map(|st| st.uidvalidity);
            Ok::<_, NodeError>((pairs, uv))
        })
        .await;
    let (pairs, uv) = match res {
        Ok(Ok(x)) => x,
        Ok(Err(NodeError::UnknownMailbox { mailbox, .. })) if mailbox == dest.as_str() => {
            return Reply::no(format!("no mailbox {mailbox:?}")).code(Code::TryCreate)
        }
        Ok(Err(e)) => return node_err(e),
        Err(_) => return Reply::no("the node is shutting down").other("UNAVAILABLE"),
    };
    if !pairs.is_empty() {
        s.wrote();
    }
    let olds: Vec<Uid> = pairs.iter().map(|p| p.0).collect();
    let news: Vec<Uid> = pairs.iter().map(|p| p.1).collect();
    let code = match (
        uv.and_then(NonZeroU32::new),
        uidplus_set(&olds),
        uidplus_set(&news),
    ) {
        (Some(uid_validity), Some(source), Some(destination)) => Some(Code::CopyUid {
            uid_validity,
            source,
            destination,
        }),
        _ => None,
    };
    let done = Reply::ok(format!("{what} completed"));
    if !remove {
        return match code {
            Some(c) => done.code(c),
            None => done,
        };
    }
    if let Some(c) = code {
        s.untagged(Reply::ok("moved").code(c));
    }
    let mut gone = olds;
    gone.sort();
    let vanished = s.qresync;
    let data = match s.selected() {
        Some(sel) => sel.expunged(&gone, vanished),
        None => vec![],
    };
    for d in data {
        s.data(d);
    }
    done
}
