//! APPEND with APPENDUID (UIDPLUS). The literal's size was checked against the limit
//! before it was read (imap-next refuses a larger synchronizing literal with BAD); the
//! message is acknowledged once it is durable. A client that disconnects mid-literal
//! leaves nothing behind: nothing is stored before the whole command has arrived.

use crate::imap::convert::{flags_in, mailbox_in};
use crate::imap::session::{node_err, Reply, Session};
use crate::node::{NewMessage, NodeError};
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_codec::imap_types::flag::Flag as ImapFlag;
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::response::Code;
use std::num::NonZeroU32;

pub async fn append(
    s: &mut Session,
    m: &Mailbox<'_>,
    flags: &[ImapFlag<'static>],
    date: Option<&DateTime>,
    message: LiteralOrLiteral8<'static>,
) -> Reply {
    let Some(a) = s.account().cloned() else {
        return Reply::bad("not logged in");
    };
    let name = match mailbox_in(m) {
        Ok(n) => n,
        // Not a name at all (bad modified UTF-7, say): NO without TRYCREATE, since a
        // CREATE of it would fail the same way.
        Err(e) => return Reply::no(e.to_string()),
    };
    let flags = match flags_in(flags) {
        Ok(f) => f,
        Err(e) => return Reply::bad(e.to_string()),
    };
    let bytes = match message {
        LiteralOrLiteral8::Literal(l) => l.into_inner().into_owned(),
        LiteralOrLiteral8::Literal8(l) => l.data.into_owned(),
    };
    let now = crate::node::daemon::now();
    let internal_date = date.map_or(now, |d| d.as_ref().timestamp());
    let msg = NewMessage {
        name: "APPEND".into(),
        bytes,
        flags,
        internal_date,
    };
    let n = name.clone();
    let res = s
        .ctx
        .replica
        .call(move |r| {
            let added = r.append(&a, &n, vec![msg], now)?;
            let uv = r
                .status(&a)?
                .into_iter()
                .find(|st| st.name == n.as_str())
                .map(|st| st.uidvalidity);
            Ok::<_, NodeError>((added, uv))
        })
        .await;
    match res {
        Ok(Ok((added, uv))) => {
            s.wrote();
            let code = match (added.first(), uv.and_then(NonZeroU32::new)) {
                (Some((uid, _)), Some(uv)) => Some(Code::AppendUid {
                    uid_validity: uv,
                    uid: NonZeroU32::new(uid.get()).expect("UIDs are not 0"),
                }),
                _ => None,
            };
            let r = Reply::ok("APPEND completed");
            match code {
                Some(c) => r.code(c),
                None => r,
            }
        }
        // RFC 3501 6.3.11: a missing target mailbox is NO [TRYCREATE].
        Ok(Err(NodeError::UnknownMailbox { mailbox, .. })) => {
            Reply::no(format!("no mailbox {mailbox:?}")).code(Code::TryCreate)
        }
        Ok(Err(e)) => node_err(e),
        Err(_) => Reply::no("the node is shutting down").other("UNAVAILABLE"),
    }
}
