//! EXPUNGE and UID EXPUNGE (UIDPLUS): remove the messages this node shows with `\Deleted`
//! (design notes 4: exactly those), tell each as EXPUNGE, and answer once it is durable.

use crate::imap::convert::model_set;
use crate::imap::session::{current, Reply, Session, State};
use crate::model::{Flag, Uid};
use imap_codec::imap_types::sequence::SequenceSet;

pub async fn expunge(s: &mut Session, only: Option<&SequenceSet>) -> Reply {
    let State::Selected { account, mailbox } = &s.state else {
        return Reply::bad("no mailbox selected");
    };
    if mailbox.read_only {
        return Reply::no("the mailbox is read-only (EXAMINE)").other("READ-ONLY");
    }
    // Only messages the client knows: one appended meanwhile with `\Deleted` is not
    // removed before the client has seen it.
    let limit: Vec<Uid> = match only {
        Some(set) => match mailbox.resolve(set, true) {
            Ok(u) => u,
            Err(_) => return Reply::bad("invalid UID set"),
        },
        None => mailbox.known().to_vec(),
    };
    let (a, name, id) = (account.clone(), mailbox.name.clone(), mailbox.id);
    let now = crate::node::daemon::now();
    let res = s
        .call(move |r| {
            let deleted = Flag::try_from("\\Deleted")?;
            let uids: Vec<Uid> = current(r, &id)?
                .into_iter()
                .filter(|c| c.flags.contains(&deleted))
                .filter(|c| limit.binary_search(&c.uid).is_ok())
                .map(|c| c.uid)
                .collect();
            match model_set(&uids) {
                Some(set) => r.expunge(&a, &name, &set, now),
                None => Ok(vec![]),
            }
        })
        .await;
    let mut gone = match res {
        Ok(g) => g,
        Err(r) => return r,
    };
    if !gone.is_empty() {
        s.wrote();
    }
    gone.sort();
    let vanished = s.qresync;
    let data = match s.selected() {
        Some(sel) => sel.expunged(&gone, vanished),
        None => vec![],
    };
    for d in data {
        s.data(d);
    }
    Reply::ok("EXPUNGE completed")
}
