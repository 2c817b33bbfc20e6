//! The BBS configuration: a TOML file (`--config FILE`) whose every field a flag can override,
//! validated once at start. Intervals are fields so tests shorten them without special cases.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use svc::config::tls::{TlsConfig, TlsFlags};
pub use svc::config::{ConfigError, parse_duration};
use svc::config::{ConfigFile, Valid, Validate, set};

/// The BBS configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BbsConfig {
    /// Database URL; empty means a SQLite file `bbs.db` in `data_dir`.
    pub database_url: String,
    /// Directory for the default SQLite database.
    pub data_dir: PathBuf,
    /// gRPC listen address (Bbs, Locket, health, reflection).
    pub listen_address: String,
    /// Admin listen address (`/healthz`, `/metrics`).
    pub admin_address: String,
    /// The address other components reach this BBS at; stored in the `bbs` lease so standbys can
    /// name the leader. Defaults to the bound gRPC address.
    pub advertise_address: String,
    /// The auctioneer's gRPC address; empty means: look it up in the `auctioneer` lock's value.
    pub auctioneer_address: String,
    /// Identity of this BBS in the `bbs` lease; empty means a random one per process.
    pub instance_id: String,
    /// `bbs` lease TTL.
    #[serde(with = "svc::config::duration")]
    pub lock_ttl: Duration,
    /// How often the lease is renewed (or retried while standing by).
    #[serde(with = "svc::config::duration")]
    pub lock_retry_interval: Duration,
    /// How often expired cell presences are looked for (fast lost-cell detection).
    #[serde(with = "svc::config::duration")]
    pub presence_check_interval: Duration,
    /// Timeout of calls to reps and the auctioneer.
    #[serde(with = "svc::config::duration")]
    pub communication_timeout: Duration,
    /// Events a subscriber may fall behind before it is closed.
    pub event_buffer: usize,
    /// Task rejections before a task is failed.
    pub max_task_retries: i32,
    /// Concurrent task completion callbacks.
    pub callback_workers: usize,
    /// PEM CA bundle https completion callbacks verify their receivers against; empty: the
    /// cluster CA of `[tls]` (under `--insecure-plaintext` https callbacks are then refused).
    pub callback_ca_file: PathBuf,
    /// Time between convergence passes (a lost cell or a new leader kicks one at once).
    #[serde(with = "svc::config::duration")]
    pub convergence_interval: Duration,
    /// An UNCLAIMED instance older than this is auctioned again.
    #[serde(with = "svc::config::duration")]
    pub stale_unclaimed: Duration,
    /// How long convergence waits for the live cells to say what they run (instances to
    /// re-adopt, a cell that did not answer) before it trusts the database alone: after a start,
    /// a lost and regained lease or database, or a table that shrank sharply (issue 19).
    #[serde(with = "svc::config::duration")]
    pub cell_sync_grace: Duration,
    /// A PENDING task older than this fails with "not started within time limit".
    #[serde(with = "svc::config::duration")]
    pub expire_pending_task: Duration,
    /// A COMPLETED task is deleted this long after it first completed.
    #[serde(with = "svc::config::duration")]
    pub expire_completed_task: Duration,
    /// Wait before restarting an instance after its 3rd consecutive crash; doubles per crash up to
    /// 32 times this (Diego: 30 s, capped at 16 min).
    #[serde(with = "svc::config::duration")]
    pub crash_backoff_base: Duration,
    /// A RESOLVING task stuck this long is demoted to COMPLETED (and its callback retried).
    #[serde(with = "svc::config::duration")]
    pub kick_task: Duration,
    // Encryption at rest (docs/security.md): the keys, and the leader's re-encryption pass.
    /// File of the encryption keys (`label=<64 hex digits>` lines, optional `active=<label>`).
    /// Empty: the `DIEGO_ENCRYPTION_KEYS` variable, else a key file generated on first start
    /// next to the SQLite database (`<database file>.keys`) or in `data_dir` (`bbs.keys`).
    pub encryption_keys_file: PathBuf,
    /// The label of the key new rows are encrypted under; empty: the key text's `active=`
    /// entry, else its first key.
    pub encryption_active_key_label: String,
    /// Rows the leader re-encrypts per transaction when they are not under the active key.
    pub encryption_batch_size: usize,
    /// Pause between two re-encryption batches.
    #[serde(with = "svc::config::duration")]
    pub encryption_batch_pause: Duration,
    /// What Locket clients may lock, and for how long (`[locket]`).
    pub locket: crate::locket::LocketConfig,
    /// Most instances one desired LRP may ask for (default 100 000; at most the hard cap of
    /// `proto::limits::MAX_LRP_INSTANCES`, 1 000 000). Each instance is a row every convergence
    /// pass reads.
    pub max_lrp_instances: i32,
    /// Most event streams (`SubscribeToInstanceEvents`, `SubscribeToTaskEvents`) open at once;
    /// one more is refused with UNAVAILABLE (default 1024; a cluster has a few dozen consumers).
    pub max_event_subscribers: usize,
    /// Most event streams one verified identity (one certificate's `diego://` name) may have open
    /// at once; one more is refused with RESOURCE_EXHAUSTED naming this limit (default 64).
    /// Plaintext peers have no identity and only `max_event_subscribers` applies.
    pub max_event_subscribers_per_identity: usize,
    /// Largest request message the gRPC port accepts, in bytes (default 4 MiB, the gRPC default;
    /// 1 MiB to 256 MiB). A larger one is refused with RESOURCE_EXHAUSTED naming this limit
    /// before it is read into memory.
    pub max_request_bytes: usize,
    /// Mutual TLS: the `[tls]` table (`ca`, `cert`, `key`, `insecure_plaintext`).
    pub tls: TlsConfig,
}

