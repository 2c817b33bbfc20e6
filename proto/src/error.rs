//! The Diego error types and their one mapping to gRPC status codes (docs/architecture.md,
//! "Error mapping"). Every server turns its crate error into a [`tonic::Status`] through
//! [`ErrorCode::to_status`]; every client reads it back with [`ErrorCode::from_status`].

use std::fmt;

/// The metadata key that carries the Diego error type of a failed RPC.
pub const ERROR_METADATA_KEY: &str = "x-diego-error";
/// The metadata key that carries the leader's address on an UNAVAILABLE from a standby.
pub const LEADER_METADATA_KEY: &str = "x-diego-leader";

/// A Diego error type (cloudfoundry/bbs `models/error.proto`), reduced to the ones diego-rs
/// returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// A stored record could not be decoded.
    InvalidRecord,
    /// The request failed validation.
    InvalidRequest,
    /// A task transition that its state machine forbids.
    InvalidStateTransition,
    /// More than one row where one was expected, or a concurrent change won.
    ResourceConflict,
    /// A record with that key already exists.
    ResourceExists,
    /// No record with that key.
    ResourceNotFound,
    /// ActualLRP fencing refused a claim.
    ActualLrpCannotBeClaimed,
    /// ActualLRP fencing refused a start.
    ActualLrpCannotBeStarted,
    /// ActualLRP fencing refused a crash.
    ActualLrpCannotBeCrashed,
    /// ActualLRP fencing refused a placement failure.
    ActualLrpCannotBeFailed,
    /// ActualLRP fencing refused a removal.
    ActualLrpCannotBeRemoved,
    /// ActualLRP fencing refused an unclaim.
    ActualLrpCannotBeUnclaimed,
    /// A task was completed by a cell it is not running on.
    RunningOnDifferentCell,
    /// The database kept reporting deadlocks or serialization failures after the retries.
    Deadlock,
    /// The server cannot go on (e.g. a table is missing); it steps down.
    Unrecoverable,
    /// A failure nobody classified (an unexpected database error): the call failed, the server
    /// goes on. Diego's `UnknownError`.
    Unknown,
    /// A lock or presence is held by another owner.
    LockCollision,
    /// The operation timed out.
    Timeout,
    /// This server cannot serve the call now: not the leader, database unreachable, migrating.
    Unavailable,
}

impl ErrorCode {
    /// Every error code, for exhaustive tests.
    pub const ALL: [ErrorCode; 19] = [
        Self::InvalidRecord,
        Self::InvalidRequest,
        Self::InvalidStateTransition,
        Self::ResourceConflict,
        Self::ResourceExists,
        Self::ResourceNotFound,
        Self::ActualLrpCannotBeClaimed,
        Self::ActualLrpCannotBeStarted,
        Self::ActualLrpCannotBeCrashed,
        Self::ActualLrpCannotBeFailed,
        Self::ActualLrpCannotBeRemoved,
        Self::ActualLrpCannotBeUnclaimed,
        Self::RunningOnDifferentCell,
        Self::Deadlock,
        Self::Unrecoverable,
        Self::Unknown,
        Self::LockCollision,
        Self::Timeout,
        Self::Unavailable,
    ];

