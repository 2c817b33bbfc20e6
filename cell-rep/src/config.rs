//! The rep configuration: a TOML file (`--config FILE`) whose fields the flags of
//! docs/architecture.md ("Command lines") override, validated once at start. Intervals and timeouts
//! are fields, so tests shorten them without special cases.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use svc::config::tls::{TlsConfig, TlsFlags};
pub use svc::config::{ConfigError, parse_duration};
use svc::config::{ConfigFile, Valid, Validate, set};

/// Which container runtime runs the containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// Child process groups in per-container directories under `data_dir`.
    #[default]
    Process,
    /// OCI containers run with the `runc` binary.
    Runc,
    /// No processes: containers turn healthy after `sim_start_delay`.
    Sim,
}

/// The rep configuration. Every field is optional in the file; [`Default`] gives Diego's values
/// (docs/reference/auction-rep.md §4) where Diego has one.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RepConfig {
    /// The BBS gRPC address (`host:port`); its `Locket` service holds the presence.
    pub bbs_address: String,
    /// This cell's id: the presence key and the `cell_id` of every record it owns (required).
    pub cell_id: String,
    /// Availability zone.
    pub zone: String,
    /// Container runtime.
    pub runtime: RuntimeKind,
    /// gRPC listen address (`Rep`, health, reflection).
    pub listen_address: String,
    /// Admin listen address (`/healthz`, `/metrics`).
    pub admin_address: String,
    /// The address the BBS and auctioneers reach this rep at, advertised in the presence.
    /// Empty means the bound gRPC address.
    pub advertise_address: String,
    /// The host address reported in net info (where containers' host ports are reachable).
    /// Empty means the host part of the advertised address.
    pub host_address: String,
    /// Memory capacity in MB.
    pub memory_mb: i32,
    /// Disk capacity in MB.
    pub disk_mb: i32,
    /// Container slots.
    pub containers: i32,
    /// Where container directories, rootfses and logs live.
    pub data_dir: PathBuf,
    /// The cgroup v2 directory, relative to the cgroup2 mount, under which the `process` and
    /// `runc` runtimes create one cgroup per container (`diego-rs`). Empty: the `process` runtime
    /// never uses cgroups and limits containers with rlimits (runc keeps `diego-rs`).
    pub cgroup_parent: String,
    /// Preloaded root filesystems by name (`preloaded:NAME`) mapped to directories. Empty
    /// means the cell offers `busybox` (for runc prepared from the machine's busybox-static).
    pub rootfs: BTreeMap<String, PathBuf>,
    /// Tags every LRP placed here must carry.
    pub placement_tags: Vec<String>,
    /// Tags LRPs placed here may carry.
    pub optional_placement_tags: Vec<String>,
    /// Bulk sync interval (Diego's `polling_interval`).
    #[serde(with = "svc::config::duration")]
    pub polling_interval: Duration,
    /// Bulk sync interval while evacuating.
    #[serde(with = "svc::config::duration")]
    pub evacuation_polling_interval: Duration,
    /// How long evacuation waits for replacements and tasks before giving up.
    #[serde(with = "svc::config::duration")]
    pub evacuation_timeout: Duration,
    /// Timeout of every BBS call.
    #[serde(with = "svc::config::duration")]
    pub communication_timeout: Duration,
    /// TTL of the cell presence.
    #[serde(with = "svc::config::duration")]
    pub presence_ttl: Duration,
    /// How often the presence is renewed (or retried while the BBS is unreachable).
    #[serde(with = "svc::config::duration")]
    pub presence_retry_interval: Duration,
    /// SIGTERM to SIGKILL on stop.
    #[serde(with = "svc::config::duration")]
    pub graceful_shutdown_interval: Duration,
    /// How long a stopped instance of an LRP with HTTP routes (`cf-router`) is reported
    /// unroutable before its processes are stopped, so routers drop it first (5 s; 0 = stop at
    /// once; at most 10 min).
    #[serde(with = "svc::config::duration")]
    pub route_drain: Duration,
    /// A reservation never run is completed as expired after this long.
    #[serde(with = "svc::config::duration")]
    pub reserved_expiration_time: Duration,
    /// The `sim` runtime's time from start to healthy.
    #[serde(with = "svc::config::duration")]
    pub sim_start_delay: Duration,
    /// How long a task's main process runs in the `sim` runtime before it exits 0.
    #[serde(with = "svc::config::duration")]
    pub sim_task_duration: Duration,
    /// How often a healthy instance's monitor action runs, and the liveness interval of checks
    /// without an `interval_ms` (Diego's `healthy_monitoring_interval`, 30 s).
    #[serde(with = "svc::config::duration")]
    pub healthy_monitoring_interval: Duration,
    /// Largest request message the gRPC port accepts, in bytes (default 4 MiB, the gRPC default;
    /// 1 MiB to 256 MiB). A larger one is refused with RESOURCE_EXHAUSTED naming this limit
    /// before it is read into memory.
    pub max_request_bytes: usize,
    /// Most `diego ssh` sessions the cell runs at once (default 16, at least 1); more are
    /// refused with RESOURCE_EXHAUSTED.
    pub max_exec_sessions: usize,
    /// Application logs (issue 18): the `[logs]` table, the bounds of what the `process` and
    /// `runc` runtimes keep of their processes' output (see `cell_rep::logs::LogConfig`).
    pub logs: crate::logs::LogConfig,
    /// Mutual TLS: the `[tls]` table (`ca`, `cert`, `key`, `insecure_plaintext`). The
    /// certificate names this cell: `diego://cell/<cell_id>`.
    pub tls: TlsConfig,
}

