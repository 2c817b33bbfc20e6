//! `bbs::Error` and its single mapping to a gRPC status (docs/architecture.md, "Error mapping").

use proto::error::{ErrorCode, LEADER_METADATA_KEY};
use proto::models::ValidationError;

/// What a BBS call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is invalid; nothing was written.
    #[error("invalid request: {0}")]
    Invalid(#[from] ValidationError),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] db::Error),
    /// This BBS is not the leader, so it cannot write or stream events.
    #[error("this bbs is not the leader{}", leader_hint(.leader))]
    NotLeader {
        /// The leader's address, when known.
        leader: Option<String>,
    },
    /// A lifecycle refusal decided outside the store.
    #[error("{message}")]
    Refused {
        /// The Diego error type.
        code: ErrorCode,
        /// What was refused.
        message: String,
    },
}

fn leader_hint(leader: &Option<String>) -> String {
    match leader {
        Some(address) => format!("; the leader is {address}"),
        None => "; no leader is known right now".into(),
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The Diego error type.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Invalid(_) => ErrorCode::InvalidRequest,
            Self::Store(e) => e.code(),
            Self::NotLeader { .. } => ErrorCode::Unavailable,
            Self::Refused { code, .. } => *code,
        }
    }

    /// Whether this error means the process must step down (a table is gone).
    pub fn is_unrecoverable(&self) -> bool {
        self.code() == ErrorCode::Unrecoverable
    }
}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        let mut status = err.code().to_status(err.to_string());
        if let Error::NotLeader { leader: Some(address) } = &err
            && let Ok(value) = address.parse()
        {
            status.metadata_mut().insert(LEADER_METADATA_KEY, value);
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_leader_names_the_leader_in_metadata() {
        let status: tonic::Status = Error::NotLeader { leader: Some("10.0.0.5:8889".into()) }.into();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(status.metadata().get(LEADER_METADATA_KEY).unwrap(), "10.0.0.5:8889");
        assert!(status.message().contains("the leader is 10.0.0.5:8889"));
    }

    #[test]
    fn invalid_requests_name_the_field() {
        let status: tonic::Status = Error::Invalid(ValidationError::new("process_guid", "must not be empty")).into();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "invalid request: process_guid must not be empty");
        assert_eq!(ErrorCode::from_status(&status), Some(ErrorCode::InvalidRequest));
    }
}
