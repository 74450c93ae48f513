//! The IMAP listener: [`serve`] takes a bound listener and a shutdown future and runs one
//! task per connection until the shutdown resolves (then every session is dropped). Each
//! connection pumps bytes through imap-next's sans-IO server, which frames commands,
//! answers literal announcements (refusing one over the size limit before reading it),
//! and drives AUTHENTICATE and IDLE; the [`Session`] does the rest. STARTTLS is done here
//! too, as it swaps the connection's stream ([`starttls`]).

use super::auth;
use super::cmd;
use super::session::{tagged_status, Ctx, Out, Reply, Session, State};
use super::tls;
use super::tls::Stream;
use super::ImapError;
use crate::node::ReplicaHandle;
use imap_codec::encode::Encoder;
use imap_codec::imap_types::auth::{AuthMechanism, AuthenticateData};
use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::response::{
    Code, CommandContinuationRequest, Greeting, Response, Status,
};
use imap_codec::ResponseCodec;
use imap_next::server::{Error as NextError, Event, Options, Server};
use imap_next::{Interrupt, Io, State as _};
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// How the IMAP front end runs.
#[derive(Clone, Debug)]
pub struct ImapConfig {
    /// The largest literal (message) accepted: larger ones are refused before they are read.
    pub max_literal: u32,
    /// A session that sends nothing for this long is closed (RFC 3501 5.4 asks for at least
    /// 30 minutes; IDLE clients re-issue IDLE well within it).
    pub idle_timeout: Duration,
    /// The certificate and key: STARTTLS is offered on plaintext listeners, and an
    /// [`implicit_tls`](ImapConfig::implicit_tls) listener needs it.
    pub tls: Option<tls::Acceptor>,
    /// The listener speaks TLS from the first byte (`--imaps`, port 993).
    pub implicit_tls: bool,
    /// LOGIN and AUTHENTICATE PLAIN are allowed without TLS from any address (by default
    /// only from loopback).
    pub allow_plaintext_login: bool,
    /// The node's metrics, to count sessions in (`None`: not counted).
    pub metrics: Option<std::sync::Arc<crate::node::Metrics>>,
}

impl Default for ImapConfig {
    fn default() -> ImapConfig {
        ImapConfig {
            max_literal: 64 * 1024 * 1024,
            idle_timeout: Duration::from_secs(31 * 60),
            tls: None,
            implicit_tls: false,
            allow_plaintext_login: false,
            metrics: None,
        }
    }
}

