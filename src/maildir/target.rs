//! The data dir an import writes to or an export reads from: opened directly when it is
//! stopped, or through the control socket of the node running on it (whose store is
//! locked), so both commands work either way and their writes replicate like any other.

use super::MaildirError;
use crate::model::{AccountName, Flag, MailboxName, Uid};
use crate::node::control::{self, ControlRequest, ControlResponse, FlaggedMessage};
use crate::node::{NewMessage, Options, Replica, Stager, StoredMessage};
use std::path::{Path, PathBuf};

/// A visible message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub uid: u32,
    pub flags: Vec<String>,
    /// The blob id (SHA-256 of the bytes), hex.
    pub blob: String,
    pub internal_date: i64,
}

/// A mailbox of an account.
#[derive(Clone, Debug)]
pub struct Mailbox {
    pub name: MailboxName,
    pub uidvalidity: u32,
    pub uidnext: u32,
}

/// A data dir, stopped or running.
pub enum Target {
    Local(Box<Replica>),
    Running(PathBuf),
}

fn remote(e: impl std::fmt::Display) -> MaildirError {
    MaildirError::Remote(e.to_string())
}

impl Target {
    /// Opens `dir`: through its node if one runs there, else directly.
    pub fn open(dir: &Path, opts: Options) -> Result<Target, MaildirError> {
        if control::running(dir) {
            return Ok(Target::Running(dir.to_path_buf()));
        }
        Ok(Target::Local(Box::new(Replica::open(dir, opts)?)))
    }

    fn send(dir: &Path, req: &ControlRequest) -> Result<ControlResponse, MaildirError> {
        match control::call(dir, req).map_err(remote)? {
            Some(ControlResponse::Error(e)) => Err(MaildirError::Remote(e)),
            Some(r) => Ok(r),
            None => Err(remote(format!("the node on {} stopped", dir.display()))),
        }
    }

    /// Whether the account exists.
    pub fn has_account(&mut self, a: &AccountName) -> Result<bool, MaildirError> {
        match self {
            Target::Local(r) => Ok(r.has_account(a)?),
            Target::Running(d) => match Self::send(d, &ControlRequest::AccountList)? {
                ControlResponse::Accounts(v) => Ok(v.iter().any(|x| x == a.as_str())),
                other => Err(remote(format!("unexpected answer {other:?}"))),
            },
        }
    }

    /// The account's mailboxes.
    pub fn mailboxes(&mut self, a: &AccountName) -> Result<Vec<Mailbox>, MaildirError> {
        let rows = match self {
            Target::Local(r) => control::statuses(r, Some(a.as_str()))?,
            Target::Running(d) => match Self::send(
                d,
                &ControlRequest::Status {
                    account: Some(a.to_string()),
                },
            )? {
                ControlResponse::Status { mailboxes, .. } => mailboxes,
                other => return Err(remote(format!("unexpected answer {other:?}"))),
            },
        };
        rows.into_iter()
            .map(|s| {
                Ok(Mailbox {
                    name: MailboxName::try_from(s.name.as_str())?,
                    uidvalidity: s.uidvalidity,
                    uidnext: s.uidnext,
                })
            })
            .collect()
    }

    /// Creates a mailbox (and the account with its INBOX if it is new).
    pub fn create_mailbox(&mut self, a: &AccountName, m: &MailboxName) -> Result<(), MaildirError> {
        match self {
            Target::Local(r) => {
                r.create_mailbox(a, m)?;
            }
            Target::Running(d) => {
                Self::send(
                    d,
                    &ControlRequest::MailboxCreate {
                        account: a.to_string(),
                        name: m.to_string(),
                    },
                )?;
            }
        }
        Ok(())
    }

    /// The visible messages of a mailbox, in UID order.
    pub fn rows(&mut self, a: &AccountName, m: &MailboxName) -> Result<Vec<Row>, MaildirError> {
        match self {
            Target::Local(r) => Ok(r
                .list(a, m)?
                .into_iter()
                .map(|(u, row)| Row {
                    uid: u.get(),
                    flags: row.flags.iter().map(|f| f.as_str().to_string()).collect(),
                    blob: row.blob.to_hex(),
                    internal_date: row.internal_date,
                })
                .collect()),
            Target::Running(d) => match Self::send(
                d,
                &ControlRequest::List {
                    account: a.to_string(),
                    mailbox: m.to_string(),
                },
            )? {
                ControlResponse::Rows(v) => Ok(v
                    .into_iter()
                    .map(|r| Row {
                        uid: r.uid,
                        flags: r.flags,
                        blob: r.blob,
                        internal_date: r.internal_date,
                    })
                    .collect()),
                other => Err(remote(format!("unexpected answer {other:?}"))),
            },
        }
    }

    /// Appends one batch; returns once it is durable.
    pub fn append(
        &mut self,
        a: &AccountName,
        m: &MailboxName,
        msgs: Vec<NewMessage>,
        now: i64,
    ) -> Result<usize, MaildirError> {
        match self {
            Target::Local(r) => Ok(r.append(a, m, msgs, now)?.len()),
            Target::Running(d) => {
                let req = ControlRequest::AppendFlagged {
                    account: a.to_string(),
                    mailbox: m.to_string(),
                    messages: msgs
                        .into_iter()
                        .map(|x| FlaggedMessage {
                            name: x.name,
                            bytes: x.bytes,
                            flags: x
                                .flags
                                .iter()
                                .map(Flag::as_str)
                                .map(str::to_string)
                                .collect(),
                            internal_date: x.internal_date,
                        })
                        .collect(),
                };
                match Self::send(d, &req)? {
                    ControlResponse::Appended(v) => Ok(v.len()),
                    other => Err(remote(format!("unexpected answer {other:?}"))),
                }
            }
        }
    }

    /// Stores bodies ahead of their appends, for a stopped data dir (`None` for a running
    /// node: its bodies travel with the appends).
    pub fn stager(&self) -> Option<Stager> {
        match self {
            Target::Local(r) => Some(r.stager()),
            Target::Running(_) => None,
        }
    }

    /// Appends one batch of messages whose bodies [`Target::stager`] stored; returns once
    /// it is durable.
    pub fn append_stored(
        &mut self,
        a: &AccountName,
        m: &MailboxName,
        msgs: &[StoredMessage],
        now: i64,
    ) -> Result<usize, MaildirError> {
        match self {
            Target::Local(r) => Ok(r.append_stored(a, m, msgs, now)?.len()),
            Target::Running(_) => Err(remote("a running node takes bodies with its appends")),
        }
    }

    /// The bytes of the message at `uid`.
    pub fn fetch(
        &mut self,
        a: &AccountName,
        m: &MailboxName,
        uid: u32,
    ) -> Result<Vec<u8>, MaildirError> {
        match self {
            Target::Local(r) => {
                let uid = Uid::new(uid).ok_or_else(|| remote("UID 0"))?;
                Ok(r.fetch(a, m, uid)?)
            }
            Target::Running(d) => match Self::send(
                d,
                &ControlRequest::Fetch {
                    account: a.to_string(),
                    mailbox: m.to_string(),
                    uid: uid.to_string(),
                },
            )? {
                ControlResponse::Message(b) => Ok(b),
                other => Err(remote(format!("unexpected answer {other:?}"))),
            },
        }
    }
}
