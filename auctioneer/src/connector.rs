//! The one place outbound gRPC channels are built (to the BBS, its Locket and the reps), so TLS
//! and message-size limits get switched on here. Channels are created lazily (no connection
//! until the first call) and cached per address.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::error::ClientError;

/// More cached channels than this and the cache is emptied before the next insert: cells come
/// and go, and a cluster has far fewer live cells, so this only bounds the memory of churn.
const MAX_CACHED_CHANNELS: usize = 10_000;

/// Cached lazy channels by address.
#[derive(Debug)]
pub struct Connector {
    timeout: Duration,
    channels: Mutex<HashMap<String, Channel>>,
}

impl Connector {
    /// A connector whose connects and calls time out after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self { timeout, channels: Mutex::new(HashMap::new()) }
    }

    /// The call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The channel to `address` (`host:port`, or a URL with an `http` scheme), created lazily
    /// and reused. Must be called inside a tokio runtime.
    pub fn channel(&self, address: &str) -> Result<Channel, ClientError> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channel) = channels.get(address) {
            return Ok(channel.clone());
        }
        let endpoint = endpoint(address)?.connect_timeout(self.timeout).timeout(self.timeout);
        let channel = endpoint.connect_lazy();
        if channels.len() >= MAX_CACHED_CHANNELS {
            channels.clear();
        }
        channels.insert(address.to_owned(), channel.clone());
        Ok(channel)
    }
}

/// Checks that `address` can be turned into a channel, without connecting.
pub fn check_address(address: &str) -> Result<(), ClientError> {
    endpoint(address).map(|_| ())
}

/// The endpoint for `address`; `host:port` means plain `http://host:port`.
fn endpoint(address: &str) -> Result<Endpoint, ClientError> {
    let bad = |reason: String| ClientError::BadAddress { address: address.to_owned(), reason };
    let address = address.trim();
    if address.is_empty() {
        return Err(bad("the address is empty".into()));
    }
    let uri = if address.contains("://") { address.to_owned() } else { format!("http://{address}") };
    Endpoint::from_shared(uri).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn channels_are_cached_per_address() {
        let connector = Connector::new(Duration::from_secs(1));
        connector.channel("127.0.0.1:1").expect("valid address");
        connector.channel("http://127.0.0.1:2").expect("valid url");
        connector.channel("127.0.0.1:1").expect("cached");
        assert_eq!(connector.channels.lock().map(|c| c.len()).unwrap_or(0), 2);
    }

    #[test]
    fn bad_addresses_are_refused() {
        let connector = Connector::new(Duration::from_secs(1));
        for address in ["", "  ", "not a host:port"] {
            let err = connector.channel(address).expect_err("invalid");
            assert!(matches!(err, ClientError::BadAddress { .. }), "{err}");
        }
    }
}
