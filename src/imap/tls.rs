//! TLS for the IMAP front end, on rustls with the ring provider: the server configuration
//! read from PEM files ([`Acceptor::from_pem_files`]), and the connection [`Stream`], which
//! is plaintext or TLS: TLS from the first byte on `--imaps` listeners, or after STARTTLS
//! on plaintext ones ([`Stream::upgrade`]).

use super::ImapError;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A client that has not finished its TLS handshake after this long is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The server side of TLS: a certificate chain and its key.
#[derive(Clone)]
pub struct Acceptor(TlsAcceptor);

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Acceptor")
    }
}

impl Acceptor {
    /// Reads a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1
    /// RSA or SEC1 EC) and checks that they belong together. TLS 1.2 and 1.3.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Acceptor, ImapError> {
        let file_err = |flag: &str, p: &Path, why: String| ImapError::Tls {
            what: format!("{flag} {}", p.display()),
            why,
        };
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| file_err("--tls-cert", cert, pem_why(e)))?;
        if chain.is_empty() {
            return Err(file_err(
                "--tls-cert",
                cert,
                "no CERTIFICATE in the PEM file".into(),
            ));
        }
        let key_der = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| file_err("--tls-key", key, pem_why(e)))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key_der))
            .map_err(|e| ImapError::Tls {
                what: format!(
                    "--tls-cert {} with --tls-key {}",
                    cert.display(),
                    key.display()
                ),
                why: e.to_string(),
            })?;
        Ok(Acceptor(TlsAcceptor::from(Arc::new(config))))
    }

    /// Runs the server side of a handshake on `sock`.
    pub async fn accept(&self, sock: TcpStream) -> Result<Stream, ImapError> {
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.0.accept(sock)).await {
            Ok(Ok(s)) => Ok(Stream::Tls(Box::new(s))),
            Ok(Err(e)) => Err(ImapError::Io(e)),
            Err(_) => Err(ImapError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            ))),
        }
    }
}

/// A PEM reading error in words (a missing file, no key in it, bad base64...).
fn pem_why(e: rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error as E;
    match e {
        E::Io(e) => e.to_string(),
        E::NoItemsFound => "no certificate or private key of a supported kind in the PEM file \
                            (PKCS#8, RSA or EC keys)"
            .into(),
        e => format!("not a valid PEM file: {e}"),
    }
}

/// An IMAP connection: plaintext TCP, or TLS over it.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// STARTTLS: the TLS handshake on a plaintext connection (an error on a TLS one).
    pub async fn upgrade(self, acceptor: &Acceptor) -> Result<Stream, ImapError> {
        match self {
            Stream::Plain(sock) => acceptor.accept(sock).await,
            Stream::Tls(_) => Err(ImapError::Io(io::Error::other("already TLS"))),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_files_give_one_line_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = Acceptor::from_pem_files(&missing, &missing)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--tls-cert "), "{e}");
        assert!(e.contains("No such file"), "{e}");
        assert!(!e.contains('\n'), "{e}");

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "hello\n").unwrap();
        let e = Acceptor::from_pem_files(&garbage, &garbage)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no CERTIFICATE"), "{e}");

        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
        assert!(Acceptor::from_pem_files(&cert, &key).is_ok());
        // The certificate file given as the key: no key in it.
        let e = Acceptor::from_pem_files(&cert, &cert)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--tls-key "), "{e}");
        assert!(e.contains("no certificate or private key"), "{e}");
        // Another certificate's key.
        let other = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
        std::fs::write(&key, other.key_pair.serialize_pem()).unwrap();
        let e = Acceptor::from_pem_files(&cert, &key)
            .unwrap_err()
            .to_string();
        assert!(e.contains("with --tls-key"), "{e}");
    }
}