    /// Diego's name of the error type, sent in `x-diego-error`.
    pub fn name(self) -> &'static str {
        match self {
            Self::InvalidRecord => "InvalidRecord",
            Self::InvalidRequest => "InvalidRequest",
            Self::InvalidStateTransition => "InvalidStateTransition",
            Self::ResourceConflict => "ResourceConflict",
            Self::ResourceExists => "ResourceExists",
            Self::ResourceNotFound => "ResourceNotFound",
            Self::ActualLrpCannotBeClaimed => "ActualLRPCannotBeClaimed",
            Self::ActualLrpCannotBeStarted => "ActualLRPCannotBeStarted",
            Self::ActualLrpCannotBeCrashed => "ActualLRPCannotBeCrashed",
            Self::ActualLrpCannotBeFailed => "ActualLRPCannotBeFailed",
            Self::ActualLrpCannotBeRemoved => "ActualLRPCannotBeRemoved",
            Self::ActualLrpCannotBeUnclaimed => "ActualLRPCannotBeUnclaimed",
            Self::RunningOnDifferentCell => "RunningOnDifferentCell",
            Self::Deadlock => "Deadlock",
            Self::Unrecoverable => "Unrecoverable",
            Self::Unknown => "UnknownError",
            Self::LockCollision => "LockCollision",
            Self::Timeout => "Timeout",
            Self::Unavailable => "Unavailable",
        }
    }

    /// Parses a name produced by [`ErrorCode::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|code| code.name() == name)
    }

    /// The gRPC status code this error travels as.
    pub fn grpc_code(self) -> tonic::Code {
        use tonic::Code;
        match self {
            Self::InvalidRecord | Self::InvalidRequest => Code::InvalidArgument,
            Self::ResourceNotFound => Code::NotFound,
            Self::ResourceExists | Self::LockCollision => Code::AlreadyExists,
            Self::InvalidStateTransition
            | Self::ActualLrpCannotBeClaimed
            | Self::ActualLrpCannotBeStarted
            | Self::ActualLrpCannotBeCrashed
            | Self::ActualLrpCannotBeFailed
            | Self::ActualLrpCannotBeRemoved
            | Self::ActualLrpCannotBeUnclaimed
            | Self::RunningOnDifferentCell => Code::FailedPrecondition,
            Self::ResourceConflict | Self::Deadlock => Code::Aborted,
            Self::Unavailable => Code::Unavailable,
            Self::Timeout => Code::DeadlineExceeded,
            Self::Unrecoverable => Code::Internal,
            // Not INTERNAL: that one means "unrecoverable, the server steps down".
            Self::Unknown => Code::Unknown,
        }
    }

    /// A status with this code, the message, and the error type in `x-diego-error`.
    pub fn to_status(self, message: impl Into<String>) -> tonic::Status {
        let mut status = tonic::Status::new(self.grpc_code(), message);
        status.metadata_mut().insert(ERROR_METADATA_KEY, tonic::metadata::MetadataValue::from_static(self.name()));
        status
    }

    /// The error type of a status: from `x-diego-error` when present, else from its code.
    pub fn from_status(status: &tonic::Status) -> Option<Self> {
        if let Some(name) = status.metadata().get(ERROR_METADATA_KEY).and_then(|value| value.to_str().ok()) {
            return Self::from_name(name);
        }
        match status.code() {
            tonic::Code::InvalidArgument => Some(Self::InvalidRequest),
            tonic::Code::NotFound => Some(Self::ResourceNotFound),
            tonic::Code::AlreadyExists => Some(Self::ResourceExists),
            tonic::Code::FailedPrecondition => Some(Self::InvalidStateTransition),
            tonic::Code::Aborted => Some(Self::ResourceConflict),
            tonic::Code::Unavailable => Some(Self::Unavailable),
            tonic::Code::DeadlineExceeded => Some(Self::Timeout),
            tonic::Code::Internal => Some(Self::Unrecoverable),
            _ => None,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_a_status() {
        for code in ErrorCode::ALL {
            let status = code.to_status(format!("{code} happened"));
            assert_eq!(ErrorCode::from_status(&status), Some(code));
            assert_eq!(status.code(), code.grpc_code());
        }
    }

    #[test]
    fn codes_follow_the_architecture_table() {
        use tonic::Code;
        assert_eq!(ErrorCode::InvalidRequest.grpc_code(), Code::InvalidArgument);
        assert_eq!(ErrorCode::InvalidRecord.grpc_code(), Code::InvalidArgument);
        assert_eq!(ErrorCode::ResourceNotFound.grpc_code(), Code::NotFound);
        assert_eq!(ErrorCode::ResourceExists.grpc_code(), Code::AlreadyExists);
        assert_eq!(ErrorCode::RunningOnDifferentCell.grpc_code(), Code::FailedPrecondition);
        assert_eq!(ErrorCode::ActualLrpCannotBeClaimed.grpc_code(), Code::FailedPrecondition);
        assert_eq!(ErrorCode::Deadlock.grpc_code(), Code::Aborted);
        assert_eq!(ErrorCode::Unrecoverable.grpc_code(), Code::Internal);
        assert_eq!(ErrorCode::Unknown.grpc_code(), Code::Unknown);
        assert_eq!(ErrorCode::Unavailable.grpc_code(), Code::Unavailable);
    }

    #[test]
    fn a_status_without_metadata_falls_back_to_its_code() {
        let status = tonic::Status::not_found("no such lrp");
        assert_eq!(ErrorCode::from_status(&status), Some(ErrorCode::ResourceNotFound));
        assert_eq!(ErrorCode::from_status(&tonic::Status::unknown("?")), None);
    }
}