/// Values given on the command line (the binary flattens these into its flags); each one that is
/// set replaces the file's.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct ConfigOverrides {
    /// Database URL (sqlite://, postgres://, mysql://); default: a SQLite file in --data-dir.
    #[arg(long)]
    pub database_url: Option<String>,
    /// gRPC listen address (default 127.0.0.1:8889; port 0 picks a free port).
    #[arg(long)]
    pub listen_address: Option<String>,
    /// Admin listen address for /healthz, /leader and /metrics (default 127.0.0.1:8890).
    #[arg(long)]
    pub admin_address: Option<String>,
    /// Address other components reach this BBS at (default: the bound gRPC address).
    #[arg(long)]
    pub advertise_address: Option<String>,
    /// The auctioneer's address (default: the value of its Locket lock).
    #[arg(long)]
    pub auctioneer_address: Option<String>,
    /// Directory of the default SQLite database (created if missing).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Mutual TLS files, or plaintext.
    #[command(flatten)]
    pub tls: TlsFlags,
}

impl Default for BbsConfig {
    fn default() -> Self {
        Self {
            database_url: String::new(),
            data_dir: PathBuf::from("."),
            listen_address: "127.0.0.1:8889".into(),
            admin_address: "127.0.0.1:8890".into(),
            advertise_address: String::new(),
            auctioneer_address: String::new(),
            instance_id: String::new(),
            lock_ttl: Duration::from_secs(15),
            lock_retry_interval: Duration::from_secs(5),
            presence_check_interval: Duration::from_secs(1),
            communication_timeout: Duration::from_secs(10),
            event_buffer: 1024,
            max_task_retries: 3,
            callback_workers: 64,
            callback_ca_file: PathBuf::new(),
            convergence_interval: Duration::from_secs(30),
            cell_sync_grace: Duration::from_secs(35),
            stale_unclaimed: Duration::from_secs(30),
            expire_pending_task: Duration::from_secs(30 * 60),
            expire_completed_task: Duration::from_secs(120),
            kick_task: Duration::from_secs(30),
            crash_backoff_base: Duration::from_secs(30),
            encryption_keys_file: PathBuf::new(),
            encryption_active_key_label: String::new(),
            encryption_batch_size: 100,
            encryption_batch_pause: Duration::from_millis(100),
            locket: crate::locket::LocketConfig::default(),
            max_lrp_instances: 100_000,
            max_event_subscribers: 1024,
            max_event_subscribers_per_identity: 64,
            max_request_bytes: svc::server::DEFAULT_MAX_REQUEST_BYTES,
            tls: TlsConfig::default(),
        }
    }
}

impl BbsConfig {
    /// The converger's configuration: Diego's defaults with this file's intervals.
    pub fn convergence(&self) -> converger::config::ConvergenceConfig {
        converger::config::ConvergenceConfig {
            interval: self.convergence_interval,
            stale_unclaimed: self.stale_unclaimed,
            cell_sync_grace: self.cell_sync_grace,
            expire_pending_task: self.expire_pending_task,
            expire_completed_task: self.expire_completed_task,
            kick_task: self.kick_task,
            crash_policy: self.crash_policy(),
            ..converger::config::ConvergenceConfig::default()
        }
    }

