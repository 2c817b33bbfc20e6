//! The auctioneer configuration: a TOML file (`--config FILE`) whose address fields flags
//! override, validated once at start. Intervals, timeouts and placement weights are fields, so
//! tests shorten them without special cases.

use std::time::Duration;

use serde::Deserialize;
use svc::config::tls::{TlsConfig, TlsFlags};
pub use svc::config::{ConfigError, parse_duration};
use svc::config::{ConfigFile, Valid, Validate, set};

use crate::placement::PlacementConfig;

/// The auctioneer configuration. Every field is optional in the file; [`Default`] gives
/// Diego's values (docs/architecture.md, "Defaults").
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuctioneerConfig {
    /// The BBS gRPC address (`host:port`): `Cells`, `FailActualLRP`, `RejectTask` and the
    /// `Locket` service all live there.
    pub bbs_address: String,
    /// gRPC listen address (Auctioneer, health, reflection).
    pub listen_address: String,
    /// Admin listen address (`/healthz`, `/metrics`).
    pub admin_address: String,
    /// The address the BBS reaches this auctioneer at; stored as the `auctioneer` lock's value,
    /// which is how the BBS finds the active auctioneer. Empty means the bound gRPC address.
    pub advertise_address: String,
    /// How long one cell may take to answer `State`; a slower cell is left out of the auction.
    #[serde(with = "svc::config::duration")]
    pub cell_state_timeout: Duration,
    /// Timeout of `Perform` calls and of calls to the BBS.
    #[serde(with = "svc::config::duration")]
    pub communication_timeout: Duration,
    /// Pause before retrying an auction whose cell list could not be read from the BBS (the
    /// batch is kept meanwhile).
    #[serde(with = "svc::config::duration")]
    pub cells_retry_interval: Duration,
    /// How long each auction waits, once there is work, for more requests to join it (not in
    /// Diego, whose value is 0: auction at once). A window lets one auction see a burst of
    /// desires together, so its ordering (index 0 before tasks before higher indices, larger
    /// first) applies across the whole burst; it also bounds the auction rate to one per window.
    #[serde(with = "svc::config::duration")]
    pub batch_window: Duration,
    /// TTL of the `auctioneer` lock.
    #[serde(with = "svc::config::duration")]
    pub lock_ttl: Duration,
    /// How often the lock is renewed (or retried while standing by).
    #[serde(with = "svc::config::duration")]
    pub lock_retry_interval: Duration,
    /// Seed of the RNG that breaks score ties; the same inputs and seed give the same placement.
    pub seed: u64,
    /// Score added per container starting on a cell (Diego: 0.25, range 0 to 1).
    pub starting_container_weight: f64,
    /// Score added per position of a cell in its zone (Diego: 0, off); > 0 fills cells in order.
    pub bin_pack_first_fit_weight: f64,
    /// Containers starting at once across all cells; 0 or negative means unlimited (Diego's
    /// `starting_container_count_maximum`).
    pub starting_container_count_maximum: i64,
    /// Containers starting at once on one cell; 0 means unlimited (not in Diego).
    pub max_starting_per_cell: u64,
    /// BBS failure reports (`FailActualLRP`, `RejectTask`) in flight at once after an auction.
    pub report_concurrency: usize,
    /// Most LRP instances and tasks waiting for an auction (not in Diego, which has no bound);
    /// a request that would pass it is refused with RESOURCE_EXHAUSTED and asked again by the
    /// BBS's convergence.
    pub max_pending_starts: usize,
    /// Most memory those pending starts may hold, in bytes (default 256 MiB; each start holds
    /// its own copy of its placement constraint).
    pub max_pending_bytes: usize,
    /// Largest request message the gRPC port accepts, in bytes (default 4 MiB, the gRPC default;
    /// 1 MiB to 256 MiB). A larger one is refused with RESOURCE_EXHAUSTED naming this limit
    /// before it is read into memory.
    pub max_request_bytes: usize,
    /// Mutual TLS: the `[tls]` table (`ca`, `cert`, `key`, `insecure_plaintext`).
    pub tls: TlsConfig,
}

