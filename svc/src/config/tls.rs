//! The transport-security part of every component's configuration: the same `[tls]` table in
//! each config file, the same three flags (`--tls-ca`, `--tls-cert`, `--tls-key`, also read from
//! `DIEGO_TLS_CA`, `DIEGO_TLS_CERT`, `DIEGO_TLS_KEY`) and `--insecure-plaintext` on each binary.
//!
//! Mutual TLS is the default: a component without the three files refuses to start (exit 64)
//! and says how to get them (`diego certs`) or how to opt out for an experiment.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::identity::Role;
use crate::tls::{Security, TlsFiles};

/// `[tls]` in a config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// The cluster CA bundle (PEM) peers' certificates must chain to.
    pub ca: PathBuf,
    /// This component's certificate (PEM), naming its `diego://` identity.
    pub cert: PathBuf,
    /// This component's private key (PEM).
    pub key: PathBuf,
    /// Plaintext, unauthenticated gRPC: for experiments only; every caller may do everything.
    pub insecure_plaintext: bool,
    /// Serve the admin port (`/healthz`, `/metrics`) over HTTPS with this component's
    /// certificate (no client certificate asked for). Off by default: probes and scrapers speak
    /// plain HTTP to it.
    pub admin: bool,
}

/// The transport-security flags every binary takes; each one set replaces the file's value.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct TlsFlags {
    /// The cluster CA bundle (PEM).
    #[arg(long = "tls-ca", env = "DIEGO_TLS_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// This component's certificate (PEM).
    #[arg(long = "tls-cert", env = "DIEGO_TLS_CERT", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// This component's private key (PEM).
    #[arg(long = "tls-key", env = "DIEGO_TLS_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Serve and call gRPC in plaintext with no authentication (experiments only).
    #[arg(long = "insecure-plaintext")]
    pub insecure_plaintext: bool,
    /// Serve the admin port (/healthz, /metrics) over HTTPS with this component's certificate.
    #[arg(long = "admin-tls")]
    pub admin_tls: bool,
}

impl TlsConfig {
    /// Mutual TLS with the files `ca`, `cert` and `key`.
    pub fn mutual(ca: impl Into<PathBuf>, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self { ca: ca.into(), cert: cert.into(), key: key.into(), insecure_plaintext: false, admin: false }
    }

    /// Plaintext, for experiments and tests of plaintext behaviour.
    pub fn insecure_plaintext() -> Self {
        Self { insecure_plaintext: true, ..Self::default() }
    }

    /// Applies the flags that are set.
    pub fn apply(&mut self, flags: TlsFlags) {
        super::set(&mut self.ca, flags.ca);
        super::set(&mut self.cert, flags.cert);
        super::set(&mut self.key, flags.key);
        self.insecure_plaintext |= flags.insecure_plaintext;
        self.admin |= flags.admin_tls;
    }

    /// The files, if mutual TLS is configured; the refusal names what is missing.
    pub fn files(&self) -> Result<Option<TlsFiles>, ConfigError> {
        if self.insecure_plaintext {
            if self.admin {
                return Err(ConfigError::invalid(
                    "tls",
                    "admin (--admin-tls) serves the admin port with this component's certificate, \
                     which --insecure-plaintext leaves out: drop one of the two",
                ));
            }
            return Ok(None);
        }
        let missing: Vec<&str> = [("ca", &self.ca), ("cert", &self.cert), ("key", &self.key)]
            .into_iter()
            .filter(|(_, path)| path.as_os_str().is_empty())
            .map(|(name, _)| name)
            .collect();
        if !missing.is_empty() {
            return Err(ConfigError::invalid(
                "tls",
                format!(
                    "needs ca, cert and key (missing: {}): set --tls-ca/--tls-cert/--tls-key, DIEGO_TLS_CA/DIEGO_TLS_CERT/DIEGO_TLS_KEY or [tls] in the config file (`diego certs init` and `diego certs issue` make them), or pass --insecure-plaintext for an experiment",
                    missing.join(", ")
                ),
            ));
        }
        Ok(Some(TlsFiles { ca: self.ca.clone(), cert: self.cert.clone(), key: self.key.clone() }))
    }

    /// Checks the configuration as [`TlsConfig::security`] does (files read and verified), without
    /// keeping the result: what a component's config rules call.
    pub fn check(&self) -> Result<(), ConfigError> {
        match self.files()? {
            None => Ok(()),
            Some(files) => Security::mutual(files).map(drop).map_err(|e| ConfigError::invalid("tls", e.to_string())),
        }
    }

