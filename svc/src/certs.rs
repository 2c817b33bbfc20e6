//! The cluster's certificates: a self-signed CA and the certificates it issues, one per
//! [`Identity`], for mutual TLS on every gRPC hop.
//!
//! | file | what | mode |
//! |---|---|---|
//! | `ca.pem` | the CA certificate every process trusts | 0644 |
//! | `ca-key.pem` | the CA's private key (needed only to issue) | 0600 |
//! | `<stem>.pem` | an issued certificate, stem from [`file_stem`] (`bbs`, `cell-1`, `operator`) | 0644 |
//! | `<stem>-key.pem` | its private key | 0600 |
//!
//! Every key is ECDSA P-256 (PKCS#8 PEM). An issued certificate names its identity as a URI SAN
//! (`diego://cell/cell-1`) and as its common name, carries each host as a DNS or IP SAN, and is
//! good for both server and client authentication, so one certificate serves a process's
//! listener and its outbound calls. Files are written to a temporary name and renamed, so a
//! reader never sees half a file; rotating a certificate is replacing its files.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, string::Ia5String,
};
use time::OffsetDateTime;

use crate::clock::{Clock, SystemClock};
use crate::identity::Identity;

/// The CA certificate's file name in a certificate directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA key's file name in a certificate directory.
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// The CA's common name.
pub const CA_COMMON_NAME: &str = "diego-rs cluster CA";
/// How long a new CA is valid, in days (10 years).
pub const CA_VALIDITY_DAYS: u32 = 3650;
/// How long an issued certificate is valid unless told otherwise, in days.
pub const DEFAULT_VALIDITY_DAYS: u32 = 365;
/// How far before "now" a new certificate's validity starts, so that a peer whose clock is a
/// little behind accepts it at once.
pub const BACKDATE: Duration = Duration::from_secs(3600);

const DAY: Duration = Duration::from_secs(86_400);

/// Why a certificate could not be made, read or written. Every message is one line and names
/// the file or value at fault.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file is missing or cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: io::Error,
    },
    /// A file or directory cannot be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The IO error.
        source: io::Error,
    },
    /// A directory holds no CA (neither `ca.pem` nor `ca-key.pem`).
    #[error("no CA in {}: {} is missing; create one with 'diego certs init --dir {}'", dir.display(), CA_CERT_FILE, dir.display())]
    NoCa {
        /// The directory.
        dir: PathBuf,
    },
    /// A directory already holds a CA and overwriting it was not asked for.
    #[error("a CA already exists in {} ({}); refusing to overwrite it ('diego certs init --force' replaces it)", dir.display(), path.display())]
    CaExists {
        /// The directory.
        dir: PathBuf,
        /// The CA file found there.
        path: PathBuf,
    },
    /// A file is not the PEM certificate or key it should be.
    #[error("invalid {}: {reason}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A host is neither an IP address nor a DNS name.
    #[error("invalid host {0:?}: expected an IP address or a DNS name (letters, digits, '-', '.', a leading '*.')")]
    BadHost(String),
    /// A file stem would not name a file in the directory.
    #[error("invalid certificate name {0:?}: expected 1 to 128 characters of A-Z a-z 0-9 . _ - not starting with '.'")]
    BadName(String),
    /// The validity period is empty or outside what a certificate can say.
    #[error("invalid validity: {0}")]
    BadValidity(String),
    /// Key generation or signing failed.
    #[error("cannot create the certificate for {subject}: {source}")]
    Generate {
        /// What was being created (`the CA`, `diego://cell/cell-1`).
        subject: String,
        /// rcgen's error.
        source: rcgen::Error,
    },
}

/// When an issued certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// From a little before now ([`BACKDATE`]) until this many days from now.
    Days(u32),
    /// From the first instant to the second, to the second (tests use it to make an expired or
    /// not-yet-valid certificate).
    Between(SystemTime, SystemTime),
}

impl Default for Validity {
    /// [`DEFAULT_VALIDITY_DAYS`] from now.
    fn default() -> Self {
        Validity::Days(DEFAULT_VALIDITY_DAYS)
    }
}

impl Validity {
    /// A period that ended a day ago (it began two days ago): a certificate every peer refuses
    /// as expired.
    pub fn expired() -> Validity {
        let now = now();
        Validity::Between(now - 2 * DAY, now - DAY)
    }

    /// The period's bounds.
    fn bounds(self) -> Result<(OffsetDateTime, OffsetDateTime), CertError> {
        let (from, to) = match self {
            Validity::Days(0) => {
                return Err(CertError::BadValidity("a certificate must be valid for at least 1 day".into()));
            }
            Validity::Days(days) => {
                let now = now();
                let until = DAY
                    .checked_mul(days)
                    .and_then(|d| now.checked_add(d))
                    .ok_or_else(|| CertError::BadValidity(format!("{days} days is too long")))?;
                (now.checked_sub(BACKDATE).unwrap_or(now), until)
            }
            Validity::Between(from, to) => (from, to),
        };
        if to <= from {
            return Err(CertError::BadValidity("it must end after it begins".into()));
        }
        Ok((to_datetime(from)?, to_datetime(to)?))
    }
}

