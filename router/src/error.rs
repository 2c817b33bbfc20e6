//! The crate's one error enum: why the emitter fell out of step with the BBS, or why
//! [`crate::run`] stopped.

/// A router error.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The configuration breaks a rule.
    #[error(transparent)]
    Config(#[from] svc::config::ConfigError),
    /// The BBS address cannot be used.
    #[error("invalid bbs address: {0}")]
    BadAddress(String),
    /// A BBS call failed.
    #[error("bbs {call}: {message}")]
    Bbs {
        /// The RPC.
        call: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The event stream failed.
    #[error("the instance event stream failed: {0}")]
    Stream(String),
    /// The event stream ended (the BBS stopped or gave up leading).
    #[error("the instance event stream ended")]
    StreamEnded,
}
