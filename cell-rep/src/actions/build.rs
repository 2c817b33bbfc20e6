//! Small constructors of proto actions and checks, for tests and for callers that build run
//! requests by hand. Each returns a complete `pb::Action` / `pb::Check`.

use proto::pb::models::v1 as pb;

fn wrap(action: pb::action::Action) -> pb::Action {
    pb::Action { action: Some(action) }
}

/// A run action of `path` with `args`.
pub fn run(path: &str, args: &[&str]) -> pb::Action {
    wrap(pb::action::Action::RunAction(pb::RunAction {
        path: path.into(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        ..pb::RunAction::default()
    }))
}

/// `/bin/sh -c <script>`.
pub fn sh(script: &str) -> pb::Action {
    run("/bin/sh", &["-c", script])
}

/// A run action with its own environment and log source.
pub fn run_with(path: &str, args: &[&str], env: &[(&str, &str)], log_source: &str) -> pb::Action {
    wrap(pb::action::Action::RunAction(pb::RunAction {
        path: path.into(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        env: env.iter().map(|(n, v)| pb::EnvironmentVariable { name: (*n).into(), value: (*v).into() }).collect(),
        log_source: log_source.into(),
        ..pb::RunAction::default()
    }))
}

/// A download of `from` to `to`, with an optional `(algorithm, value)` checksum.
pub fn download(from: &str, to: &str, checksum: Option<(&str, &str)>) -> pb::Action {
    let (algorithm, value) = checksum.unwrap_or(("", ""));
    wrap(pb::action::Action::DownloadAction(pb::DownloadAction {
        from: from.into(),
        to: to.into(),
        checksum_algorithm: algorithm.into(),
        checksum_value: value.into(),
        ..pb::DownloadAction::default()
    }))
}

/// `action` bounded by `timeout_ms`.
pub fn timeout(action: pb::Action, timeout_ms: i64) -> pb::Action {
    wrap(pb::action::Action::TimeoutAction(Box::new(pb::TimeoutAction {
        action: Some(Box::new(action)),
        timeout_ms,
        log_source: String::new(),
    })))
}

/// `action` whose failure is ignored.
pub fn try_(action: pb::Action) -> pb::Action {
    wrap(pb::action::Action::TryAction(Box::new(pb::TryAction {
        action: Some(Box::new(action)),
        log_source: String::new(),
    })))
}

/// `actions` one after the other.
pub fn serial(actions: Vec<pb::Action>) -> pb::Action {
    wrap(pb::action::Action::SerialAction(pb::SerialAction { actions, log_source: String::new() }))
}

/// `actions` at once, all to their end.
pub fn parallel(actions: Vec<pb::Action>) -> pb::Action {
    wrap(pb::action::Action::ParallelAction(pb::ParallelAction { actions, log_source: String::new() }))
}

/// `actions` at once; the first exit ends the others.
pub fn codependent(actions: Vec<pb::Action>) -> pb::Action {
    wrap(pb::action::Action::CodependentAction(pb::CodependentAction { actions, log_source: String::new() }))
}

/// `action` with progress messages.
pub fn emit_progress(action: pb::Action, start: &str, success: &str, failure_prefix: &str) -> pb::Action {
    wrap(pb::action::Action::EmitProgressAction(Box::new(pb::EmitProgressAction {
        action: Some(Box::new(action)),
        start_message: start.into(),
        success_message: success.into(),
        failure_message_prefix: failure_prefix.into(),
        log_source: String::new(),
    })))
}

/// A TCP check of container port `port` with `interval_ms` (0 = default) and `timeout_ms`.
pub fn tcp_check(port: u32, interval_ms: u64, timeout_ms: u64) -> pb::Check {
    pb::Check { tcp_check: Some(pb::TcpCheck { port, connect_timeout_ms: timeout_ms, interval_ms }), http_check: None }
}

/// An HTTP check of `path` on container port `port`.
pub fn http_check(port: u32, path: &str, interval_ms: u64, timeout_ms: u64) -> pb::Check {
    pb::Check {
        tcp_check: None,
        http_check: Some(pb::HttpCheck { port, request_timeout_ms: timeout_ms, path: path.into(), interval_ms }),
    }
}
