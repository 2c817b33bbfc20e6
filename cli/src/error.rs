//! The CLI's one error type and its exit codes, which scripts rely on:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | the BBS refused the request (the Diego error type and message are printed) |
//! | 2 | usage or invalid input: a bad flag (clap's own), an unreadable, unwritable or invalid file, a missing CA, more than the cluster can hold, a change needing a rolling update |
//! | 3 | the BBS could not be reached, did not answer in time, or ended an event stream |

use proto::error::{ERROR_METADATA_KEY, ErrorCode};

/// Exit code: the BBS refused the request.
pub const EXIT_REFUSED: u8 = 1;
/// Exit code: usage error or invalid input (also clap's own code for bad flags).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the BBS is unreachable.
pub const EXIT_UNREACHABLE: u8 = 3;

/// Why a command failed. Every message is one line that says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The BBS answered with an error: `kind` is the Diego error type (`ResourceNotFound`).
    #[error("{kind}: {message}")]
    Refused {
        /// The Diego error type, or the gRPC code when the server sent none.
        kind: String,
        /// The server's message, with a hint appended when one helps.
        message: String,
    },
    /// No connection to the BBS could be made, or it broke.
    #[error("cannot reach the bbs at {address}: {reason}; start one with 'diego dev' or set --bbs-address")]
    Unreachable {
        /// The address tried.
        address: String,
        /// The lowest-level cause (`connection refused`).
        reason: String,
    },
    /// An event stream ended without a Diego error: the BBS stopped, or stopped leading.
    #[error("lost the event stream of the bbs at {address}: {reason}")]
    StreamEnded {
        /// The address subscribed to.
        address: String,
        /// Why it ended, as far as known.
        reason: String,
    },
    /// The BBS did not answer in time.
    #[error("the bbs at {address} did not answer within {seconds} s; check that it is running and reachable")]
    Timeout {
        /// The address tried.
        address: String,
        /// The deadline.
        seconds: u64,
    },
    /// `--bbs-address` is not `host:port`.
    #[error("invalid bbs address {address:?}: {reason}")]
    InvalidAddress {
        /// The address given.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An input file cannot be read.
    #[error("cannot read {path}: {reason}")]
    ReadFile {
        /// The file.
        path: String,
        /// The IO error.
        reason: String,
    },
    /// An input file is not a valid desired LRP.
    #[error("invalid desired lrp file {path}: {reason}")]
    ParseFile {
        /// The file.
        path: String,
        /// The parser's error, with line and column.
        reason: String,
    },
    /// A state file (`diego apply -f`) is not valid: `reason` names the entry.
    #[error("invalid state file {path}: {reason}")]
    StateFile {
        /// The file.
        path: String,
        /// What is wrong, and in which entry.
        reason: String,
    },
    /// `diego apply` left some desired LRPs as they were: their run info differs from the
    /// file's, which needs a rolling update (`--replace` removes and desires them again).
    #[error("{0}")]
    ApplyRefused(String),
    /// A flag's value is invalid in a way clap cannot check.
    #[error("invalid {flag}: {reason}")]
    InvalidFlag {
        /// The flag (`--env`).
        flag: &'static str,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// The cluster cannot hold what was asked for (`--force` asks anyway).
    #[error("{0}")]
    Capacity(String),
    /// A change the BBS cannot make in place: it needs a rolling update.
    #[error("{0}")]
    NeedsRollingUpdate(String),
    /// `diego dev` could not start or run its cluster.
    #[error("diego dev: {0}")]
    Dev(String),
    /// The CLI's own certificate cannot be used (missing, unreadable, expired, wrong CA).
    #[error("{0}")]
    Tls(String),
    /// A `diego certs` command failed: no CA or one already there, a file that cannot be read,
    /// written or parsed, a bad host or validity.
    #[error("{}", strip_os_error(&.0.to_string()))]
    Certs(svc::certs::CertError),
    /// Standard output could not be written (a closed pipe ends the command quietly).
    #[error("cannot write to standard output: {0}")]
    Output(#[source] std::io::Error),
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Refused { .. } | Error::Dev(_) | Error::Certs(svc::certs::CertError::Generate { .. }) => {
                EXIT_REFUSED
            }
            Error::Unreachable { .. } | Error::StreamEnded { .. } | Error::Timeout { .. } => EXIT_UNREACHABLE,
            Error::InvalidAddress { .. }
            | Error::ReadFile { .. }
            | Error::ParseFile { .. }
            | Error::StateFile { .. }
            | Error::ApplyRefused(_)
            | Error::InvalidFlag { .. }
            | Error::Capacity(_)
            | Error::NeedsRollingUpdate(_)
            | Error::Certs(_)
            | Error::Tls(_)
            | Error::Output(_) => EXIT_USAGE,
        }
    }

    /// Whether this is a closed standard output (`diego events | head`), which is no failure.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }

    /// Classifies a failed RPC: a status that carries a Diego error type is a refusal; one
    /// without it that reports a transport failure means the BBS is unreachable.
    pub fn from_status(status: &tonic::Status, address: &str) -> Error {
        let typed = status.metadata().get(ERROR_METADATA_KEY).is_some();
        // A connection the peer broke off mid-protocol (a plaintext client at a TLS port) is
        // reported by h2 as INTERNAL "h2 protocol error", or as CANCELLED: a transport failure,
        // not a refusal.
        // A call cancelled without the CLI cancelling it is a connection the peer closed.
        let broken = (status.code() == tonic::Code::Internal && status.message().starts_with("h2 protocol error"))
            || status.code() == tonic::Code::Cancelled;
        if !typed && (broken || matches!(status.code(), tonic::Code::Unavailable | tonic::Code::Unknown)) {
            let reason = match std::error::Error::source(status) {
                Some(source) => svc::tls::tls_failure(source).unwrap_or_else(|| root_cause(source)),
                None => lower_first(status.message()),
            };
            return Error::Unreachable { address: address.to_owned(), reason };
        }
        let kind = match status.metadata().get(ERROR_METADATA_KEY).and_then(|v| v.to_str().ok()) {
            Some(name) => name.to_owned(),
            None => match ErrorCode::from_status(status) {
                Some(code) => code.name().to_owned(),
                None => format!("{:?}", status.code()),
            },
        };
        let mut message = status.message().to_owned();
        if let Some(leader) = svc::bbs_client::leader_of(status) {
            message.push_str(&format!("; the leader is at {leader}: use --bbs-address {leader}"));
        }
        Error::Refused { kind, message }
    }
}