    /// [`TlsConfig::check`], and the certificate must name the identity a component of `role`
    /// has (named `name` when given: a cell's certificate names its cell id), or every call it
    /// makes would be refused.
    pub fn check_as(&self, role: Role, name: Option<&str>) -> Result<(), ConfigError> {
        let Some(files) = self.files()? else { return Ok(()) };
        let cert = files.cert.display().to_string();
        let Security::Mutual(tls) = Security::mutual(files).map_err(|e| ConfigError::invalid("tls", e.to_string()))?
        else {
            return Ok(());
        };
        let identity = tls.identity();
        if identity.role() != role || name.is_some_and(|name| identity.name() != name) {
            let expected = match name {
                Some(name) => format!("diego://{role}/{name}"),
                None => format!("a diego://{role} identity"),
            };
            return Err(ConfigError::invalid(
                "tls",
                format!("certificate {cert} names {identity}, but this {role} needs {expected}"),
            ));
        }
        Ok(())
    }

    /// The TLS of the admin port: the component's own certificates (`security`, what
    /// [`TlsConfig::security`] gave) when `admin` is set, else `None` (plain HTTP).
    pub fn admin_tls(&self, security: &Security) -> Option<std::sync::Arc<crate::tls::MutualTls>> {
        match security {
            Security::Mutual(tls) if self.admin => Some(tls.clone()),
            _ => None,
        }
    }

    /// The transport security this configuration asks for, its files loaded and checked now (a
    /// missing file, a key that does not match, an expired certificate: refused with the reason).
    /// Plaintext is logged loudly.
    pub fn security(&self) -> Result<Security, ConfigError> {
        match self.files()? {
            None => {
                tracing::warn!(
                    "INSECURE: --insecure-plaintext is on: gRPC is plaintext and unauthenticated; any caller on the network may do anything"
                );
                Ok(Security::Plaintext)
            }
            Some(files) => Security::mutual(files).map_err(|e| ConfigError::invalid("tls", e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutual_tls_needs_all_three_files_unless_plaintext_is_asked_for() {
        let error = TlsConfig::default().files().unwrap_err().to_string();
        assert!(error.contains("missing: ca, cert, key"), "{error}");
        assert!(error.contains("--insecure-plaintext"), "{error}");
        let error =
            TlsConfig { key: PathBuf::new(), ..TlsConfig::mutual("ca.pem", "c.pem", "k.pem") }.files().unwrap_err();
        assert!(error.to_string().contains("missing: key"), "{error}");
        assert!(TlsConfig::insecure_plaintext().files().unwrap().is_none());
        let files = TlsConfig::mutual("ca.pem", "c.pem", "k.pem").files().unwrap().unwrap();
        assert_eq!((files.ca, files.cert, files.key), ("ca.pem".into(), "c.pem".into(), "k.pem".into()));
    }

    #[test]
    fn flags_replace_the_file_values_they_set() {
        let mut config = TlsConfig::mutual("ca.pem", "c.pem", "k.pem");
        config.apply(TlsFlags { cert: Some("other.pem".into()), ..TlsFlags::default() });
        assert_eq!(config, TlsConfig::mutual("ca.pem", "other.pem", "k.pem"));
        config.apply(TlsFlags { insecure_plaintext: true, ..TlsFlags::default() });
        assert!(config.insecure_plaintext);
    }

    #[test]
    fn admin_tls_needs_the_certificates() {
        let mut config = TlsConfig::insecure_plaintext();
        config.apply(TlsFlags { admin_tls: true, ..TlsFlags::default() });
        let error = config.files().unwrap_err().to_string();
        assert!(error.contains("--admin-tls") && error.contains("--insecure-plaintext"), "{error}");
        assert!(config.admin_tls(&Security::Plaintext).is_none());
        let pki = crate::pki::Pki::for_tests();
        let tls = pki.test_tls(Role::Bbs, "");
        let security = tls.security().unwrap();
        assert!(tls.admin_tls(&security).is_none(), "plain HTTP unless asked for");
        let admin = TlsConfig { admin: true, ..tls };
        assert!(admin.admin_tls(&security).is_some());
        let parsed: TlsConfig = toml::from_str("admin = true").unwrap();
        assert!(parsed.admin);
    }

    #[test]
    fn a_certificate_must_name_the_component_it_is_given_to() {
        let pki = crate::pki::Pki::for_tests();
        let cell = pki.test_tls(Role::Cell, "cell-7");
        cell.check_as(Role::Cell, Some("cell-7")).expect("its own certificate");
        let error = cell.check_as(Role::Cell, Some("cell-8")).unwrap_err().to_string();
        assert!(error.contains("names diego://cell/cell-7") && error.contains("needs diego://cell/cell-8"), "{error}");
        let error = cell.check_as(Role::Bbs, None).unwrap_err().to_string();
        assert!(error.contains("needs a diego://bbs identity"), "{error}");
        pki.test_tls(Role::Bbs, "").check_as(Role::Bbs, None).expect("a bbs certificate");
        TlsConfig::insecure_plaintext().check_as(Role::Bbs, None).expect("plaintext names nobody");
    }

    #[test]
    fn the_table_reads_from_toml() {
        let config: TlsConfig = toml::from_str("ca = \"a\"\ncert = \"b\"\nkey = \"c\"\n").unwrap();
        assert_eq!(config, TlsConfig::mutual("a", "b", "c"));
        assert!(toml::from_str::<TlsConfig>("certificate = \"b\"").is_err());
    }
}
