//! The HTTP front end (`dovetail node --http ADDR`): `/metrics` for Prometheus and `/`, a
//! status page for people (this node, its peers and their lag, the mailboxes and their
//! digests, recent renumberings, a plot of documents behind over the last hour).
//!
//! HTTP/1.1 over hyper; the page is rendered on the server (HTML with inline SVG, refreshed
//! by a meta tag), so there is nothing to build and nothing to run in the browser. Like the
//! other front ends it sits above [`crate::node`] and sees the node through its
//! [`FrontEndCtx`]. It serves read-only data and has no authentication: bind it to
//! loopback or a management network.

mod page;
mod plot;

use crate::node::daemon::{FrontEnd, FrontEndCtx};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

/// Errors of the HTTP front end.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("--http {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// How often the documents-behind history is sampled for the plot (360 points an hour).
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// The content type of the OpenMetrics text `prometheus-client` writes.
const METRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds the HTTP listener (before the node starts, so a taken port fails the start).
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, HttpError> {
    let err = |source| HttpError::Bind { addr, source };
    let l = std::net::TcpListener::bind(addr).map_err(err)?;
    l.set_nonblocking(true).map_err(err)?;
    Ok(l)
}

/// The HTTP front end serving on `listener`.
pub fn front_end(listener: std::net::TcpListener) -> FrontEnd {
    // A front end is started once; the listener moves into that one start.
    let listener = Mutex::new(Some(listener));
    FrontEnd::new("http", move |ctx| {
        let l = listener.lock().unwrap_or_else(|e| e.into_inner()).take();
        async move {
            if let Some(l) = l {
                serve(l, ctx).await;
            }
        }
    })
}

async fn serve(listener: std::net::TcpListener, ctx: FrontEndCtx) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "HTTP listener");
            return;
        }
    };
    let mut shutdown = ctx.shutdown.clone();
    let mut sample = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = sample.tick() => {
                let m = ctx.monitor.metrics();
                m.sample_behind(ctx.monitor.behind_sample(crate::node::daemon::now()));
            }
            acc = listener.accept() => match acc {
                Ok((sock, _)) => {
                    let ctx = ctx.clone();
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req| {
                            let ctx = ctx.clone();
                            async move { Ok::<_, Infallible>(route(&ctx, req).await) }
                        });
                        let io = hyper_util::rt::TokioIo::new(sock);
                        let conn = hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, svc);
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "HTTP connection ended");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

fn reply(status: StatusCode, ctype: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

async fn route(ctx: &FrontEndCtx, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => reply(StatusCode::OK, METRICS_TYPE, ctx.monitor.metrics().encode()),
        "/" => match ctx.monitor.status(&ctx.replica).await {
            Ok(st) => {
                let html = page::render(&ctx.monitor, &st, crate::node::daemon::now());
                reply(StatusCode::OK, "text/html; charset=utf-8", html)
            }
            Err(e) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("status unavailable: {e}\n"),
            ),
        },
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}
