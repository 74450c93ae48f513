//! `dovetail diff`: compares replicas. Mailboxes are matched by id; digests are compared
//! first and only mailboxes whose digests (or counters) differ are compared row by row.
//! Every replica is compared with the first one.

use crate::crdt::view::ViewRow;
use crate::model::{MailboxId, Uid};
use crate::node::{NodeError, Replica};
use crate::store::tables;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// One difference between the reference replica (`a`) and another (`b`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Difference {
    Account {
        account: String,
        only_in: String,
    },
    Mailbox {
        account: String,
        mailbox: String,
        only_in: String,
    },
    Name {
        account: String,
        id: String,
        a: String,
        b: String,
    },
    UidValidity {
        account: String,
        mailbox: String,
        a: u32,
        b: u32,
    },
    UidNext {
        account: String,
        mailbox: String,
        a: u32,
        b: u32,
    },
    Message {
        account: String,
        mailbox: String,
        uid: u32,
        guid: String,
        only_in: String,
    },
    Uid {
        account: String,
        mailbox: String,
        guid: String,
        a: u32,
        b: u32,
    },
    Guid {
        account: String,
        mailbox: String,
        uid: u32,
        a: String,
        b: String,
    },
    Flags {
        account: String,
        mailbox: String,
        uid: u32,
        a: String,
        b: String,
    },
    Blob {
        account: String,
        mailbox: String,
        uid: u32,
        a: String,
        b: String,
    },
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Difference::*;
        match self {
            Account { account, only_in } => write!(f, "account {account}: only in {only_in}"),
            Mailbox {
                account,
                mailbox,
                only_in,
            } => {
                write!(f, "{account}/{mailbox}: mailbox only in {only_in}")
            }
            Name { account, id, a, b } => write!(f, "{account}: mailbox {id} named {a:?} vs {b:?}"),
            UidValidity {
                account,
                mailbox,
                a,
                b,
            } => {
                write!(f, "{account}/{mailbox}: UIDVALIDITY {a} vs {b}")
            }
            UidNext {
                account,
                mailbox,
                a,
                b,
            } => {
                write!(f, "{account}/{mailbox}: UIDNEXT {a} vs {b}")
            }
            Message {
                account,
                mailbox,
                uid,
                guid,
                only_in,
            } => {
                write!(
                    f,
                    "{account}/{mailbox}: UID {uid} ({guid}) only in {only_in}"
                )
            }
            Uid {
                account,
                mailbox,
                guid,
                a,
                b,
            } => {
                write!(f, "{account}/{mailbox}: message {guid} at UID {a} vs {b}")
            }
            Guid {
                account,
                mailbox,
                uid,
                a,
                b,
            } => {
                write!(f, "{account}/{mailbox}: UID {uid} is {a} vs {b}")
            }
            Flags {
                account,
                mailbox,
                uid,
                a,
                b,
            } => {
                write!(f, "{account}/{mailbox}: UID {uid} flags ({a}) vs ({b})")
            }
            Blob {
                account,
                mailbox,
                uid,
                a,
                b,
            } => {
                write!(f, "{account}/{mailbox}: UID {uid} blob {a} vs {b}")
            }
        }
    }
}

struct Mb {
    name: String,
    uidvalidity: u32,
    uidnext: u32,
    messages: u64,
    digest: String,
}

type Snapshot = BTreeMap<String, BTreeMap<String, Mb>>;

fn snapshot(r: &mut Replica) -> Result<Snapshot, NodeError> {
    let mut out = Snapshot::new();
    for a in r.accounts()? {
        let mut mbs = BTreeMap::new();
        for s in r.status(&a)? {
            mbs.insert(
                s.id.clone(),
                Mb {
                    name: s.name,
                    uidvalidity: s.uidvalidity,
                    uidnext: s.uidnext,
                    messages: s.messages,
                    digest: s.digest,
                },
            );
        }
        out.insert(a.to_string(), mbs);
    }
    Ok(out)
}

