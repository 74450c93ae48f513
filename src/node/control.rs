//! The control socket of a running node: `control.sock` in the data dir (mode 0600, so only
//! the data dir's owner may use it). While a node runs its store is locked; the CLI sends
//! its commands here instead, and their writes replicate like any other.
//!
//! One request per connection: a u32 length (big endian) and a postcard [`ControlRequest`];
//! the answer is framed the same way.

use super::actor::ReplicaHandle;
use super::{FlagOp, NewMessage, NodeError, Replica};
use crate::crdt::view::ViewRow;
use crate::model::{AccountName, Flag, FlagSet, MailboxName, Uid, UidSet};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// The socket's file name in the data dir.
pub const SOCKET: &str = "control.sock";

/// The largest control frame (appends are sent in batches well under it).
pub const MAX_CONTROL_FRAME: usize = 1024 * 1024 * 1024;

/// A command for a running node.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ControlRequest {
    AccountCreate(String),
    AccountList,
    MailboxCreate {
        account: String,
        name: String,
    },
    MailboxRename {
        account: String,
        name: String,
        new: String,
    },
    MailboxDelete {
        account: String,
        name: String,
    },
    /// Mailbox status of one account or all, plus the connected peers.
    Status {
        account: Option<String>,
    },
    List {
        account: String,
        mailbox: String,
    },
    /// The visible rows of a mailbox by id (for `diff`).
    Rows {
        mailbox_id: String,
    },
    Append {
        account: String,
        mailbox: String,
        flags: Option<String>,
        messages: Vec<MessageFile>,
    },
    Flags {
        account: String,
        mailbox: String,
        uid: String,
        change: String,
    },
    Expunge {
        account: String,
        mailbox: String,
        uid: String,
    },
    Copy {
        account: String,
        mailbox: String,
        uid: String,
        to: String,
        remove: bool,
    },
    /// The raw message at a UID.
    Fetch {
        account: String,
        mailbox: String,
        uid: String,
    },
    /// Streams view events ([`ControlResponse::Event`]) until the client goes away.
    Watch,
    /// Adds, changes or removes a login of an account (`dovetail user`).
    User {
        account: String,
        login: String,
        change: super::UserChange,
    },
    /// Appends messages each with its own flags (`import-maildir`); one durable batch.
    AppendFlagged {
        account: String,
        mailbox: String,
        messages: Vec<FlaggedMessage>,
    },
}

/// A message to append with its own flags.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FlaggedMessage {
    pub name: String,
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
    pub flags: Vec<String>,
    pub internal_date: i64,
}

/// One view event as `dovetail watch` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventOut {
    pub mailbox_id: String,
    /// `shown`, `hidden` or `flags`.
    pub kind: String,
    pub uid: u32,
    pub guid: String,
    /// Made by a change received from a peer (false: a write on this node).
    pub remote: bool,
}

impl EventOut {
    fn of(e: &super::MailboxEvent) -> EventOut {
        use crate::crdt::view::ViewEvent;
        let (kind, uid, guid) = match &e.event {
            ViewEvent::Shown { uid, guid } => ("shown", uid, guid),
            ViewEvent::Hidden { uid, guid } => ("hidden", uid, guid),
            ViewEvent::Flags { uid, guid } => ("flags", uid, guid),
        };
        EventOut {
            mailbox_id: e.mailbox.to_string(),
            kind: kind.into(),
            uid: uid.get(),
            guid: guid.to_hex(),
            remote: e.remote,
        }
    }
}

/// How far this node is in receiving what its peers have (the initial sync of a new node
/// shows here).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncProgress {
    /// Documents whose heads differed from a peer's at the last comparison, summed over
    /// peers.
    pub documents_behind: u64,
    /// Received changes waiting for a blob or an earlier change.
    pub changes_waiting: u64,
    /// Distinct blobs those changes still lack.
    pub blobs_missing: u64,
    /// Blobs fetched from peers since the node started, and their bytes.
    pub blobs_fetched: u64,
    pub blob_bytes_fetched: u64,
}

/// A message to append: its name (for errors), bytes and internal date.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MessageFile {
    pub name: String,
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
    pub internal_date: i64,
}

/// One mailbox as `status` shows it (the serializable twin of [`super::MailboxStatus`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRow {
    pub account: String,
    pub name: String,
    pub id: String,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub messages: u64,
    pub unseen: u64,
    pub highest_modseq: u64,
    pub digest: String,
}

/// One visible message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowOut {
    pub uid: u32,
    pub guid: String,
    pub flags: Vec<String>,
    pub size: u64,
    pub blob: String,
    pub internal_date: i64,
    pub modseq: u64,
}