impl Default for AuctioneerConfig {
    fn default() -> Self {
        Self {
            bbs_address: "127.0.0.1:8889".into(),
            listen_address: "127.0.0.1:9016".into(),
            admin_address: "127.0.0.1:17001".into(),
            advertise_address: String::new(),
            cell_state_timeout: Duration::from_secs(1),
            communication_timeout: Duration::from_secs(10),
            cells_retry_interval: Duration::from_secs(1),
            batch_window: Duration::ZERO,
            lock_ttl: Duration::from_secs(15),
            lock_retry_interval: Duration::from_secs(5),
            seed: 0,
            starting_container_weight: 0.25,
            bin_pack_first_fit_weight: 0.0,
            starting_container_count_maximum: 0,
            max_starting_per_cell: 0,
            report_concurrency: 32,
            max_pending_starts: crate::batch::DEFAULT_CAPACITY,
            max_pending_bytes: crate::batch::DEFAULT_CAPACITY_BYTES,
            max_request_bytes: svc::server::DEFAULT_MAX_REQUEST_BYTES,
            tls: TlsConfig::default(),
        }
    }
}

/// Values given on the command line (the binary flattens these into its flags); each one
/// that is set replaces the file's.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct ConfigOverrides {
    /// BBS gRPC address (host:port), also used for the Locket [default: 127.0.0.1:8889].
    #[arg(long, value_name = "ADDR")]
    pub bbs_address: Option<String>,
    /// gRPC listen address [default: 127.0.0.1:9016].
    #[arg(long, value_name = "ADDR")]
    pub listen_address: Option<String>,
    /// Admin (/healthz, /metrics) listen address [default: 127.0.0.1:17001].
    #[arg(long, value_name = "ADDR")]
    pub admin_address: Option<String>,
    /// Mutual TLS files, or plaintext.
    #[command(flatten)]
    pub tls: TlsFlags,
}

impl AuctioneerConfig {
    /// Checks every rule and returns the configuration, marked as checked.
    pub fn validate(self) -> Result<Valid<Self>, ConfigError> {
        Valid::new(self)
    }

    /// The placement tunables for `placement::solve`.
    pub fn placement(&self) -> PlacementConfig {
        PlacementConfig {
            starting_container_weight: self.starting_container_weight,
            bin_pack_first_fit_weight: self.bin_pack_first_fit_weight,
            // Diego: 0 or negative means unlimited; the placement core spells that 0.
            max_in_flight_starts: usize::try_from(self.starting_container_count_maximum.max(0)).unwrap_or(usize::MAX),
            max_starting_per_cell: usize::try_from(self.max_starting_per_cell).unwrap_or(usize::MAX),
        }
    }
}

impl svc::process::Listens for AuctioneerConfig {
    fn listen_address(&self) -> &str {
        &self.listen_address
    }

    fn admin_address(&self) -> &str {
        &self.admin_address
    }
}

impl ConfigFile for AuctioneerConfig {
    type Overrides = ConfigOverrides;

    /// Applies the flags that are set.
    fn with_overrides(mut self, o: ConfigOverrides) -> Self {
        set(&mut self.bbs_address, o.bbs_address);
        set(&mut self.listen_address, o.listen_address);
        set(&mut self.admin_address, o.admin_address);
        self.tls.apply(o.tls);
        self
    }
}

impl Validate for AuctioneerConfig {
    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |field, rule: &str| Err(ConfigError::invalid(field, rule));
        svc::config::require_non_empty(&[
            ("bbs_address", &self.bbs_address),
            ("listen_address", &self.listen_address),
            ("admin_address", &self.admin_address),
        ])?;
        svc::config::require_positive(&[
            ("cell_state_timeout", self.cell_state_timeout),
            ("communication_timeout", self.communication_timeout),
            ("cells_retry_interval", self.cells_retry_interval),
            ("lock_ttl", self.lock_ttl),
        ])?;
        if self.lock_ttl > Duration::from_secs(86_400) {
            // The Locket refuses longer leases.
            return invalid("lock_ttl", "must be at most 24h");
        }
        if self.lock_retry_interval.is_zero() || self.lock_retry_interval >= self.lock_ttl {
            return invalid("lock_retry_interval", "must be positive and shorter than lock_ttl");
        }
        if !(0.0..=1.0).contains(&self.starting_container_weight) {
            return invalid("starting_container_weight", "must be between 0 and 1");
        }
        if !self.bin_pack_first_fit_weight.is_finite() || self.bin_pack_first_fit_weight < 0.0 {
            return invalid("bin_pack_first_fit_weight", "must be a number >= 0");
        }
        if self.max_pending_starts == 0 {
            return invalid("max_pending_starts", "must be at least 1");
        }
        if self.max_pending_bytes < 1024 * 1024 {
            return invalid("max_pending_bytes", "must be at least 1 MiB");
        }
        if let Err(reason) = svc::server::check_max_request_bytes(self.max_request_bytes) {
            return invalid("max_request_bytes", &reason);
        }
        if self.report_concurrency == 0 {
            return invalid("report_concurrency", "must be at least 1");
        }
        if self.batch_window > Duration::from_secs(60) {
            // Work would wait that long before it is even scored.
            return invalid("batch_window", "must be at most 60s");
        }
        self.tls.check_as(svc::identity::Role::Auctioneer, None)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn defaults_are_diegos_and_valid() {
        // Mutual TLS is the default: without certificates the defaults are refused, naming tls.
        let refused = AuctioneerConfig::default().validate().unwrap_err().to_string();
        assert!(refused.contains("tls") && refused.contains("--insecure-plaintext"), "{refused}");
        let config = AuctioneerConfig { tls: TlsConfig::insecure_plaintext(), ..AuctioneerConfig::default() }
            .validate()
            .expect("defaults are valid");
        assert_eq!(config.listen_address, "127.0.0.1:9016");
        assert_eq!(config.admin_address, "127.0.0.1:17001");
        assert_eq!(config.cell_state_timeout, Duration::from_secs(1));
        assert_eq!(config.lock_ttl, Duration::from_secs(15));
        assert_eq!(config.lock_retry_interval, Duration::from_secs(5));
        assert_eq!(config.placement(), PlacementConfig::default());
    }

