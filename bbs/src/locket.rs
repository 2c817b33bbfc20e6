//! The `diego.locket.v1.Locket` service: locks and presences on the shared database, served by
//! every BBS, leader or standby. Expiry is judged in database time.
//!
//! What a client may ask for is bounded ([`LocketConfig`], `[locket]` in the BBS config): a time
//! to live of at most `max_lock_ttl` for a LOCK and `max_presence_ttl` for a PRESENCE, and the
//! keys the BBS and the auctioneer lead by (`bbs`, `auctioneer`) only as a LOCK and for at most
//! their own configured TTL, so no client can hold a leader's key for longer than the leader
//! itself would. A verified caller may lock (and so renew) and release only its own lease and
//! only as its own identity ([`svc::authz::require_own_lease`]): a cell the PRESENCE keyed by its
//! cell id, the auctioneer the LOCK `auctioneer`, each with an owner that is its identity URI or
//! that URI, `#` and an instance (`svc::lease::owner`); so no client can depose a leader, or
//! another replica of its role under another name, by naming its owner. Fetch and FetchAll, which
//! show owners, are open to every identity. Terms only increase for a key (the store keeps them
//! across release and expiry).

use std::time::Duration;

use db::Store;
use db::sql::leases::{Lease, LeaseType, MAX_LEASE_TTL};
use proto::error::ErrorCode;
use proto::models::ValidationError;
use proto::pb::locket::v1 as api;
use proto::pb::locket::v1::locket_server::Locket;
use serde::Deserialize;
use svc::authz::{LeaseKind, require_own_lease};
use svc::identity::Peer;
use tonic::{Request, Response, Status};

use crate::config::{BbsConfig, ConfigError};
use crate::leader::BBS_LOCK_KEY;

/// The lock key the auctioneer leads by.
pub const AUCTIONEER_LOCK_KEY: &str = "auctioneer";

/// The most bytes a resource's value may have (a row of the request limits table, applied by the
/// codec before this service sees a request).
pub const MAX_VALUE_BYTES: usize = proto::limits::MAX_LOCKET_VALUE_BYTES;

/// The `[locket]` section of the BBS config: how long a client may hold a lease.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocketConfig {
    /// The longest time to live a LOCK may ask for (default 60 s; Diego's locks use 15 s). A
    /// holder that dies blocks its lock this long.
    #[serde(deserialize_with = "duration")]
    pub max_lock_ttl: Duration,
    /// The longest time to live a PRESENCE may ask for (default 2 min; reps use 15 s). A cell
    /// that dies looks alive this long.
    #[serde(deserialize_with = "duration")]
    pub max_presence_ttl: Duration,
    /// The longest time to live of the `auctioneer` lock: the auctioneers' `lock_ttl` (default
    /// 15 s). The `bbs` lock is bounded by this BBS's own `lock_ttl`.
    #[serde(deserialize_with = "duration")]
    pub auctioneer_lock_ttl: Duration,
}

impl Default for LocketConfig {
    fn default() -> Self {
        Self {
            max_lock_ttl: Duration::from_secs(60),
            max_presence_ttl: Duration::from_secs(120),
            auctioneer_lock_ttl: Duration::from_secs(15),
        }
    }
}

impl LocketConfig {
    /// Checks every rule: each limit at least 1 s (the wire counts whole seconds) and at most
    /// the store's bound of a day.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, value) in [
            ("locket.max_lock_ttl", self.max_lock_ttl),
            ("locket.max_presence_ttl", self.max_presence_ttl),
            ("locket.auctioneer_lock_ttl", self.auctioneer_lock_ttl),
        ] {
            if value < Duration::from_secs(1) || value > MAX_LEASE_TTL {
                return Err(ConfigError::Invalid { field, rule: "must be between 1s and 24h".into() });
            }
        }
        Ok(())
    }
}

/// Durations in the TOML file are human strings: `"15s"`, `"2m"`.
fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    crate::config::parse_duration(&text).map_err(serde::de::Error::custom)
}

/// What a Locket client may lock, and for how long: the limits of [`LocketConfig`] plus the
/// leaders' keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocketLimits {
    max_lock_ttl: Duration,
    max_presence_ttl: Duration,
    /// Keys only a leader locks: (key, longest ttl, the config field that sets it).
    leader_keys: Vec<(String, Duration, &'static str)>,
}

impl Default for LocketLimits {
    fn default() -> Self {
        Self::from_config(&BbsConfig::default())
    }
}

impl LocketLimits {
    /// The limits a BBS with `config` applies.
    pub fn from_config(config: &BbsConfig) -> Self {
        let locket = &config.locket;
        Self {
            max_lock_ttl: locket.max_lock_ttl,
            max_presence_ttl: locket.max_presence_ttl,
            leader_keys: vec![
                (BBS_LOCK_KEY.to_owned(), config.lock_ttl, "lock_ttl"),
                (AUCTIONEER_LOCK_KEY.to_owned(), locket.auctioneer_lock_ttl, "locket.auctioneer_lock_ttl"),
            ],
        }
    }

