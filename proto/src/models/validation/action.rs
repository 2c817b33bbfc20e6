//! Action trees and health checks. Mirrors the `Validate` methods of cloudfoundry/bbs
//! `models/actions.go` and `models/check_definition.go`.

use super::MAX_ACTION_DEPTH;
use super::runtime::check_env;
use crate::limits::MAX_ENV_BYTES;
use crate::models::ValidationError;
use crate::pb::models::v1 as pb;
use pb::action::Action as Variant;

/// Validates an action tree: every node sets exactly one variant, run actions have a path,
/// downloads and uploads have `from` and `to`, timeouts wrap an action with `timeout_ms > 0`,
/// serial / parallel / codependent actions have valid children, and the tree is at most
/// [`MAX_ACTION_DEPTH`] levels deep. Error fields start with `action`
/// (`action.serial_action.actions[1].run_action.path must not be empty`).
pub fn validate_action(action: &pb::Action) -> Result<(), ValidationError> {
    check_action_tree(action, "action")
}

/// [`validate_action`] with the error fields rooted at `path` (`setup`, `sidecars[0].action`).
pub(crate) fn check_action_tree(action: &pb::Action, path: &str) -> Result<(), ValidationError> {
    // Bound the depth first with a walk that stops at the limit, so the recursive walk below
    // never goes deeper than MAX_ACTION_DEPTH.
    if deeper_than(action, MAX_ACTION_DEPTH) {
        return Err(ValidationError::new(path, format!("must not nest more than {MAX_ACTION_DEPTH} actions deep")));
    }
    check_action(action, path)
}

/// The nested actions of `action`.
fn children(action: &pb::Action) -> &[pb::Action] {
    match &action.action {
        Some(Variant::TimeoutAction(a)) => a.action.as_deref().map_or(&[], std::slice::from_ref),
        Some(Variant::EmitProgressAction(a)) => a.action.as_deref().map_or(&[], std::slice::from_ref),
        Some(Variant::TryAction(a)) => a.action.as_deref().map_or(&[], std::slice::from_ref),
        Some(Variant::ParallelAction(a)) => &a.actions,
        Some(Variant::SerialAction(a)) => &a.actions,
        Some(Variant::CodependentAction(a)) => &a.actions,
        Some(Variant::DownloadAction(_) | Variant::UploadAction(_) | Variant::RunAction(_)) | None => &[],
    }
}

/// Whether the tree under `action` has more than `levels` levels. Recurses at most `levels` deep.
fn deeper_than(action: &pb::Action, levels: usize) -> bool {
    match levels.checked_sub(1) {
        None => true,
        Some(rest) => children(action).iter().any(|child| deeper_than(child, rest)),
    }
}

/// `field` must not be empty.
fn required(path: &str, field: &str, value: &str) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::new(format!("{path}.{field}"), "must not be empty"));
    }
    Ok(())
}

/// A checksum is optional, but an algorithm needs a value and a value needs a known algorithm
/// (md5, sha1, sha256). Shared with cached dependencies. Mirrors `validateChecksumAlgorithm`.
pub(crate) fn check_checksum(algorithm: &str, value: &str) -> Result<(), ValidationError> {
    if algorithm.is_empty() && value.is_empty() {
        return Ok(());
    }
    if value.is_empty() {
        return Err(ValidationError::new("checksum_value", "must be set when checksum_algorithm is set"));
    }
    if !matches!(algorithm.to_ascii_lowercase().as_str(), "md5" | "sha1" | "sha256") {
        return Err(ValidationError::new("checksum_algorithm", "must be one of md5, sha1, sha256"));
    }
    Ok(())
}

/// The wrapped action of a timeout, emit-progress or try action.
fn check_wrapped(inner: Option<&pb::Action>, path: &str) -> Result<(), ValidationError> {
    let path = format!("{path}.action");
    match inner {
        None => Err(ValidationError::new(path, "is required")),
        Some(inner) => check_action(inner, &path),
    }
}

/// The children of a serial, parallel or codependent action: at least one, each valid.
fn check_list(actions: &[pb::Action], path: &str) -> Result<(), ValidationError> {
    if actions.is_empty() {
        return Err(ValidationError::new(format!("{path}.actions"), "must not be empty"));
    }
    for (i, child) in actions.iter().enumerate() {
        check_action(child, &format!("{path}.actions[{i}]"))?;
    }
    Ok(())
}

