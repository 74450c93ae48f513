//! Document ids: which automerge document holds an account's mailbox list or one segment
//! of a mailbox's messages, as a string the store and the sync protocol key by.

use crate::crdt::segment::SegmentRef;
use crate::model::{AccountName, MailboxId, NodeId};

/// A document id: `acct/<account>` or `seg/<account>/<mailbox id>/<node>/<generation>`.
pub(crate) fn account_doc(a: &AccountName) -> String {
    format!("acct/{a}")
}

pub(crate) fn segment_doc(a: &AccountName, mb: &MailboxId, s: &SegmentRef) -> String {
    format!("seg/{a}/{mb}/{}/{}", s.node, s.gen)
}

/// What a document id names (the account name in it is validated, not kept).
pub(crate) enum DocKind {
    Account,
    Segment(MailboxId, SegmentRef),
}

pub(crate) fn parse_doc_id(id: &str) -> Option<DocKind> {
    let p: Vec<&str> = id.split('/').collect();
    match p.as_slice() {
        ["acct", a] => AccountName::try_from(*a).ok().map(|_| DocKind::Account),
        ["seg", a, mb, node, gen] => {
            AccountName::try_from(*a).ok()?;
            Some(DocKind::Segment(
                MailboxId::try_from(*mb).ok()?,
                SegmentRef {
                    node: NodeId::try_from(*node).ok()?,
                    gen: gen.parse().ok()?,
                },
            ))
        }
        _ => None,
    }
}
