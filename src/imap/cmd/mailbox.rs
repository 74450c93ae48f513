//! CREATE, DELETE, RENAME, SUBSCRIBE and UNSUBSCRIBE.

use crate::imap::convert::mailbox_in;
use crate::imap::session::{Reply, Session};
use crate::model::MailboxName;
use imap_codec::imap_types::mailbox::Mailbox;

/// The logged-in account and a mailbox name, or the reply refusing the name.
fn target(
    s: &Session,
    m: &Mailbox<'_>,
) -> Result<(crate::model::AccountName, crate::model::MailboxName), Reply> {
    let a = s
        .account()
        .cloned()
        .ok_or_else(|| Reply::bad("not logged in"))?;
    let n = mailbox_in(m).map_err(|e| Reply::no(e.to_string()).other("CANNOT"))?;
    Ok((a, n))
}

pub async fn create(s: &mut Session, m: &Mailbox<'_>) -> Reply {
    let (a, n) = match target(s, m) {
        Ok(t) => t,
        Err(r) => return r,
    };
    if n.is_inbox() {
        return Reply::no("INBOX always exists").other("ALREADYEXISTS");
    }
    match s.call(move |r| r.create_mailbox(&a, &n)).await {
        Ok(_) => {
            s.wrote();
            Reply::ok("CREATE completed")
        }
        Err(r) => r,
    }
}

pub async fn delete(s: &mut Session, m: &Mailbox<'_>) -> Reply {
    let (a, n) = match target(s, m) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let now = crate::node::daemon::now();
    match s.call(move |r| r.delete_mailbox(&a, &n, now)).await {
        Ok(()) => {
            s.wrote();
            Reply::ok("DELETE completed")
        }
        Err(r) => r,
    }
}

pub async fn rename(s: &mut Session, from: &Mailbox<'_>, to: &Mailbox<'_>) -> Reply {
    let (a, f) = match target(s, from) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let t = match mailbox_in(to) {
        Ok(t) => t,
        Err(e) => return Reply::no(e.to_string()).other("CANNOT"),
    };
    if f.is_inbox() {
        return rename_inbox(s, a, t).await;
    }
    match s.call(move |r| r.rename_mailbox(&a, &f, &t)).await {
        Ok(()) => {
            s.wrote();
            Reply::ok("RENAME completed")
        }
        Err(r) => r,
    }
}

/// RENAME INBOX (RFC 3501 6.3.5): creates the new mailbox and moves every message of
/// INBOX into it, leaving INBOX empty. Two durable writes on the replica thread, one after
/// the other: if the node stops between them, the new mailbox exists and INBOX still holds
/// its messages (nothing is lost; the client sees a failed RENAME and may retry the move).
async fn rename_inbox(s: &mut Session, a: crate::model::AccountName, to: MailboxName) -> Reply {
    let now = crate::node::daemon::now();
    let res = s
        .call(move |r| {
            r.create_mailbox(&a, &to)?;
            let inbox = MailboxName::inbox();
            let uids: Vec<_> = r.list(&a, &inbox)?.into_iter().map(|(u, _)| u).collect();
            if let Some(set) = crate::imap::convert::model_set(&uids) {
                r.copy(&a, &inbox, &set, &to, true, now)?;
            }
            Ok(())
        })
        .await;
    match res {
        Ok(()) => {
            s.wrote();
            Reply::ok("RENAME completed: INBOX's messages moved")
        }
        Err(r) => r,
    }
}

/// SUBSCRIBE and UNSUBSCRIBE: names kept in the account document (they replicate).
pub async fn subscribe(s: &mut Session, m: &Mailbox<'_>, on: bool) -> Reply {
    let (a, n) = match target(s, m) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let name = n.to_string();
    match s.call(move |r| r.subscribe(&a, &name, on)).await {
        Ok(()) => {
            s.wrote();
            Reply::ok(if on {
                "SUBSCRIBE completed"
            } else {
                "UNSUBSCRIBE completed"
            })
        }
        Err(r) => r,
    }
}
