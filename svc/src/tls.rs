//! Mutual TLS on every gRPC hop: what a component's certificate files are ([`TlsFiles`]), whether
//! it speaks TLS at all ([`Security`]), and the one error a bad file gives ([`TlsError`]).
//!
//! Every server ([`crate::server::serve`]) and every outbound channel ([`crate::connect`]) takes a
//! [`Security`]. Under [`Security::Mutual`] both sides speak TLS 1.3 only (ALPN `h2`, the ring
//! provider), each presents its certificate, and each verifies the other's against the cluster CA
//! bundle: a client the server's name (the host of the dialed address, DNS or IP) and then the
//! role its `diego://` URI SAN names (the [`crate::identity::Expected`] server of the channel's
//! options), a server the client's `diego://` URI SAN (see [`crate::identity`]), which becomes the
//! request's [`Peer::Verified`]. Session resumption is off, so every connection is verified in
//! full.
//!
//! [`Security::mutual`] reads and checks the files once at start, so a component refuses to start
//! with one line naming the file and what is wrong with it. After that the files are watched: at
//! most once a second, on a new connection or handshake, their modification times (and sizes
//! and inodes) are compared, and a change reloads all three. A set that does not load (a rotation
//! half written) keeps the previous configuration and logs one warning per change.
//!
//! [`describe`] turns a failed connection's error chain into one line ("server certificate for
//! 127.0.0.1:8889 is not signed by the cluster CA (/etc/diego/ca.pem)").

mod accept;
mod describe;
mod dial;
mod load;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) use accept::{HANDSHAKE_TIMEOUT, incoming};
pub use describe::{describe, tls_failure};
pub(crate) use dial::Dialer;

use crate::identity::{Identity, IdentityError, Peer};

/// How often, at most, the certificate files are checked for a change.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// The PEM files of a component's mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The cluster CA bundle: every peer's certificate must chain to one of these.
    pub ca: PathBuf,
    /// The component's certificate (its chain, leaf first), with a `diego://` URI SAN.
    pub cert: PathBuf,
    /// The private key of `cert` (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Whether a server or channel speaks mutual TLS.
#[derive(Clone, Debug)]
pub enum Security {
    /// No TLS and no authentication (`--insecure-plaintext`): every peer is [`Peer::Plaintext`].
    Plaintext,
    /// Mutual TLS with the certificates of these files, reloaded when they change.
    Mutual(Arc<MutualTls>),
}

impl Security {
    /// Mutual TLS with `files`, read and checked now: each file is readable and holds what it
    /// should, the key matches the certificate, the certificate is valid now and names a
    /// `diego://` identity.
    pub fn mutual(files: TlsFiles) -> Result<Security, TlsError> {
        Ok(Security::Mutual(Arc::new(MutualTls::load(files)?)))
    }

    /// Whether this is mutual TLS.
    pub fn is_mutual(&self) -> bool {
        matches!(self, Security::Mutual(_))
    }
}

