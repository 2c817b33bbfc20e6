//! The action and health-check parts of the desired LRP file format, with their conversions to
//! and from the generated messages. Each mirror keeps the proto field names, so a file reads
//! like the proto's JSON: `{"run_action": {"path": "/bin/sh", "args": ["-c", "./app"]}}`.

use proto::pb::models::v1 as pb;
use serde::{Deserialize, Serialize};

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// An environment variable (`{"name": "K", "value": "V"}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnvVar {
    /// The variable's name.
    pub name: String,
    /// Its value.
    pub value: String,
}

impl From<EnvVar> for pb::EnvironmentVariable {
    fn from(var: EnvVar) -> Self {
        pb::EnvironmentVariable { name: var.name, value: var.value }
    }
}

impl From<pb::EnvironmentVariable> for EnvVar {
    fn from(var: pb::EnvironmentVariable) -> Self {
        EnvVar { name: var.name, value: var.value }
    }
}

/// One action; exactly one key names its kind, as the proto's oneof does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// `run_action`: run a process.
    RunAction(RunAction),
    /// `download_action`: fetch and extract an artifact.
    DownloadAction(DownloadAction),
    /// `upload_action`: upload a file from the container.
    UploadAction(UploadAction),
    /// `timeout_action`: fail the inner action after `timeout_ms`.
    TimeoutAction(Box<TimeoutAction>),
    /// `emit_progress_action`: log messages around the inner action.
    EmitProgressAction(Box<EmitProgressAction>),
    /// `try_action`: run the inner action and ignore its failure.
    TryAction(Box<TryAction>),
    /// `parallel_action`: run every action at once.
    ParallelAction(ListAction),
    /// `serial_action`: run the actions one after another.
    SerialAction(ListAction),
    /// `codependent_action`: run every action at once; one exiting stops the rest.
    CodependentAction(ListAction),
}

/// Limits on a run action's process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResourceLimits {
    /// Open files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nofile: Option<u64>,
    /// Processes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nproc: Option<u64>,
}

/// A process to run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunAction {
    /// The executable.
    pub path: String,
    /// Its arguments.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Working directory.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub dir: String,
    /// Extra environment.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Process limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_limits: Option<ResourceLimits>,
    /// The user to run as.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// Log source name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub log_source: String,
    /// Drop the process's output.
    #[serde(skip_serializing_if = "is_default")]
    pub suppress_log_output: bool,
}

/// An artifact to fetch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DownloadAction {
    /// Name shown in logs.
    pub artifact: String,
    /// Source URL.
    pub from: String,
    /// Destination directory.
    pub to: String,
    /// Cache key.
    pub cache_key: String,
    /// Log source name.
    pub log_source: String,
    /// The user to download as.
    pub user: String,
    /// Checksum algorithm.
    pub checksum_algorithm: String,
    /// Expected checksum.
    pub checksum_value: String,
}

/// A file to upload.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UploadAction {
    /// Name shown in logs.
    pub artifact: String,
    /// Path in the container.
    pub from: String,
    /// Destination URL.
    pub to: String,
    /// Log source name.
    pub log_source: String,
    /// The user to upload as.
    pub user: String,
}

/// An action with a deadline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutAction {
    /// The inner action.
    pub action: Action,
    /// Deadline in milliseconds.
    pub timeout_ms: i64,
    /// Log source name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub log_source: String,
}

/// An action wrapped in progress messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmitProgressAction {
    /// The inner action.
    pub action: Action,
    /// Logged before it starts.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub start_message: String,
    /// Logged when it succeeds.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub success_message: String,
    /// Prefix of the message logged when it fails.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub failure_message_prefix: String,
    /// Log source name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub log_source: String,
}

/// An action whose failure is ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TryAction {
    /// The inner action.
    pub action: Action,
    /// Log source name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub log_source: String,
}

/// The body of `parallel_action`, `serial_action` and `codependent_action`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListAction {
    /// The inner actions.
    pub actions: Vec<Action>,
    /// Log source name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub log_source: String,
}

