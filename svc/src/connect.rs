//! The one place outbound gRPC channels are built: to the BBS, its Locket, the auctioneer and
//! the reps, from every component, the CLI and the benchmark. Mutual TLS and message-size
//! limits get switched on here, once.
//!
//! - [`endpoint_uri`] is the address rule: `host:port` means `http://host:port`; an `http://` or
//!   `https://` URL is taken as it is.
//! - [`ChannelOptions`] holds the timeouts, HTTP/2 settings and [`Security`] of a channel;
//!   TCP_NODELAY is always on. Under [`Security::Mutual`] every address is dialed with TLS 1.3
//!   (an `http://` one too), presenting the component's certificate and checking the server's
//!   against the cluster CA and the address's host, and then its role: the options say which
//!   server is expected ([`Expected`]; a BBS unless [`ChannelOptions::expect`] names another
//!   role), so a certificate of the same CA for another role (a cell's) cannot pass for the BBS
//!   or the auctioneer. An `https://` address with [`Security::Plaintext`] is refused rather than
//!   dialed in plaintext; plaintext channels check nobody.
//! - [`lazy`] and [`connect`] build one channel (connecting on the first call, or now).
//! - [`Connector`] caches lazy channels by address, for clients that call many peers; its
//!   [`Connector::cell_channel`] expects exactly the cell it means to call.
//! - A failed connection says why in one line ([`describe`], also in [`ConnectError`]'s message):
//!   "server certificate for 127.0.0.1:8889 is not signed by the cluster CA (ca.pem)", "server at
//!   127.0.0.1:8889 is diego://cell/cell-1, not a bbs".

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::identity::{Expected, Identity, Role};
pub use crate::tls::describe;
use crate::tls::{Dialer, Security};

/// A channel that could not be built or connected.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The address cannot be used.
    #[error("invalid address {address}: {reason}")]
    BadAddress {
        /// The address as given.
        address: String,
        /// Why.
        reason: String,
    },
    /// Connecting failed (eager connections only). The message says why in one line
    /// ([`describe`]).
    #[error("cannot connect to {address}: {}", describe(.source))]
    Unreachable {
        /// The address.
        address: String,
        /// The transport's error.
        #[source]
        source: tonic::transport::Error,
    },
    /// Connecting took longer than the connect timeout (eager connections only).
    #[error("connecting to {address} timed out after {timeout:?}")]
    Timeout {
        /// The address.
        address: String,
        /// The connect timeout.
        timeout: Duration,
    },
}

/// How a channel behaves: timeouts, HTTP/2 flow control and transport security.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelOptions {
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How long one call may take (`None`: no channel-wide deadline).
    pub timeout: Option<Duration>,
    /// The HTTP/2 initial stream window (`None`: tonic's default).
    pub initial_stream_window_size: Option<u32>,
    /// The HTTP/2 initial connection window (`None`: tonic's default).
    pub initial_connection_window_size: Option<u32>,
    /// Plaintext, or mutual TLS with the component's certificates.
    pub security: Security,
    /// Under mutual TLS, the server the certificate must name; a server of another role (or
    /// another cell) is refused after the handshake. Ignored in plaintext.
    pub server: Expected,
}

impl ChannelOptions {
    /// Connects and calls to a BBS (its API or its Locket, what most channels call) that time
    /// out after `timeout`, with `security` (every caller names it: there is no default, so no
    /// channel is plaintext by accident). A channel to another server says so with
    /// [`ChannelOptions::expect`].
    pub fn new(timeout: Duration, security: Security) -> Self {
        Self {
            connect_timeout: timeout,
            timeout: Some(timeout),
            initial_stream_window_size: None,
            initial_connection_window_size: None,
            security,
            server: Expected::role(Role::Bbs),
        }
    }

    /// The same options with `security`.
    pub fn with_security(self, security: Security) -> Self {
        Self { security, ..self }
    }

    /// The same options for a server of `role`: a certificate naming another role is refused.
    pub fn expect(self, role: Role) -> Self {
        Self { server: Expected::role(role), ..self }
    }