    /// Refuses a lease of `lease_type` on `key` for `ttl_in_seconds`, naming the field and the
    /// limit it breaks.
    pub fn check(&self, key: &str, lease_type: LeaseType, ttl_in_seconds: i64) -> Result<Duration, ValidationError> {
        let field = "ttl_in_seconds";
        let (type_name, type_max, type_limit) = match lease_type {
            LeaseType::Lock => ("LOCK", self.max_lock_ttl, "locket.max_lock_ttl"),
            LeaseType::Presence => ("PRESENCE", self.max_presence_ttl, "locket.max_presence_ttl"),
        };
        if ttl_in_seconds < 1 {
            return Err(ValidationError::new(field, "must be at least 1"));
        }
        let ttl = Duration::from_secs(ttl_in_seconds.unsigned_abs());
        if let Some((_, key_max, key_limit)) = self.leader_keys.iter().find(|(leader_key, ..)| leader_key == key) {
            if lease_type != LeaseType::Lock {
                return Err(ValidationError::new(
                    "resource.type_code",
                    format!("must be LOCK for the key {key}, which a leader holds"),
                ));
            }
            if ttl > *key_max {
                return Err(ValidationError::new(
                    field,
                    format!("must be at most {} for the lock {key} ({key_limit})", key_max.as_secs()),
                ));
            }
        }
        if ttl > type_max {
            return Err(ValidationError::new(
                field,
                format!("must be at most {} for a {type_name} ({type_limit})", type_max.as_secs()),
            ));
        }
        Ok(ttl)
    }
}

/// The `Locket` service.
pub struct LocketService {
    store: Store,
    limits: LocketLimits,
}

impl LocketService {
    /// A service over `store` (unfenced: leases are the fence) with the default limits.
    pub fn new(store: Store) -> Self {
        Self::with_limits(store, LocketLimits::default())
    }

    /// A service over `store` that applies `limits`.
    pub fn with_limits(store: Store, limits: LocketLimits) -> Self {
        Self { store, limits }
    }
}

fn invalid(err: ValidationError) -> Status {
    ErrorCode::InvalidRequest.to_status(format!("invalid request: {err}"))
}

fn lease_type(code: i32) -> Result<LeaseType, Status> {
    match api::TypeCode::try_from(code) {
        Ok(api::TypeCode::Lock) => Ok(LeaseType::Lock),
        Ok(api::TypeCode::Presence) => Ok(LeaseType::Presence),
        _ => Err(invalid(ValidationError::new("resource.type_code", "must be LOCK or PRESENCE"))),
    }
}

fn to_resource(lease: Lease) -> api::Resource {
    api::Resource {
        key: lease.key,
        owner: lease.owner,
        value: lease.value,
        type_code: match lease.lease_type {
            LeaseType::Lock => api::TypeCode::Lock,
            LeaseType::Presence => api::TypeCode::Presence,
        } as i32,
    }
}

fn status(err: db::Error) -> Status {
    err.code().to_status(err.to_string())
}

/// The resource of a Lock or Release. Lengths and characters were bounded by the codec; the key
/// and owner must be set, the lease must be `peer`'s own, held as `peer`'s own identity
/// ([`authorize`]), and the key must not be the BBS's own lease, which the BBS takes through its
/// database and no client may lock or release (a client that learnt the leader's owner id could
/// otherwise depose it).
fn required_resource(resource: Option<api::Resource>, peer: &Peer) -> Result<api::Resource, Status> {
    let resource = resource.ok_or_else(|| invalid(ValidationError::new("resource", "is required")))?;
    for (field, value) in [("resource.key", &resource.key), ("resource.owner", &resource.owner)] {
        if value.is_empty() {
            return Err(invalid(ValidationError::new(field, "must not be empty")));
        }
    }
    authorize(peer, &resource)?;
    if resource.key == BBS_LOCK_KEY {
        return Err(invalid(ValidationError::new(
            "resource.key",
            format!("must not be {BBS_LOCK_KEY}: the BBS holds that lease itself, through its database"),
        )));
    }
    Ok(resource)
}

/// Whether `peer` may lock or release `resource` (its own lease only, as an owner of its own
/// identity; any, as any owner, for a plaintext peer).
fn authorize(peer: &Peer, resource: &api::Resource) -> Result<(), Status> {
    if peer.identity().is_none() {
        return Ok(());
    }
    let kind = match lease_type(resource.type_code)? {
        LeaseType::Lock => LeaseKind::Lock,
        LeaseType::Presence => LeaseKind::Presence,
    };
    require_own_lease(peer, &resource.key, kind, &resource.owner)
}