impl Default for RepConfig {
    fn default() -> Self {
        Self {
            bbs_address: "127.0.0.1:8889".into(),
            cell_id: String::new(),
            zone: "z1".into(),
            runtime: RuntimeKind::Process,
            listen_address: "127.0.0.1:1801".into(),
            admin_address: "127.0.0.1:1800".into(),
            advertise_address: String::new(),
            host_address: String::new(),
            memory_mb: 8192,
            disk_mb: 65_536,
            containers: 249,
            data_dir: PathBuf::from("./cell-rep-data"),
            cgroup_parent: "diego-rs".into(),
            rootfs: BTreeMap::new(),
            placement_tags: Vec::new(),
            optional_placement_tags: Vec::new(),
            polling_interval: Duration::from_secs(30),
            evacuation_polling_interval: Duration::from_secs(10),
            evacuation_timeout: Duration::from_secs(600),
            communication_timeout: Duration::from_secs(10),
            presence_ttl: Duration::from_secs(15),
            presence_retry_interval: Duration::from_secs(5),
            graceful_shutdown_interval: Duration::from_secs(10),
            route_drain: Duration::from_secs(5),
            reserved_expiration_time: Duration::from_secs(60),
            sim_start_delay: Duration::from_millis(500),
            sim_task_duration: Duration::from_millis(100),
            healthy_monitoring_interval: Duration::from_secs(30),
            max_request_bytes: svc::server::DEFAULT_MAX_REQUEST_BYTES,
            max_exec_sessions: crate::exec::DEFAULT_MAX_CONCURRENT,
            logs: crate::logs::LogConfig::default(),
            tls: TlsConfig::default(),
        }
    }
}

