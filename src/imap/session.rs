//! One IMAP session as an explicit state machine. [`Session::handle`] is its transition
//! function: it takes a command, checks that the state allows it (BAD otherwise), runs the
//! command's file in [`super::cmd`], tells the selected mailbox's pending changes as IMAP
//! allows, and queues the tagged status.

use super::cmd;
use super::convert::text;
use super::selected::{Current, Delta, Selected};
use crate::model::{AccountName, MailboxId};
use crate::node::{MailboxEvent, NodeError, Replica, ReplicaHandle};
use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::response::{
    Code, CodeOther, Data, Response, Status, StatusBody, StatusKind, Tagged,
};
use tokio::sync::{broadcast, mpsc};

/// What a session needs from its node.
#[derive(Clone)]
pub struct Ctx {
    pub replica: ReplicaHandle,
    /// Told after every write, so the node announces the changed documents to its peers.
    pub changed: mpsc::UnboundedSender<()>,
    /// LOGIN and AUTHENTICATE PLAIN (plaintext passwords) are allowed: the connection is
    /// TLS (`--imaps`, or after STARTTLS), on loopback, or the admin allowed plaintext
    /// logins (`--imap-allow-plaintext-login`).
    pub plaintext_ok: bool,
    /// STARTTLS is offered: a certificate is configured and the connection is not TLS yet.
    pub starttls: bool,
    /// The client's address, and the failed logins per address of the whole node.
    pub peer: std::net::IpAddr,
    pub throttle: super::auth::Throttle,
    /// This node's MODSEQ issuer (CONDSTORE).
    pub issuer: super::modseq::Issuer,
}

/// The session states of RFC 3501 3.
#[derive(Debug)]
pub enum State {
    NotAuthenticated,
    Authenticated {
        account: AccountName,
    },
    Selected {
        account: AccountName,
        mailbox: Selected,
    },
    Logout,
}

/// The tagged status a command ends with.
#[derive(Debug)]
pub struct Reply {
    pub kind: StatusKind,
    pub code: Option<Code<'static>>,
    pub text: String,
}

impl Reply {
    pub fn ok(t: impl Into<String>) -> Reply {
        Reply {
            kind: StatusKind::Ok,
            code: None,
            text: t.into(),
        }
    }
    pub fn no(t: impl Into<String>) -> Reply {
        Reply {
            kind: StatusKind::No,
            code: None,
            text: t.into(),
        }
    }
    pub fn bad(t: impl Into<String>) -> Reply {
        Reply {
            kind: StatusKind::Bad,
            code: None,
            text: t.into(),
        }
    }
    pub fn code(mut self, c: Code<'static>) -> Reply {
        self.code = Some(c);
        self
    }
    /// A response code imap-types has no variant for, e.g. `NONEXISTENT` (RFC 5530).
    pub fn other(self, atom: &'static str) -> Reply {
        self.code(Code::Other(CodeOther::unvalidated(atom.as_bytes())))
    }
}

/// A node error as the client sees it (RFC 5530 response codes).
pub fn node_err(e: NodeError) -> Reply {
    let t = e.to_string();
    match e {
        NodeError::UnknownMailbox { .. } => Reply::no(t).other("NONEXISTENT"),
        NodeError::MailboxExists(_) => Reply::no(t).other("ALREADYEXISTS"),
        NodeError::TooLarge { .. } => Reply::no(t).code(Code::TooBig),
        NodeError::Inbox(_) | NodeError::NotAMessage { .. } | NodeError::Model(_) => {
            Reply::no(t).other("CANNOT")
        }
        NodeError::UnknownAccount(_) => Reply::no(t).other("NONEXISTENT"),
        _ => {
            tracing::error!(error = %t, "IMAP command failed");
            Reply::no(t).other("SERVERBUG")
        }
    }
}