impl From<Action> for pb::Action {
    fn from(action: Action) -> Self {
        use pb::action::Action as A;
        let inner = |a: Action| Some(Box::new(pb::Action::from(a)));
        let list = |l: ListAction| (l.actions.into_iter().map(pb::Action::from).collect(), l.log_source);
        let action = match action {
            Action::RunAction(r) => A::RunAction(pb::RunAction {
                path: r.path,
                args: r.args,
                dir: r.dir,
                env: r.env.into_iter().map(Into::into).collect(),
                resource_limits: r.resource_limits.map(|l| pb::ResourceLimits { nofile: l.nofile, nproc: l.nproc }),
                user: r.user,
                log_source: r.log_source,
                suppress_log_output: r.suppress_log_output,
            }),
            Action::DownloadAction(d) => A::DownloadAction(pb::DownloadAction {
                artifact: d.artifact,
                from: d.from,
                to: d.to,
                cache_key: d.cache_key,
                log_source: d.log_source,
                user: d.user,
                checksum_algorithm: d.checksum_algorithm,
                checksum_value: d.checksum_value,
            }),
            Action::UploadAction(u) => A::UploadAction(pb::UploadAction {
                artifact: u.artifact,
                from: u.from,
                to: u.to,
                log_source: u.log_source,
                user: u.user,
            }),
            Action::TimeoutAction(t) => A::TimeoutAction(Box::new(pb::TimeoutAction {
                action: inner(t.action),
                timeout_ms: t.timeout_ms,
                log_source: t.log_source,
            })),
            Action::EmitProgressAction(e) => A::EmitProgressAction(Box::new(pb::EmitProgressAction {
                action: inner(e.action),
                start_message: e.start_message,
                success_message: e.success_message,
                failure_message_prefix: e.failure_message_prefix,
                log_source: e.log_source,
            })),
            Action::TryAction(t) => {
                A::TryAction(Box::new(pb::TryAction { action: inner(t.action), log_source: t.log_source }))
            }
            Action::ParallelAction(l) => {
                let (actions, log_source) = list(l);
                A::ParallelAction(pb::ParallelAction { actions, log_source })
            }
            Action::SerialAction(l) => {
                let (actions, log_source) = list(l);
                A::SerialAction(pb::SerialAction { actions, log_source })
            }
            Action::CodependentAction(l) => {
                let (actions, log_source) = list(l);
                A::CodependentAction(pb::CodependentAction { actions, log_source })
            }
        };
        pb::Action { action: Some(action) }
    }
}

impl Action {
    /// The mirror of a stored action; `None` when the oneof is empty (or an inner action is).
    pub fn from_pb(action: pb::Action) -> Option<Action> {
        use pb::action::Action as A;
        let inner = |a: Option<Box<pb::Action>>| a.and_then(|a| Action::from_pb(*a));
        let list = |actions: Vec<pb::Action>, log_source| ListAction {
            actions: actions.into_iter().filter_map(Action::from_pb).collect(),
            log_source,
        };
        Some(match action.action? {
            A::RunAction(r) => Action::RunAction(RunAction {
                path: r.path,
                args: r.args,
                dir: r.dir,
                env: r.env.into_iter().map(Into::into).collect(),
                resource_limits: r.resource_limits.map(|l| ResourceLimits { nofile: l.nofile, nproc: l.nproc }),
                user: r.user,
                log_source: r.log_source,
                suppress_log_output: r.suppress_log_output,
            }),
            A::DownloadAction(d) => Action::DownloadAction(DownloadAction {
                artifact: d.artifact,
                from: d.from,
                to: d.to,
                cache_key: d.cache_key,
                log_source: d.log_source,
                user: d.user,
                checksum_algorithm: d.checksum_algorithm,
                checksum_value: d.checksum_value,
            }),
            A::UploadAction(u) => Action::UploadAction(UploadAction {
                artifact: u.artifact,
                from: u.from,
                to: u.to,
                log_source: u.log_source,
                user: u.user,
            }),
            A::TimeoutAction(t) => Action::TimeoutAction(Box::new(TimeoutAction {
                action: inner(t.action)?,
                timeout_ms: t.timeout_ms,
                log_source: t.log_source,
            })),
            A::EmitProgressAction(e) => Action::EmitProgressAction(Box::new(EmitProgressAction {
                action: inner(e.action)?,
                start_message: e.start_message,
                success_message: e.success_message,
                failure_message_prefix: e.failure_message_prefix,
                log_source: e.log_source,
            })),
            A::TryAction(t) => {
                Action::TryAction(Box::new(TryAction { action: inner(t.action)?, log_source: t.log_source }))
            }
            A::ParallelAction(p) => Action::ParallelAction(list(p.actions, p.log_source)),
            A::SerialAction(s) => Action::SerialAction(list(s.actions, s.log_source)),
            A::CodependentAction(c) => Action::CodependentAction(list(c.actions, c.log_source)),
        })
    }