    #[test]
    fn toml_durations_are_human_and_unknown_fields_are_refused() {
        let config: AuctioneerConfig =
            toml::from_str("cell_state_timeout = \"250ms\"\nlock_ttl = \"2m\"\nseed = 7\nbatch_window = \"1s\"")
                .expect("valid toml");
        assert_eq!(config.cell_state_timeout, Duration::from_millis(250));
        assert_eq!(config.lock_ttl, Duration::from_secs(120));
        assert_eq!(config.seed, 7);
        assert_eq!(config.batch_window, Duration::from_secs(1));
        assert!(toml::from_str::<AuctioneerConfig>("no_such_field = 1").is_err());
        assert!(toml::from_str::<AuctioneerConfig>("lock_ttl = \"2 fortnights\"").is_err());
        assert!(toml::from_str::<AuctioneerConfig>("lock_ttl = \"99999999999999999h\"").is_err());
    }

    #[test]
    fn flags_override_the_file() {
        let config = AuctioneerConfig::default().with_overrides(ConfigOverrides {
            bbs_address: Some("10.0.0.1:8889".into()),
            listen_address: None,
            admin_address: Some("127.0.0.1:0".into()),
            tls: TlsFlags { insecure_plaintext: true, ..TlsFlags::default() },
        });
        assert_eq!(config.bbs_address, "10.0.0.1:8889");
        assert_eq!(config.listen_address, "127.0.0.1:9016");
        assert_eq!(config.admin_address, "127.0.0.1:0");
    }

    #[test]
    fn bad_values_are_refused_with_the_field() {
        let cases = [
            AuctioneerConfig { bbs_address: " ".into(), ..AuctioneerConfig::default() },
            AuctioneerConfig { cell_state_timeout: Duration::ZERO, ..AuctioneerConfig::default() },
            AuctioneerConfig { lock_retry_interval: Duration::from_secs(15), ..AuctioneerConfig::default() },
            AuctioneerConfig { starting_container_weight: f64::NAN, ..AuctioneerConfig::default() },
            AuctioneerConfig { bin_pack_first_fit_weight: -1.0, ..AuctioneerConfig::default() },
            AuctioneerConfig { batch_window: Duration::from_secs(61), ..AuctioneerConfig::default() },
        ];
        let fields = [
            "bbs_address",
            "cell_state_timeout",
            "lock_retry_interval",
            "starting_container_weight",
            "bin_pack_first_fit_weight",
            "batch_window",
        ];
        for (config, field) in cases.into_iter().zip(fields) {
            let err = config.validate().expect_err("invalid").to_string();
            assert!(err.contains(field), "{err}");
        }
    }

    #[test]
    fn negative_in_flight_maximum_means_unlimited() {
        let config = AuctioneerConfig { starting_container_count_maximum: -5, ..AuctioneerConfig::default() };
        assert_eq!(config.placement().max_in_flight_starts, 0);
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let err = AuctioneerConfig::load(Some(Path::new("/nonexistent/auctioneer.toml")), ConfigOverrides::default())
            .expect_err("no file");
        assert!(matches!(err, ConfigError::Read { .. }));
    }
}