/// The innermost cause of an error chain, lowercased at the start and without the OS error
/// number: `connection refused`.
pub fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    lower_first(&strip_os_error(&current.to_string()))
}

/// An IO error as a short reason: `no such file or directory`.
pub fn io_reason(error: &std::io::Error) -> String {
    lower_first(&strip_os_error(&error.to_string()))
}

fn strip_os_error(text: &str) -> String {
    match text.find(" (os error ") {
        Some(at) => text[..at].to_owned(),
        None => text.to_owned(),
    }
}

fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typed_status_is_a_refusal_with_the_diego_error_type() {
        let status = ErrorCode::ResourceNotFound.to_status("desired lrp not found: nope");
        let error = Error::from_status(&status, "127.0.0.1:1");
        assert_eq!(error.to_string(), "ResourceNotFound: desired lrp not found: nope");
        assert_eq!(error.exit_code(), EXIT_REFUSED);
    }

    #[test]
    fn a_standby_refusal_names_the_leader() {
        let mut status = ErrorCode::Unavailable.to_status("not the leader");
        status.metadata_mut().insert(proto::error::LEADER_METADATA_KEY, "10.0.0.2:8889".parse().unwrap());
        let error = Error::from_status(&status, "127.0.0.1:1");
        assert_eq!(error.exit_code(), EXIT_REFUSED);
        assert!(error.to_string().ends_with("use --bbs-address 10.0.0.2:8889"), "{error}");
    }

    #[test]
    fn an_untyped_unavailable_means_unreachable() {
        let error = Error::from_status(&tonic::Status::unavailable("Connection reset"), "h:1");
        assert_eq!(error.exit_code(), EXIT_UNREACHABLE);
        assert!(error.to_string().starts_with("cannot reach the bbs at h:1: connection reset;"), "{error}");
    }

    #[test]
    fn os_error_numbers_are_dropped() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(!io_reason(&io).contains("os error"));
        assert_eq!(strip_os_error("Connection refused (os error 111)"), "Connection refused");
    }
}