/// A connected peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRow {
    pub peer: String,
    pub addr: String,
    /// Seconds since the Unix epoch when it connected.
    pub since: u64,
    /// Documents whose heads differed at the last comparison (0: in sync).
    pub behind: u64,
    /// Request-response bytes sent to the peer since it connected.
    pub sent: u64,
    /// Request-response bytes received from it since then.
    pub received: u64,
}

/// The answer of a running node.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ControlResponse {
    Done,
    /// The command failed; nothing changed.
    Error(String),
    Accounts(Vec<String>),
    Uidvalidity(u32),
    Status {
        mailboxes: Vec<StatusRow>,
        peers: Vec<PeerRow>,
        sync: SyncProgress,
    },
    Rows(Vec<RowOut>),
    Appended(Vec<(u32, String)>),
    Flags(Vec<(u32, Vec<String>)>),
    Uids(Vec<u32>),
    Copied(Vec<(u32, u32)>),
    Message(#[serde(with = "serde_bytes")] Vec<u8>),
    Event(EventOut),
    /// The watcher fell behind and this many events were dropped: reread the mailboxes.
    Lagged(u64),
}

/// Errors talking to a control socket.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket {path}: {why}")]
    Io { path: String, why: String },
}

fn row_out(u: Uid, r: &ViewRow) -> RowOut {
    RowOut {
        uid: u.get(),
        guid: r.guid.to_hex(),
        flags: r.flags.iter().map(|f| f.as_str().to_string()).collect(),
        size: r.size,
        blob: r.blob.to_hex(),
        internal_date: r.internal_date,
        modseq: r.modseq.get(),
    }
}

/// The rows of a mailbox by id, from a replica (running or not).
pub fn rows_by_id(r: &Replica, mailbox_id: &str) -> Result<Vec<RowOut>, NodeError> {
    let id = crate::model::MailboxId::try_from(mailbox_id)?;
    Ok(crate::store::tables::rows(r.kv(), &id)?
        .iter()
        .map(|(u, row)| row_out(*u, row))
        .collect())
}

/// Every mailbox status of one account or all, from a replica.
pub fn statuses(r: &mut Replica, account: Option<&str>) -> Result<Vec<StatusRow>, NodeError> {
    let accounts = match account {
        Some(a) => vec![AccountName::try_from(a)?],
        None => r.accounts()?,
    };
    let mut out = Vec::new();
    for a in accounts {
        for s in r.status(&a)? {
            out.push(StatusRow {
                account: s.account,
                name: s.name,
                id: s.id,
                uidvalidity: s.uidvalidity,
                uidnext: s.uidnext,
                messages: s.messages,
                unseen: s.unseen,
                highest_modseq: s.highest_modseq,
                digest: s.digest,
            });
        }
    }
    Ok(out)
}

fn flag_names(f: &FlagSet) -> Vec<String> {
    f.iter().map(|x| x.as_str().to_string()).collect()
}

