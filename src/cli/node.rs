//! `dovetail node` (run a node of a cluster) and `dovetail keygen` (write a cluster key).

use super::{Cli, CliError};
use crate::lmtp;
use crate::net::{self, NetConfig};
use crate::node::daemon::{self, DaemonConfig, FrontEnd, FrontEndCtx};
use crate::node::Options;
use libp2p::{Multiaddr, PeerId};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Arguments of `dovetail node`.
#[derive(clap::Args, Debug, Clone)]
pub struct NodeArgs {
    /// Address to listen on (repeatable); default /ip4/127.0.0.1/tcp/0.
    #[arg(long)]
    pub listen: Vec<Multiaddr>,
    /// Address of a peer to join through (repeatable), e.g. /ip4/10.0.0.1/tcp/4001.
    #[arg(long)]
    pub bootstrap: Vec<Multiaddr>,
    /// Discover peers on the LAN with mDNS.
    #[arg(long)]
    pub mdns: bool,
    /// Cluster key file (`dovetail keygen`): only nodes holding the key can connect.
    #[arg(long)]
    pub cluster_key: Option<PathBuf>,
    /// Only these peers may connect (repeatable).
    #[arg(long)]
    pub allow_peer: Vec<PeerId>,
    /// Seconds a node waits before renumbering messages whose clashing claim another node
    /// made (that node renumbers at once).
    #[arg(long, default_value_t = 30)]
    pub renumber_grace: i64,
    /// Seconds between summary comparisons with every peer.
    #[arg(long, default_value_t = 3)]
    pub anti_entropy: u64,
    /// Serve IMAP on this address (repeatable), e.g. 127.0.0.1:1143. Port 0 picks a free
    /// port; the bound addresses are printed and written to `imap.addrs` in the data dir.
    #[arg(long)]
    pub imap: Vec<std::net::SocketAddr>,
    /// Serve IMAP over TLS from the first byte (implicit TLS, "imaps") on this address
    /// (repeatable), e.g. 0.0.0.0:993; needs --tls-cert and --tls-key. The bound addresses
    /// are printed and written to `imaps.addrs` in the data dir.
    #[arg(long)]
    pub imaps: Vec<std::net::SocketAddr>,
    /// PEM file of the IMAP server's certificate chain (leaf first), for --imaps and for
    /// STARTTLS, which every --imap listener offers once a certificate is configured.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM file of the certificate's private key (PKCS#8, RSA or EC).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Allow LOGIN and AUTHENTICATE PLAIN without TLS from any address. By default a
    /// plaintext connection may log in only from loopback; use this only behind a trusted
    /// network (or a TLS-terminating proxy).
    #[arg(long)]
    pub imap_allow_plaintext_login: bool,
    /// Serve LMTP for an MTA's deliveries: HOST:PORT (e.g. 127.0.0.1:2424) or
    /// unix:/path/to/socket (docs/operations.md).
    #[arg(long)]
    pub lmtp: Option<String>,
    /// Take in mail another program drops into this Maildir's new/ directories
    /// (repeatable): ACCOUNT=PATH. Files are deleted once stored (docs/operations.md).
    #[arg(long)]
    pub watch_maildir: Vec<String>,
    /// Serve `/metrics` (Prometheus) and `/` (a status page) over HTTP on this address,
    /// e.g. 127.0.0.1:9090. No authentication: keep it on loopback or a management network.
    #[arg(long)]
    pub http: Option<std::net::SocketAddr>,
    /// Replicate only the accounts matching this glob (repeatable; `*` any characters, `?`
    /// one), e.g. 'a*': peers send this node only those. Default: every account.
    #[arg(long)]
    pub replicate_accounts: Vec<String>,
}

/// The file, in the data dir, where a running node writes its IMAP addresses.
pub const IMAP_ADDRS_FILE: &str = "imap.addrs";
/// The file, in the data dir, where a running node writes its implicit-TLS IMAP addresses.
pub const IMAPS_ADDRS_FILE: &str = "imaps.addrs";

