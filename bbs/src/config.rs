//! The BBS configuration: a TOML file (`--config FILE`) whose every field a flag can override,
//! validated once at start. Intervals are fields so tests shorten them without special cases.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: toml::de::Error,
    },
    /// A value breaks a rule.
    #[error("invalid config: {field} {rule}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// The rule.
        rule: String,
    },
}

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
    #[serde(with = "humantime_serde_compat")]
    pub lock_ttl: Duration,
    /// How often the lease is renewed (or retried while standing by).
    #[serde(with = "humantime_serde_compat")]
    pub lock_retry_interval: Duration,
    /// How often expired cell presences are looked for (fast lost-cell detection).
    #[serde(with = "humantime_serde_compat")]
    pub presence_check_interval: Duration,
    /// Timeout of calls to reps and the auctioneer.
    #[serde(with = "humantime_serde_compat")]
    pub communication_timeout: Duration,
    /// Events a subscriber may fall behind before it is closed.
    pub event_buffer: usize,
    /// Task rejections before a task is failed.
    pub max_task_retries: i32,
    /// Concurrent task completion callbacks.
    pub callback_workers: usize,
    /// Time between convergence passes (a lost cell or a new leader kicks one at once).
    #[serde(with = "humantime_serde_compat")]
    pub convergence_interval: Duration,
    /// An UNCLAIMED instance older than this is auctioned again.
    #[serde(with = "humantime_serde_compat")]
    pub stale_unclaimed: Duration,
    /// A PENDING task older than this fails with "not started within time limit".
    #[serde(with = "humantime_serde_compat")]
    pub expire_pending_task: Duration,
    /// A COMPLETED task is deleted this long after it first completed.
    #[serde(with = "humantime_serde_compat")]
    pub expire_completed_task: Duration,
    /// Wait before restarting an instance after its 3rd consecutive crash; doubles per crash up to
    /// 32 times this (Diego: 30 s, capped at 16 min).
    #[serde(with = "humantime_serde_compat")]
    pub crash_backoff_base: Duration,
    /// A RESOLVING task stuck this long is demoted to COMPLETED (and its callback retried).
    #[serde(with = "humantime_serde_compat")]
    pub kick_task: Duration,
    /// What Locket clients may lock, and for how long (`[locket]`).
    pub locket: crate::locket::LocketConfig,
    /// Most instances one desired LRP may ask for (default 100 000; at most the hard cap of
    /// `proto::limits::MAX_LRP_INSTANCES`, 1 000 000). Each instance is a row every convergence
    /// pass reads.
    pub max_lrp_instances: i32,
    /// Most event streams (`SubscribeToInstanceEvents`, `SubscribeToTaskEvents`) open at once;
    /// one more is refused with UNAVAILABLE (default 1024; a cluster has a few dozen consumers).
    pub max_event_subscribers: usize,
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
            convergence_interval: Duration::from_secs(30),
            stale_unclaimed: Duration::from_secs(30),
            expire_pending_task: Duration::from_secs(30 * 60),
            expire_completed_task: Duration::from_secs(120),
            kick_task: Duration::from_secs(30),
            crash_backoff_base: Duration::from_secs(30),
            locket: crate::locket::LocketConfig::default(),
            max_lrp_instances: 100_000,
            max_event_subscribers: 1024,
        }
    }
}

impl BbsConfig {
    /// The converger's configuration: Diego's defaults with this file's intervals.
    pub fn convergence(&self) -> converger::config::ConvergenceConfig {
        converger::config::ConvergenceConfig {
            interval: self.convergence_interval,
            stale_unclaimed: self.stale_unclaimed,
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

    /// Reads a TOML file (every field optional).
    pub fn from_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.to_owned(), source })
    }

    /// The database URL to use: the configured one, or the SQLite file in `data_dir`.
    pub fn effective_database_url(&self) -> String {
        if self.database_url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("bbs.db").display())
        } else {
            self.database_url.clone()
        }
    }

    /// Checks every rule and returns the configuration.
    pub fn validate(self) -> Result<Self, ConfigError> {
        let invalid = |field, rule: &str| Err(ConfigError::Invalid { field, rule: rule.into() });
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
        if self.convergence_interval.is_zero() {
            return invalid("convergence_interval", "must be positive");
        }
        if self.listen_address.is_empty() {
            return invalid("listen_address", "must not be empty");
        }
        self.locket.validate()?;
        Ok(self)
    }
}

/// Durations in the TOML file are human strings: `"15s"`, `"500ms"`, `"2m"`.
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// Parses `"250ms"`, `"15s"`, `"2m"`, `"1h"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("invalid duration {text:?}: expected e.g. 15s or 500ms"))?;
    let ms = match unit.trim() {
        "ms" => Some(n),
        "s" | "" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => return Err(format!("invalid duration unit in {text:?}: use ms, s, m or h")),
    };
    ms.map(Duration::from_millis).ok_or_else(|| format!("duration {text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_diegos_and_valid() {
        let config = BbsConfig::default().validate().unwrap();
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
    }
}