/// Runs one request on the replica. Returns the answer and whether it wrote.
fn execute(r: &mut Replica, req: ControlRequest, now: i64) -> Result<ControlResponse, NodeError> {
    let acct = |s: &str| AccountName::try_from(s).map_err(NodeError::from);
    let mbox = |s: &str| MailboxName::try_from(s).map_err(NodeError::from);
    Ok(match req {
        ControlRequest::AccountCreate(a) => {
            r.create_account(&acct(&a)?)?;
            ControlResponse::Done
        }
        ControlRequest::AccountList => {
            ControlResponse::Accounts(r.accounts()?.iter().map(|a| a.to_string()).collect())
        }
        ControlRequest::MailboxCreate { account, name } => {
            ControlResponse::Uidvalidity(r.create_mailbox(&acct(&account)?, &mbox(&name)?)?.get())
        }
        ControlRequest::MailboxRename { account, name, new } => {
            r.rename_mailbox(&acct(&account)?, &mbox(&name)?, &mbox(&new)?)?;
            ControlResponse::Done
        }
        ControlRequest::MailboxDelete { account, name } => {
            r.delete_mailbox(&acct(&account)?, &mbox(&name)?, now)?;
            ControlResponse::Done
        }
        ControlRequest::Status { account } => {
            let (waiting, missing) = r.pending_counts().unwrap_or((0, 0));
            ControlResponse::Status {
                mailboxes: statuses(r, account.as_deref())?,
                peers: Vec::new(),
                sync: SyncProgress {
                    changes_waiting: waiting as u64,
                    blobs_missing: missing as u64,
                    ..SyncProgress::default()
                },
            }
        }
        ControlRequest::Fetch {
            account,
            mailbox,
            uid,
        } => ControlResponse::Message(r.fetch(
            &acct(&account)?,
            &mbox(&mailbox)?,
            Uid::try_from(uid.as_str())?,
        )?),
        // Served by `serve` itself, never sent to the replica.
        ControlRequest::Watch => ControlResponse::Error("watch is a stream".into()),
        ControlRequest::User {
            account,
            login,
            change,
        } => {
            r.change_user(&acct(&account)?, &login, &change)?;
            ControlResponse::Done
        }
        ControlRequest::List { account, mailbox } => ControlResponse::Rows(
            r.list(&acct(&account)?, &mbox(&mailbox)?)?
                .iter()
                .map(|(u, row)| row_out(*u, row))
                .collect(),
        ),
        ControlRequest::Rows { mailbox_id } => ControlResponse::Rows(rows_by_id(r, &mailbox_id)?),
        ControlRequest::Append {
            account,
            mailbox,
            flags,
            messages,
        } => {
            let flags = match flags {
                Some(f) => Flag::parse_list(&f)?,
                None => FlagSet::new(),
            };
            let msgs = messages
                .into_iter()
                .map(|m| NewMessage {
                    name: m.name,
                    bytes: m.bytes,
                    flags: flags.clone(),
                    internal_date: m.internal_date,
                })
                .collect();
            ControlResponse::Appended(
                r.append(&acct(&account)?, &mbox(&mailbox)?, msgs, now)?
                    .into_iter()
                    .map(|(u, g)| (u.get(), g.to_hex()))
                    .collect(),
            )
        }
        ControlRequest::AppendFlagged {
            account,
            mailbox,
            messages,
        } => {
            let mut msgs = Vec::with_capacity(messages.len());
            for m in messages {
                let flags = m
                    .flags
                    .iter()
                    .map(|f| Flag::try_from(f.as_str()))
                    .collect::<Result<FlagSet, _>>()?;
                msgs.push(NewMessage {
                    name: m.name,
                    bytes: m.bytes,
                    flags,
                    internal_date: m.internal_date,
                });
            }
            ControlResponse::Appended(
                r.append(&acct(&account)?, &mbox(&mailbox)?, msgs, now)?
                    .into_iter()
                    .map(|(u, g)| (u.get(), g.to_hex()))
                    .collect(),
            )
        }
        ControlRequest::Flags {
            account,
            mailbox,
            uid,
            change,
        } => {
            let set = UidSet::try_from(uid.as_str())?;
            let op = FlagOp::try_from(change.as_str())?;
            ControlResponse::Flags(
                r.store_flags(&acct(&account)?, &mbox(&mailbox)?, &set, &op, now)?
                    .iter()
                    .map(|(u, f)| (u.get(), flag_names(f)))
                    .collect(),
            )
        }
        ControlRequest::Expunge {
            account,
            mailbox,
            uid,
        } => {
            let set = UidSet::try_from(uid.as_str())?;
            ControlResponse::Uids(
                r.expunge(&acct(&account)?, &mbox(&mailbox)?, &set, now)?
                    .iter()
                    .map(|u| u.get())
                    .collect(),
            )
        }
        ControlRequest::Copy {
            account,
            mailbox,
            uid,
            to,
            remove,
        } => {
            let set = UidSet::try_from(uid.as_str())?;
            ControlResponse::Copied(
                r.copy(
                    &acct(&account)?,
                    &mbox(&mailbox)?,
                    &set,
                    &mbox(&to)?,
                    remove,
                    now,
                )?
                .iter()
                .map(|(a, b)| (a.get(), b.get()))
                .collect(),
            )
        }
    })
}

fn is_read(req: &ControlRequest) -> bool {
    matches!(
        req,
        ControlRequest::AccountList
            | ControlRequest::Status { .. }
            | ControlRequest::List { .. }
            | ControlRequest::Rows { .. }
            | ControlRequest::Fetch { .. }
            | ControlRequest::Watch
    )
}

/// Binds the control socket of `dir` (mode 0600). Done before the node announces its
/// addresses, so a client that sees a node listening finds its socket answering.
pub fn bind(dir: &Path) -> Result<tokio::net::UnixListener, ControlError> {
    let path = dir.join(SOCKET);
    let err = |why: String| ControlError::Io {
        path: path.display().to_string(),
        why,
    };
    // A socket left by a node that was killed: nothing listens on it any more (the store
    // lock, taken before, proves no other node runs on this data dir).
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path).map_err(|e| err(e.to_string()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| err(e.to_string()))?;
    }
    Ok(listener)
}