/// Binds the IMAP listeners, plaintext (`--imap`) and TLS (`--imaps`), before the node
/// starts, so a taken port or an unusable certificate is a clear error.
fn imap_front_ends(cli: &Cli, args: &NodeArgs, dir: &Path) -> Result<Vec<FrontEnd>, CliError> {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(
            crate::imap::tls::Acceptor::from_pem_files(cert, key)
                .map_err(|e| CliError::Remote(e.to_string()))?,
        ),
        (None, None) => None,
        _ => {
            return Err(CliError::Remote(
                "--tls-cert and --tls-key go together".into(),
            ))
        }
    };
    if !args.imaps.is_empty() && tls.is_none() {
        return Err(CliError::Remote(
            "--imaps needs --tls-cert FILE and --tls-key FILE".into(),
        ));
    }
    let cfg = crate::imap::ImapConfig {
        max_literal: u32::try_from(cli.max_message_size).unwrap_or(u32::MAX),
        tls,
        allow_plaintext_login: args.imap_allow_plaintext_login,
        ..crate::imap::ImapConfig::default()
    };
    let mut out = Vec::new();
    for (flag, addrs, implicit_tls, file) in [
        ("imap", &args.imap, false, IMAP_ADDRS_FILE),
        ("imaps", &args.imaps, true, IMAPS_ADDRS_FILE),
    ] {
        let file = dir.join(file);
        let _ = std::fs::remove_file(&file);
        let mut lines = String::new();
        for addr in addrs {
            let err = |e: std::io::Error| CliError::Remote(format!("--{flag} {addr}: {e}"));
            let l = std::net::TcpListener::bind(addr).map_err(err)?;
            l.set_nonblocking(true).map_err(err)?;
            let local = l.local_addr().map_err(err)?;
            println!("{flag} listening on {local}");
            lines.push_str(&format!("{local}\n"));
            let cfg = crate::imap::ImapConfig {
                implicit_tls,
                ..cfg.clone()
            };
            out.push(imap_front_end(flag, l, local, cfg));
        }
        if !lines.is_empty() {
            std::fs::write(&file, lines).map_err(|source| CliError::Read {
                path: file.display().to_string(),
                source,
            })?;
        }
    }
    Ok(out)
}

/// The front end serving IMAP on one bound listener.
fn imap_front_end(
    name: &'static str,
    l: std::net::TcpListener,
    local: std::net::SocketAddr,
    cfg: crate::imap::ImapConfig,
) -> FrontEnd {
    FrontEnd::new(name, move |ctx: FrontEndCtx| {
        let (l, mut cfg) = (l.try_clone(), cfg.clone());
        cfg.metrics = Some(ctx.monitor.metrics().clone());
        async move {
            let listener = match l.and_then(tokio::net::TcpListener::from_std) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, %local, "IMAP listener");
                    return;
                }
            };
            let mut down = ctx.shutdown.clone();
            let stop = async move {
                let _ = down.wait_for(|d| *d).await;
            };
            if let Err(e) = crate::imap::serve(listener, ctx.replica, ctx.changed, cfg, stop).await
            {
                tracing::error!(error = %e, %local, "IMAP server failed");
            }
        }
    })
}

/// Runs a node until SIGTERM or Ctrl-C.
pub fn run_node(cli: &Cli, args: &NodeArgs) -> Result<i32, CliError> {
    let dir = cli.data_dir.clone().ok_or(CliError::NoDataDir)?;
    let cluster_key = match &args.cluster_key {
        Some(p) => Some(net::read_cluster_key(p).map_err(|e| CliError::Daemon(e.into()))?),
        None => None,
    };
    // Bound before the node starts, so a bad or busy address fails the start.
    let mut front_ends = imap_front_ends(cli, args, &dir)?;
    if let Some(l) = &args.lmtp {
        let listen: lmtp::Listen = l.parse().map_err(CliError::Lmtp)?;
        let bound = lmtp::bind(&listen).map_err(CliError::Lmtp)?;
        let cfg = lmtp::LmtpConfig::new(cli.max_message_size);
        front_ends.push(lmtp::front_end(bound, cfg));
    }
    if let Some(addr) = args.http {
        let l = crate::http::bind(addr)?;
        if let Ok(local) = l.local_addr() {
            println!("http listening on {local}");
        }
        front_ends.push(crate::http::front_end(l));
    }
    if !args.watch_maildir.is_empty() {
        let specs = args
            .watch_maildir
            .iter()
            .map(|w| w.parse::<crate::maildir::watch::WatchSpec>())
            .collect::<Result<Vec<_>, _>>()?;
        let every = Duration::from_secs(1);
        front_ends.push(crate::maildir::watch::front_end(
            specs,
            cli.max_message_size,
            every,
        ));
    }
    let cfg = DaemonConfig {
        net: NetConfig {
            listen: args.listen.clone(),
            bootstrap: args.bootstrap.clone(),
            mdns: args.mdns,
            cluster_key,
            allow_peers: args.allow_peer.clone(),
        },
        options: Options {
            max_message_size: cli.max_message_size,
            renumber_grace_secs: args.renumber_grace,
            memory_budget: cli.memory_budget,
            replicate: crate::node::AccountFilter::new(args.replicate_accounts.clone()),
            ..Options::default()
        },
        anti_entropy: Duration::from_secs(args.anti_entropy.max(1)),
        front_ends,
        ..DaemonConfig::new(dir.clone())
    };
    daemon::run(cfg, shutdown_signal()).map_err(CliError::Daemon)?;
    Ok(0)
}

/// Resolves on SIGTERM or Ctrl-C (registered when first polled, inside the runtime).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Writes a new cluster key to `file` (readable by its owner only); refuses to overwrite.
pub fn keygen(file: &Path) -> Result<i32, CliError> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let err = |source| CliError::Read {
        path: file.display().to_string(),
        source,
    };
    let mut f = o.open(file).map_err(err)?;
    f.write_all(net::generate_cluster_key().as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(err)?;
    Ok(0)
}