/// The host's wall clock, through the one place that reads it.
fn now() -> SystemTime {
    let ns = u64::try_from(SystemClock.now_ns()).unwrap_or(0);
    UNIX_EPOCH + Duration::from_nanos(ns)
}

/// An instant as a certificate's time (whole seconds; X.509 has no finer resolution). Rejects
/// times before 1970 and after 9999, which certificates cannot carry.
fn to_datetime(t: SystemTime) -> Result<OffsetDateTime, CertError> {
    let out_of_range = || CertError::BadValidity("a certificate's time must be between 1970 and 9999".into());
    let secs = t.duration_since(UNIX_EPOCH).map_err(|_| out_of_range())?.as_secs();
    let dt = OffsetDateTime::from_unix_timestamp(i64::try_from(secs).map_err(|_| out_of_range())?)
        .map_err(|_| out_of_range())?;
    if dt.year() > 9999 {
        return Err(out_of_range());
    }
    Ok(dt)
}

/// The cluster CA: its certificate and the key that signs what it issues.
pub struct Ca {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

impl Ca {
    /// A new self-signed CA: common name [`CA_COMMON_NAME`], an ECDSA P-256 key, valid for
    /// [`CA_VALIDITY_DAYS`], allowed to sign end-entity certificates only (path length 0).
    pub fn generate() -> Result<Ca, CertError> {
        let failed = |source| CertError::Generate { subject: "the CA".into(), source };
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(failed)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, CA_COMMON_NAME);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        (params.not_before, params.not_after) = Validity::Days(CA_VALIDITY_DAYS).bounds()?;
        let cert = params.self_signed(&key).map_err(failed)?;
        Ok(Ca { cert_pem: cert.pem(), issuer: Issuer::new(params, key) })
    }

    /// The CA in `dir`: `dir/ca.pem` and `dir/ca-key.pem`. Refuses a certificate that is not a
    /// CA's and a key that is not the certificate's.
    pub fn load(dir: &Path) -> Result<Ca, CertError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        if !cert_path.exists() && !key_path.exists() {
            return Err(CertError::NoCa { dir: dir.to_owned() });
        }
        let cert_pem = read(&cert_path)?;
        let key_pem = read(&key_path)?;
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|e| CertError::Parse { path: key_path.clone(), reason: format!("not a PEM private key ({e})") })?;
        let bad_cert = |reason: String| CertError::Parse { path: cert_path.clone(), reason };
        let der = pem_certificate(&cert_pem).map_err(&bad_cert)?;
        let (_, x509) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| bad_cert(format!("not an X.509 certificate ({e})")))?;
        if !x509.is_ca() {
            return Err(bad_cert("not a CA certificate (no basicConstraints CA:TRUE)".into()));
        }
        if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(CertError::Parse {
                path: key_path.clone(),
                reason: format!("this key does not belong to the certificate in {}", cert_path.display()),
            });
        }
        let issuer = Issuer::from_ca_cert_der(&der.into(), key)
            .map_err(|e| bad_cert(format!("cannot sign with this CA ({e})")))?;
        Ok(Ca { cert_pem, issuer })
    }

    /// Whether `dir` holds a CA file (`ca.pem` or `ca-key.pem`); the file found, if any.
    pub fn existing(dir: &Path) -> Option<PathBuf> {
        [CA_CERT_FILE, CA_KEY_FILE].into_iter().map(|f| dir.join(f)).find(|p| p.exists())
    }

    /// Writes `dir/ca.pem` (0644) and `dir/ca-key.pem` (0600), creating `dir` (0700) if needed
    /// and replacing a CA already there.
    pub fn write(&self, dir: &Path) -> Result<(), CertError> {
        create_dir(dir)?;
        write_file(&dir.join(CA_KEY_FILE), &self.issuer.key().serialize_pem(), 0o600)?;
        write_file(&dir.join(CA_CERT_FILE), &self.cert_pem, 0o644)
    }

    /// Like [`Ca::write`], but refuses ([`CertError::CaExists`]) when `dir` already holds a CA
    /// file, and then writes nothing.
    pub fn write_new(&self, dir: &Path) -> Result<(), CertError> {
        if let Some(path) = Ca::existing(dir) {
            return Err(CertError::CaExists { dir: dir.to_owned(), path });
        }
        self.write(dir)
    }

    /// The CA certificate, PEM: what every process trusts.
    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// A new key and a certificate for `identity`, signed by this CA: the identity's URI as a
    /// URI SAN and as the common name, each of `hosts` as an IP SAN if it parses as an IP
    /// address and as a DNS SAN otherwise, and both server and client authentication.
    pub fn issue(&self, identity: &Identity, hosts: &[String], validity: Validity) -> Result<Issued, CertError> {
        let uri = identity.to_uri();
        let failed = |source| CertError::Generate { subject: uri.clone(), source };
        let mut sans = vec![SanType::URI(Ia5String::try_from(uri.as_str()).map_err(failed)?)];
        for host in hosts {
            sans.push(host_san(host)?);
        }
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, uri.as_str());
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        (params.not_before, params.not_after) = validity.bounds()?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(failed)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(failed)?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

