//! The accept loop and one connection's I/O: reads command lines (bounded), drives the
//! [`Session`], reads the DATA block through the [`DataDecoder`], delivers, replies.

use super::data::DataDecoder;
use super::deliver::{deliver, trace_headers, Trace};
use super::recipient::resolve;
use super::reply::Reply;
use super::session::{Session, Step};
use super::{Bound, LmtpConfig};
use crate::node::daemon::FrontEndCtx;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// Longest command line accepted (RFC 5321 §4.5.3.1.4 asks for 512 bytes; parameters can
/// make real ones longer).
const MAX_LINE: usize = 4096;

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Serves LMTP on `bound` until the node shuts down, then waits for the open sessions to
/// finish what they are doing (each ends at its next command with 421).
pub async fn serve(bound: Bound, cfg: LmtpConfig, ctx: FrontEndCtx) {
    let cfg = Arc::new(cfg);
    let mut shutdown = ctx.shutdown.clone();
    let sessions = Arc::new(Semaphore::new(cfg.max_sessions));
    let mut running = JoinSet::new();
    match &bound {
        Bound::Tcp(l) => {
            if let Ok(a) = l.local_addr() {
                tracing::info!(addr = %a, "LMTP listening");
            }
        }
        Bound::Unix(_, p) => tracing::info!(path = %p.display(), "LMTP listening"),
    }
    let (tcp, unix) = match bound.into_tokio() {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(error = %e, "LMTP listener");
            return;
        }
    };
    loop {
        // Finished sessions are reaped as we go, so the set stays small.
        while running.try_join_next().is_some() {}
        let accepted = tokio::select! {
            _ = shutdown.changed() => break,
            a = accept(&tcp, &unix) => a,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and the like: wait a little rather than spin.
                tracing::warn!(error = %e, "LMTP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let permit = sessions.clone().try_acquire_owned();
        let (cfg, ctx) = (cfg.clone(), ctx.clone());
        running.spawn(async move {
            let (r, mut w) = tokio::io::split(stream);
            match permit {
                Ok(_permit) => {
                    ctx.monitor.metrics().session("lmtp");
                    if let Err(e) = connection(r, w, &peer, &cfg, &ctx).await {
                        tracing::debug!(peer, error = %e, "LMTP connection ended");
                    }
                }
                Err(_) => {
                    let too_many = Reply::new(421, "4.3.2", "too many sessions, try later");
                    let _ = w.write_all(&too_many.to_wire()).await;
                }
            }
        });
    }
    while running.join_next().await.is_some() {}
    if let Some((_, path)) = unix {
        let _ = std::fs::remove_file(path);
    }
}

/// A stream of either kind.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

async fn accept(
    tcp: &Option<tokio::net::TcpListener>,
    unix: &Option<(tokio::net::UnixListener, std::path::PathBuf)>,
) -> std::io::Result<(Box<dyn Stream>, String)> {
    if let Some(l) = tcp {
        let (s, a) = l.accept().await?;
        return Ok((Box::new(s), a.to_string()));
    }
    if let Some((l, _)) = unix {
        let (s, _) = l.accept().await?;
        return Ok((Box::new(s), "local".to_string()));
    }
    std::future::pending().await
}

/// What waiting for input ended with.
enum Input {
    More,
    Eof,
    Shutdown,
    Idle,
}

/// Reads more bytes into `buf`, unless the node shuts down (only watched between
/// commands: a DATA block being received is finished) or the client stays idle too long.
async fn fill<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    cfg: &LmtpConfig,
    shutdown: Option<&mut watch::Receiver<bool>>,
) -> std::io::Result<Input> {
    let mut chunk = vec![0u8; READ_CHUNK];
    let read = tokio::time::timeout(cfg.idle, r.read(&mut chunk));
    let n = match shutdown {
        Some(s) if *s.borrow() => return Ok(Input::Shutdown),
        Some(s) => tokio::select! {
            _ = s.changed() => return Ok(Input::Shutdown),
            n = read => n,
        },
        None => read.await,
    };
    match n {
        Err(_) => Ok(Input::Idle),
        Ok(Ok(0)) => Ok(Input::Eof),
        Ok(Ok(n)) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(Input::More)
        }
        Ok(Err(e)) => Err(e),
    }
}

async fn send<W: AsyncWrite + Unpin>(w: &mut W, r: &Reply, flush: bool) -> std::io::Result<()> {
    w.write_all(&r.to_wire()).await?;
    if flush {
        w.flush().await?;
    }
    Ok(())
}

