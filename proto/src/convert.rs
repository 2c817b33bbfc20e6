//! Conversions between the wire messages of [`crate::pb`] and the domain types of
//! [`crate::models`]: `impl TryFrom<pb::X> for models::X { type Error = ValidationError }` and
//! `impl From<models::X> for pb::X`. Every `TryFrom` runs the validators of
//! [`crate::models::validation`], so anything built from the wire is valid; the `From` impls
//! never fail.
//!
//! Conventions:
//!
//! - A missing required sub-message is `{field} is required` (`actual_lrp_key is required`), and
//!   errors inside a sub-message carry its wire name as a prefix (`actual_lrp_key.index`).
//! - An unknown enum integer is an error naming the field, never a silent default.
//! - A missing modification tag converts to the default tag (clients do not send one when they
//!   desire an LRP; the BBS sets it).
//!
//! - `ids`: actual LRP keys and instance keys, modification tags, domains.
//! - `lrp`: net info, actual LRPs and the `ActualLRPInfo` of change events.
//! - `scheduling`: scheduling info, metric tags, update strategy, desired LRP updates.
//! - `desired`: whole desired LRPs, run info and the routing view.
//! - `task`: task definitions and tasks.
//! - `cell`: cell presences.
//! - `rep`: the rep's work: resources, placement constraints, LRP instances and tasks to start.
//!
//! Not here: request and response messages. The gRPC adapters of each service unpack those and
//! call the functions and impls here for the messages they carry.

mod cell;
mod desired;
mod ids;
mod lrp;
mod rep;
mod scheduling;
mod task;

pub use desired::{routing_info_to_pb, run_info_from_pb};
pub use ids::{actual_lrp_key_from_pb, instance_key_from_pb};
pub use lrp::{actual_lrp_info_to_pb, actual_lrp_state_from_i32, net_info_from_pb};
pub use scheduling::{metric_tags_from_pb, metric_tags_to_pb, update_strategy_from_i32};
pub use task::{task_definition_from_pb, task_state_from_i32};

use crate::models::ValidationError;

/// The content of a required sub-message, or `{field} is required`.
pub(crate) fn required<T>(value: Option<T>, field: &str) -> Result<T, ValidationError> {
    value.ok_or_else(|| ValidationError::new(field, "is required"))
}

/// Shared fixtures for the conversion tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use crate::pb::models::v1 as pb;
    use pb::action::Action as Variant;

    /// A run action.
    pub fn run(path: &str) -> pb::Action {
        pb::Action {
            action: Some(Variant::RunAction(pb::RunAction {
                path: path.into(),
                args: vec!["-c".into(), "./start".into()],
                dir: "/home/vcap".into(),
                env: vec![pb::EnvironmentVariable { name: "PORT".into(), value: "8080".into() }],
                resource_limits: Some(pb::ResourceLimits { nofile: Some(1024), nproc: None }),
                user: "vcap".into(),
                log_source: "APP".into(),
                suppress_log_output: false,
            })),
        }
    }

    /// A realistic setup: download the droplet, then run under a timeout.
    pub fn setup() -> pb::Action {
        pb::Action {
            action: Some(Variant::SerialAction(pb::SerialAction {
                actions: vec![
                    pb::Action {
                        action: Some(Variant::DownloadAction(pb::DownloadAction {
                            artifact: "droplet".into(),
                            from: "http://file-server/droplet.tgz".into(),
                            to: "/home/vcap".into(),
                            cache_key: "droplets-web-1".into(),
                            user: "vcap".into(),
                            checksum_algorithm: "sha256".into(),
                            checksum_value: "deadbeef".into(),
                            ..Default::default()
                        })),
                    },
                    pb::Action {
                        action: Some(Variant::TimeoutAction(Box::new(pb::TimeoutAction {
                            action: Some(Box::new(run("/bin/prepare"))),
                            timeout_ms: 60_000,
                            log_source: String::new(),
                        }))),
                    },
                ],
                log_source: String::new(),
            })),
        }
    }

    /// A liveness and a readiness check.
    pub fn check_definition() -> pb::CheckDefinition {
        pb::CheckDefinition {
            checks: vec![pb::Check {
                tcp_check: Some(pb::TcpCheck { port: 8080, connect_timeout_ms: 1000, interval_ms: 500 }),
                http_check: None,
            }],
            log_source: "HEALTH".into(),
            readiness_checks: vec![pb::Check {
                tcp_check: None,
                http_check: Some(pb::HttpCheck {
                    port: 8080,
                    request_timeout_ms: 1000,
                    path: "/ready".into(),
                    interval_ms: 500,
                }),
            }],
        }
    }

    /// An egress rule.
    pub fn egress_rule() -> pb::SecurityGroupRule {
        pb::SecurityGroupRule {
            protocol: "tcp".into(),
            destinations: vec!["10.0.0.0/8".into()],
            ports: vec![443],
            log: true,
            ..Default::default()
        }
    }

    /// An NFS volume mount.
    pub fn volume_mount() -> pb::VolumeMount {
        pb::VolumeMount {
            driver: "nfsv3driver".into(),
            container_dir: "/data".into(),
            mode: "rw".into(),
            shared: Some(pb::SharedDevice {
                volume_id: "vol-1".into(),
                mount_config: r#"{"source":"nfs://server/export"}"#.into(),
            }),
        }
    }
}