    /// The same options for a server of any of `roles` (a client that calls several kinds of
    /// server on one set of options).
    pub fn expect_any(self, roles: impl IntoIterator<Item = Role>) -> Self {
        Self { server: Expected::Roles(roles.into_iter().collect()), ..self }
    }

    /// The same options for exactly the server `identity` (e.g. `diego://cell/cell-1`).
    pub fn expect_identity(self, identity: Identity) -> Self {
        Self { server: Expected::Identity(identity), ..self }
    }
}

/// The URI of `address`: `host:port` (`[v6]:port` too) gets `http://` in front, an `http://` or
/// `https://` URL is kept (without a trailing `/`). Anything else is refused with the reason.
pub fn endpoint_uri(address: &str) -> Result<String, ConnectError> {
    let invalid = |reason: &str| ConnectError::BadAddress { address: address.to_owned(), reason: reason.to_owned() };
    let trimmed = address.trim();
    if trimmed.is_empty() {
        return Err(invalid("the address is empty"));
    }
    let (scheme, rest) = match trimmed.split_once("://") {
        None => ("http", trimmed),
        Some((scheme @ ("http" | "https"), rest)) => (scheme, rest),
        Some(_) => return Err(invalid("expected host:port, http://host:port or https://host:port")),
    };
    let rest = rest.trim_end_matches('/');
    let Some((host, port)) = rest.rsplit_once(':') else {
        return Err(invalid("expected host:port, e.g. 127.0.0.1:8889"));
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(invalid("expected host:port with a numeric port, e.g. 127.0.0.1:8889"));
    }
    Ok(format!("{scheme}://{rest}"))
}

/// Checks that `address` can be turned into a channel, without connecting.
pub fn check_address(address: &str) -> Result<(), ConnectError> {
    let uri = endpoint_uri(address)?;
    Endpoint::from_shared(uri)
        .map(drop)
        .map_err(|e| ConnectError::BadAddress { address: address.to_owned(), reason: e.to_string() })
}

/// The endpoint of `address` with `options` (and TCP_NODELAY): an `https://` URI under mutual
/// TLS, `http://` in plaintext. Connect it with [`lazy`] or [`connect`], which dial TLS under
/// mutual TLS; the endpoint's own `connect` would not.
pub fn endpoint(address: &str, options: &ChannelOptions) -> Result<Endpoint, ConnectError> {
    let uri = endpoint_uri(address)?;
    let uri = match (&options.security, uri.split_once("://")) {
        (Security::Mutual(_), Some((_, rest))) => format!("https://{rest}"),
        (Security::Plaintext, Some(("https", _))) => {
            return Err(ConnectError::BadAddress {
                address: address.to_owned(),
                reason: "an https:// address needs mutual TLS, and no certificates are configured".to_owned(),
            });
        }
        _ => uri,
    };
    let mut endpoint = Endpoint::from_shared(uri)
        .map_err(|e| ConnectError::BadAddress { address: address.to_owned(), reason: e.to_string() })?
        .tcp_nodelay(true)
        .connect_timeout(options.connect_timeout)
        .initial_stream_window_size(options.initial_stream_window_size)
        .initial_connection_window_size(options.initial_connection_window_size);
    if let Some(timeout) = options.timeout {
        endpoint = endpoint.timeout(timeout);
    }
    Ok(endpoint)
}

/// A channel to `address` that connects on its first call. Must be called inside a tokio
/// runtime.
pub fn lazy(address: &str, options: &ChannelOptions) -> Result<Channel, ConnectError> {
    let endpoint = endpoint(address, options)?;
    Ok(match &options.security {
        Security::Plaintext => endpoint.connect_lazy(),
        Security::Mutual(tls) => endpoint.connect_with_connector_lazy(Dialer::new(tls.clone(), options.server.clone())),
    })
}