fn flags(r: &ViewRow) -> String {
    r.flags
        .iter()
        .map(|f| f.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Compares every replica with the first; `labels` name them in the output.
pub fn diff(replicas: &mut [Replica], labels: &[String]) -> Result<Vec<Difference>, NodeError> {
    let mut out = Vec::new();
    let Some((first, rest)) = replicas.split_first_mut() else {
        return Ok(out);
    };
    let sa = snapshot(first)?;
    for (i, other) in rest.iter_mut().enumerate() {
        let (la, lb) = (&labels[0], &labels[i + 1]);
        let sb = snapshot(other)?;
        let accounts: BTreeSet<&String> = sa.keys().chain(sb.keys()).collect();
        for acc in accounts {
            let (ma, mb) = match (sa.get(acc), sb.get(acc)) {
                (Some(x), Some(y)) => (x, y),
                (x, _) => {
                    let only_in = if x.is_some() { la } else { lb };
                    out.push(Difference::Account {
                        account: acc.clone(),
                        only_in: only_in.clone(),
                    });
                    continue;
                }
            };
            let ids: BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
            for id in ids {
                let (x, y) = match (ma.get(id), mb.get(id)) {
                    (Some(x), Some(y)) => (x, y),
                    (x, y) => {
                        let (only_in, m) = match (x, y) {
                            (Some(m), _) => (la, m),
                            (_, Some(m)) => (lb, m),
                            _ => unreachable!("id comes from one of the maps"),
                        };
                        out.push(Difference::Mailbox {
                            account: acc.clone(),
                            mailbox: m.name.clone(),
                            only_in: only_in.clone(),
                        });
                        continue;
                    }
                };
                let mailbox = x.name.clone();
                if x.name != y.name {
                    out.push(Difference::Name {
                        account: acc.clone(),
                        id: id.clone(),
                        a: x.name.clone(),
                        b: y.name.clone(),
                    });
                }
                if x.uidvalidity != y.uidvalidity {
                    out.push(Difference::UidValidity {
                        account: acc.clone(),
                        mailbox: mailbox.clone(),
                        a: x.uidvalidity,
                        b: y.uidvalidity,
                    });
                }
                if x.uidnext != y.uidnext {
                    out.push(Difference::UidNext {
                        account: acc.clone(),
                        mailbox: mailbox.clone(),
                        a: x.uidnext,
                        b: y.uidnext,
                    });
                }
                if x.digest == y.digest && x.messages == y.messages {
                    continue;
                }
                let mbid = MailboxId::try_from(id.as_str())?;
                let ra: BTreeMap<Uid, ViewRow> =
                    tables::rows(first.kv(), &mbid)?.into_iter().collect();
                let rb: BTreeMap<Uid, ViewRow> =
                    tables::rows(other.kv(), &mbid)?.into_iter().collect();
                rows_diff(acc, &mailbox, &ra, &rb, la, lb, &mut out);
            }
        }
    }
    Ok(out)
}

fn rows_diff(
    acc: &str,
    mailbox: &str,
    ra: &BTreeMap<Uid, ViewRow>,
    rb: &BTreeMap<Uid, ViewRow>,
    la: &str,
    lb: &str,
    out: &mut Vec<Difference>,
) {
    let (account, mailbox) = (acc.to_string(), mailbox.to_string());
    let uid_of_a: BTreeMap<_, _> = ra.iter().map(|(u, r)| (r.guid, *u)).collect();
    let uid_of_b: BTreeMap<_, _> = rb.iter().map(|(u, r)| (r.guid, *u)).collect();
    for (g, ua) in &uid_of_a {
        match uid_of_b.get(g) {
            Some(ub) if ub != ua => out.push(Difference::Uid {
                account: account.clone(),
                mailbox: mailbox.clone(),
                guid: g.to_hex(),
                a: ua.get(),
                b: ub.get(),
            }),
            Some(_) => {}
            None => out.push(Difference::Message {
                account: account.clone(),
                mailbox: mailbox.clone(),
                uid: ua.get(),
                guid: g.to_hex(),
                only_in: la.to_string(),
            }),
        }
    }
    for (g, ub) in &uid_of_b {
        if !uid_of_a.contains_key(g) {
            out.push(Difference::Message {
                account: account.clone(),
                mailbox: mailbox.clone(),
                uid: ub.get(),
                guid: g.to_hex(),
                only_in: lb.to_string(),
            });
        }
    }
    for (u, x) in ra {
        let Some(y) = rb.get(u) else { continue };
        if x.guid != y.guid {
            out.push(Difference::Guid {
                account: account.clone(),
                mailbox: mailbox.clone(),
                uid: u.get(),
                a: x.guid.to_hex(),
                b: y.guid.to_hex(),
            });
            continue;
        }
        if x.flags != y.flags {
            out.push(Difference::Flags {
                account: account.clone(),
                mailbox: mailbox.clone(),
                uid: u.get(),
                a: flags(x),
                b: flags(y),
            });
        }
        if x.blob != y.blob {
            out.push(Difference::Blob {
                account: account.clone(),
                mailbox: mailbox.clone(),
                uid: u.get(),
                a: x.blob.to_hex(),
                b: y.blob.to_hex(),
            });
        }
    }
}