/// Two securities are equal when both are plaintext or both share the same loaded files.
impl PartialEq for Security {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Security::Plaintext, Security::Plaintext) => true,
            (Security::Mutual(a), Security::Mutual(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Security {}

/// Why a component's TLS files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file is missing or unreadable.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// Which file: "CA bundle", "certificate", "private key".
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// A file is not valid PEM.
    #[error("{what} {path} is not valid PEM: {reason}")]
    Pem {
        /// Which file.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The parser's complaint.
        reason: String,
    },
    /// A certificate file or CA bundle holds no certificate.
    #[error("{what} {path} holds no certificate (expected a -----BEGIN CERTIFICATE----- block)")]
    NoCertificate {
        /// Which file.
        what: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// The key file holds no private key.
    #[error("private key {path} holds no private key (expected a -----BEGIN PRIVATE KEY----- block)")]
    NoKey {
        /// The path.
        path: PathBuf,
    },
    /// A certificate of the CA bundle cannot be a trust anchor.
    #[error("CA bundle {path} has an unusable certificate: {reason}")]
    BadCa {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The key cannot be used (unsupported type, corrupt).
    #[error("private key {path} cannot be used: {reason}")]
    BadKey {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The key is not the key of the certificate.
    #[error("private key {key} does not match certificate {cert}")]
    KeyMismatch {
        /// The certificate's path.
        cert: PathBuf,
        /// The key's path.
        key: PathBuf,
    },
    /// The certificate cannot be parsed.
    #[error("certificate {path} cannot be parsed: {reason}")]
    BadCertificate {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The certificate expired.
    #[error("certificate {path} expired at {not_after}")]
    Expired {
        /// The path.
        path: PathBuf,
        /// Its end of validity (UTC).
        not_after: String,
    },
    /// The certificate is not valid yet.
    #[error("certificate {path} is not valid before {not_before}")]
    NotYetValid {
        /// The path.
        path: PathBuf,
        /// Its start of validity (UTC).
        not_before: String,
    },
    /// The certificate names no identity.
    #[error("certificate {path} has no usable diego:// identity: {reason}")]
    NoIdentity {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: IdentityProblem,
    },
    /// rustls refused the configuration.
    #[error("cannot build the TLS configuration from {cert}: {reason}")]
    Config {
        /// The certificate's path.
        cert: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Why a certificate gives no identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityProblem {
    /// The certificate cannot be parsed.
    #[error("the certificate cannot be parsed ({0})")]
    Unparsable(String),
    /// No `diego://` URI SAN.
    #[error("it has no diego://<role>[/<name>] URI subject alternative name")]
    Missing,
    /// More than one `diego://` URI SAN.
    #[error("it has several diego:// URI subject alternative names ({0})")]
    Several(String),
    /// The `diego://` URI SAN is not a valid identity.
    #[error("{0}")]
    Invalid(IdentityError),
}

/// The certificates of a component's mutual TLS, loaded from [`TlsFiles`] and reloaded when the
/// files change.
pub struct MutualTls {
    files: TlsFiles,
    state: Mutex<State>,
}

struct State {
    loaded: Arc<load::Loaded>,
    stamps: load::Stamps,
    checked: tokio::time::Instant,
}

impl fmt::Debug for MutualTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MutualTls").field("files", &self.files).field("identity", &self.identity()).finish()
    }
}

impl MutualTls {
    fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let stamps = load::Stamps::of(&files);
        let loaded = load::load(&files)?;
        let state = State { loaded: Arc::new(loaded), stamps, checked: tokio::time::Instant::now() };
        Ok(Self { files, state: Mutex::new(state) })
    }

    /// The files.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The identity the current certificate names.
    pub fn identity(&self) -> Identity {
        self.current().identity.clone()
    }

    /// The current configurations, after reloading the files if they changed (checked at most
    /// once per [`RELOAD_CHECK`]).
    fn current(&self) -> Arc<load::Loaded> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.checked.elapsed() >= RELOAD_CHECK {
            state.checked = tokio::time::Instant::now();
            let stamps = load::Stamps::of(&self.files);
            if stamps != state.stamps {
                state.stamps = stamps;
                match load::load(&self.files) {
                    Ok(loaded) => {
                        tracing::info!(
                            identity = %loaded.identity,
                            cert = %self.files.cert.display(),
                            "reloaded the TLS certificates"
                        );
                        state.loaded = Arc::new(loaded);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the TLS files changed but do not load; keeping the previous ones");
                    }
                }
            }
        }
        state.loaded.clone()
    }

    pub(crate) fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.current().server.clone()
    }

    pub(crate) fn client_config(&self) -> Arc<rustls::ClientConfig> {
        self.current().client.clone()
    }

    /// The admin port's HTTPS configuration: this certificate, no client certificate asked for
    /// (reloaded with the certificate). For admin servers outside `svc::admin` (the BBS's).
    pub fn admin_config(&self) -> Arc<rustls::ServerConfig> {
        self.current().admin.clone()
    }
}

/// What a server knows of one accepted connection: its addresses and its [`Peer`]. The connect
/// info of a TLS connection; the server builder copies `peer` into every request's extensions.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The peer's address.
    pub remote: Option<SocketAddr>,
    /// Our address.
    pub local: Option<SocketAddr>,
    /// Who the peer is.
    pub peer: Peer,
}

/// The identity a DER certificate names in its one `diego://` URI SAN.
pub fn identity_of(der: &[u8]) -> Result<Identity, IdentityProblem> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| IdentityProblem::Unparsable(e.to_string()))?;
    let san = cert.subject_alternative_name().map_err(|e| IdentityProblem::Unparsable(e.to_string()))?;
    let uris: Vec<&str> = san
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    x509_parser::extensions::GeneralName::URI(uri) => Some(*uri),
                    _ => None,
                })
                .filter(|uri| uri.starts_with(crate::identity::SCHEME))
                .collect()
        })
        .unwrap_or_default();
    match uris.as_slice() {
        [] => Err(IdentityProblem::Missing),
        [uri] => Identity::parse_uri(uri).map_err(IdentityProblem::Invalid),
        several => Err(IdentityProblem::Several(several.join(", "))),
    }
}