/// A channel to `address`, connected now (within the connect timeout), so an unreachable peer
/// is reported at once.
pub async fn connect(address: &str, options: &ChannelOptions) -> Result<Channel, ConnectError> {
    let endpoint = endpoint(address, options)?;
    let connecting = async {
        match &options.security {
            Security::Plaintext => endpoint.connect().await,
            Security::Mutual(tls) => {
                endpoint.connect_with_connector(Dialer::new(tls.clone(), options.server.clone())).await
            }
        }
    };
    match tokio::time::timeout(options.connect_timeout, connecting).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(source)) => Err(ConnectError::Unreachable { address: address.to_owned(), source }),
        Err(_) => Err(ConnectError::Timeout { address: address.to_owned(), timeout: options.connect_timeout }),
    }
}

/// More cached channels than this and the cache is emptied before the next insert: cells and
/// leaders come and go, and a cluster has far fewer live peers, so this only bounds the memory
/// of churn.
const MAX_CACHED_CHANNELS: usize = 10_000;

/// Lazy channels cached by address, all with the same options (and, for
/// [`Connector::cell_channel`], by the cell expected there).
#[derive(Debug)]
pub struct Connector {
    options: ChannelOptions,
    channels: Mutex<HashMap<(String, Option<Identity>), Channel>>,
}

impl Connector {
    /// A connector to BBSes whose connects and calls time out after `timeout`, with `security`
    /// (see [`ChannelOptions::new`]; [`Connector::with_options`] for other servers).
    pub fn new(timeout: Duration, security: Security) -> Self {
        Self::with_options(ChannelOptions::new(timeout, security))
    }

    /// A connector building channels with `options`.
    pub fn with_options(options: ChannelOptions) -> Self {
        Self { options, channels: Mutex::new(HashMap::new()) }
    }

    /// The options every channel gets.
    pub fn options(&self) -> &ChannelOptions {
        &self.options
    }

    /// The channel to `address`, created lazily and reused, expecting the options' server. Must
    /// be called inside a tokio runtime.
    pub fn channel(&self, address: &str) -> Result<Channel, ConnectError> {
        self.get_or_insert(address, None)
    }

    /// The channel to the rep of cell `cell_id` at `address`, created lazily and reused: under
    /// mutual TLS its server must be exactly `diego://cell/<cell_id>`, so neither another role
    /// nor another cell (one that took over the address) is called in its place. A cell id no
    /// certificate can name is refused under mutual TLS; in plaintext nothing is checked. Must be
    /// called inside a tokio runtime.
    pub fn cell_channel(&self, address: &str, cell_id: &str) -> Result<Channel, ConnectError> {
        if !self.options.security.is_mutual() {
            return self.channel(address);
        }
        let identity = Identity::new(Role::Cell, cell_id).map_err(|e| ConnectError::BadAddress {
            address: address.to_owned(),
            reason: format!("cell id {cell_id:?} cannot be a certificate identity: {e}"),
        })?;
        self.get_or_insert(address, Some(identity))
    }