/// Values given on the command line (the binary flattens these into its flags); each one that
/// is set replaces the file's. Repeatable flags replace the file's list when given at least once.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct ConfigOverrides {
    /// BBS gRPC address (host:port), also used for the Locket [default: 127.0.0.1:8889].
    #[arg(long, value_name = "ADDR")]
    pub bbs_address: Option<String>,
    /// This cell's id (required, here or in the file).
    #[arg(long, value_name = "ID")]
    pub cell_id: Option<String>,
    /// Availability zone [default: z1].
    #[arg(long, value_name = "Z")]
    pub zone: Option<String>,
    /// Container runtime [default: process].
    #[arg(long, value_enum)]
    pub runtime: Option<RuntimeKind>,
    /// gRPC listen address [default: 127.0.0.1:1801].
    #[arg(long, value_name = "ADDR")]
    pub listen_address: Option<String>,
    /// Admin (/healthz, /metrics) listen address [default: 127.0.0.1:1800].
    #[arg(long, value_name = "ADDR")]
    pub admin_address: Option<String>,
    /// Memory capacity in MB [default: 8192].
    #[arg(long, value_name = "N")]
    pub memory_mb: Option<i32>,
    /// Disk capacity in MB [default: 65536].
    #[arg(long, value_name = "N")]
    pub disk_mb: Option<i32>,
    /// Container slots [default: 249].
    #[arg(long, value_name = "N")]
    pub containers: Option<i32>,
    /// Data directory for containers and rootfses.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// A preloaded rootfs, NAME=DIR (repeatable; none means `busybox`).
    #[arg(long = "rootfs", value_name = "NAME=DIR", value_parser = parse_rootfs)]
    pub rootfs: Vec<(String, PathBuf)>,
    /// A required placement tag (repeatable).
    #[arg(long = "placement-tag", value_name = "T")]
    pub placement_tags: Vec<String>,
    /// An optional placement tag (repeatable).
    #[arg(long = "optional-placement-tag", value_name = "T")]
    pub optional_placement_tags: Vec<String>,
    /// Mutual TLS files, or plaintext.
    #[command(flatten)]
    pub tls: TlsFlags,
}

/// Parses `NAME=DIR`.
pub fn parse_rootfs(text: &str) -> Result<(String, PathBuf), String> {
    match text.split_once('=') {
        Some((name, dir)) if !name.trim().is_empty() && !dir.trim().is_empty() => {
            Ok((name.trim().to_owned(), PathBuf::from(dir.trim())))
        }
        _ => Err(format!("invalid rootfs {text:?}: expected NAME=DIR")),
    }
}

/// The stack every cell offers when no rootfs is configured.
pub const DEFAULT_ROOTFS: &str = "busybox";

impl RepConfig {
    /// Checks every rule and returns the configuration, marked as checked.
    pub fn validate(self) -> Result<Valid<Self>, ConfigError> {
        Valid::new(self)
    }

    /// The preloaded rootfs names this cell offers: the configured ones, or `busybox`.
    pub fn rootfs_names(&self) -> Vec<String> {
        if self.rootfs.is_empty() { vec![DEFAULT_ROOTFS.to_owned()] } else { self.rootfs.keys().cloned().collect() }
    }
}

impl svc::process::Listens for RepConfig {
    fn listen_address(&self) -> &str {
        &self.listen_address
    }

    fn admin_address(&self) -> &str {
        &self.admin_address
    }
}

impl ConfigFile for RepConfig {
    type Overrides = ConfigOverrides;

    /// Applies the flags that are set.
    fn with_overrides(mut self, o: ConfigOverrides) -> Self {
        set(&mut self.bbs_address, o.bbs_address);
        set(&mut self.cell_id, o.cell_id);
        set(&mut self.zone, o.zone);
        set(&mut self.runtime, o.runtime);
        set(&mut self.listen_address, o.listen_address);
        set(&mut self.admin_address, o.admin_address);
        set(&mut self.memory_mb, o.memory_mb);
        set(&mut self.disk_mb, o.disk_mb);
        set(&mut self.containers, o.containers);
        set(&mut self.data_dir, o.data_dir);
        if !o.rootfs.is_empty() {
            self.rootfs = o.rootfs.into_iter().collect();
        }
        if !o.placement_tags.is_empty() {
            self.placement_tags = o.placement_tags;
        }
        if !o.optional_placement_tags.is_empty() {
            self.optional_placement_tags = o.optional_placement_tags;
        }
        self.tls.apply(o.tls);
        self
    }
}

