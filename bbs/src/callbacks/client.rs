//! The HTTP client task completion callbacks are sent with: HTTP/1 over pooled connections,
//! and https verified against `callback_ca_file` or the cluster CA (see the parent module).

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::config::{BbsConfig, ConfigError};
/// The HTTP client callbacks are sent with (HTTP/1, pooled connections; https when it has a
/// [`CallbackTls`] configuration).
#[derive(Clone, Debug)]
pub struct HttpClient {
    pub(super) inner: Client<CallbackConnector, Full<Bytes>>,
    https: bool,
}

impl HttpClient {
    /// A client sending https callbacks with `tls` (plain http ones in any case).
    pub fn new(tls: &CallbackTls) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        let connector = CallbackConnector { http, tls: tls.config.clone() };
        Self { inner: Client::builder(TokioExecutor::new()).build(connector), https: tls.config.is_some() }
    }

    /// Whether https callbacks can be sent.
    pub fn supports_https(&self) -> bool {
        self.https
    }
}

/// A callback client without TLS: `http://` URLs only (an `https://` URL is refused, naming
/// `callback_ca_file`).
pub fn http_client() -> HttpClient {
    HttpClient::new(&CallbackTls::none())
}

/// How https callbacks verify their receivers: the rustls client configuration, built once at
/// start from the CA bundle (and, when the BBS has one, its own certificate and key).
#[derive(Clone, Debug, Default)]
pub struct CallbackTls {
    pub(super) config: Option<Arc<rustls::ClientConfig>>,
}

impl CallbackTls {
    /// No TLS: https callbacks are refused.
    pub fn none() -> Self {
        Self::default()
    }

    /// Verifies receivers against the PEM CA bundle `ca`; presents `identity` (certificate and
    /// key files) when a receiver asks for a client certificate.
    pub fn with_ca(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<Self, ConfigError> {
        let roots = load_ca_bundle(ca).map_err(|rule| ConfigError::invalid("callback_ca_file", rule))?;
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
            .map_err(|e| ConfigError::invalid("callback_ca_file", e.to_string()))?
            .with_root_certificates(roots);
        let mut config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let bad = |e: String| ConfigError::invalid("tls", e);
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| bad(format!("certificate {}: {e}", cert.display())))?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| bad(format!("private key {}: {e}", key.display())))?;
                builder.with_client_auth_cert(chain, key).map_err(|e| bad(e.to_string()))?
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self { config: Some(Arc::new(config)) })
    }

    /// The configuration of a BBS: `callback_ca_file` when set, else the cluster CA of its mutual
    /// TLS, else none; its own certificate is presented when it has mutual TLS.
    pub fn from_config(config: &BbsConfig) -> Result<Self, ConfigError> {
        let files = config.tls.files()?;
        let identity = files.as_ref().map(|f| (f.cert.as_path(), f.key.as_path()));
        if !config.callback_ca_file.as_os_str().is_empty() {
            Self::with_ca(&config.callback_ca_file, identity)
        } else if let Some(files) = &files {
            Self::with_ca(&files.ca, identity)
        } else {
            Ok(Self::none())
        }
    }
}

/// Reads a PEM CA bundle into a root store; the error names the file and what is wrong.
pub fn load_ca_bundle(path: &Path) -> Result<rustls::RootCertStore, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("cannot read the CA bundle {shown}: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("CA bundle {shown} is not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("CA bundle {shown} holds no certificate (expected a -----BEGIN CERTIFICATE----- block)"));
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| format!("CA bundle {shown} holds a certificate that cannot be a CA: {e}"))?;
    }
    Ok(roots)
}

/// The connector of [`HttpClient`]: TCP through [`HttpConnector`] and, for `https://`, a rustls
/// handshake with the URL's host as the server name.
#[derive(Clone)]
pub struct CallbackConnector {
    http: HttpConnector,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for CallbackConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackConnector").field("https", &self.tls.is_some()).finish()
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<hyper::Uri> for CallbackConnector {
    type Response = CallbackStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<CallbackStream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: hyper::Uri) -> Self::Future {
        let https = uri.scheme_str() == Some("https");
        let tls = self.tls.clone();
        let connecting = self.http.call(uri.clone());
        Box::pin(async move {
            if !https {
                return Ok(CallbackStream::Plain(connecting.await?));
            }
            let Some(tls) = tls else {
                return Err("https callbacks need callback_ca_file (or [tls] ca) in the BBS configuration".into());
            };
            let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
            let name = ServerName::try_from(host).map_err(|e| format!("callback host is not a server name: {e}"))?;
            let tcp = connecting.await?.into_inner();
            let stream = tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await?;
            Ok(CallbackStream::Tls(Box::new(TokioIo::new(stream))))
        })
    }
}

/// A connection of [`CallbackConnector`]: plain TCP or TLS over TCP.
#[derive(Debug)]
pub enum CallbackStream {
    /// `http://`.
    Plain(TokioIo<tokio::net::TcpStream>),
    /// `https://`.
    Tls(Box<TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>>),
}

impl Connection for CallbackStream {
    fn connected(&self) -> Connected {
        match self {
            Self::Plain(tcp) => tcp.connected(),
            Self::Tls(tls) => tls.inner().get_ref().0.connected(),
        }
    }
}

impl hyper::rt::Read for CallbackStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for CallbackStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}
