//! The leader-following BBS client core, shared by the auctioneer, the cell rep, the CLI and the
//! benchmark: each keeps only its own calls on top of [`BbsChannels::call`].
//!
//! A standby BBS serves reads but refuses writes with UNAVAILABLE and names the leader's address
//! in the `x-diego-leader` metadata ([`proto::error::LEADER_METADATA_KEY`]). [`BbsChannels`]
//! follows such a refusal once: it retries the call on the named leader, over a channel cached
//! by address (see [`crate::connect::Connector`]), and never loops between standbys.

use std::future::Future;
use std::time::Duration;

use tonic::transport::Channel;

use crate::connect::{ChannelOptions, ConnectError, Connector};
use crate::identity::Role;
use crate::tls::Security;

/// A failed call through [`BbsChannels`].
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No channel could be built to `address`.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The BBS at `address` (the configured one, or the leader it named) answered `status`.
    #[error("bbs {address}: {status}")]
    Status {
        /// The BBS that answered last.
        address: String,
        /// Its answer.
        status: tonic::Status,
    },
}

/// The leader a standby named in its refusal, if it named one.
pub fn leader_of(status: &tonic::Status) -> Option<String> {
    status
        .metadata()
        .get(proto::error::LEADER_METADATA_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// Channels to one configured BBS address and to the leaders it names.
#[derive(Debug)]
pub struct BbsChannels {
    address: String,
    connector: Connector,
}

impl BbsChannels {
    /// Channels to the BBS at `address` (`host:port` or an `http://` URL) whose connects and
    /// calls time out after `timeout`, with `security`; under mutual TLS the server (the
    /// configured one and every leader it names) must present a `diego://bbs` certificate.
    /// Checks the address now; connects on the first call.
    pub fn new(address: impl Into<String>, timeout: Duration, security: Security) -> Result<Self, ConnectError> {
        Self::with_options(address, ChannelOptions::new(timeout, security).expect(Role::Bbs))
    }

    /// Channels with `options` (whose expected server is a BBS unless they say otherwise: see
    /// [`ChannelOptions::new`]).
    pub fn with_options(address: impl Into<String>, options: ChannelOptions) -> Result<Self, ConnectError> {
        let address = address.into();
        crate::connect::check_address(&address)?;
        Ok(Self { address, connector: Connector::with_options(options) })
    }

    /// The configured BBS address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The channel to the configured address.
    pub fn channel(&self) -> Result<Channel, ConnectError> {
        self.connector.channel(&self.address)
    }

    /// Runs `f` on a channel to the configured BBS; when a standby refuses it naming another
    /// leader, runs it once more on the leader. `call` names the RPC in logs.
    pub async fn call<T, F, Fut>(&self, call: &'static str, f: F) -> Result<T, CallError>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut address = self.address.clone();
        let mut redirected = false;
        loop {
            let channel = self.connector.channel(&address)?;
            match f(channel).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) => {
                    if !redirected
                        && status.code() == tonic::Code::Unavailable
                        && let Some(leader) = leader_of(&status)
                        && leader != address
                    {
                        tracing::debug!(bbs = %address, leader = %leader, call, "following the bbs leader");
                        address = leader;
                        redirected = true;
                        continue;
                    }
                    return Err(CallError::Status { address, status });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leader_is_read_from_the_status_metadata() {
        let mut status = proto::error::ErrorCode::Unavailable.to_status("not the leader");
        assert_eq!(leader_of(&status), None);
        status
            .metadata_mut()
            .insert(proto::error::LEADER_METADATA_KEY, tonic::metadata::MetadataValue::from_static(" 10.0.0.2:8889 "));
        assert_eq!(leader_of(&status).as_deref(), Some("10.0.0.2:8889"));
    }

    #[test]
    fn a_malformed_bbs_address_is_refused_up_front() {
        assert!(BbsChannels::new("", Duration::from_secs(1), Security::Plaintext).is_err());
        assert!(BbsChannels::new("bad address", Duration::from_secs(1), Security::Plaintext).is_err());
        assert!(BbsChannels::new("127.0.0.1:8889", Duration::from_secs(1), Security::Plaintext).is_ok());
    }
}
