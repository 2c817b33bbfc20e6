//! Tests of the cluster CA and the certificates it issues.

use std::sync::atomic::{AtomicUsize, Ordering};

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use super::*;
use crate::identity::Role;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("svc-certs-test-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn cell(name: &str) -> Identity {
    Identity::new(Role::Cell, name).unwrap()
}

fn der(pem: &str) -> Vec<u8> {
    pem_certificate(pem).unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Whether `cert` carries a signature of the CA whose certificate is `ca_der`.
fn signed_by(cert: &X509Certificate<'_>, ca_der: &[u8]) -> bool {
    let (_, ca) = x509_parser::parse_x509_certificate(ca_der).unwrap();
    cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok()
}

#[test]
fn an_issued_certificate_names_its_identity_hosts_and_both_usages() {
    let ca = Ca::generate().unwrap();
    let hosts = ["localhost".to_owned(), "127.0.0.1".to_owned(), "[::1]".to_owned(), "*.cells.internal".to_owned()];
    let issued = ca.issue(&cell("cell-1"), &hosts, Validity::default()).unwrap();
    assert!(issued.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{}", issued.key_pem);
    let key = KeyPair::from_pem(&issued.key_pem).unwrap();
    assert_eq!(key.algorithm(), &PKCS_ECDSA_P256_SHA256);

    let cert_der = der(&issued.cert_pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&cert_der).unwrap();
    assert_eq!(cert.public_key().subject_public_key.data.as_ref(), key.public_key_raw());
    let cn: Vec<_> = cert.subject().iter_common_name().map(|cn| cn.as_str().unwrap().to_owned()).collect();
    assert_eq!(cn, ["diego://cell/cell-1"]);
    let sans = cert.subject_alternative_name().unwrap().unwrap().value;
    let mut uris = vec![];
    let mut dns = vec![];
    let mut ips = vec![];
    for name in &sans.general_names {
        match name {
            GeneralName::URI(uri) => uris.push(uri.to_string()),
            GeneralName::DNSName(host) => dns.push(host.to_string()),
            GeneralName::IPAddress(ip) => ips.push(ip.to_vec()),
            other => panic!("unexpected SAN {other:?}"),
        }
    }
    assert_eq!(uris, ["diego://cell/cell-1"]);
    assert_eq!(dns, ["localhost", "*.cells.internal"]);
    assert_eq!(ips, [vec![127, 0, 0, 1], std::net::Ipv6Addr::LOCALHOST.octets().to_vec()]);
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    assert!(!cert.is_ca());
    assert!(cert.key_usage().unwrap().unwrap().value.digital_signature());

    let validity = cert.validity();
    let now = OffsetDateTime::from_unix_timestamp(SystemClock.now_ns() / 1_000_000_000).unwrap();
    assert!(validity.is_valid());
    assert!(validity.not_before.to_datetime() <= now - BACKDATE + time::Duration::minutes(1));
    let days = (validity.not_after.to_datetime() - now).whole_days();
    assert!((364..=365).contains(&days), "{days}");
    assert!(signed_by(&cert, &der(&ca.cert_pem())));
}

#[test]
fn the_ca_is_a_ten_year_p256_ca_named_for_the_cluster() {
    let ca = Ca::generate().unwrap();
    let ca_der = der(&ca.cert_pem());
    let (_, cert) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
    assert!(cert.is_ca());
    let cn: Vec<_> = cert.subject().iter_common_name().map(|cn| cn.as_str().unwrap().to_owned()).collect();
    assert_eq!(cn, [CA_COMMON_NAME]);
    assert!(cert.key_usage().unwrap().unwrap().value.key_cert_sign());
    let years = (cert.validity().not_after.to_datetime() - cert.validity().not_before.to_datetime()).whole_days() / 365;
    assert_eq!(years, 10);
    assert!(signed_by(&cert, &ca_der), "self-signed");
    assert_eq!(ca.issuer.key().algorithm(), &PKCS_ECDSA_P256_SHA256);
}

#[test]
fn an_unnamed_identity_and_no_hosts_give_just_the_uri() {
    let ca = Ca::generate().unwrap();
    let bbs = Identity::new(Role::Bbs, "").unwrap();
    let issued = ca.issue(&bbs, &[], Validity::Days(1)).unwrap();
    let cert_der = der(&issued.cert_pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&cert_der).unwrap();
    let sans = cert.subject_alternative_name().unwrap().unwrap().value;
    assert_eq!(sans.general_names, [GeneralName::URI("diego://bbs")]);
}

#[test]
fn between_makes_an_expired_certificate() {
    let ca = Ca::generate().unwrap();
    let issued = ca.issue(&cell("old"), &[], Validity::expired()).unwrap();
    let cert_der = der(&issued.cert_pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&cert_der).unwrap();
    assert!(!cert.validity().is_valid());
    let from = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let issued = ca.issue(&cell("fixed"), &[], Validity::Between(from, from + DAY)).unwrap();
    let cert_der = der(&issued.cert_pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&cert_der).unwrap();
    assert_eq!(cert.validity().not_before.timestamp(), 1_000_000_000);
    assert_eq!(cert.validity().not_after.timestamp(), 1_000_086_400);
}

#[test]
fn bad_hosts_and_validities_are_refused() {
    let ca = Ca::generate().unwrap();
    for host in ["", "a b", "-x.example", "x..y", "a/b", "héllo", "*.", "x:80"] {
        let err = ca.issue(&cell("c"), &[host.to_owned()], Validity::default()).unwrap_err();
        assert!(matches!(err, CertError::BadHost(ref h) if h == host), "{host:?}: {err}");
    }
    let t = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    for validity in
        [Validity::Days(0), Validity::Days(u32::MAX), Validity::Between(t, t), Validity::Between(t + DAY, t)]
    {
        let err = ca.issue(&cell("c"), &[], validity).unwrap_err();
        assert!(matches!(err, CertError::BadValidity(_)), "{validity:?}: {err}");
        assert!(!err.to_string().contains('\n'));
    }
}

#[test]
fn a_ca_written_and_loaded_back_issues_certificates_the_original_verifies() {
    let tmp = TempDir::new();
    let dir = tmp.0.join("nested/certs");
    let ca = Ca::generate().unwrap();
    ca.write_new(&dir).unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(CA_CERT_FILE)), 0o644);
    assert_eq!(mode(&dir.join(CA_KEY_FILE)), 0o600);

    let loaded = Ca::load(&dir).unwrap();
    assert_eq!(loaded.cert_pem(), ca.cert_pem());
    let issued = loaded.issue(&cell("cell-2"), &[], Validity::default()).unwrap();
    let cert_der = der(&issued.cert_pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&cert_der).unwrap();
    assert!(signed_by(&cert, &der(&ca.cert_pem())));
    // The authority key identifier names the CA's subject key identifier.
    let ca_der = der(&ca.cert_pem());
    let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
    let ski = ca_cert.iter_extensions().find_map(|e| match e.parsed_extension() {
        x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
        _ => None,
    });
    let aki = cert.iter_extensions().find_map(|e| match e.parsed_extension() {
        x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(k) => {
            k.key_identifier.as_ref().map(|k| k.0.to_vec())
        }
        _ => None,
    });
    assert!(ski.is_some());
    assert_eq!(aki, ski);

    let err = Ca::generate().unwrap().write_new(&dir).unwrap_err();
    assert!(matches!(err, CertError::CaExists { .. }), "{err}");
    assert_eq!(Ca::load(&dir).unwrap().cert_pem(), ca.cert_pem(), "nothing overwritten");
    Ca::generate().unwrap().write(&dir).unwrap();
    assert_ne!(Ca::load(&dir).unwrap().cert_pem(), ca.cert_pem(), "write replaces");
}