impl Validate for RepConfig {
    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |field, rule: &str| Err(ConfigError::invalid(field, rule));
        svc::config::require_non_empty(&[
            ("bbs_address", &self.bbs_address),
            ("cell_id", &self.cell_id),
            ("listen_address", &self.listen_address),
            ("admin_address", &self.admin_address),
        ])?;
        if let Err(e) = proto::models::CellId::parse(self.cell_id.clone()) {
            return invalid("cell_id", &e.rule);
        }
        if self.memory_mb <= 0 {
            return invalid("memory_mb", "must be positive");
        }
        if self.disk_mb < 0 {
            return invalid("disk_mb", "must not be negative");
        }
        if self.containers <= 0 {
            return invalid("containers", "must be positive");
        }
        self.logs.check()?;
        svc::config::require_positive(&[
            ("polling_interval", self.polling_interval),
            ("evacuation_polling_interval", self.evacuation_polling_interval),
            ("communication_timeout", self.communication_timeout),
            ("presence_ttl", self.presence_ttl),
            ("reserved_expiration_time", self.reserved_expiration_time),
            ("healthy_monitoring_interval", self.healthy_monitoring_interval),
        ])?;
        if let Err(reason) = svc::server::check_max_request_bytes(self.max_request_bytes) {
            return invalid("max_request_bytes", &reason);
        }
        if self.max_exec_sessions == 0 {
            return invalid("max_exec_sessions", "must be at least 1");
        }
        if self.healthy_monitoring_interval > Duration::from_secs(86_400) {
            // A sleep that long would overflow the clock.
            return invalid("healthy_monitoring_interval", "must be at most 24h");
        }
        if self.route_drain > Duration::from_secs(600) {
            return invalid("route_drain", "must be at most 10m");
        }
        if self.presence_ttl > Duration::from_secs(86_400) {
            // The Locket refuses longer leases.
            return invalid("presence_ttl", "must be at most 24h");
        }
        if self.presence_retry_interval.is_zero() || self.presence_retry_interval >= self.presence_ttl {
            return invalid("presence_retry_interval", "must be positive and shorter than presence_ttl");
        }
        for name in self.rootfs.keys() {
            if name.trim().is_empty() || name.contains(['/', ':']) {
                return invalid("rootfs", "names must be non-empty and contain no '/' or ':'");
            }
        }
        for tag in self.placement_tags.iter().chain(&self.optional_placement_tags) {
            if tag.trim().is_empty() {
                return invalid("placement_tags", "must not contain empty tags");
            }
        }
        self.tls.check_as(svc::identity::Role::Cell, Some(&self.cell_id))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn valid() -> RepConfig {
        RepConfig { cell_id: "cell-1".into(), tls: TlsConfig::insecure_plaintext(), ..RepConfig::default() }
    }

    #[test]
    fn defaults_are_diegos_and_need_only_a_cell_id_and_certificates() {
        // Mutual TLS is the default: without certificates the defaults are refused, naming tls.
        let refused = RepConfig { cell_id: "cell-1".into(), ..RepConfig::default() }.validate().unwrap_err();
        assert!(refused.to_string().contains("--insecure-plaintext"), "{refused}");
        let config = valid().validate().expect("valid");
        assert_eq!(config.listen_address, "127.0.0.1:1801");
        assert_eq!(config.admin_address, "127.0.0.1:1800");
        assert_eq!(config.polling_interval, Duration::from_secs(30));
        assert_eq!(config.evacuation_polling_interval, Duration::from_secs(10));
        assert_eq!(config.evacuation_timeout, Duration::from_secs(600));
        assert_eq!(config.presence_ttl, Duration::from_secs(15));
        assert_eq!(config.presence_retry_interval, Duration::from_secs(5));
        assert_eq!(config.route_drain, Duration::from_secs(5));
        assert_eq!(config.rootfs_names(), vec!["busybox".to_owned()]);
        let err = RepConfig::default().validate().expect_err("no cell id").to_string();
        assert!(err.contains("cell_id"), "{err}");
    }

