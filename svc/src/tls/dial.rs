//! The client side: a connector for tonic's channels that dials TCP (TCP_NODELAY) and does the
//! TLS 1.3 handshake, presenting our certificate and verifying the server's against the CA and
//! the host of the dialed address; then checks that the identity the server's certificate names
//! is the one expected ([`Expected`]), so a certificate of another role is refused.

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

use super::describe::refusal;
use super::load::utc;
use super::{MutualTls, identity_of};
use crate::identity::Expected;

/// A failed dial: the TCP connection (the IO error is its source, as with a plaintext channel),
/// or the TLS handshake or the server's identity, with its one-line message.
#[derive(Debug)]
pub(crate) enum DialError {
    /// TCP could not connect.
    Tcp(io::Error),
    /// The TLS handshake failed, the server name is unusable, or the server's certificate names
    /// another identity than the one expected.
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
    server: Arc<Expected>,
}

impl Dialer {
    /// A dialer presenting the certificates of `tls`, to servers whose certificate names an
    /// identity `server` admits.
    pub fn new(tls: Arc<MutualTls>, server: Expected) -> Self {
        Self { tls, server: Arc::new(server) }
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
        let (tls, server) = (self.tls.clone(), self.server.clone());
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
            let leaf = stream.get_ref().1.peer_certificates().and_then(|chain| chain.first());
            check_server(&address, leaf.map(|cert| cert.as_ref()), &server).map_err(DialError::Tls)?;
            Ok(TokioIo::new(stream))
        })
    }
}

/// Whether the server at `address`, whose leaf certificate is `leaf` (DER), is the one `expected`;
/// if not, the one line saying who it is instead.
fn check_server(address: &str, leaf: Option<&[u8]>, expected: &Expected) -> Result<(), String> {
    let Some(leaf) = leaf else {
        return Err(format!("server at {address} presented no certificate; expected {expected}"));
    };
    match identity_of(leaf) {
        Ok(identity) if expected.admits(&identity) => Ok(()),
        Ok(identity) => Err(format!("server at {address} is {identity}, not {expected}")),
        Err(problem) => Err(format!(
            "server certificate for {address} names no usable diego:// identity ({problem}); expected {expected}"
        )),
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

#[cfg(test)]
mod tests {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    use super::*;
    use crate::certs::{Ca, Validity};
    use crate::identity::{Identity, Role};

    fn der_of(uri: &str) -> Vec<u8> {
        let issued = Ca::generate().unwrap().issue(&Identity::parse_uri(uri).unwrap(), &[], Validity::Days(1)).unwrap();
        CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap().to_vec()
    }

    #[test]
    fn a_server_of_another_role_is_named_in_one_line() {
        let (cell, bbs) = (der_of("diego://cell/cell-1"), der_of("diego://bbs/b0"));
        let a_bbs = Expected::role(Role::Bbs);
        assert_eq!(check_server("10.0.0.1:8889", Some(&bbs), &a_bbs), Ok(()));
        assert_eq!(
            check_server("10.0.0.1:8889", Some(&cell), &a_bbs),
            Err("server at 10.0.0.1:8889 is diego://cell/cell-1, not a bbs".to_owned())
        );
        let why = check_server("10.0.0.1:8889", Some(b"not a certificate"), &a_bbs).unwrap_err();
        assert!(why.starts_with("server certificate for 10.0.0.1:8889 names no usable diego:// identity"), "{why}");
        assert!(why.ends_with("; expected a bbs"), "{why}");
        let none = check_server("10.0.0.1:8889", None, &a_bbs).unwrap_err();
        assert_eq!(none, "server at 10.0.0.1:8889 presented no certificate; expected a bbs");
    }
}