/// Serves the control socket until the task is dropped. Every write is reported on
/// `changed` so the node announces it.
pub async fn serve(
    listener: tokio::net::UnixListener,
    replica: ReplicaHandle,
    monitor: super::daemon::Monitor,
    changed: mpsc::UnboundedSender<()>,
) -> Result<(), ControlError> {
    let err = |why: String| ControlError::Io {
        path: SOCKET.into(),
        why,
    };
    loop {
        let (mut sock, _) = listener.accept().await.map_err(|e| err(e.to_string()))?;
        let replica = replica.clone();
        let monitor = monitor.clone();
        let changed = changed.clone();
        tokio::spawn(async move {
            let req: ControlRequest = match read_async(&mut sock).await {
                Ok(r) => r,
                // A probe (`running`) connects and closes without a word.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return,
                Err(e) => {
                    tracing::warn!(error = %e, "bad control request");
                    return;
                }
            };
            if matches!(req, ControlRequest::Watch) {
                watch(sock, replica.subscribe()).await;
                return;
            }
            let read = is_read(&req);
            let status = matches!(req, ControlRequest::Status { .. });
            let now = super::daemon::now();
            let mut resp = match replica.call(move |r| execute(r, req, now)).await {
                Ok(Ok(resp)) => resp,
                Ok(Err(e)) => ControlResponse::Error(e.to_string()),
                Err(e) => ControlResponse::Error(e.to_string()),
            };
            if let ControlResponse::Status { peers, sync, .. } = &mut resp {
                if status {
                    monitor.fill_progress(sync);
                    *peers = monitor.peers().await;
                }
            }
            if !read && !matches!(resp, ControlResponse::Error(_)) {
                let _ = changed.send(());
            }
            if let Err(e) = write_async(&mut sock, &resp).await {
                tracing::debug!(error = %e, "control client went away");
            }
        });
    }
}

/// Streams view events to a `watch` client until it goes away.
async fn watch(
    mut sock: tokio::net::UnixStream,
    mut events: tokio::sync::broadcast::Receiver<super::MailboxEvent>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let resp = match events.recv().await {
            Ok(e) => ControlResponse::Event(EventOut::of(&e)),
            Err(RecvError::Lagged(n)) => ControlResponse::Lagged(n),
            Err(RecvError::Closed) => return,
        };
        if write_async(&mut sock, &resp).await.is_err() {
            return;
        }
    }
}

async fn read_async<T: for<'de> Deserialize<'de>>(
    s: &mut tokio::net::UnixStream,
) -> std::io::Result<T> {
    let len = s.read_u32().await? as usize;
    if len > MAX_CONTROL_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "control frame too large",
        ));
    }
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).await?;
    postcard::from_bytes(&buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

async fn write_async<T: Serialize>(s: &mut tokio::net::UnixStream, v: &T) -> std::io::Result<()> {
    let buf = postcard::to_stdvec(v)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    s.write_u32(buf.len() as u32).await?;
    s.write_all(&buf).await?;
    s.flush().await
}

/// Whether a node is running on `dir` (its control socket answers).
pub fn running(dir: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(dir.join(SOCKET)).is_ok()
}

/// Sends one request to the node running on `dir`. `Ok(None)` when no node runs there.
pub fn call(dir: &Path, req: &ControlRequest) -> Result<Option<ControlResponse>, ControlError> {
    let mut answer = None;
    let ran = stream(dir, req, &mut |r| {
        answer = Some(r);
        false
    })?;
    if !ran {
        return Ok(None);
    }
    answer.map(Some).ok_or_else(|| ControlError::Io {
        path: dir.join(SOCKET).display().to_string(),
        why: "the node closed the connection without an answer".into(),
    })
}

/// Sends one request to the node running on `dir` and passes each answer frame to `f`
/// until it returns false or the node closes the connection (`watch` streams). `Ok(false)`
/// when no node runs there.
pub fn stream(
    dir: &Path,
    req: &ControlRequest,
    f: &mut dyn FnMut(ControlResponse) -> bool,
) -> Result<bool, ControlError> {
    let path = dir.join(SOCKET);
    let err = |why: String| ControlError::Io {
        path: path.display().to_string(),
        why,
    };
    let mut s = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(s) => s,
        Err(_) => return Ok(false),
    };
    let buf = postcard::to_stdvec(req).map_err(|e| err(e.to_string()))?;
    s.write_all(&(buf.len() as u32).to_be_bytes())
        .and_then(|_| s.write_all(&buf))
        .map_err(|e| err(e.to_string()))?;
    loop {
        let mut len = [0u8; 4];
        match s.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(true),
            Err(e) => return Err(err(e.to_string())),
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_CONTROL_FRAME {
            return Err(err("answer too large".into()));
        }
        let mut buf = vec![0u8; len];
        s.read_exact(&mut buf).map_err(|e| err(e.to_string()))?;
        let resp = postcard::from_bytes(&buf).map_err(|e| err(e.to_string()))?;
        if !f(resp) {
            return Ok(true);
        }
    }
}
