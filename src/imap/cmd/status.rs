//! STATUS: MESSAGES, RECENT (always 0: `\Recent` is not kept), UIDNEXT, UIDVALIDITY,
//! UNSEEN and HIGHESTMODSEQ (this node's; see docs/imap.md on MODSEQ across nodes).

use crate::imap::convert::{mailbox_in, mailbox_out};
use crate::imap::session::{Reply, Session};
use crate::node::MailboxStatus;
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::response::Data;
use imap_codec::imap_types::status::{StatusDataItem, StatusDataItemName};
use std::num::NonZeroU32;

/// The status of one mailbox of the logged-in account, or NO [NONEXISTENT].
pub async fn lookup(s: &Session, name: &crate::model::MailboxName) -> Result<MailboxStatus, Reply> {
    let a = s
        .account()
        .cloned()
        .ok_or_else(|| Reply::bad("not logged in"))?;
    let n = name.to_string();
    let all = s.call(move |r| r.status(&a)).await?;
    all.into_iter()
        .find(|m| m.name == n)
        .ok_or_else(|| Reply::no(format!("no mailbox {n:?}")).other("NONEXISTENT"))
}

pub async fn status(s: &mut Session, m: &Mailbox<'_>, names: &[StatusDataItemName]) -> Reply {
    let name = match mailbox_in(m) {
        Ok(n) => n,
        Err(e) => return Reply::no(e.to_string()).other("NONEXISTENT"),
    };
    let st = match lookup(s, &name).await {
        Ok(st) => st,
        Err(r) => return r,
    };
    let issuer = s.ctx.issuer;
    let nz = |v: u32| NonZeroU32::new(v).unwrap_or(NonZeroU32::MIN);
    let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    let items: Vec<StatusDataItem> = names
        .iter()
        .filter_map(|i| match i {
            StatusDataItemName::Messages => Some(StatusDataItem::Messages(clamp(st.messages))),
            StatusDataItemName::Recent => Some(StatusDataItem::Recent(0)),
            StatusDataItemName::UidNext => Some(StatusDataItem::UidNext(nz(st.uidnext))),
            StatusDataItemName::UidValidity => {
                Some(StatusDataItem::UidValidity(nz(st.uidvalidity)))
            }
            StatusDataItemName::Unseen => Some(StatusDataItem::Unseen(clamp(st.unseen))),
            StatusDataItemName::HighestModSeq => Some(StatusDataItem::HighestModSeq(
                issuer.wire(st.highest_modseq),
            )),
            _ => None,
        })
        .collect();
    s.data(Data::Status {
        mailbox: mailbox_out(&st.name),
        items: items.into(),
    });
    Reply::ok("STATUS completed")
}