/// One connection, until QUIT, EOF, an idle timeout or shutdown.
async fn connection<R, W>(
    mut r: R,
    w: W,
    peer: &str,
    cfg: &LmtpConfig,
    ctx: &FrontEndCtx,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut w = BufWriter::new(w);
    let mut shutdown = ctx.shutdown.clone();
    let mut session = Session::new(&cfg.host, cfg.max_message_size);
    send(&mut w, &Reply::greeting(&cfg.host), true).await?;
    let mut buf: Vec<u8> = Vec::new();
    // After an overlong line: drop input up to its end.
    let mut discarding = false;
    loop {
        let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
            if buf.len() > MAX_LINE {
                buf.clear();
                if !discarding {
                    discarding = true;
                    send(&mut w, &Reply::line_too_long(), true).await?;
                }
            }
            match fill(&mut r, &mut buf, cfg, Some(&mut shutdown)).await? {
                Input::More => continue,
                Input::Eof => return Ok(()),
                Input::Shutdown => return send(&mut w, &Reply::shutting_down(), true).await,
                Input::Idle => return send(&mut w, &Reply::timeout(), true).await,
            }
        };
        let line: Vec<u8> = buf.drain(..=nl).collect();
        if std::mem::take(&mut discarding) {
            continue;
        }
        if line.len() > MAX_LINE {
            send(&mut w, &Reply::line_too_long(), true).await?;
            continue;
        }
        // Pipelined commands already here are answered together, in one write.
        let flush = !buf.contains(&b'\n');
        match session.command(&line) {
            Step::Reply(reply) => send(&mut w, &reply, flush).await?,
            Step::Quit(reply) => return send(&mut w, &reply, true).await,
            Step::Lookup(address) => {
                let a = address.clone();
                let reply = match ctx.replica.call(move |rep| resolve(rep, &a)).await {
                    Ok(Ok(target)) => session.recipient(address, target),
                    Ok(Err(e)) => {
                        tracing::error!(rcpt = %address, error = %e, "LMTP recipient look-up failed");
                        Reply::temporary("look-up failed")
                    }
                    Err(e) => Reply::temporary(&e.to_string()),
                };
                send(&mut w, &reply, flush).await?;
            }
            Step::Data => {
                send(&mut w, &Reply::start_data(), true).await?;
                let Some(replies) = data(&mut r, &mut buf, &mut session, peer, cfg, ctx).await?
                else {
                    // The client went away mid-DATA: nothing was stored.
                    return Ok(());
                };
                for reply in &replies {
                    send(&mut w, reply, false).await?;
                }
                w.flush().await?;
            }
        }
    }
}

/// Reads the DATA block (some of it may already be in `buf`), then delivers it. `None`:
/// the connection ended before the block did.
async fn data<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    session: &mut Session,
    peer: &str,
    cfg: &LmtpConfig,
    ctx: &FrontEndCtx,
) -> std::io::Result<Option<Vec<Reply>>> {
    let now = crate::node::daemon::now();
    let Some(env) = session.take_envelope() else {
        return Ok(Some(vec![Reply::bad_sequence("no transaction")]));
    };
    let mut message = trace_headers(&Trace {
        from: &env.from,
        client: session.client_name(),
        peer,
        host: &cfg.host,
        now,
    });
    // The stored message (trace headers included) must fit the limit; more is counted,
    // not kept.
    let cap = usize::try_from(cfg.max_message_size.saturating_sub(message.len() as u64))
        .unwrap_or(usize::MAX);
    let mut dec = DataDecoder::new(cap);
    loop {
        let used = dec.feed(buf);
        buf.drain(..used);
        if dec.is_done() {
            break;
        }
        match fill(r, buf, cfg, None).await? {
            Input::More => {}
            Input::Eof | Input::Idle | Input::Shutdown => return Ok(None),
        }
    }
    if dec.overflowed() {
        tracing::info!(
            peer,
            limit = cfg.max_message_size,
            "LMTP message over the size limit refused"
        );
        return Ok(Some(vec![
            Reply::too_large(cfg.max_message_size);
            env.rcpts.len()
        ]));
    }
    message.extend_from_slice(&dec.into_body());
    Ok(Some(
        deliver(ctx, &env, message, now, cfg.max_message_size).await,
    ))
}
