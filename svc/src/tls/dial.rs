//! The client side: a connector for tonic's channels that dials TCP (TCP_NODELAY) and does the
//! TLS 1.3 handshake, presenting our certificate and verifying the server's against the CA and
//! the host of the dialed address.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::CertificateError;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tonic::codegen::http::Uri;

use super::MutualTls;
use super::describe::refusal;
use super::load::utc;

/// A failed dial: the TCP connection (the IO error is its source, as with a plaintext channel),
/// or the TLS handshake, with its one-line message.
#[derive(Debug)]
pub(crate) enum DialError {
    /// TCP could not connect.
    Tcp(io::Error),
    /// The TLS handshake failed (or the server name is unusable).
    Tls(String),
}

impl std::fmt::Display for DialError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DialError::Tcp(_) => f.write_str("tcp connect error"),
            DialError::Tls(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for DialError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DialError::Tcp(e) => Some(e),
            DialError::Tls(_) => None,
        }
    }
}

/// Dials a channel's connections with mutual TLS.
#[derive(Debug, Clone)]
pub(crate) struct Dialer {
    tls: Arc<MutualTls>,
}

impl Dialer {
    /// A dialer presenting the certificates of `tls`.
    pub fn new(tls: Arc<MutualTls>) -> Self {
        Self { tls }
    }
}

impl tower::Service<Uri> for Dialer {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = DialError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, DialError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), DialError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        Box::pin(async move {
            let host = uri.host().unwrap_or_default().to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let address = format!("{host}:{port}");
            let tcp = TcpStream::connect(&address).await.map_err(DialError::Tcp)?;
            let _ = tcp.set_nodelay(true);
            let bare = host.trim_start_matches('[').trim_end_matches(']').to_owned();
            let name = ServerName::try_from(bare.clone())
                .map_err(|e| DialError::Tls(format!("{host} is not a valid server name: {e}")))?;
            let stream = TlsConnector::from(tls.client_config())
                .connect(name, tcp)
                .await
                .map_err(|e| DialError::Tls(handshake_failure(&address, &bare, &tls.files().ca, &e)))?;
            Ok(TokioIo::new(stream))
        })
    }
}

/// The one line for a failed client handshake with `address` (dialed as `host`).
fn handshake_failure(address: &str, host: &str, ca: &Path, error: &io::Error) -> String {
    let server = format!("server certificate for {address}");
    match error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(problem)) => match problem {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                format!("{server} is not signed by the cluster CA ({})", ca.display())
            }
            CertificateError::Expired => format!("{server} expired"),
            CertificateError::ExpiredContext { not_after, .. } => {
                format!("{server} expired at {}", utc(i64::try_from(not_after.as_secs()).unwrap_or(i64::MAX)))
            }
            CertificateError::NotValidYet => format!("{server} is not valid yet"),
            CertificateError::NotValidYetContext { not_before, .. } => {
                format!("{server} is not valid before {}", utc(i64::try_from(not_before.as_secs()).unwrap_or(i64::MAX)))
            }
            CertificateError::NotValidForName => format!("{server} is not valid for name {host}"),
            CertificateError::NotValidForNameContext { presented, .. } => {
                format!("{server} is not valid for name {host} (it names {})", presented.join(", "))
            }
            other => format!("{server} is refused: {other:?}"),
        },
        Some(rustls::Error::AlertReceived(alert)) => match refusal(*alert) {
            Some(why) => format!("server at {address} refused our certificate ({why})"),
            None => format!("TLS handshake with {address} failed: the server sent alert {alert:?}"),
        },
        Some(rustls::Error::NoApplicationProtocol) => format!("{address} does not offer HTTP/2 over TLS (ALPN h2)"),
        Some(
            e @ (rustls::Error::InvalidMessage(_)
            | rustls::Error::InappropriateMessage { .. }
            | rustls::Error::InappropriateHandshakeMessage { .. }),
        ) => format!("{address} does not speak TLS 1.3 ({e}); is it serving plaintext?"),
        Some(e) => format!("TLS handshake with {address} failed: {e}"),
        None => match error.kind() {
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
                format!("{address} closed the connection during the TLS handshake; is it serving plaintext?")
            }
            _ => format!("TLS handshake with {address} failed: {error}"),
        },
    }
}