    /// The crash restart policy: Diego's, with this file's backoff base (the cap stays 32x it).
    pub fn crash_policy(&self) -> proto::lifecycle::crash::CrashPolicy {
        let default = proto::lifecycle::crash::CrashPolicy::default();
        proto::lifecycle::crash::CrashPolicy {
            base_backoff: self.crash_backoff_base,
            max_backoff: self.crash_backoff_base.saturating_mul(32),
            ..default
        }
    }

    /// The database URL to use: the configured one, or the SQLite file in `data_dir`.
    pub fn effective_database_url(&self) -> String {
        if self.database_url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("bbs.db").display())
        } else {
            self.database_url.clone()
        }
    }

    /// Checks every rule and returns the configuration, marked as checked.
    pub fn validate(self) -> Result<Valid<Self>, ConfigError> {
        Valid::new(self)
    }
}

impl svc::process::Listens for BbsConfig {
    fn listen_address(&self) -> &str {
        &self.listen_address
    }

    fn admin_address(&self) -> &str {
        &self.admin_address
    }
}

impl ConfigFile for BbsConfig {
    type Overrides = ConfigOverrides;

    /// Applies the flags that are set.
    fn with_overrides(mut self, o: ConfigOverrides) -> Self {
        set(&mut self.database_url, o.database_url);
        set(&mut self.listen_address, o.listen_address);
        set(&mut self.admin_address, o.admin_address);
        set(&mut self.advertise_address, o.advertise_address);
        set(&mut self.auctioneer_address, o.auctioneer_address);
        set(&mut self.data_dir, o.data_dir);
        self.tls.apply(o.tls);
        self
    }
}

