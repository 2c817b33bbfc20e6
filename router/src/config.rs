//! The router configuration: a TOML file (`--config FILE`) whose address fields flags override,
//! validated once at start. Intervals, timeouts and bounds are fields, so tests shorten them
//! without special cases.

use std::time::Duration;

use serde::Deserialize;
use svc::config::tls::{TlsConfig, TlsFlags};
pub use svc::config::{ConfigError, parse_duration};
use svc::config::{ConfigFile, Valid, Validate, set};

/// How a route's instances share its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Balancing {
    /// Each request to the next instance in turn (gorouter's default).
    #[default]
    RoundRobin,
    /// Each request to the instance with the fewest requests in flight through this router
    /// (ties go round-robin).
    LeastConnections,
}

/// The router configuration. Every field is optional in the file; [`Default`] gives the values
/// below.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterConfig {
    /// The BBS gRPC address (`host:port`): the instance events and the listings of the full sync.
    pub bbs_address: String,
    /// Where the router serves HTTP (the routed traffic).
    pub listen_address: String,
    /// Admin listen address (`/healthz`, `/routes`, `/metrics`).
    pub admin_address: String,
    /// `round-robin` (default) or `least-connections`.
    pub balancing: Balancing,
    /// Time between full syncs of the route table from the BBS listings (Diego's route emitter:
    /// 30 s). Events keep the table current in between; the sync repairs what they missed, and
    /// renews the event subscription.
    #[serde(with = "svc::config::duration")]
    pub sync_interval: Duration,
    /// Pause before subscribing again after the event stream dropped (or a sync failed).
    #[serde(with = "svc::config::duration")]
    pub resync_interval: Duration,
    /// Timeout of each BBS listing call.
    #[serde(with = "svc::config::duration")]
    pub communication_timeout: Duration,
    /// How long an instance that refused a connection is passed over (unless every instance of
    /// its route was); the BBS's event usually takes it out of the table first.
    #[serde(with = "svc::config::duration")]
    pub failure_ejection: Duration,
    /// How long connecting to an instance may take before another one is tried.
    #[serde(with = "svc::config::duration")]
    pub connect_timeout: Duration,
    /// How long a request may wait for an instance's response headers (504 after it).
    #[serde(with = "svc::config::duration")]
    pub request_timeout: Duration,
    /// Most client connections open at once; past it new connections wait to be accepted.
    pub max_connections: usize,
    /// Largest request head (request line and headers) read from a client, in bytes (at least
    /// 8 KiB); a larger one is refused with 431.
    pub max_header_bytes: usize,
    /// Mutual TLS towards the BBS: the `[tls]` table (`ca`, `cert`, `key`,
    /// `insecure_plaintext`); the router's certificate names `diego://reader/router`.
    pub tls: TlsConfig,
}

/// The name in the router's identity, `diego://reader/router`.
pub const IDENTITY_NAME: &str = "router";

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            bbs_address: "127.0.0.1:8889".into(),
            listen_address: "127.0.0.1:8081".into(),
            admin_address: "127.0.0.1:17011".into(),
            balancing: Balancing::RoundRobin,
            sync_interval: Duration::from_secs(30),
            resync_interval: Duration::from_secs(1),
            communication_timeout: Duration::from_secs(10),
            failure_ejection: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_header_bytes: 64 * 1024,
            tls: TlsConfig::default(),
        }
    }
}

/// Values given on the command line; each one that is set replaces the file's.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct ConfigOverrides {
    /// BBS gRPC address (host:port) [default: 127.0.0.1:8889].
    #[arg(long, value_name = "ADDR")]
    pub bbs_address: Option<String>,
    /// HTTP listen address of the routed traffic [default: 127.0.0.1:8081].
    #[arg(long, value_name = "ADDR")]
    pub listen_address: Option<String>,
    /// Admin (/healthz, /routes, /metrics) listen address [default: 127.0.0.1:17011].
    #[arg(long, value_name = "ADDR")]
    pub admin_address: Option<String>,
    /// Mutual TLS files, or plaintext.
    #[command(flatten)]
    pub tls: TlsFlags,
}