#[tonic::async_trait]
impl Locket for LocketService {
    async fn lock(&self, request: Request<api::LockRequest>) -> Result<Response<api::LockResponse>, Status> {
        let peer = Peer::of(&request);
        let request = request.into_inner();
        let resource = required_resource(request.resource, &peer)?;
        let lease_type = lease_type(resource.type_code)?;
        let ttl = self.limits.check(&resource.key, lease_type, request.ttl_in_seconds).map_err(invalid)?;
        let lease = self
            .store
            .acquire_lease(&resource.key, &resource.owner, &resource.value, lease_type, ttl)
            .await
            .map_err(status)?;
        Ok(Response::new(api::LockResponse { term: lease.term }))
    }

    async fn release(&self, request: Request<api::ReleaseRequest>) -> Result<Response<api::ReleaseResponse>, Status> {
        let peer = Peer::of(&request);
        let resource = required_resource(request.into_inner().resource, &peer)?;
        self.store.release_lease(&resource.key, &resource.owner).await.map_err(status)?;
        Ok(Response::new(api::ReleaseResponse {}))
    }

    async fn fetch(&self, request: Request<api::FetchRequest>) -> Result<Response<api::FetchResponse>, Status> {
        let key = request.into_inner().key;
        if key.is_empty() {
            return Err(invalid(ValidationError::new("key", "must not be empty")));
        }
        let lease = self.store.fetch_lease(&key).await.map_err(status)?;
        Ok(Response::new(api::FetchResponse { resource: Some(to_resource(lease)) }))
    }

    async fn fetch_all(
        &self,
        request: Request<api::FetchAllRequest>,
    ) -> Result<Response<api::FetchAllResponse>, Status> {
        let lease_type = lease_type(request.into_inner().type_code)?;
        let leases = self.store.fetch_leases(lease_type).await.map_err(status)?;
        Ok(Response::new(api::FetchAllResponse { resources: leases.into_iter().map(to_resource).collect() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> LocketLimits {
        let config = BbsConfig {
            lock_ttl: Duration::from_secs(10),
            locket: LocketConfig {
                max_lock_ttl: Duration::from_secs(60),
                max_presence_ttl: Duration::from_secs(120),
                auctioneer_lock_ttl: Duration::from_secs(20),
            },
            ..BbsConfig::default()
        };
        LocketLimits::from_config(&config)
    }

    #[test]
    fn ttls_are_bounded_by_type() {
        let limits = limits();
        assert_eq!(limits.check("cell-1", LeaseType::Presence, 120), Ok(Duration::from_secs(120)));
        assert_eq!(limits.check("my-lock", LeaseType::Lock, 60), Ok(Duration::from_secs(60)));
        let err = limits.check("cell-1", LeaseType::Presence, 121).unwrap_err();
        assert_eq!(err.to_string(), "ttl_in_seconds must be at most 120 for a PRESENCE (locket.max_presence_ttl)");
        let err = limits.check("my-lock", LeaseType::Lock, 86_400).unwrap_err();
        assert_eq!(err.to_string(), "ttl_in_seconds must be at most 60 for a LOCK (locket.max_lock_ttl)");
        for ttl in [0, -1, i64::MIN] {
            assert_eq!(limits.check("cell-1", LeaseType::Presence, ttl).unwrap_err().field, "ttl_in_seconds");
        }
    }

    #[test]
    fn the_leaders_keys_are_locks_no_longer_than_their_leaders_ttl() {
        let limits = limits();
        assert_eq!(limits.check("bbs", LeaseType::Lock, 10), Ok(Duration::from_secs(10)));
        let err = limits.check("bbs", LeaseType::Lock, 11).unwrap_err();
        assert_eq!(err.to_string(), "ttl_in_seconds must be at most 10 for the lock bbs (lock_ttl)");
        assert_eq!(limits.check("auctioneer", LeaseType::Lock, 20), Ok(Duration::from_secs(20)));
        let err = limits.check("auctioneer", LeaseType::Lock, 21).unwrap_err();
        assert!(err.to_string().contains("locket.auctioneer_lock_ttl"), "{err}");
        let err = limits.check("bbs", LeaseType::Presence, 5).unwrap_err();
        assert_eq!(err.field, "resource.type_code");
    }

    #[test]
    fn a_leader_key_never_outlives_its_type_limit() {
        let config = BbsConfig {
            locket: LocketConfig { auctioneer_lock_ttl: Duration::from_secs(600), ..LocketConfig::default() },
            ..BbsConfig::default()
        };
        let err = LocketLimits::from_config(&config).check("auctioneer", LeaseType::Lock, 300).unwrap_err();
        assert!(err.to_string().contains("locket.max_lock_ttl"), "{err}");
    }

    #[test]
    fn config_limits_are_validated() {
        assert!(LocketConfig::default().validate().is_ok());
        let config = LocketConfig { max_presence_ttl: Duration::from_millis(500), ..LocketConfig::default() };
        assert!(config.validate().unwrap_err().to_string().contains("locket.max_presence_ttl"));
        let config = LocketConfig { max_lock_ttl: Duration::from_secs(2 * 86_400), ..LocketConfig::default() };
        assert!(config.validate().unwrap_err().to_string().contains("locket.max_lock_ttl"));
    }
}