#[test]
fn issued_files_are_named_by_stem_with_private_keys() {
    let tmp = TempDir::new();
    let ca = Ca::generate().unwrap();
    let issued = ca.issue(&cell("cell-1"), &[], Validity::default()).unwrap();
    let (cert_path, key_path) = issued.write(&tmp.0, "cell-1").unwrap();
    assert_eq!(cert_path, tmp.0.join("cell-1.pem"));
    assert_eq!(key_path, tmp.0.join("cell-1-key.pem"));
    assert_eq!(fs::read_to_string(&cert_path).unwrap(), issued.cert_pem);
    assert_eq!(fs::read_to_string(&key_path).unwrap(), issued.key_pem);
    assert_eq!(mode(&cert_path), 0o644);
    assert_eq!(mode(&key_path), 0o600);
    let leftovers: Vec<_> = fs::read_dir(&tmp.0).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");
    for name in ["", "../x", "a/b", ".hidden"] {
        assert!(matches!(issued.write(&tmp.0, name), Err(CertError::BadName(_))), "{name:?}");
    }
}

#[test]
fn file_stems_are_the_name_or_the_role() {
    let stem = |uri: &str| file_stem(&Identity::parse_uri(uri).unwrap());
    assert_eq!(stem("diego://bbs"), "bbs");
    assert_eq!(stem("diego://auctioneer"), "auctioneer");
    assert_eq!(stem("diego://bbs/bbs-0"), "bbs-0");
    assert_eq!(stem("diego://cell/cell-1"), "cell-1");
    assert_eq!(stem("diego://operator/operator"), "operator");
}