    /// A one-line summary for people: the command line of the first run action, or the kind.
    pub fn summary(&self) -> String {
        match self {
            Action::RunAction(r) => {
                std::iter::once(r.path.as_str()).chain(r.args.iter().map(String::as_str)).collect::<Vec<_>>().join(" ")
            }
            Action::TimeoutAction(t) => t.action.summary(),
            Action::EmitProgressAction(e) => e.action.summary(),
            Action::TryAction(t) => t.action.summary(),
            Action::ParallelAction(l) | Action::SerialAction(l) | Action::CodependentAction(l) => {
                l.actions.iter().map(Action::summary).collect::<Vec<_>>().join("; ")
            }
            Action::DownloadAction(d) => format!("download {}", d.from),
            Action::UploadAction(u) => format!("upload {}", u.from),
        }
    }
}

/// A TCP health check.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TcpCheck {
    /// The container port to connect to.
    pub port: u32,
    /// Connect timeout in milliseconds (0: the rep's default).
    #[serde(skip_serializing_if = "is_default")]
    pub connect_timeout_ms: u64,
    /// Interval in milliseconds (0: the rep's default).
    #[serde(skip_serializing_if = "is_default")]
    pub interval_ms: u64,
}

/// An HTTP health check (healthy on a 200).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpCheck {
    /// The container port to request.
    pub port: u32,
    /// Request timeout in milliseconds (0: the rep's default).
    #[serde(skip_serializing_if = "is_default")]
    pub request_timeout_ms: u64,
    /// The path to request.
    pub path: String,
    /// Interval in milliseconds (0: the rep's default).
    #[serde(skip_serializing_if = "is_default")]
    pub interval_ms: u64,
}

/// One check: `{"tcp_check": {...}}` or `{"http_check": {...}}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Check {
    /// A TCP check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_check: Option<TcpCheck>,
    /// An HTTP check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_check: Option<HttpCheck>,
}

/// Liveness and readiness checks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckDefinition {
    /// Liveness checks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
    /// Log source name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub log_source: String,
    /// Readiness checks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub readiness_checks: Vec<Check>,
}

impl From<Check> for pb::Check {
    fn from(check: Check) -> Self {
        pb::Check {
            tcp_check: check.tcp_check.map(|t| pb::TcpCheck {
                port: t.port,
                connect_timeout_ms: t.connect_timeout_ms,
                interval_ms: t.interval_ms,
            }),
            http_check: check.http_check.map(|h| pb::HttpCheck {
                port: h.port,
                request_timeout_ms: h.request_timeout_ms,
                path: h.path,
                interval_ms: h.interval_ms,
            }),
        }
    }
}

impl From<pb::Check> for Check {
    fn from(check: pb::Check) -> Self {
        Check {
            tcp_check: check.tcp_check.map(|t| TcpCheck {
                port: t.port,
                connect_timeout_ms: t.connect_timeout_ms,
                interval_ms: t.interval_ms,
            }),
            http_check: check.http_check.map(|h| HttpCheck {
                port: h.port,
                request_timeout_ms: h.request_timeout_ms,
                path: h.path,
                interval_ms: h.interval_ms,
            }),
        }
    }
}

impl From<CheckDefinition> for pb::CheckDefinition {
    fn from(def: CheckDefinition) -> Self {
        pb::CheckDefinition {
            checks: def.checks.into_iter().map(Into::into).collect(),
            log_source: def.log_source,
            readiness_checks: def.readiness_checks.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<pb::CheckDefinition> for CheckDefinition {
    fn from(def: pb::CheckDefinition) -> Self {
        CheckDefinition {
            checks: def.checks.into_iter().map(Into::into).collect(),
            log_source: def.log_source,
            readiness_checks: def.readiness_checks.into_iter().map(Into::into).collect(),
        }
    }
}

impl CheckDefinition {
    /// A one-line summary for people: `tcp 8080`, `http 8080/health`, or `none`.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .checks
            .iter()
            .map(|c| match (&c.tcp_check, &c.http_check) {
                (Some(t), _) => format!("tcp {}", t.port),
                (None, Some(h)) => format!("http {}{}", h.port, h.path),
                (None, None) => "empty check".to_owned(),
            })
            .collect();
        if parts.is_empty() { "none".to_owned() } else { parts.join(", ") }
    }
}
