//! Declarative health checks (`checks[]` and `readiness_checks[]` of a desired LRP): TCP connect
//! and HTTP GET probes and the three loops that use them (reference §3.5).
//!
//! - **startup**: all checks in parallel every `poll_interval` until all pass; after
//!   `start_timeout` (0 = forever) it fails with `Instance never healthy after <timeout>: <output>`;
//! - **liveness**: each check at its own interval; the first failure ends it with
//!   `Instance became unhealthy: <output>`;
//! - **readiness**: alternates between waiting for every check to pass (ready) and watching for
//!   the first failure (not ready); it never ends the instance.
//!
//! Probes run from the rep against the container's host port (host networking), in-process,
//! instead of as a healthcheck sidecar inside the container; the probe itself is in `probe`.
//! Messages match the Go healthcheck binary (`healthcheck/cmd/healthcheck`), including its
//! capitalisation, because they become crash reasons users see.

use std::time::Duration;

use futures::future::{join_all, select_all};
use proto::pb::models::v1 as pb;
use tokio::time::Instant;

use crate::container::PortMapping;
pub use crate::probe::MAX_CHECK_DURATION;
use crate::probe::{Probe, ProbeKind, timeout_message};
use crate::runtime::ContainerRuntime;
use crate::text::format_duration;

/// Defaults applied to checks whose proto fields are 0 (reference §4).
#[derive(Debug, Clone, Copy)]
pub struct CheckDefaults {
    /// Connect / request timeout (`declarative_healthcheck_default_timeout`, 1 s).
    pub timeout: Duration,
    /// Liveness and readiness interval (`healthy_monitoring_interval`, 30 s).
    pub interval: Duration,
}

impl Default for CheckDefaults {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(1), interval: Duration::from_secs(30) }
    }
}

/// One check, with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSpec {
    /// TCP or HTTP (with its path).
    pub kind: ProbeKind,
    /// The container port it names.
    pub port: u32,
    /// Connect / request timeout.
    pub timeout: Duration,
    /// Interval between liveness / readiness probes.
    pub interval: Duration,
}

impl CheckSpec {
    /// The check a proto `Check` describes, or `None` when it names neither TCP nor HTTP.
    pub fn from_pb(check: &pb::Check, defaults: &CheckDefaults) -> Option<CheckSpec> {
        let ms =
            |v: u64, default: Duration| if v == 0 { default } else { Duration::from_millis(v).min(MAX_CHECK_DURATION) };
        if let Some(tcp) = &check.tcp_check {
            return Some(CheckSpec {
                kind: ProbeKind::Tcp,
                port: tcp.port,
                timeout: ms(tcp.connect_timeout_ms, defaults.timeout),
                interval: ms(tcp.interval_ms, defaults.interval),
            });
        }
        check.http_check.as_ref().map(|http| CheckSpec {
            kind: ProbeKind::Http { path: if http.path.is_empty() { "/".into() } else { http.path.clone() } },
            port: http.port,
            timeout: ms(http.request_timeout_ms, defaults.timeout),
            interval: ms(http.interval_ms, defaults.interval),
        })
    }
}

/// What the checks run against: the runtime (which does the probing) and the container's
/// address and port mappings.
#[derive(Clone, Copy)]
pub struct CheckTarget<'a> {
    /// The runtime that probes.
    pub runtime: &'a dyn crate::runtime::ContainerRuntime,
    /// The container guid.
    pub guid: &'a str,
    /// The host IP.
    pub address: &'a str,
    /// Container port → host port.
    pub ports: &'a [PortMapping],
}

impl std::fmt::Debug for CheckTarget<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckTarget").field("guid", &self.guid).field("address", &self.address).finish()
    }
}

