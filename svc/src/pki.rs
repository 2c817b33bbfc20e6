//! A certificate directory that issues on demand: a CA and one certificate per identity, made the
//! first time they are asked for. `diego dev` and the in-process cluster keep theirs under
//! `<data-dir>/tls/`; tests share one per test process ([`Pki::for_tests`]).
//!
//! Files follow [`crate::certs`]: `ca.pem`, `ca-key.pem`, and `<stem>.pem` / `<stem>-key.pem`
//! per identity ([`crate::certs::file_stem`]). Certificates are valid for `127.0.0.1`, `::1`,
//! `localhost` and the directory's extra hosts.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::certs::{Ca, CertError, Validity, file_stem, paths};
use crate::config::tls::TlsConfig;
use crate::identity::{Identity, Role};

/// The hosts every certificate of a [`Pki`] is valid for.
pub const LOOPBACK_HOSTS: [&str; 3] = ["127.0.0.1", "::1", "localhost"];

/// A CA in a directory and the certificates it issued there.
pub struct Pki {
    dir: PathBuf,
    ca: Ca,
    hosts: Vec<String>,
    /// Stems issued or found by this handle; the lock also serialises issuing.
    ready: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").field("dir", &self.dir).field("hosts", &self.hosts).finish_non_exhaustive()
    }
}

impl Pki {
    /// The PKI in `dir`: its CA when it has one, else a new CA written there. Certificates are
    /// valid for the loopback names and `extra_hosts`.
    pub fn open(dir: &Path, extra_hosts: &[String]) -> Result<Pki, CertError> {
        let ca = match Ca::existing(dir) {
            Some(_) => Ca::load(dir)?,
            None => {
                let ca = Ca::generate()?;
                ca.write(dir)?;
                ca
            }
        };
        let mut hosts: Vec<String> = LOOPBACK_HOSTS.iter().map(|h| (*h).to_owned()).collect();
        hosts.extend(extra_hosts.iter().filter(|h| !hosts.contains(h)).cloned().collect::<Vec<_>>());
        Ok(Pki { dir: dir.to_owned(), ca, hosts, ready: Mutex::new(HashSet::new()) })
    }

    /// One PKI per test process, in a fresh directory under the system temp dir.
    ///
    /// # Panics
    /// If the directory or the CA cannot be made (a test cannot run without them).
    pub fn for_tests() -> &'static Pki {
        static SHARED: OnceLock<Pki> = OnceLock::new();
        SHARED.get_or_init(|| {
            let nanos = crate::clock::Clock::now_ns(&crate::clock::SystemClock);
            let dir = std::env::temp_dir().join(format!("diego-test-pki-{}-{nanos}", std::process::id()));
            Pki::open(&dir, &[]).unwrap_or_else(|e| panic!("cannot create the test PKI in {}: {e}", dir.display()))
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `ca.pem`.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The CA (to issue certificates this directory does not keep, e.g. expired ones in tests).
    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    /// The `[tls]` configuration of `identity`: its certificate and key, issued now if this
    /// directory has none yet, and the CA.
    pub fn tls(&self, identity: &Identity) -> Result<TlsConfig, CertError> {
        let stem = file_stem(identity);
        let (cert, key) = paths(&self.dir, &stem)?;
        let mut ready = self.ready.lock().unwrap_or_else(|p| p.into_inner());
        if !ready.contains(&stem) {
            if !(cert.exists() && key.exists()) {
                self.ca.issue(identity, &self.hosts, Validity::default())?.write(&self.dir, &stem)?;
            }
            ready.insert(stem);
        }
        Ok(TlsConfig::mutual(self.ca_path(), cert, key))
    }

    /// [`Pki::tls`] of the identity of `role` named `name`.
    pub fn tls_of(&self, role: Role, name: &str) -> Result<TlsConfig, CertError> {
        let identity = Identity::new(role, name).map_err(|e| CertError::BadName(e.to_string()))?;
        self.tls(&identity)
    }

    /// [`Pki::tls_of`] for tests, which cannot go on without it.
    ///
    /// # Panics
    /// If the certificate cannot be issued.
    pub fn test_tls(&self, role: Role, name: &str) -> TlsConfig {
        self.tls_of(role, name).unwrap_or_else(|e| panic!("cannot issue a test certificate for {role}/{name}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_issued_once_and_found_again() {
        let dir = std::env::temp_dir().join(format!("diego-pki-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let pki = Pki::open(&dir, &["cell.example".to_owned()]).unwrap();
        let cell = pki.tls_of(Role::Cell, "cell-1").unwrap();
        assert_eq!(cell.cert, dir.join("cell-1.pem"));
        assert_eq!(cell.ca, dir.join("ca.pem"));
        let first = std::fs::read(&cell.cert).unwrap();
        // A second handle on the same directory keeps the CA and the certificate.
        let again = Pki::open(&dir, &[]).unwrap();
        assert_eq!(again.ca().cert_pem(), pki.ca().cert_pem());
        again.tls_of(Role::Cell, "cell-1").unwrap();
        assert_eq!(std::fs::read(&cell.cert).unwrap(), first);
        assert!(pki.tls_of(Role::Cell, "").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