/// An issued certificate and its private key, both PEM.
#[derive(Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

impl Issued {
    /// Writes `dir/<name>.pem` (0644) and `dir/<name>-key.pem` (0600), creating `dir` (0700)
    /// if needed and replacing files already there; returns the two paths (certificate, key).
    pub fn write(&self, dir: &Path, name: &str) -> Result<(PathBuf, PathBuf), CertError> {
        let (cert_path, key_path) = paths(dir, name)?;
        create_dir(dir)?;
        write_file(&key_path, &self.key_pem, 0o600)?;
        write_file(&cert_path, &self.cert_pem, 0o644)?;
        Ok((cert_path, key_path))
    }
}

/// The file stem of `identity`'s certificate: its name when it has one, else its role.
/// `diego://bbs` is `bbs`, `diego://cell/cell-1` is `cell-1`, `diego://operator/operator` is
/// `operator`.
pub fn file_stem(identity: &Identity) -> String {
    match identity.name() {
        "" => identity.role().as_str().to_owned(),
        name => name.to_owned(),
    }
}

/// The certificate and key paths of stem `name` in `dir`: `dir/<name>.pem`, `dir/<name>-key.pem`.
pub fn paths(dir: &Path, name: &str) -> Result<(PathBuf, PathBuf), CertError> {
    let valid = !name.is_empty()
        && name.len() <= crate::identity::MAX_NAME_LEN
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !valid {
        return Err(CertError::BadName(name.to_owned()));
    }
    Ok((dir.join(format!("{name}.pem")), dir.join(format!("{name}-key.pem"))))
}

/// Makes `dir` a development certificate directory: creates the CA if `dir` has none, and a
/// certificate for each of `names` (valid for `hosts`, [`DEFAULT_VALIDITY_DAYS`]) whose files
/// ([`file_stem`]) are missing. Idempotent: files already there are kept, so rotating is
/// replacing them. A certificate is (re)issued when its certificate or key file is missing,
/// and every certificate is when the CA was just created (old ones would not verify).
pub fn ensure_dev_bundle(dir: &Path, names: &[Identity], hosts: &[String]) -> Result<(), CertError> {
    let (ca, new_ca) = match Ca::existing(dir) {
        Some(_) => (Ca::load(dir)?, false),
        None => {
            let ca = Ca::generate()?;
            ca.write(dir)?;
            (ca, true)
        }
    };
    for identity in names {
        let stem = file_stem(identity);
        let (cert_path, key_path) = paths(dir, &stem)?;
        if new_ca || !cert_path.exists() || !key_path.exists() {
            ca.issue(identity, hosts, Validity::default())?.write(dir, &stem)?;
        }
    }
    Ok(())
}

fn host_san(host: &str) -> Result<SanType, CertError> {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let labels = host.strip_prefix("*.").unwrap_or(host);
    let valid = !labels.is_empty()
        && host.len() <= 253
        && labels.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !valid {
        return Err(CertError::BadHost(host.to_owned()));
    }
    Ia5String::try_from(host).map(SanType::DnsName).map_err(|_| CertError::BadHost(host.to_owned()))
}

/// The DER of the first `CERTIFICATE` block of `pem`.
fn pem_certificate(pem: &str) -> Result<Vec<u8>, String> {
    for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| format!("not PEM ({e})"))?;
        if block.label == "CERTIFICATE" {
            return Ok(block.contents);
        }
    }
    Err("no CERTIFICATE block".into())
}

fn read(path: &Path) -> Result<String, CertError> {
    fs::read_to_string(path).map_err(|source| CertError::Read { path: path.to_owned(), source })
}

fn create_dir(dir: &Path) -> Result<(), CertError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| CertError::Write { path: dir.to_owned(), source })
}

/// Writes `contents` to `path` with `mode`: to a temporary file beside it, then renamed over
/// it, so a reader sees the old file or the new one, never a part.
fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), CertError> {
    let failed = |source| CertError::Write { path: path.to_owned(), source };
    let mut tmp_name = path.file_name().map(|n| n.to_owned()).unwrap_or_default();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut file = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(failed)
}

#[cfg(test)]
mod tests;
