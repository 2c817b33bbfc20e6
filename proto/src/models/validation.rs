//! Validation that names the field and the rule broken (`process_guid must match
//! [A-Za-z0-9_-]+`). Everything [`crate::convert`] builds from the wire passes through here, so a
//! domain value in hand is a valid one.
//!
//! Validators return the first broken rule. Diego's Go validators collect every error; one is
//! enough for a client to fix its request, and it keeps messages exact and testable.
//!
//! - `action`: action trees and health checks.
//! - `runtime`: the run-time pieces shared by desired LRPs and tasks (egress rules, volume
//!   mounts, cached dependencies, image layers, credentials, files, sidecars).
//! - `desired`: run info, scheduling info, metric tags and updates of desired LRPs.
//! - `task`: task definitions and task envelopes.
//! - `lrp`: the actual LRP invariants of bbs.md 2.2.
//! - `cell`: cell presences.
//!
//! Not here: identifier syntax (the newtypes in `models/ids.rs` parse themselves) and the wire
//! conversions (in [`crate::convert`]).

/// Declares a test that a good value passes `$validate` and that the value after `$mutate`
/// fails with exactly `$message`.
#[cfg(test)]
macro_rules! rule_test {
    ($name:ident: $validate:expr, $good:expr, |$v:ident| $mutate:expr => $message:expr) => {
        #[test]
        fn $name() {
            let good = $good;
            assert_eq!($validate(&good), Ok(()), "the good value must pass");
            #[allow(unused_mut)]
            let mut $v = good;
            $mutate;
            assert_eq!($validate(&$v).map_err(|e| e.to_string()), Err(String::from($message)));
        }
    };
}

mod action;
mod cell;
mod desired;
mod lrp;
mod runtime;
mod task;

pub use action::{validate_action, validate_check_definition};
pub use cell::validate_cell_presence;
pub(crate) use desired::check_pb_metric_tag;
pub use desired::{
    validate_desired_metric_tags, validate_metric_tag_value, validate_run_info, validate_scheduling_info,
    validate_update,
};
pub use lrp::validate_actual_lrp;
pub use runtime::{validate_egress_rule, validate_image_credentials};
pub use task::{validate_task, validate_task_definition};

use super::ValidationError;

/// Deepest action tree accepted, so a hostile tree cannot exhaust the stack while being walked
/// (one row of the limits table).
pub use crate::limits::MAX_ACTION_DEPTH;
/// Largest annotation, in bytes (Diego's `maximumAnnotationLength`).
pub const MAX_ANNOTATION_BYTES: usize = 10 * 1024;
/// Largest total size of a route map's values, in bytes (Diego's `maximumRouteLength`).
pub const MAX_ROUTES_BYTES: usize = 128 * 1024;
/// Largest total content of volume-mounted files, in bytes.
pub const MAX_VOLUME_MOUNTED_FILES_BYTES: usize = 1024 * 1024;
/// Longest crash reason, placement error, failure reason or rejection reason, in characters.
pub const MAX_REASON_CHARS: usize = 1024;

/// The suffix [`truncate_reason`] appends to a reason it cut.
const TRUNCATED_SUFFIX: &str = " (truncated)";

/// `reason` cut to at most [`MAX_REASON_CHARS`] characters. A longer reason is cut on a character
/// boundary and ends with `" (truncated)"`, the whole still within the limit. Used for crash
/// reasons, placement errors, failure reasons and rejection reasons before they are stored.
pub fn truncate_reason(reason: &str) -> String {
    if reason.chars().count() <= MAX_REASON_CHARS {
        return reason.to_owned();
    }
    let keep = MAX_REASON_CHARS.saturating_sub(TRUNCATED_SUFFIX.chars().count());
    let cut = reason.char_indices().nth(keep).map_or(reason.len(), |(at, _)| at);
    let mut truncated = reason.get(..cut).unwrap_or_default().to_owned();
    truncated.push_str(TRUNCATED_SUFFIX);
    truncated
}