    /// The cached channel to `address` expecting `identity` (`None`: the options' server).
    fn get_or_insert(&self, address: &str, identity: Option<Identity>) -> Result<Channel, ConnectError> {
        let key = (address.to_owned(), identity);
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channel) = channels.get(&key) {
            return Ok(channel.clone());
        }
        let channel = match &key.1 {
            None => lazy(address, &self.options)?,
            Some(identity) => lazy(address, &self.options.clone().expect_identity(identity.clone()))?,
        };
        if channels.len() >= MAX_CACHED_CHANNELS {
            channels.clear();
        }
        channels.insert(key, channel.clone());
        Ok(channel)
    }

    /// How many channels are cached.
    pub fn cached(&self) -> usize {
        self.channels.lock().map(|c| c.len()).unwrap_or_else(|p| p.into_inner().len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_take_host_port_or_an_http_url() {
        assert_eq!(endpoint_uri("127.0.0.1:8889").unwrap(), "http://127.0.0.1:8889");
        assert_eq!(endpoint_uri(" 127.0.0.1:8889 ").unwrap(), "http://127.0.0.1:8889");
        assert_eq!(endpoint_uri("http://bbs:8889/").unwrap(), "http://bbs:8889");
        assert_eq!(endpoint_uri("[::1]:8889").unwrap(), "http://[::1]:8889");
        assert_eq!(endpoint_uri("https://bbs:8889/").unwrap(), "https://bbs:8889");
        check_address("https://bbs:8889").expect("https is an address");
        for bad in ["", "  ", "bbs", "bbs:http", ":8889", "https://bbs", "ftp://bbs:1", "not a host:port"] {
            let error = endpoint_uri(bad).and_then(|_| check_address(bad)).unwrap_err();
            assert!(matches!(error, ConnectError::BadAddress { .. }), "{bad}: {error}");
        }
    }

    #[test]
    fn an_https_address_is_not_dialed_in_plaintext() {
        let error = endpoint("https://bbs:8889", &ChannelOptions::new(Duration::from_secs(1), Security::Plaintext))
            .unwrap_err();
        assert!(error.to_string().contains("needs mutual TLS"), "{error}");
        let plain = endpoint("bbs:8889", &ChannelOptions::new(Duration::from_secs(1), Security::Plaintext)).unwrap();
        assert_eq!(plain.uri().to_string(), "http://bbs:8889/");
    }

    #[tokio::test]
    async fn channels_are_cached_per_address() {
        let connector = Connector::new(Duration::from_secs(1), Security::Plaintext);
        connector.channel("127.0.0.1:1").expect("valid address");
        connector.channel("http://127.0.0.1:2").expect("valid url");
        connector.channel("127.0.0.1:1").expect("cached");
        assert_eq!(connector.cached(), 2);
    }

    #[tokio::test]
    async fn cell_channels_are_cached_per_address_and_cell_under_mutual_tls() {
        let plaintext = Connector::new(Duration::from_secs(1), Security::Plaintext);
        plaintext.cell_channel("127.0.0.1:1", "cell-1").expect("plaintext checks no cell");
        plaintext.cell_channel("127.0.0.1:1", "cell 2/odd").expect("any cell id in plaintext");
        plaintext.channel("127.0.0.1:1").expect("the same channel");
        assert_eq!(plaintext.cached(), 1);

        let tls = crate::pki::Pki::for_tests().test_tls(Role::Bbs, "").security().expect("loads");
        let options = ChannelOptions::new(Duration::from_secs(1), tls).expect(Role::Cell);
        assert_eq!(options.server, Expected::role(Role::Cell));
        let mutual = Connector::with_options(options);
        mutual.cell_channel("127.0.0.1:1", "cell-1").expect("cell-1");
        mutual.cell_channel("127.0.0.1:1", "cell-1").expect("cached");
        mutual.cell_channel("127.0.0.1:1", "cell-2").expect("another cell at the same address");
        mutual.channel("127.0.0.1:1").expect("any cell");
        assert_eq!(mutual.cached(), 3);
        let error = mutual.cell_channel("127.0.0.1:1", "cell 2/odd").unwrap_err();
        assert!(error.to_string().contains("cannot be a certificate identity"), "{error}");
    }

    #[test]
    fn options_expect_a_bbs_unless_told_otherwise() {
        let options = ChannelOptions::new(Duration::from_secs(1), Security::Plaintext);
        assert_eq!(options.server, Expected::role(Role::Bbs));
        assert_eq!(options.clone().expect(Role::Auctioneer).server, Expected::role(Role::Auctioneer));
        let any = options.clone().expect_any([Role::Bbs, Role::Cell]).server;
        assert_eq!(any, Expected::Roles(vec![Role::Bbs, Role::Cell]));
        let cell = Identity::new(Role::Cell, "cell-1").unwrap();
        assert_eq!(options.expect_identity(cell.clone()).server, Expected::Identity(cell));
    }

    #[tokio::test]
    async fn an_eager_connection_to_nothing_is_unreachable() {
        // Port 1 on loopback refuses connections.
        let error = connect("127.0.0.1:1", &ChannelOptions::new(Duration::from_secs(2), Security::Plaintext))
            .await
            .unwrap_err();
        assert!(matches!(error, ConnectError::Unreachable { .. }), "{error}");
    }
}