/// What a session queues for the client, in order.
pub enum Out {
    /// A response, encoded by imap-next.
    Response(Response<'static>),
    /// Responses already encoded (FETCH of metadata: tens of bytes per message, written
    /// without building imap-types values; see `cmd::fetch`).
    Raw(Vec<u8>),
}

/// One IMAP session.
pub struct Session {
    pub state: State,
    pub ctx: Ctx,
    events: broadcast::Receiver<MailboxEvent>,
    /// Responses to send, in order (the driver moves them to the wire).
    pub out: Vec<Out>,
    /// Failed logins on this connection.
    pub failures: u32,
    /// CONDSTORE is on (RFC 7162 3.1): untagged FETCH responses carry MODSEQ.
    pub condstore: bool,
    /// QRESYNC is on (RFC 7162 3.2, `ENABLE QRESYNC`): expunges are told as VANISHED.
    pub qresync: bool,
    /// While a command runs: where [`Session::spill`] hands responses to the connection,
    /// which writes them while the command goes on.
    pub spill_to: Option<mpsc::Sender<Vec<Out>>>,
}

/// Whether a command's pending changes may include EXPUNGE (not during FETCH, STORE or
/// SEARCH: the client's sequence numbers must not move under them).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tell {
    Everything,
    NoExpunge,
    Nothing,
}

impl Session {
    pub fn new(ctx: Ctx) -> Session {
        let events = ctx.replica.subscribe();
        Session {
            state: State::NotAuthenticated,
            ctx,
            events,
            out: Vec::new(),
            failures: 0,
            condstore: false,
            qresync: false,
            spill_to: None,
        }
    }

    /// Hands the responses gathered so far to the connection, so that a command answering
    /// for a whole mailbox (`FETCH 1:* BODY[]`) is written batch by batch instead of held
    /// in memory whole; waits while the connection is behind. Called between batches.
    pub async fn spill(&mut self) {
        if let (Some(tx), false) = (&self.spill_to, self.out.is_empty()) {
            // The connection drops the receiver only after the command has ended.
            let _ = tx.send(std::mem::take(&mut self.out)).await;
        }
    }

    /// The transition function: runs `cmd` in the current state.
    pub async fn handle(&mut self, cmd: Command<'static>) {
        let Command { tag, body } = cmd;
        let (reply, tell) = self.dispatch(body).await;
        if tell != Tell::Nothing {
            self.tell(tell == Tell::Everything).await;
        }
        self.tagged(tag, reply);
    }

