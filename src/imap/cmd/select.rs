//! SELECT, EXAMINE, UNSELECT and CLOSE; SELECT's CONDSTORE and QRESYNC parameters.

use super::qresync::{self, Since};
use crate::imap::convert::{flag_out, mailbox_in};
use crate::imap::selected::{flags_data, Current, Selected};
use crate::imap::session::{Reply, Session, State};
use crate::imap::uidset::{self, Ranges};
use crate::model::{Flag, MailboxId, Uid};
use crate::node::{NodeError, Replica};
use crate::store::rows_ref::each_row_ref;
use imap_codec::imap_types::command::SelectParameter;
use imap_codec::imap_types::flag::{Flag as ImapFlag, FlagPerm};
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::response::{Code, Data};
use std::collections::BTreeSet;
use std::num::{NonZeroU32, NonZeroU64};

const SYSTEM: [ImapFlag<'static>; 5] = [
    ImapFlag::Answered,
    ImapFlag::Flagged,
    ImapFlag::Deleted,
    ImapFlag::Seen,
    ImapFlag::Draft,
];

/// What SELECT needs of every visible row, read in place on the replica thread (no row
/// is decoded into owned values: a SELECT of 100k messages is one pass over the blocks).
struct Scan {
    uids: Vec<Uid>,
    modseqs: Vec<u64>,
    /// Keywords in use, sorted.
    keywords: BTreeSet<Flag>,
    /// Index of the first message without `\Seen`.
    first_unseen: Option<usize>,
    /// Under QRESYNC: the rows changed since the client's value, with their index.
    changed: Vec<(usize, Current)>,
}

impl Scan {
    fn read(r: &mut Replica, id: &MailboxId, since: Option<Since>) -> Result<Scan, NodeError> {
        let mut scan = Scan {
            uids: Vec::new(),
            modseqs: Vec::new(),
            keywords: BTreeSet::new(),
            first_unseen: None,
            changed: Vec::new(),
        };
        each_row_ref(r.kv(), id, &mut |uid, row| {
            let i = scan.uids.len();
            let modseq = row.modseq.get();
            scan.uids.push(uid);
            scan.modseqs.push(modseq);
            if scan.first_unseen.is_none() && !row.flags.contains("\\Seen") {
                scan.first_unseen = Some(i);
            }
            for f in row.flags.iter().filter(|f| !f.starts_with('\\')) {
                // Few distinct keywords: a linear check before allocating one.
                if !scan.keywords.iter().any(|k| k.as_str() == f) {
                    scan.keywords.insert(Flag::stored(f));
                }
            }
            if since.is_some_and(|s| s.changed(modseq)) {
                let flags = row.flags.to_set();
                scan.changed.push((i, Current { uid, modseq, flags }));
            }
            true
        })?;
        Ok(scan)
    }
}