/// One node and its subtree; the depth is already bounded by [`check_action_tree`].
fn check_action(action: &pb::Action, path: &str) -> Result<(), ValidationError> {
    match &action.action {
        None => Err(ValidationError::new(path, "must set one of its action variants")),
        Some(Variant::DownloadAction(a)) => {
            let path = format!("{path}.download_action");
            required(&path, "from", &a.from)?;
            required(&path, "to", &a.to)?;
            check_checksum(&a.checksum_algorithm, &a.checksum_value).map_err(|e| e.within(&path))
        }
        Some(Variant::UploadAction(a)) => {
            let path = format!("{path}.upload_action");
            required(&path, "from", &a.from)?;
            required(&path, "to", &a.to)
        }
        Some(Variant::RunAction(a)) => {
            let path = format!("{path}.run_action");
            required(&path, "path", &a.path)?;
            check_env(&format!("{path}.env"), &a.env)?;
            let args = a.args.iter().fold(a.path.len() + 1, |sum, arg| sum.saturating_add(arg.len() + 1));
            if args > MAX_ENV_BYTES {
                return Err(ValidationError::new(
                    format!("{path}.args"),
                    format!("must total at most {MAX_ENV_BYTES} bytes"),
                ));
            }
            Ok(())
        }
        Some(Variant::TimeoutAction(a)) => {
            let path = format!("{path}.timeout_action");
            check_wrapped(a.action.as_deref(), &path)?;
            if a.timeout_ms <= 0 {
                return Err(ValidationError::new(format!("{path}.timeout_ms"), "must be > 0"));
            }
            Ok(())
        }
        Some(Variant::EmitProgressAction(a)) => {
            check_wrapped(a.action.as_deref(), &format!("{path}.emit_progress_action"))
        }
        Some(Variant::TryAction(a)) => check_wrapped(a.action.as_deref(), &format!("{path}.try_action")),
        Some(Variant::ParallelAction(a)) => check_list(&a.actions, &format!("{path}.parallel_action")),
        Some(Variant::SerialAction(a)) => check_list(&a.actions, &format!("{path}.serial_action")),
        Some(Variant::CodependentAction(a)) => check_list(&a.actions, &format!("{path}.codependent_action")),
    }
}

/// Validates a check definition: each liveness and readiness check sets exactly one of
/// `tcp_check` and `http_check`, its port is 1..=65535, and an HTTP check has a path. Error
/// fields are relative (`checks[0].http_check.path`); callers prefix `check_definition`.
pub fn validate_check_definition(definition: &pb::CheckDefinition) -> Result<(), ValidationError> {
    for (i, check) in definition.checks.iter().enumerate() {
        check_check(check, &format!("checks[{i}]"))?;
    }
    for (i, check) in definition.readiness_checks.iter().enumerate() {
        check_check(check, &format!("readiness_checks[{i}]"))?;
    }
    Ok(())
}

/// A port a check connects to.
fn check_port(path: &str, port: u32) -> Result<(), ValidationError> {
    if !(1..=65535).contains(&port) {
        return Err(ValidationError::new(format!("{path}.port"), "must be between 1 and 65535"));
    }
    Ok(())
}