    async fn dispatch(&mut self, body: CommandBody<'static>) -> (Reply, Tell) {
        use CommandBody as C;
        use Tell::*;
        let authed = matches!(
            self.state,
            State::Authenticated { .. } | State::Selected { .. }
        );
        let selected = matches!(self.state, State::Selected { .. });
        let not_authed = matches!(self.state, State::NotAuthenticated);
        match body {
            C::Capability => (cmd::any::capability(self), Nothing),
            C::Noop | C::Check => (Reply::ok("NOOP completed"), Everything),
            C::Logout => (cmd::any::logout(self), Nothing),
            C::Id { .. } => (cmd::any::id(self), Nothing),
            C::Login { username, password } if not_authed => {
                let user = String::from_utf8_lossy(username.as_ref()).into_owned();
                let pw = password.declassify().as_ref().to_vec();
                (cmd::login::login(self, &user, &pw).await, Nothing)
            }
            C::Enable { capabilities } if authed => (cmd::any::enable(self, capabilities), Nothing),
            C::Namespace if authed => (cmd::list::namespace(self), Everything),
            C::List {
                reference,
                mailbox_wildcard,
            } if authed => (
                cmd::list::list(self, &reference, &mailbox_wildcard, false).await,
                Everything,
            ),
            C::Lsub {
                reference,
                mailbox_wildcard,
            } if authed => (
                cmd::list::list(self, &reference, &mailbox_wildcard, true).await,
                Everything,
            ),
            C::Create { mailbox } if authed => {
                (cmd::mailbox::create(self, &mailbox).await, Everything)
            }
            C::Delete { mailbox } if authed => {
                (cmd::mailbox::delete(self, &mailbox).await, Everything)
            }
            C::Rename { from, to } if authed => {
                (cmd::mailbox::rename(self, &from, &to).await, Everything)
            }
            C::Subscribe { mailbox } if authed => (
                cmd::mailbox::subscribe(self, &mailbox, true).await,
                Everything,
            ),
            C::Unsubscribe { mailbox } if authed => (
                cmd::mailbox::subscribe(self, &mailbox, false).await,
                Everything,
            ),
            C::Status {
                mailbox,
                item_names,
            } if authed => (
                cmd::status::status(self, &mailbox, &item_names).await,
                Everything,
            ),
            C::Select {
                mailbox,
                parameters,
            } if authed => (
                cmd::select::select(self, &mailbox, false, &parameters).await,
                Nothing,
            ),
            C::Examine {
                mailbox,
                parameters,
            } if authed => (
                cmd::select::select(self, &mailbox, true, &parameters).await,
                Nothing,
            ),
            C::Append {
                mailbox,
                flags,
                date,
                message,
            } if authed => (
                cmd::append::append(self, &mailbox, &flags, date.as_ref(), message).await,
                Everything,
            ),
            C::Unselect if selected => (cmd::select::unselect(self, false).await, Nothing),
            C::Close if selected => (cmd::select::unselect(self, true).await, Nothing),
            C::Expunge if selected => (cmd::expunge::expunge(self, None).await, Everything),
            C::ExpungeUid { sequence_set } if selected => (
                cmd::expunge::expunge(self, Some(&sequence_set)).await,
                Everything,
            ),
            C::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                modifiers,
            } if selected => {
                let r =
                    cmd::fetch::fetch(self, &sequence_set, macro_or_item_names, uid, &modifiers);
                (r.await, NoExpunge)
            }
            C::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                modifiers,
            } if selected => {
                let args = cmd::store::Args {
                    kind,
                    response,
                    by_uid: uid,
                    modifiers,
                };
                (
                    cmd::store::store(self, &sequence_set, &flags, args).await,
                    NoExpunge,
                )
            }
            C::Search { criteria, uid, .. } if selected => (
                cmd::search::search(self, criteria.as_ref(), uid).await,
                NoExpunge,
            ),
            C::Copy {
                sequence_set,
                mailbox,
                uid,
            } if selected => (
                cmd::copy::copy(self, &sequence_set, &mailbox, uid, false).await,
                Everything,
            ),
            C::Move {
                sequence_set,
                mailbox,
                uid,
            } if selected => (
                cmd::copy::copy(self, &sequence_set, &mailbox, uid, true).await,
                Everything,
            ),
            other => {
                let why = if matches!(self.state, State::Logout) {
                    "logged out"
                } else if not_authed {
                    "not allowed before login (or not supported)"
                } else {
                    "not allowed in this state (or not supported)"
                };
                (Reply::bad(format!("{} {why}", other.name())), Nothing)
            }
        }
    }

    /// Queues an untagged data response.
    pub fn data(&mut self, d: Data<'static>) {
        self.out.push(Out::Response(Response::Data(d)));
    }

    /// Queues responses already encoded (after everything queued before: appended to the
    /// previous encoded ones, without a copy otherwise).
    pub fn push_raw(&mut self, bytes: Vec<u8>) {
        match self.out.last_mut() {
            Some(Out::Raw(b)) => b.extend_from_slice(&bytes),
            _ => self.out.push(Out::Raw(bytes)),
        }
    }

    /// Queues an untagged status.
    pub fn untagged(&mut self, r: Reply) {
        self.out
            .push(Out::Response(Response::Status(Status::Untagged(
                StatusBody {
                    kind: r.kind,
                    code: r.code,
                    text: text(&r.text),
                },
            ))));
    }

    /// Queues the tagged status of a command.
    pub fn tagged(&mut self, tag: Tag<'static>, r: Reply) {
        self.out
            .push(Out::Response(Response::Status(tagged_status(tag, r))));
    }

    /// Runs `f` on the replica thread; a node error becomes the reply to send.
    pub async fn call<T, F>(&self, f: F) -> Result<T, Reply>
    where
        T: Send + 'static,
        F: FnOnce(&mut Replica) -> Result<T, NodeError> + Send + 'static,
    {
        match self.ctx.replica.call(f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(node_err(e)),
            Err(_) => Err(Reply::no("the node is shutting down").other("UNAVAILABLE")),
        }
    }

    /// Tells the node that this session wrote, so it announces the change to its peers.
    /// The selected mailbox is reread at the next chance to tell changes: the view events
    /// of this write are published by the replica thread after it answered, possibly after
    /// the client's next command, and a client must see its own APPEND or COPY there.
    pub fn wrote(&mut self) {
        let _ = self.ctx.changed.send(());
        if let Some(sel) = self.selected() {
            sel.dirty = true;
        }
    }

    /// The logged-in account.
    pub fn account(&self) -> Option<&AccountName> {
        match &self.state {
            State::Authenticated { account } | State::Selected { account, .. } => Some(account),
            _ => None,
        }
    }

    /// The selected mailbox.
    pub fn selected(&mut self) -> Option<&mut Selected> {
        match &mut self.state {
            State::Selected { mailbox, .. } => Some(mailbox),
            _ => None,
        }
    }

    /// Notes which view events concern the selected mailbox (the rest are dropped).
    fn drain_events(&mut self) {
        use broadcast::error::TryRecvError;
        loop {
            let hit = match self.events.try_recv() {
                Ok(e) => Some(e.mailbox),
                Err(TryRecvError::Lagged(_)) => None,
                Err(_) => return,
            };
            if let Some(sel) = self.selected() {
                if hit.is_none_or(|m| m == sel.id) {
                    sel.dirty = true;
                }
            }
        }
    }

    /// Forgets the events so far (a new selection reads the mailbox after this).
    pub fn skip_events(&mut self) {
        while !matches!(
            self.events.try_recv(),
            Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed)
        ) {}
    }

    /// Waits for the next view event (IDLE); `None` once the node stops.
    pub async fn next_event(&mut self) -> Option<()> {
        match self.events.recv().await {
            Ok(e) => {
                if let Some(sel) = self.selected() {
                    if e.mailbox == sel.id {
                        sel.dirty = true;
                    }
                }
                Some(())
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                if let Some(sel) = self.selected() {
                    sel.dirty = true;
                }
                Some(())
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// Tells the selected mailbox's changes since the last time (`expunge`: EXPUNGE
    /// responses allowed now). Reads only what changed since the session's MODSEQ mark.
    pub async fn tell(&mut self, expunge: bool) {
        self.drain_events();
        let qresync = self.qresync;
        let Some(sel) = self.selected() else {
            return;
        };
        // Under QRESYNC a client may keep the greatest MODSEQ it was told as its
        // HIGHESTMODSEQ: a flag change told while an earlier expunge waits would let it
        // skip that expunge at its next resync (RFC 7162 3.2). So nothing is told until
        // expunges may be.
        if !sel.dirty || (qresync && !expunge) {
            return;
        }
        sel.dirty = false;
        let (id, seen) = (sel.id, sel.seen);
        let got = self
            .call(move |r| {
                let highest = highest(r, &id)?;
                let since = crate::store::changes::since(r.kv(), &id, seen)?;
                // Below the vanish floor (an upgraded store) the index cannot say what
                // vanished: read the mailbox whole.
                let full = if since.complete {
                    None
                } else {
                    Some(current(r, &id)?)
                };
                Ok((highest, since, full))
            })
            .await;
        let (highest, since, full) = match got {
            Ok(g) => g,
            Err(r) => {
                tracing::warn!(error = %r.text, "cannot read the selected mailbox");
                return;
            }
        };
        let modseq = self.condstore.then_some(self.ctx.issuer);
        let data = match self.selected() {
            Some(sel) => {
                let delta = match full {
                    Some(rows) => sel.delta_of(rows),
                    None => Delta {
                        rows: since
                            .rows
                            .iter()
                            .map(|(u, row)| Current::of(*u, row))
                            .collect(),
                        vanished: since.vanished,
                    },
                };
                sel.seen = highest;
                sel.sync(&delta, expunge, modseq, qresync)
            }
            None => vec![],
        };
        for d in data {
            self.data(d);
        }
    }
}

/// The tagged status line of a reply.
pub fn tagged_status(tag: Tag<'static>, r: Reply) -> Status<'static> {
    Status::Tagged(Tagged {
        tag,
        body: StatusBody {
            kind: r.kind,
            code: r.code,
            text: text(&r.text),
        },
    })
}

/// This node's HIGHESTMODSEQ counter of a mailbox (0 for a mailbox without changes).
pub fn highest(r: &Replica, id: &MailboxId) -> Result<u64, NodeError> {
    let tx = crate::store::Tx::new(r.kv());
    Ok(tx.mailbox_meta(id)?.map_or(0, |m| m.highest_modseq))
}

/// The visible messages of a mailbox (by id, so a rename elsewhere does not lose it).
pub fn current(r: &mut Replica, id: &MailboxId) -> Result<Vec<Current>, NodeError> {
    let mut out = Vec::new();
    crate::store::tables::each_row(r.kv(), id, &mut |u, row| {
        out.push(Current::of(u, &row));
        true
    })?;
    Ok(out)
}
