//! Reading a component's TLS files and building the rustls server and client configurations from
//! them: TLS 1.3 only, ALPN `h2`, the ring provider, client certificates required and verified
//! against the CA bundle, no session resumption. The admin port's configuration (HTTPS for
//! `/healthz` and `/metrics` when asked for) presents the same certificate over TLS 1.3 with ALPN
//! `http/1.1` and asks for no client certificate: scrapers and probes carry none.

use std::path::Path;
use std::sync::Arc;

use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, Error, OtherError, RootCertStore,
    ServerConfig, SignatureScheme,
};

use super::{TlsError, TlsFiles, identity_of};
use crate::clock::Clock;
use crate::identity::Identity;

/// The configurations built from one reading of the files.
pub(crate) struct Loaded {
    /// The identity our certificate names.
    pub identity: Identity,
    /// What a server accepts with.
    pub server: Arc<ServerConfig>,
    /// What a client dials with.
    pub client: Arc<ClientConfig>,
    /// What the admin port accepts with, under `[tls] admin = true`.
    pub admin: Arc<ServerConfig>,
}

/// What tells a file changed: its modification time, size and inode (`None`: unreadable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stamps([Option<(std::time::SystemTime, u64, u64)>; 3]);

impl Stamps {
    /// The stamps of the three files now.
    pub fn of(files: &TlsFiles) -> Self {
        let stamp = |path: &Path| {
            let meta = std::fs::metadata(path).ok()?;
            Some((meta.modified().ok()?, meta.len(), inode(&meta)))
        };
        Self([stamp(&files.ca), stamp(&files.cert), stamp(&files.key)])
    }
}

#[cfg(unix)]
fn inode(meta: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> u64 {
    0
}

/// The one crypto provider: ring.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { what, path: path.to_owned(), source })
}

fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>().map_err(|e| TlsError::Pem {
        what,
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { what, path: path.to_owned() });
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read("private key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey { path: path.to_owned() },
        e => TlsError::Pem { what: "private key", path: path.to_owned(), reason: e.to_string() },
    })
}

/// `secs` since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn utc(secs: i64) -> String {
    proto::time::rfc3339_secs(secs)
}

/// Checks our own leaf certificate: valid now, with a `diego://` identity.
fn check_own(path: &Path, der: &[u8], now_secs: i64) -> Result<Identity, TlsError> {
    let bad = |reason: String| TlsError::BadCertificate { path: path.to_owned(), reason };
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| bad(e.to_string()))?;
    let validity = cert.validity();
    let (not_before, not_after) = (validity.not_before.timestamp(), validity.not_after.timestamp());
    if now_secs > not_after {
        return Err(TlsError::Expired { path: path.to_owned(), not_after: utc(not_after) });
    }
    if now_secs < not_before {
        return Err(TlsError::NotYetValid { path: path.to_owned(), not_before: utc(not_before) });
    }
    identity_of(der).map_err(|reason| TlsError::NoIdentity { path: path.to_owned(), reason })
}

/// Reads and checks `files` and builds both configurations.
pub(crate) fn load(files: &TlsFiles) -> Result<Loaded, TlsError> {
    let provider = provider();
    let ca = certificates("CA bundle", &files.ca)?;
    let chain = certificates("certificate", &files.cert)?;
    let key = private_key(&files.key)?;

    let mut roots = RootCertStore::empty();
    for cert in ca {
        roots.add(cert).map_err(|e| TlsError::BadCa { path: files.ca.clone(), reason: e.to_string() })?;
    }
    let roots = Arc::new(roots);

    let now_secs = crate::clock::SystemClock.now_ns().div_euclid(1_000_000_000);
    let identity = check_own(&files.cert, &chain[0], now_secs)?;

    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
        Error::InconsistentKeys(_) => TlsError::KeyMismatch { cert: files.cert.clone(), key: files.key.clone() },
        e => TlsError::BadKey { path: files.key.clone(), reason: e.to_string() },
    })?;
    let certified = Arc::new(certified);

    let config = |reason: String| TlsError::Config { cert: files.cert.clone(), reason };
    let client_verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| config(e.to_string()))?;
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| config(e.to_string()))?
        .with_client_cert_verifier(Arc::new(DiegoClientVerifier(client_verifier)))
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified.clone())));
    server.alpn_protocols = vec![b"h2".to_vec()];
    server.session_storage = Arc::new(NoServerSessionStorage {});
    server.send_tls13_tickets = 0;

    let mut admin = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified.clone())));
    admin.alpn_protocols = vec![b"http/1.1".to_vec()];

    let server_verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| config(e.to_string()))?;
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| config(e.to_string()))?
        .with_webpki_verifier(server_verifier)
        .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    client.alpn_protocols = vec![b"h2".to_vec()];
    client.resumption = Resumption::disabled();

    Ok(Loaded { identity, server: Arc::new(server), client: Arc::new(client), admin: Arc::new(admin) })
}

/// The CA check of a client certificate, plus: it names exactly one valid `diego://` identity.
#[derive(Debug)]
struct DiegoClientVerifier(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for DiegoClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self.0.verify_client_cert(end_entity, intermediates, now)?;
        identity_of(end_entity)
            .map_err(|problem| Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(problem)))))?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn utc_formats_epoch_seconds() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_735_689_599), "2024-12-31T23:59:59Z");
        assert_eq!(utc(-1), "1969-12-31T23:59:59Z");
    }
}