impl Validate for BbsConfig {
    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |field, rule: &str| Err(ConfigError::invalid(field, rule));
        // The store refuses leases over a day; a longer lock_ttl could never be acquired.
        if self.lock_ttl.is_zero() || self.lock_ttl > db::sql::leases::MAX_LEASE_TTL {
            return invalid("lock_ttl", "must be positive and at most 24h");
        }
        if self.lock_retry_interval.is_zero() || self.lock_retry_interval >= self.lock_ttl {
            return invalid("lock_retry_interval", "must be positive and shorter than lock_ttl");
        }
        if self.presence_check_interval.is_zero() {
            return invalid("presence_check_interval", "must be positive");
        }
        if self.communication_timeout.is_zero() {
            return invalid("communication_timeout", "must be positive");
        }
        if self.event_buffer == 0 {
            return invalid("event_buffer", "must be at least 1");
        }
        if self.max_event_subscribers == 0 {
            return invalid("max_event_subscribers", "must be at least 1");
        }
        if self.max_event_subscribers_per_identity == 0 {
            return invalid("max_event_subscribers_per_identity", "must be at least 1");
        }
        if let Err(reason) = svc::server::check_max_request_bytes(self.max_request_bytes) {
            return invalid("max_request_bytes", &reason);
        }
        if !(1..=proto::limits::MAX_LRP_INSTANCES).contains(&i64::from(self.max_lrp_instances)) {
            return invalid(
                "max_lrp_instances",
                &format!("must be between 1 and {}", proto::limits::MAX_LRP_INSTANCES),
            );
        }
        if self.max_task_retries < 0 {
            return invalid("max_task_retries", "must be >= 0");
        }
        if self.callback_workers == 0 {
            return invalid("callback_workers", "must be at least 1");
        }
        if !self.callback_ca_file.as_os_str().is_empty() {
            crate::callbacks::load_ca_bundle(&self.callback_ca_file)
                .map_err(|rule| ConfigError::invalid("callback_ca_file", rule))?;
        }
        if self.convergence_interval.is_zero() {
            return invalid("convergence_interval", "must be positive");
        }
        if !(1..=db::sql::page::MAX_BATCH).contains(&self.encryption_batch_size) {
            return invalid("encryption_batch_size", &format!("must be between 1 and {}", db::sql::page::MAX_BATCH));
        }
        if self.listen_address.is_empty() {
            return invalid("listen_address", "must not be empty");
        }
        if !self.database_url.is_empty() {
            db::targets::check_url(&self.database_url).map_err(|rule| ConfigError::invalid("database_url", rule))?;
        }
        self.locket.validate()?;
        self.tls.check_as(svc::identity::Role::Bbs, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_diegos_and_valid() {
        // Mutual TLS is the default: without certificates the defaults are refused, naming tls.
        let refused = BbsConfig::default().validate().unwrap_err().to_string();
        assert!(refused.contains("tls") && refused.contains("--insecure-plaintext"), "{refused}");
        let config = BbsConfig { tls: TlsConfig::insecure_plaintext(), ..BbsConfig::default() }.validate().unwrap();
        assert_eq!(config.lock_ttl, Duration::from_secs(15));
        assert_eq!(config.lock_retry_interval, Duration::from_secs(5));
        assert_eq!(config.event_buffer, 1024);
        assert_eq!(config.listen_address, "127.0.0.1:8889");
        assert!(config.effective_database_url().starts_with("sqlite://"));
    }

    #[test]
    fn toml_durations_and_unknown_fields() {
        let config: BbsConfig = toml::from_str("lock_ttl = \"2s\"\nlock_retry_interval = \"500ms\"").unwrap();
        assert_eq!(config.lock_ttl, Duration::from_secs(2));
        assert_eq!(config.lock_retry_interval, Duration::from_millis(500));
        assert!(toml::from_str::<BbsConfig>("no_such_field = 1").is_err());
        assert!(toml::from_str::<BbsConfig>("lock_ttl = \"2 fortnights\"").is_err());
    }

    #[test]
    fn a_lock_ttl_the_store_would_refuse_is_refused_up_front() {
        let err =
            BbsConfig { lock_ttl: Duration::from_secs(25 * 3600), ..BbsConfig::default() }.validate().unwrap_err();
        assert!(err.to_string().contains("lock_ttl must be positive and at most 24h"), "{err}");
    }

    #[test]
    fn the_locket_section_sets_the_lease_limits() {
        let config: BbsConfig = toml::from_str(
            "[locket]\nmax_lock_ttl = \"30s\"\nmax_presence_ttl = \"1m\"\nauctioneer_lock_ttl = \"20s\"",
        )
        .unwrap();
        assert_eq!(config.locket.max_lock_ttl, Duration::from_secs(30));
        assert_eq!(config.locket.max_presence_ttl, Duration::from_secs(60));
        assert_eq!(config.locket.auctioneer_lock_ttl, Duration::from_secs(20));
        assert!(toml::from_str::<BbsConfig>("[locket]\nmax_ttl = \"1m\"").is_err());
        let err = toml::from_str::<BbsConfig>("[locket]\nmax_lock_ttl = \"0s\"").unwrap().validate().unwrap_err();
        assert!(err.to_string().contains("locket.max_lock_ttl"), "{err}");
    }

    #[test]
    fn bad_values_are_refused_with_the_field() {
        let config = BbsConfig { lock_retry_interval: Duration::from_secs(20), ..BbsConfig::default() };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("lock_retry_interval"), "{err}");
        let err = BbsConfig { event_buffer: 0, ..BbsConfig::default() }.validate().unwrap_err();
        assert!(err.to_string().contains("event_buffer"));
        let plain = || BbsConfig { tls: TlsConfig::insecure_plaintext(), ..BbsConfig::default() };
        let err = BbsConfig { max_request_bytes: 1024, ..plain() }.validate().unwrap_err().to_string();
        assert!(err.contains("max_request_bytes must be between 1048576 (1 MiB) and 268435456"), "{err}");
        let config: BbsConfig = toml::from_str("max_request_bytes = 16777216").unwrap();
        let config = BbsConfig { tls: TlsConfig::insecure_plaintext(), ..config }.validate().unwrap();
        assert_eq!(config.max_request_bytes, 16 * 1024 * 1024);
        assert_eq!(plain().max_request_bytes, 4 * 1024 * 1024, "the default is gRPC's");
    }

    #[test]
    fn database_urls_are_checked_up_front_and_may_name_several_hosts() {
        let plain = |url: &str| BbsConfig {
            tls: TlsConfig::insecure_plaintext(),
            database_url: url.into(),
            ..BbsConfig::default()
        };
        plain("postgres://diego@10.0.0.21:5432,10.0.0.22:5432/diego?target_session_attrs=read-write")
            .validate()
            .expect("a primary and a standby");
        plain("mysql://diego@10.0.0.31,10.0.0.32,10.0.0.33/diego").validate().expect("three Galera nodes");
        let err = plain("postgres://diego@a,b/diego?target_session_attrs=standby").validate().unwrap_err();
        assert!(err.to_string().contains("database_url target_session_attrs=\"standby\" is not supported"), "{err}");
        let err = plain("oracle://x/y").validate().unwrap_err();
        assert!(err.to_string().contains("database_url unsupported scheme"), "{err}");
    }
}