    #[test]
    fn toml_is_read_and_unknown_fields_are_refused() {
        let config: RepConfig = toml::from_str(
            "cell_id = \"c1\"\nruntime = \"sim\"\npolling_interval = \"1s\"\n[rootfs]\ncflinuxfs4 = \"/var/rootfs/cflinuxfs4\"\n",
        )
        .expect("valid toml");
        assert_eq!(config.runtime, RuntimeKind::Sim);
        assert_eq!(config.polling_interval, Duration::from_secs(1));
        assert_eq!(config.rootfs_names(), vec!["cflinuxfs4".to_owned()]);
        assert!(toml::from_str::<RepConfig>("no_such_field = 1").is_err());
        assert!(toml::from_str::<RepConfig>("runtime = \"docker\"").is_err());
        assert!(toml::from_str::<RepConfig>("presence_ttl = \"2 fortnights\"").is_err());
    }

    #[test]
    fn flags_override_the_file() {
        let config = RepConfig { placement_tags: vec!["old".into()], ..valid() }.with_overrides(ConfigOverrides {
            cell_id: Some("cell-9".into()),
            runtime: Some(RuntimeKind::Runc),
            memory_mb: Some(1024),
            rootfs: vec![("busybox".into(), PathBuf::from("/rootfs/busybox"))],
            placement_tags: vec!["gpu".into()],
            ..ConfigOverrides::default()
        });
        assert_eq!(config.cell_id, "cell-9");
        assert_eq!(config.runtime, RuntimeKind::Runc);
        assert_eq!(config.memory_mb, 1024);
        assert_eq!(config.placement_tags, vec!["gpu".to_owned()]);
        assert_eq!(config.rootfs.get("busybox"), Some(&PathBuf::from("/rootfs/busybox")));
        assert_eq!(config.zone, "z1");
    }

    #[test]
    fn rootfs_flags_parse_name_equals_dir() {
        assert_eq!(parse_rootfs("busybox=/r/bb"), Ok(("busybox".into(), PathBuf::from("/r/bb"))));
        assert!(parse_rootfs("busybox").is_err());
        assert!(parse_rootfs("=/dir").is_err());
        assert!(parse_rootfs("name=").is_err());
    }

    #[test]
    fn bad_values_are_refused_with_the_field() {
        let cases: Vec<(RepConfig, &str)> = vec![
            (RepConfig { bbs_address: " ".into(), ..valid() }, "bbs_address"),
            (RepConfig { memory_mb: 0, ..valid() }, "memory_mb"),
            (RepConfig { disk_mb: -1, ..valid() }, "disk_mb"),
            (RepConfig { containers: 0, ..valid() }, "containers"),
            (RepConfig { polling_interval: Duration::ZERO, ..valid() }, "polling_interval"),
            (RepConfig { healthy_monitoring_interval: Duration::ZERO, ..valid() }, "healthy_monitoring_interval"),
            (RepConfig { presence_retry_interval: Duration::from_secs(15), ..valid() }, "presence_retry_interval"),
            (RepConfig { rootfs: [("a/b".to_owned(), PathBuf::from("/x"))].into(), ..valid() }, "rootfs"),
            (RepConfig { placement_tags: vec![String::new()], ..valid() }, "placement_tags"),
            (RepConfig { route_drain: Duration::from_secs(601), ..valid() }, "route_drain"),
        ];
        for (config, field) in cases {
            let err = config.validate().expect_err("invalid").to_string();
            assert!(err.contains(field), "{err}");
        }
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let err =
            RepConfig::load(Some(Path::new("/nonexistent/rep.toml")), ConfigOverrides::default()).expect_err("no file");
        assert!(matches!(err, ConfigError::Read { .. }));
    }
}
