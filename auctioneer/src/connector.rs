//! Outbound gRPC channels (to the BBS, its Locket and the reps) come from the service toolkit's
//! one connector, [`svc::connect`], where TLS and message-size limits get switched on; channels
//! are lazy (no connection until the first call) and cached per address. This module only turns
//! the toolkit's errors into [`ClientError`].

use svc::connect::ConnectError;

use crate::error::ClientError;

pub use svc::connect::Connector;

impl From<ConnectError> for ClientError {
    fn from(error: ConnectError) -> Self {
        match error {
            ConnectError::BadAddress { address, reason } => ClientError::BadAddress { address, reason },
            other => ClientError::Other(other.to_string()),
        }
    }
}

/// Checks that `address` can be turned into a channel, without connecting.
pub fn check_address(address: &str) -> Result<(), ClientError> {
    svc::connect::check_address(address).map_err(ClientError::from)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bad_addresses_are_refused() {
        let connector = Connector::new(Duration::from_secs(1), svc::tls::Security::Plaintext);
        for address in ["", "  ", "not a host:port"] {
            let err = connector.channel(address).map_err(ClientError::from).expect_err("invalid");
            assert!(matches!(err, ClientError::BadAddress { .. }), "{err}");
        }
    }
}