/// One check.
fn check_check(check: &pb::Check, path: &str) -> Result<(), ValidationError> {
    match (&check.tcp_check, &check.http_check) {
        (Some(tcp), None) => check_port(&format!("{path}.tcp_check"), tcp.port),
        (None, Some(http)) => {
            let path = format!("{path}.http_check");
            check_port(&path, http.port)?;
            required(&path, "path", &http.path)
        }
        _ => Err(ValidationError::new(path, "must set exactly one of tcp_check and http_check")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(path: &str) -> pb::Action {
        pb::Action {
            action: Some(Variant::RunAction(pb::RunAction {
                path: path.into(),
                args: vec!["-c".into(), "echo hi".into()],
                ..Default::default()
            })),
        }
    }

    fn download(from: &str, to: &str) -> pb::Action {
        pb::Action {
            action: Some(Variant::DownloadAction(pb::DownloadAction {
                from: from.into(),
                to: to.into(),
                cache_key: "droplet".into(),
                ..Default::default()
            })),
        }
    }

    fn timeout(inner: Option<pb::Action>, timeout_ms: i64) -> pb::Action {
        pb::Action {
            action: Some(Variant::TimeoutAction(Box::new(pb::TimeoutAction {
                action: inner.map(Box::new),
                timeout_ms,
                log_source: String::new(),
            }))),
        }
    }

    fn serial(actions: Vec<pb::Action>) -> pb::Action {
        pb::Action { action: Some(Variant::SerialAction(pb::SerialAction { actions, log_source: String::new() })) }
    }

    fn message(result: Result<(), ValidationError>) -> String {
        result.err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn a_realistic_tree_is_valid() {
        let tree = serial(vec![
            download("http://file-server/droplet.tgz", "/home/vcap"),
            timeout(Some(run("/bin/sh")), 30_000),
            pb::Action {
                action: Some(Variant::CodependentAction(pb::CodependentAction {
                    actions: vec![run("/bin/a"), run("/bin/b")],
                    log_source: String::new(),
                })),
            },
        ]);
        assert_eq!(validate_action(&tree), Ok(()));
    }

    #[test]
    fn an_action_must_set_a_variant() {
        assert_eq!(
            message(validate_action(&pb::Action { action: None })),
            "action must set one of its action variants"
        );
    }

    #[test]
    fn a_run_action_needs_a_path() {
        assert_eq!(validate_action(&run("/bin/sh")), Ok(()));
        assert_eq!(message(validate_action(&run(""))), "action.run_action.path must not be empty");
    }

    #[test]
    fn a_download_needs_from_and_to() {
        assert_eq!(validate_action(&download("http://x", "/tmp")), Ok(()));
        assert_eq!(message(validate_action(&download("", "/tmp"))), "action.download_action.from must not be empty");
        assert_eq!(message(validate_action(&download("http://x", ""))), "action.download_action.to must not be empty");
    }

    #[test]
    fn a_download_checksum_needs_a_known_algorithm_and_a_value() {
        let with_checksum = |algorithm: &str, value: &str| pb::Action {
            action: Some(Variant::DownloadAction(pb::DownloadAction {
                from: "http://x".into(),
                to: "/tmp".into(),
                checksum_algorithm: algorithm.into(),
                checksum_value: value.into(),
                ..Default::default()
            })),
        };
        assert_eq!(validate_action(&with_checksum("sha256", "abc")), Ok(()));
        assert_eq!(
            message(validate_action(&with_checksum("sha256", ""))),
            "action.download_action.checksum_value must be set when checksum_algorithm is set"
        );
        assert_eq!(
            message(validate_action(&with_checksum("crc32", "abc"))),
            "action.download_action.checksum_algorithm must be one of md5, sha1, sha256"
        );
        assert_eq!(
            message(validate_action(&with_checksum("", "abc"))),
            "action.download_action.checksum_algorithm must be one of md5, sha1, sha256"
        );
    }

    #[test]
    fn an_upload_needs_from_and_to() {
        let upload = |from: &str, to: &str| pb::Action {
            action: Some(Variant::UploadAction(pb::UploadAction {
                from: from.into(),
                to: to.into(),
                ..Default::default()
            })),
        };
        assert_eq!(validate_action(&upload("/tmp/out", "http://x")), Ok(()));
        assert_eq!(message(validate_action(&upload("", "http://x"))), "action.upload_action.from must not be empty");
        assert_eq!(message(validate_action(&upload("/tmp/out", ""))), "action.upload_action.to must not be empty");
    }

    #[test]
    fn a_timeout_needs_an_action_and_a_positive_timeout() {
        assert_eq!(validate_action(&timeout(Some(run("/bin/sh")), 1)), Ok(()));
        assert_eq!(message(validate_action(&timeout(None, 1))), "action.timeout_action.action is required");
        assert_eq!(
            message(validate_action(&timeout(Some(run("/bin/sh")), 0))),
            "action.timeout_action.timeout_ms must be > 0"
        );
    }

    #[test]
    fn try_and_emit_progress_need_a_valid_action() {
        let try_action = |inner: Option<pb::Action>| pb::Action {
            action: Some(Variant::TryAction(Box::new(pb::TryAction {
                action: inner.map(Box::new),
                log_source: String::new(),
            }))),
        };
        assert_eq!(validate_action(&try_action(Some(run("/bin/sh")))), Ok(()));
        assert_eq!(message(validate_action(&try_action(None))), "action.try_action.action is required");
        let emit = pb::Action {
            action: Some(Variant::EmitProgressAction(Box::new(pb::EmitProgressAction {
                action: Some(Box::new(run(""))),
                start_message: "starting".into(),
                ..Default::default()
            }))),
        };
        assert_eq!(
            message(validate_action(&emit)),
            "action.emit_progress_action.action.run_action.path must not be empty"
        );
    }

    #[test]
    fn a_list_action_needs_valid_children() {
        assert_eq!(message(validate_action(&serial(vec![]))), "action.serial_action.actions must not be empty");
        let parallel = pb::Action {
            action: Some(Variant::ParallelAction(pb::ParallelAction {
                actions: vec![run("/bin/sh"), download("", "/tmp")],
                log_source: String::new(),
            })),
        };
        assert_eq!(
            message(validate_action(&parallel)),
            "action.parallel_action.actions[1].download_action.from must not be empty"
        );
    }

    #[test]
    fn a_tree_deeper_than_the_limit_is_refused() {
        let mut at_limit = run("/bin/sh");
        for _ in 1..MAX_ACTION_DEPTH {
            at_limit = timeout(Some(at_limit), 1);
        }
        assert_eq!(validate_action(&at_limit), Ok(()));
        let too_deep = serial(vec![at_limit]);
        assert_eq!(
            message(validate_action(&too_deep)),
            format!("action must not nest more than {MAX_ACTION_DEPTH} actions deep")
        );
    }

    #[test]
    fn a_hostile_deep_tree_is_refused_without_exhausting_the_stack() {
        let mut deep = run("/bin/sh");
        for _ in 0..10_000 {
            deep = serial(vec![deep]);
        }
        assert_eq!(
            message(check_action_tree(&deep, "setup")),
            format!("setup must not nest more than {MAX_ACTION_DEPTH} actions deep")
        );
        // Dropping a 10 000-deep Box chain recurses in the generated Drop; unwind it by hand.
        let mut node = deep;
        while let Some(Variant::SerialAction(mut s)) = node.action.take() {
            match s.actions.pop() {
                Some(next) => node = next,
                None => break,
            }
        }
    }

    fn tcp(port: u32) -> pb::Check {
        pb::Check {
            tcp_check: Some(pb::TcpCheck { port, connect_timeout_ms: 1000, interval_ms: 500 }),
            http_check: None,
        }
    }

    fn http(port: u32, path: &str) -> pb::Check {
        pb::Check {
            tcp_check: None,
            http_check: Some(pb::HttpCheck { port, request_timeout_ms: 1000, path: path.into(), interval_ms: 500 }),
        }
    }

    fn definition(checks: Vec<pb::Check>, readiness_checks: Vec<pb::Check>) -> pb::CheckDefinition {
        pb::CheckDefinition { checks, log_source: "HEALTH".into(), readiness_checks }
    }

    #[test]
    fn valid_checks_pass() {
        let def = definition(vec![tcp(8080), http(8080, "/health")], vec![http(8081, "/ready")]);
        assert_eq!(validate_check_definition(&def), Ok(()));
    }

    #[test]
    fn a_check_must_set_exactly_one_kind() {
        let both = pb::Check { tcp_check: tcp(1).tcp_check, http_check: http(1, "/").http_check };
        assert_eq!(
            message(validate_check_definition(&definition(vec![both], vec![]))),
            "checks[0] must set exactly one of tcp_check and http_check"
        );
        assert_eq!(
            message(validate_check_definition(&definition(vec![], vec![pb::Check::default()]))),
            "readiness_checks[0] must set exactly one of tcp_check and http_check"
        );
    }

    #[test]
    fn a_check_port_must_be_a_real_port() {
        assert_eq!(
            message(validate_check_definition(&definition(vec![tcp(0)], vec![]))),
            "checks[0].tcp_check.port must be between 1 and 65535"
        );
        assert_eq!(
            message(validate_check_definition(&definition(vec![http(70000, "/")], vec![]))),
            "checks[0].http_check.port must be between 1 and 65535"
        );
    }

    #[test]
    fn an_http_check_needs_a_path() {
        assert_eq!(
            message(validate_check_definition(&definition(vec![tcp(1), http(8080, "")], vec![]))),
            "checks[1].http_check.path must not be empty"
        );
    }
}