pub async fn select(
    s: &mut Session,
    m: &Mailbox<'_>,
    read_only: bool,
    params: &[SelectParameter],
) -> Reply {
    let Some(account) = s.account().cloned() else {
        return Reply::bad("not logged in");
    };
    // The client's cache: (UIDVALIDITY, MODSEQ, known-uids).
    let mut cache: Option<(u32, u64, Option<Ranges>)> = None;
    for p in params {
        match p {
            SelectParameter::CondStore => s.condstore = true,
            SelectParameter::QResync { .. } if !s.qresync => {
                return Reply::bad("QRESYNC needs ENABLE QRESYNC first")
            }
            SelectParameter::QResync {
                uid_validity,
                mod_sequence_value,
                known_uids,
                ..
            } => {
                // The sequence match data only helps a server that lacks an expunge
                // history; the known-uids (or all UIDs) are answered exactly here.
                let known = known_uids.as_ref().map(|k| uidset::of_set(k, u32::MAX));
                cache = Some((uid_validity.get(), mod_sequence_value.get(), known));
            }
        }
    }
    // Responses before CLOSED are about the mailbox being closed (RFC 7162 3.2.11); a
    // CONDSTORE server sends it whether or not the client enabled anything.
    if matches!(s.state, State::Selected { .. }) {
        s.untagged(Reply::ok("Previous mailbox is now closed").code(Code::Closed));
    }
    // A failed SELECT leaves no mailbox selected (RFC 3501 6.3.1).
    s.state = State::Authenticated {
        account: account.clone(),
    };
    let name = match mailbox_in(m) {
        Ok(n) => n,
        Err(e) => return Reply::no(e.to_string()).other("NONEXISTENT"),
    };
    s.skip_events();
    let (a, n) = (account.clone(), name.to_string());
    let issuer = s.ctx.issuer;
    // Status, rows and the resync answer in one job: the UIDNEXT told is above every UID
    // shown, and VANISHED and FETCH describe exactly the state told.
    let got = s
        .call(move |r| {
            let Some(st) = r.status(&a)?.into_iter().find(|m| m.name == n) else {
                return Ok(None);
            };
            let id = MailboxId::try_from(st.id.as_str())?;
            let since = match cache {
                Some((uv, m, _)) if uv == st.uidvalidity => {
                    Some(Since::of(issuer, m, st.highest_modseq))
                }
                _ => None,
            };
            let scan = Scan::read(r, &id, since)?;
            let resync = match (since, cache) {
                (Some(since), Some((_, _, known))) => {
                    let gone = qresync::vanished(r, &id, since, known.as_ref(), Some(&scan.uids))?;
                    Some(gone)
                }
                _ => None,
            };
            Ok(Some((st, id, scan, resync)))
        })
        .await;
    let (st, id, scan, resync) = match got {
        Ok(Some(x)) => x,
        Ok(None) => {
            return Reply::no(format!("no mailbox {:?}", name.to_string())).other("NONEXISTENT")
        }
        Err(r) => return r,
    };
    let mut flags: Vec<ImapFlag<'static>> = SYSTEM.to_vec();
    // Keywords in use are announced with the system flags.
    flags.extend(scan.keywords.iter().filter_map(flag_out));
    s.data(Data::Flags(flags.clone()));
    s.data(Data::Exists(scan.uids.len() as u32));
    s.data(Data::Recent(0));
    if let Some(i) = scan.first_unseen {
        if let Some(seq) = NonZeroU32::new(i as u32 + 1) {
            s.untagged(Reply::ok(format!("First unseen: {seq}")).code(Code::Unseen(seq)));
        }
    }
    let perm: Vec<FlagPerm<'static>> = if read_only {
        vec![]
    } else {
        flags
            .into_iter()
            .map(FlagPerm::Flag)
            .chain([FlagPerm::Asterisk])
            .collect()
    };
    s.untagged(Reply::ok("Limited").code(Code::PermanentFlags(perm)));
    let nz = |v: u32| NonZeroU32::new(v).unwrap_or(NonZeroU32::MIN);
    s.untagged(Reply::ok("UIDs valid").code(Code::UidValidity(nz(st.uidvalidity))));
    s.untagged(Reply::ok("Predicted next UID").code(Code::UidNext(nz(st.uidnext))));
    if let Some(h) = NonZeroU64::new(s.ctx.issuer.wire(st.highest_modseq)) {
        s.untagged(Reply::ok("Highest").code(Code::HighestModSeq(h)));
    }
    // QRESYNC: the UIDs to forget, then every message changed since the client's value
    // (RFC 7162 3.2.5.1), with this selection's sequence numbers.
    if let Some(gone) = resync {
        if let Some(known_uids) = uidset::to_set(&gone) {
            s.data(Data::Vanished {
                earlier: true,
                known_uids,
            });
        }
        for (i, c) in &scan.changed {
            if let Some(seq) = NonZeroU32::new(*i as u32 + 1) {
                let m = Some(s.ctx.issuer.wire(c.modseq));
                s.data(flags_data(seq, c.uid, &c.flags, m));
            }
        }
    }
    s.state = State::Selected {
        account,
        mailbox: Selected::of_parts(
            name,
            id,
            st.uidvalidity,
            read_only,
            scan.uids,
            scan.modseqs,
            st.highest_modseq,
        ),
    };
    if read_only {
        Reply::ok("EXAMINE completed").code(Code::ReadOnly)
    } else {
        Reply::ok("SELECT completed").code(Code::ReadWrite)
    }
}

/// UNSELECT, or CLOSE (`expunge`): CLOSE first removes the messages marked `\Deleted`,
/// without EXPUNGE responses (RFC 3501 6.4.2).
pub async fn unselect(s: &mut Session, expunge: bool) -> Reply {
    let State::Selected { account, mailbox } = std::mem::replace(&mut s.state, State::Logout)
    else {
        return Reply::bad("no mailbox selected");
    };
    let (a, name, read_only) = (account.clone(), mailbox.name.clone(), mailbox.read_only);
    s.state = State::Authenticated { account };
    if expunge && !read_only {
        let now = crate::node::daemon::now();
        let res = s
            .call(move |r| {
                let deleted = Flag::try_from("\\Deleted")?;
                let uids: Vec<_> = r
                    .list(&a, &name)?
                    .into_iter()
                    .filter(|(_, row)| row.flags.contains(&deleted))
                    .map(|(u, _)| u)
                    .collect();
                match crate::imap::convert::model_set(&uids) {
                    Some(set) => r.expunge(&a, &name, &set, now).map(|v| !v.is_empty()),
                    None => Ok(false),
                }
            })
            .await;
        match res {
            Ok(true) => s.wrote(),
            Ok(false) => {}
            Err(r) => return r,
        }
        return Reply::ok("CLOSE completed");
    }
    Reply::ok(if expunge {
        "CLOSE completed"
    } else {
        "UNSELECT completed"
    })
}