/// Whether `url` starts with a URL scheme (`preloaded:`, `docker://`, `preloaded+layer:`), the
/// way Go's `url.Parse` finds one: a letter, then letters, digits, `+`, `-` or `.`, then `:`.
pub(crate) fn has_url_scheme(url: &str) -> bool {
    let Some((scheme, _)) = url.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|first| first.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// `field` must be `>= 0`.
pub(crate) fn non_negative(field: &str, value: i32) -> Result<(), ValidationError> {
    if value < 0 {
        return Err(ValidationError::new(field, "must be >= 0"));
    }
    Ok(())
}

/// `field` must be a non-empty URL with a scheme.
pub(crate) fn check_rootfs(field: &str, rootfs: &str) -> Result<(), ValidationError> {
    if rootfs.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if !has_url_scheme(rootfs) {
        return Err(ValidationError::new(field, "must be a url with a scheme"));
    }
    Ok(())
}

/// `annotation` must fit [`MAX_ANNOTATION_BYTES`].
pub(crate) fn check_annotation(annotation: &str) -> Result<(), ValidationError> {
    if annotation.len() > MAX_ANNOTATION_BYTES {
        return Err(ValidationError::new("annotation", "must be at most 10240 bytes"));
    }
    Ok(())
}

/// The route values must total at most [`MAX_ROUTES_BYTES`]. Mirrors Diego, which sums the
/// values (the opaque JSON) and not the provider names.
pub(crate) fn check_routes<'a>(values: impl IntoIterator<Item = &'a Vec<u8>>) -> Result<(), ValidationError> {
    let total = values.into_iter().fold(0_usize, |sum, value| sum.saturating_add(value.len()));
    if total > MAX_ROUTES_BYTES {
        return Err(ValidationError::new("routes", "must total at most 131072 bytes"));
    }
    Ok(())
}

/// `field` must be at most [`MAX_REASON_CHARS`] characters.
pub(crate) fn check_reason(field: &str, reason: &str) -> Result<(), ValidationError> {
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(ValidationError::new(field, "must be at most 1024 characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_reason_is_kept_as_is() {
        assert_eq!(truncate_reason("exit status 1"), "exit status 1");
        let exactly = "x".repeat(MAX_REASON_CHARS);
        assert_eq!(truncate_reason(&exactly), exactly);
    }

    #[test]
    fn a_long_reason_is_cut_to_the_limit_with_a_suffix() {
        let long = "x".repeat(MAX_REASON_CHARS + 1);
        let cut = truncate_reason(&long);
        assert_eq!(cut.chars().count(), MAX_REASON_CHARS);
        assert!(cut.ends_with("x (truncated)"));
        assert_eq!(cut.get(..1012), Some("x".repeat(1012).as_str()));
    }

    #[test]
    fn truncation_cuts_multibyte_text_on_a_char_boundary() {
        let long = "é".repeat(2000);
        let cut = truncate_reason(&long);
        assert_eq!(cut.chars().count(), MAX_REASON_CHARS);
        assert_eq!(cut, format!("{}{TRUNCATED_SUFFIX}", "é".repeat(1012)));
        assert!(check_reason("crash_reason", &cut).is_ok());
    }

    #[test]
    fn url_schemes_follow_go_url_parse() {
        for good in ["preloaded:cflinuxfs4", "docker:///cloudfoundry/grace", "preloaded+layer:x", "extra:y"] {
            assert!(has_url_scheme(good), "{good}");
        }
        for bad in ["", "cflinuxfs4", "/abs/path", ":nothing", "1abc:x", "do cker:x"] {
            assert!(!has_url_scheme(bad), "{bad}");
        }
    }

    #[test]
    fn rootfs_must_be_present_and_have_a_scheme() {
        assert_eq!(check_rootfs("rootfs", "preloaded:busybox"), Ok(()));
        assert_eq!(check_rootfs("rootfs", "").unwrap_err().to_string(), "rootfs must not be empty");
        assert_eq!(check_rootfs("rootfs", "busybox").unwrap_err().to_string(), "rootfs must be a url with a scheme");
    }

    #[test]
    fn annotation_is_limited_to_ten_kib() {
        assert_eq!(check_annotation(&"a".repeat(MAX_ANNOTATION_BYTES)), Ok(()));
        assert_eq!(
            check_annotation(&"a".repeat(MAX_ANNOTATION_BYTES + 1)).unwrap_err().to_string(),
            "annotation must be at most 10240 bytes"
        );
    }

    #[test]
    fn routes_are_limited_to_128_kib_in_total() {
        let half = vec![b'x'; MAX_ROUTES_BYTES / 2];
        assert_eq!(check_routes([&half, &half]), Ok(()));
        let one_more = vec![b'x'; 1];
        assert_eq!(
            check_routes([&half, &half, &one_more]).unwrap_err().to_string(),
            "routes must total at most 131072 bytes"
        );
    }

    #[test]
    fn reasons_longer_than_1024_chars_are_refused() {
        assert_eq!(check_reason("failure_reason", &"r".repeat(1024)), Ok(()));
        assert_eq!(
            check_reason("failure_reason", &"r".repeat(1025)).unwrap_err().to_string(),
            "failure_reason must be at most 1024 characters"
        );
    }

    #[test]
    fn negative_resources_are_refused() {
        assert_eq!(non_negative("memory_mb", 0), Ok(()));
        assert_eq!(non_negative("memory_mb", -1).unwrap_err().to_string(), "memory_mb must be >= 0");
    }
}
