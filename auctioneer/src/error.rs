//! The crate's errors: [`ClientError`] for every outbound call (BBS, reps, Locket) and
//! [`RunError`] for why [`crate::run`] stopped. Inbound request errors are `tonic::Status`
//! values built with `proto::error::ErrorCode::to_status` in `service.rs`.

/// A failed outbound call to the BBS, a rep or the Locket.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address cannot be used to build a channel.
    #[error("invalid address {address:?}: {reason}")]
    BadAddress {
        /// The address.
        address: String,
        /// Why it was refused.
        reason: String,
    },
    /// The call returned an error status (this includes transport failures and timeouts that
    /// tonic reports as statuses).
    #[error("{peer} {call}: {status}")]
    Call {
        /// Who was called, e.g. `rep 10.0.0.1:1801`.
        peer: String,
        /// The RPC, e.g. `Perform`.
        call: &'static str,
        /// The status it failed with.
        status: Box<tonic::Status>,
    },
    /// The call did not finish within its timeout.
    #[error("{peer} {call}: timed out after {timeout:?}")]
    Timeout {
        /// Who was called.
        peer: String,
        /// The RPC.
        call: &'static str,
        /// The timeout that expired.
        timeout: std::time::Duration,
    },
    /// A fake or a future implementation refused the call for another reason.
    #[error("{0}")]
    Other(String),
}

impl ClientError {
    /// A [`ClientError::Call`] from a status.
    pub fn call(peer: impl Into<String>, call: &'static str, status: tonic::Status) -> Self {
        Self::Call { peer: peer.into(), call, status: Box::new(status) }
    }

    /// The status the peer answered with, if the call got that far.
    pub fn status(&self) -> Option<&tonic::Status> {
        match self {
            Self::Call { status, .. } => Some(status),
            _ => None,
        }
    }
}

/// Why [`crate::run`] stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration breaks a rule.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A client could not be built (for example a malformed BBS address).
    #[error("cannot build client: {0}")]
    Client(#[from] ClientError),
    /// The gRPC server failed.
    #[error("grpc server failed: {0}")]
    Server(#[from] tonic::transport::Error),
}