#[test]
fn loading_a_missing_or_broken_ca_says_which_file() {
    let tmp = TempDir::new();
    let err = Ca::load(&tmp.0).unwrap_err();
    assert!(matches!(err, CertError::NoCa { .. }), "{err}");
    assert!(err.to_string().contains("diego certs init"), "{err}");

    let ca = Ca::generate().unwrap();
    ca.write(&tmp.0).unwrap();
    let key_path = tmp.0.join(CA_KEY_FILE);
    let cert_path = tmp.0.join(CA_CERT_FILE);

    fs::remove_file(&key_path).unwrap();
    let err = Ca::load(&tmp.0).unwrap_err();
    assert!(matches!(err, CertError::Read { ref path, .. } if *path == key_path), "{err}");

    fs::write(&key_path, "garbage").unwrap();
    let err = Ca::load(&tmp.0).unwrap_err();
    assert!(matches!(err, CertError::Parse { ref path, .. } if *path == key_path), "{err}");

    let other = Ca::generate().unwrap();
    fs::write(&key_path, other.issuer.key().serialize_pem()).unwrap();
    let err = Ca::load(&tmp.0).unwrap_err();
    assert!(err.to_string().contains("does not belong"), "{err}");

    fs::write(&key_path, ca.issuer.key().serialize_pem()).unwrap();
    fs::write(&cert_path, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
    let err = Ca::load(&tmp.0).unwrap_err();
    assert!(matches!(err, CertError::Parse { ref path, .. } if *path == cert_path), "{err}");

    let leaf = ca.issue(&cell("c"), &[], Validity::default()).unwrap();
    fs::write(&cert_path, &leaf.cert_pem).unwrap();
    fs::write(&key_path, &leaf.key_pem).unwrap();
    let err = Ca::load(&tmp.0).unwrap_err();
    assert!(err.to_string().contains("not a CA certificate"), "{err}");
    for err in [err, CertError::NoCa { dir: tmp.0.clone() }] {
        assert!(!err.to_string().contains('\n'), "{err}");
    }
}

#[test]
fn the_dev_bundle_is_created_once_and_kept() {
    let tmp = TempDir::new();
    let names = [
        Identity::new(Role::Bbs, "").unwrap(),
        Identity::new(Role::Auctioneer, "").unwrap(),
        cell("cell-1"),
        Identity::new(Role::Operator, "operator").unwrap(),
    ];
    let hosts = ["127.0.0.1".to_owned(), "localhost".to_owned()];
    ensure_dev_bundle(&tmp.0, &names, &hosts).unwrap();
    let mut files: Vec<_> =
        fs::read_dir(&tmp.0).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    files.sort();
    assert_eq!(
        files,
        [
            "auctioneer-key.pem",
            "auctioneer.pem",
            "bbs-key.pem",
            "bbs.pem",
            "ca-key.pem",
            "ca.pem",
            "cell-1-key.pem",
            "cell-1.pem",
            "operator-key.pem",
            "operator.pem"
        ]
    );
    let read_all = || files.iter().map(|f| fs::read_to_string(tmp.0.join(f)).unwrap()).collect::<Vec<_>>();
    let before = read_all();
    ensure_dev_bundle(&tmp.0, &names, &hosts).unwrap();
    assert_eq!(read_all(), before, "idempotent");

    // A missing key re-issues that pair only, from the same CA.
    fs::remove_file(tmp.0.join("cell-1-key.pem")).unwrap();
    ensure_dev_bundle(&tmp.0, &names, &hosts).unwrap();
    let after = read_all();
    for (i, file) in files.iter().enumerate() {
        assert_eq!(after[i] == before[i], !file.starts_with("cell-1"), "{file}");
    }
    let cert_der = der(&after[files.iter().position(|f| f == "cell-1.pem").unwrap()]);
    let (_, cert) = x509_parser::parse_x509_certificate(&cert_der).unwrap();
    assert!(signed_by(&cert, &der(&before[files.iter().position(|f| f == "ca.pem").unwrap()])));
}