impl RouterConfig {
    /// Checks every rule and returns the configuration, marked as checked.
    pub fn validate(self) -> Result<Valid<Self>, ConfigError> {
        Valid::new(self)
    }
}

impl svc::process::Listens for RouterConfig {
    /// The HTTP listener takes the slot of the other components' gRPC one.
    fn listen_address(&self) -> &str {
        &self.listen_address
    }

    fn admin_address(&self) -> &str {
        &self.admin_address
    }
}

impl ConfigFile for RouterConfig {
    type Overrides = ConfigOverrides;

    fn with_overrides(mut self, o: ConfigOverrides) -> Self {
        set(&mut self.bbs_address, o.bbs_address);
        set(&mut self.listen_address, o.listen_address);
        set(&mut self.admin_address, o.admin_address);
        self.tls.apply(o.tls);
        self
    }
}

impl Validate for RouterConfig {
    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |field, rule: &str| Err(ConfigError::invalid(field, rule));
        svc::config::require_non_empty(&[
            ("bbs_address", &self.bbs_address),
            ("listen_address", &self.listen_address),
            ("admin_address", &self.admin_address),
        ])?;
        svc::config::require_positive(&[
            ("sync_interval", self.sync_interval),
            ("resync_interval", self.resync_interval),
            ("communication_timeout", self.communication_timeout),
            ("failure_ejection", self.failure_ejection),
            ("connect_timeout", self.connect_timeout),
            ("request_timeout", self.request_timeout),
        ])?;
        if self.max_connections == 0 {
            return invalid("max_connections", "must be at least 1");
        }
        if !(8 * 1024..=16 * 1024 * 1024).contains(&self.max_header_bytes) {
            return invalid("max_header_bytes", "must be between 8 KiB and 16 MiB");
        }
        self.tls.check_as(svc::identity::Role::Reader, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_with_plaintext() {
        let refused = RouterConfig::default().validate().unwrap_err().to_string();
        assert!(refused.contains("tls"), "{refused}");
        let config = RouterConfig { tls: TlsConfig::insecure_plaintext(), ..RouterConfig::default() }
            .validate()
            .expect("defaults are valid");
        assert_eq!(config.sync_interval, Duration::from_secs(30));
        assert_eq!(config.balancing, Balancing::RoundRobin);
    }

    #[test]
    fn toml_reads_balancing_and_durations_and_refuses_unknown_fields() {
        let config: RouterConfig =
            toml::from_str("balancing = \"least-connections\"\nsync_interval = \"5s\"").expect("valid toml");
        assert_eq!(config.balancing, Balancing::LeastConnections);
        assert_eq!(config.sync_interval, Duration::from_secs(5));
        assert!(toml::from_str::<RouterConfig>("balancing = \"random\"").is_err());
        assert!(toml::from_str::<RouterConfig>("no_such_field = 1").is_err());
    }

    #[test]
    fn bad_values_are_refused_with_the_field() {
        let base = RouterConfig { tls: TlsConfig::insecure_plaintext(), ..RouterConfig::default() };
        let cases = [
            (RouterConfig { bbs_address: " ".into(), ..base.clone() }, "bbs_address"),
            (RouterConfig { sync_interval: Duration::ZERO, ..base.clone() }, "sync_interval"),
            (RouterConfig { max_connections: 0, ..base.clone() }, "max_connections"),
            (RouterConfig { max_header_bytes: 100, ..base.clone() }, "max_header_bytes"),
        ];
        for (config, field) in cases {
            let err = config.validate().expect_err("invalid").to_string();
            assert!(err.contains(field), "{err}");
        }
    }

    #[test]
    fn flags_override_the_file() {
        let config = RouterConfig::default().with_overrides(ConfigOverrides {
            listen_address: Some("127.0.0.1:0".into()),
            ..ConfigOverrides::default()
        });
        assert_eq!(config.listen_address, "127.0.0.1:0");
        assert_eq!(config.bbs_address, "127.0.0.1:8889");
    }
}