impl CheckTarget<'_> {
    /// Runs `check` once. A port without a mapping is probed as is (host networking).
    pub async fn probe(&self, check: &CheckSpec) -> Result<(), String> {
        let host_port = self.ports.iter().find(|m| m.container_port == check.port).map_or(check.port, |m| m.host_port);
        let probe = Probe {
            kind: check.kind.clone(),
            address: self.address.to_owned(),
            container_port: check.port,
            host_port,
            timeout: check.timeout,
        };
        // Bound the probe even if a runtime's probe ignores its timeout.
        let bound = check.timeout.saturating_add(Duration::from_secs(1));
        match tokio::time::timeout(bound, ContainerRuntime::probe(self.runtime, self.guid, probe)).await {
            Ok(result) => result,
            Err(_) => Err(timeout_message(&check.kind, check.port, check.timeout)),
        }
    }

    /// Runs every check once, in parallel; the first failure's output, in check order.
    pub async fn probe_all(&self, checks: &[CheckSpec]) -> Result<(), String> {
        let results = join_all(checks.iter().map(|c| self.probe(c))).await;
        results.into_iter().collect::<Result<Vec<()>, String>>().map(|_| ())
    }

    /// Startup: probe every `poll_interval` until all checks pass, failing after `start_timeout`
    /// (zero = never) with `Instance never healthy after <timeout>: <output>`.
    pub async fn startup(
        &self,
        checks: &[CheckSpec],
        poll_interval: Duration,
        start_timeout: Duration,
    ) -> Result<(), String> {
        let started = Instant::now();
        loop {
            let output = match self.probe_all(checks).await {
                Ok(()) => return Ok(()),
                Err(output) => output,
            };
            if !start_timeout.is_zero() && started.elapsed() >= start_timeout {
                return Err(never_healthy(start_timeout, &output));
            }
            let mut pause = poll_interval.max(Duration::from_millis(1));
            if !start_timeout.is_zero() {
                pause = pause.min(start_timeout.saturating_sub(started.elapsed()));
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// Liveness: each check at its interval; returns the crash reason of the first failure,
    /// `Instance became unhealthy: <output>`. Never returns when `checks` is empty.
    pub async fn liveness(&self, checks: &[CheckSpec]) -> String {
        let output = self.until_first_failure(checks).await;
        format!("Instance became unhealthy: {output}")
    }

    /// Each check at its own interval until one fails; that failure's output.
    async fn until_first_failure(&self, checks: &[CheckSpec]) -> String {
        if checks.is_empty() {
            return std::future::pending().await;
        }
        let loops = checks.iter().map(|check| {
            Box::pin(async move {
                loop {
                    tokio::time::sleep(check.interval.max(Duration::from_millis(1))).await;
                    if let Err(output) = self.probe(check).await {
                        return output;
                    }
                }
            })
        });
        select_all(loops).await.0
    }

    /// Readiness: forever alternates between polling every `poll_interval` until all checks pass
    /// (then `on_change(true)`) and probing at each check's interval until one fails (then
    /// `on_change(false)`). Never returns when `checks` is empty.
    pub async fn readiness(
        &self,
        checks: &[CheckSpec],
        poll_interval: Duration,
        mut on_change: impl FnMut(bool, &str),
    ) {
        if checks.is_empty() {
            return std::future::pending().await;
        }
        loop {
            self.startup(checks, poll_interval, Duration::ZERO).await.ok();
            on_change(true, "");
            let output = self.until_first_failure(checks).await;
            on_change(false, &output);
        }
    }
}

/// `Instance never healthy after <timeout>: <output>`.
pub fn never_healthy(start_timeout: Duration, output: &str) -> String {
    format!("Instance never healthy after {}: {output}", format_duration(start_timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_checks_get_defaults() {
        let defaults = CheckDefaults::default();
        let tcp = pb::Check {
            tcp_check: Some(pb::TcpCheck { port: 8080, connect_timeout_ms: 0, interval_ms: 0 }),
            http_check: None,
        };
        let spec = CheckSpec::from_pb(&tcp, &defaults).expect("tcp");
        assert_eq!(
            spec,
            CheckSpec {
                kind: ProbeKind::Tcp,
                port: 8080,
                timeout: Duration::from_secs(1),
                interval: Duration::from_secs(30)
            }
        );
        let http = pb::Check {
            tcp_check: None,
            http_check: Some(pb::HttpCheck {
                port: 9000,
                request_timeout_ms: 250,
                path: String::new(),
                interval_ms: 100,
            }),
        };
        let spec = CheckSpec::from_pb(&http, &defaults).expect("http");
        assert_eq!(spec.kind, ProbeKind::Http { path: "/".into() });
        assert_eq!(spec.timeout, Duration::from_millis(250));
        assert_eq!(CheckSpec::from_pb(&pb::Check::default(), &defaults), None);
    }
}