/// Serves IMAP on `listener` until `shutdown` resolves. Writes are reported on `changed`.
pub async fn serve(
    listener: TcpListener,
    replica: ReplicaHandle,
    changed: mpsc::UnboundedSender<()>,
    cfg: ImapConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ImapError> {
    if cfg.implicit_tls && cfg.tls.is_none() {
        return Err(ImapError::Tls {
            what: "implicit TLS listener".into(),
            why: "no certificate configured".into(),
        });
    }
    let mut sessions = JoinSet::new();
    let throttle = auth::Throttle::default();
    let issuer = super::modseq::Issuer::of(&replica.call(|r| r.node_id()).await?);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            acc = listener.accept() => match acc {
                Ok((sock, peer)) => {
                    cfg.metrics.iter().for_each(|m| m.session("imap"));
                    let ctx = Ctx {
                        replica: replica.clone(),
                        changed: changed.clone(),
                        plaintext_ok: cfg.implicit_tls
                            || cfg.allow_plaintext_login
                            || peer.ip().is_loopback(),
                        starttls: cfg.tls.is_some() && !cfg.implicit_tls,
                        peer: peer.ip(),
                        throttle: throttle.clone(),
                        issuer,
                    };
                    let cfg = cfg.clone();
                    sessions.spawn(async move {
                        if let Err(e) = start(sock, peer, ctx, cfg).await {
                            tracing::debug!(%peer, error = %e, "IMAP connection ended");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "IMAP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(done) = sessions.join_next(), if !sessions.is_empty() => {
                if let Err(e) = done {
                    if e.is_panic() {
                        tracing::error!(error = %e, "an IMAP session panicked");
                    }
                }
            }
        }
    }
    sessions.shutdown().await;
    Ok(())
}

/// The tag of a command that failed to parse, if its first word is one.
fn tag_of(bytes: &[u8]) -> Option<Tag<'static>> {
    let end = bytes.iter().position(|&b| b == b' ').unwrap_or(bytes.len());
    Tag::try_from(String::from_utf8(bytes[..end].to_vec()).ok()?).ok()
}

/// A new connection: the TLS handshake first on an implicit-TLS listener, then the session.
async fn start(
    sock: TcpStream,
    peer: SocketAddr,
    ctx: Ctx,
    cfg: ImapConfig,
) -> Result<(), ImapError> {
    sock.set_nodelay(true)?;
    let stream = match (&cfg.tls, cfg.implicit_tls) {
        (Some(acceptor), true) => acceptor.accept(sock).await?,
        _ => Stream::Plain(sock),
    };
    connection(stream, peer, ctx, cfg).await
}

/// imap-next's options for a connection.
fn options(cfg: &ImapConfig) -> Options {
    let mut opts = Options::default();
    opts.crlf_relaxed = true;
    opts.max_literal_size = cfg.max_literal;
    opts.max_command_size = cfg.max_literal.saturating_add(64 * 1024);
    let _ = opts.set_literal_reject_text("literal too large: over the message size limit".into());
    opts
}

/// One connection, from greeting to logout (or the client going away).
async fn connection(
    mut stream: Stream,
    peer: SocketAddr,
    ctx: Ctx,
    cfg: ImapConfig,
) -> Result<(), ImapError> {
    let mut session = Session::new(ctx);
    let caps = cmd::any::capabilities(&session);
    let greeting =
        Greeting::ok(Some(Code::Capability(caps)), "dovetail IMAP ready").expect("valid greeting");
    let mut server = Server::new(options(&cfg), greeting);
    tracing::debug!(%peer, tls = stream.is_tls(), "IMAP connection");
    let mut buf = vec![0u8; 64 * 1024];
    // Responses are gathered and written when the server needs input (or the buffer is
    // big): a FETCH of 100k messages is ~100 writes, not 100k.
    let mut pending: Vec<u8> = Vec::new();
    // What imap-next returned while it was being emptied before encoded bytes were added
    // (see `pump_sends`), to be handled in order before it is asked for more.
    let mut stashed: VecDeque<Next> = VecDeque::new();
    let mut idle_tag: Option<Tag<'static>> = None;
    let mut auth_tag: Option<Tag<'static>> = None;
    loop {
        let outs = std::mem::take(&mut session.out);
        drain(outs, &mut server, &mut pending, &mut stashed, &mut stream).await?;
        let next = match stashed.pop_front() {
            Some(ev) => ev,
            None => server.next(),
        };
        match next {
            Ok(Event::GreetingSent { .. } | Event::ResponseSent { .. }) => {}
            Ok(Event::CommandReceived { command })
                if matches!(command.body, CommandBody::StartTLS) =>
            {
                match starttls_refused(&session) {
                    Some(r) => session.tagged(command.tag, r),
                    None => {
                        send(&mut stream, &mut pending).await?;
                        stream = starttls(&mut session, command.tag, stream, &cfg).await?;
                        // Whatever the client sent after STARTTLS in plaintext is dropped
                        // with the old server's buffer (RFC 3501 6.2.1).
                        server = resumed(&cfg);
                    }
                }
            }
            Ok(Event::CommandReceived { command }) => {
                // Responses the command spills are written while it runs.
                // One batch waits while another is written: a command holds at most
                // about three batches of responses.
                let (tx, mut rx) = mpsc::channel::<Vec<Out>>(1);
                session.spill_to = Some(tx);
                {
                    let run = session.handle(command);
                    tokio::pin!(run);
                    loop {
                        tokio::select! {
                            _ = &mut run => break,
                            Some(outs) = rx.recv() => {
                                drain(outs, &mut server, &mut pending, &mut stashed, &mut stream).await?;
                            }
                        }
                    }
                }
                session.spill_to = None;
                while let Ok(outs) = rx.try_recv() {
                    drain(outs, &mut server, &mut pending, &mut stashed, &mut stream).await?;
                }
            }
            Ok(Event::CommandAuthenticateReceived {
                command_authenticate: c,
            }) => {
                let refuse = if session.account().is_some() {
                    Some(Reply::bad("already logged in"))
                } else if c.mechanism != AuthMechanism::Plain {
                    Some(Reply::no("only AUTHENTICATE PLAIN is supported").other("CANNOT"))
                } else if !session.ctx.plaintext_ok {
                    Some(cmd::login::privacy_required())
                } else {
                    None
                };
                if let Some(r) = refuse {
                    let _ = server.authenticate_finish(tagged_status(c.tag, r));
                } else if let Some(ir) = c.initial_response {
                    let r = plain(&mut session, ir.declassify()).await;
                    let _ = server.authenticate_finish(tagged_status(c.tag, r));
                } else {
                    auth_tag = Some(c.tag);
                    let _ = server.authenticate_continue(CommandContinuationRequest::base64(b""));
                }
            }
            Ok(Event::AuthenticateDataReceived { authenticate_data }) => {
                let Some(tag) = auth_tag.take() else {
                    continue;
                };
                let r = match authenticate_data {
                    AuthenticateData::Continue(d) => plain(&mut session, d.declassify()).await,
                    AuthenticateData::Cancel => Reply::bad("AUTHENTICATE cancelled"),
                };
                let _ = server.authenticate_finish(tagged_status(tag, r));
            }
            Ok(Event::IdleCommandReceived { tag }) => match cmd::idle::check(&session) {
                Ok(()) => {
                    let cont = CommandContinuationRequest::basic(None, "idling")
                        .expect("valid continuation");
                    let _ = server.idle_accept(cont);
                    idle_tag = Some(tag);
                    cmd::idle::changes(&mut session).await;
                }
                Err(r) => {
                    let _ = server.idle_reject(tagged_status(tag, r));
                }
            },
            Ok(Event::IdleDoneReceived) => {
                if let Some(tag) = idle_tag.take() {
                    cmd::idle::changes(&mut session).await;
                    session.tagged(tag, Reply::ok("IDLE terminated"));
                }
            }
            Err(Interrupt::Io(Io::Output(bytes))) => {
                pending.extend_from_slice(&bytes);
                if pending.len() >= OUTPUT_CHUNK {
                    send(&mut stream, &mut pending).await?;
                }
            }
            Err(Interrupt::Io(Io::NeedMoreInput)) => {
                send(&mut stream, &mut pending).await?;
                if matches!(session.state, State::Logout) {
                    break;
                }
                let timeout = tokio::time::sleep(cfg.idle_timeout);
                tokio::select! {
                    n = stream.read(&mut buf) => {
                        let n = n?;
                        if n == 0 {
                            break;
                        }
                        server.enqueue_input(&buf[..n]);
                    }
                    ev = session.next_event(), if idle_tag.is_some() => match ev {
                        Some(()) => cmd::idle::changes(&mut session).await,
                        None => break,
                    },
                    _ = timeout => {
                        session.out.push(Out::Response(Response::Status(
                            Status::bye(None, "autologout: idle for too long").expect("valid text"),
                        )));
                        session.state = State::Logout;
                    }
                }
            }
            Err(Interrupt::Error(e)) => {
                let (why, bytes) = match &e {
                    NextError::MalformedMessage { discarded_bytes } => (
                        "malformed command",
                        Some(discarded_bytes.declassify().to_vec()),
                    ),
                    NextError::CommandTooLong { discarded_bytes } => (
                        "command too long",
                        Some(discarded_bytes.declassify().to_vec()),
                    ),
                    NextError::ExpectedCrlfGotLf { discarded_bytes } => {
                        ("expected CRLF", Some(discarded_bytes.declassify().to_vec()))
                    }
                    // imap-next has already answered the tagged BAD.
                    NextError::LiteralTooLong { .. } => ("literal too long", None),
                };
                tracing::debug!(%peer, why, "bad IMAP input");
                if let Some(bytes) = bytes {
                    let r = Reply::bad(format!("{why} (see RFC 3501 section 9)"));
                    match tag_of(&bytes) {
                        Some(tag) => session.tagged(tag, r),
                        None => session.untagged(r),
                    }
                }
            }
        }
    }
    let _ = stream.shutdown().await;
    Ok(())
}

/// How many response bytes are gathered before they are written.
const OUTPUT_CHUNK: usize = 256 * 1024;

/// What imap-next's server returns.
type Next = Result<Event, Interrupt<NextError>>;

/// Moves everything imap-next has queued to `pending`, so that bytes added next come after
/// it. imap-next sends before it reads: once its queue is empty it may return the next
/// command (pipelined), or an error about the input; that is kept in `stashed` for the
/// main loop, which handles it before asking imap-next for more.
fn pump_sends(server: &mut Server, pending: &mut Vec<u8>, stashed: &mut VecDeque<Next>) {
    loop {
        match server.next() {
            Err(Interrupt::Io(Io::Output(bytes))) => pending.extend_from_slice(&bytes),
            Ok(Event::GreetingSent { .. } | Event::ResponseSent { .. }) => {}
            Err(Interrupt::Io(Io::NeedMoreInput)) => return,
            other => {
                stashed.push_back(other);
                return;
            }
        }
    }
}

/// Moves a session's responses to `pending` in order: through imap-next's queue, or, once
/// encoded bytes ([`Out::Raw`]) were added, straight after whatever imap-next had queued
/// (so that what follows is encoded here too, and the order is kept without asking
/// imap-next again); writes `pending` whenever it is big.
async fn drain(
    outs: Vec<Out>,
    server: &mut Server,
    pending: &mut Vec<u8>,
    stashed: &mut VecDeque<Next>,
    stream: &mut Stream,
) -> Result<(), ImapError> {
    let (mut direct, mut queued) = (false, false);
    for r in outs {
        match r {
            Out::Response(r) if direct => {
                pending.extend_from_slice(&ResponseCodec::default().encode(&r).dump());
            }
            Out::Response(Response::Data(d)) => {
                server.enqueue_data(d);
                queued = true;
            }
            Out::Response(Response::Status(s)) => {
                server.enqueue_status(s);
                queued = true;
            }
            Out::Response(Response::CommandContinuationRequest(c)) => {
                server.enqueue_continuation_request(c);
                queued = true;
            }
            Out::Raw(bytes) => {
                if !direct {
                    pump_sends(server, pending, stashed);
                    direct = true;
                }
                pending.extend_from_slice(&bytes);
            }
        }
        if pending.len() >= OUTPUT_CHUNK {
            send(stream, pending).await?;
        }
    }
    // What went to imap-next's queue comes out as bytes now, so that responses spilled by a
    // running command are written, not held in that queue until the command ends.
    if queued && !direct {
        pump_sends(server, pending, stashed);
        if pending.len() >= OUTPUT_CHUNK {
            send(stream, pending).await?;
        }
    }
    Ok(())
}

/// Writes and flushes the gathered response bytes.
async fn send(stream: &mut Stream, pending: &mut Vec<u8>) -> Result<(), ImapError> {
    if !pending.is_empty() {
        stream.write_all(pending).await?;
        stream.flush().await?;
        pending.clear();
    }
    Ok(())
}

/// Why STARTTLS is refused now, if it is.
fn starttls_refused(session: &Session) -> Option<Reply> {
    if !session.ctx.starttls {
        Some(Reply::bad(
            "STARTTLS is not available (no certificate configured, or TLS is already on)",
        ))
    } else if !matches!(session.state, State::NotAuthenticated) {
        Some(Reply::bad("STARTTLS is allowed only before login"))
    } else {
        None
    }
}

/// STARTTLS (RFC 3501 6.2.1): the tagged OK in plaintext, then the TLS handshake; logins
/// are allowed from then on, and STARTTLS is no longer offered. The OK is written here, not
/// through imap-next: the caller drops that server with whatever it buffered after the
/// command (the STARTTLS command injection attack, CVE-2011-0411 and its kin).
async fn starttls(
    session: &mut Session,
    tag: Tag<'static>,
    mut stream: Stream,
    cfg: &ImapConfig,
) -> Result<Stream, ImapError> {
    let acceptor = cfg
        .tls
        .as_ref()
        .ok_or_else(|| ImapError::Io(std::io::Error::other("STARTTLS without a certificate")))?;
    let ok = Response::Status(tagged_status(tag, Reply::ok("begin TLS negotiation now")));
    stream
        .write_all(&ResponseCodec::default().encode(&ok).dump())
        .await?;
    stream.flush().await?;
    let stream = stream.upgrade(acceptor).await?;
    session.ctx.starttls = false;
    session.ctx.plaintext_ok = true;
    Ok(stream)
}

/// A fresh imap-next server for the TLS part of a STARTTLS connection: nothing buffered,
/// and no greeting (one is required by the constructor; it is encoded and dropped).
fn resumed(cfg: &ImapConfig) -> Server {
    let greeting = Greeting::ok(None, "unused").expect("valid greeting");
    let mut server = Server::new(options(cfg), greeting);
    loop {
        match server.next() {
            Ok(_) | Err(Interrupt::Io(Io::Output(_))) => {}
            Err(_) => return server,
        }
    }
}

/// Finishes an AUTHENTICATE PLAIN with the client's (decoded) response.
async fn plain(session: &mut Session, msg: &[u8]) -> Reply {
    match auth::parse_plain(msg) {
        Some((user, pw)) => cmd::login::login(session, &user, &pw).await,
        None => Reply::bad("malformed PLAIN response"),
    }
}
