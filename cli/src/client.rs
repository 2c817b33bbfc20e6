//! The one connector of the CLI to a BBS: address parsing, an eager connection (so an
//! unreachable BBS is reported as such, exit code 3), and unary calls with a deadline whose
//! failures are classified by [`Error::from_status`].

use std::future::Future;
use std::time::Duration;

use proto::pb::bbs::v1::bbs_client::BbsClient;
use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, root_cause};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one unary call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A connected BBS client.
#[derive(Clone)]
pub struct Bbs {
    client: BbsClient<Channel>,
    address: String,
}

impl Bbs {
    /// Connects to `address` (`host:port`, or `http://host:port`).
    pub async fn connect(address: &str) -> Result<Bbs, Error> {
        let uri = endpoint_uri(address)?;
        let endpoint = Endpoint::from_shared(uri)
            .map_err(|e| Error::InvalidAddress { address: address.to_owned(), reason: root_cause(&e) })?
            .connect_timeout(CONNECT_TIMEOUT);
        let channel = match tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect()).await {
            Ok(Ok(channel)) => channel,
            Ok(Err(e)) => return Err(Error::Unreachable { address: address.to_owned(), reason: root_cause(&e) }),
            Err(_) => {
                return Err(Error::Timeout { address: address.to_owned(), seconds: CONNECT_TIMEOUT.as_secs() });
            }
        };
        Ok(Bbs { client: BbsClient::new(channel), address: address.to_owned() })
    }

    /// The address this client talks to.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// A handle for one call (cheap: the channel is shared).
    pub fn raw(&self) -> BbsClient<Channel> {
        self.client.clone()
    }

    /// Awaits one unary call with the deadline and classifies its failure.
    pub async fn unary<T>(
        &self,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(self.status_error(&status)),
            Err(_) => Err(Error::Timeout { address: self.address.clone(), seconds: CALL_TIMEOUT.as_secs() }),
        }
    }

    /// Classifies a failed call or a stream's closing status.
    pub fn status_error(&self, status: &tonic::Status) -> Error {
        Error::from_status(status, &self.address)
    }
}

/// The URI of a BBS address; `host:port` gets `http://` in front. TLS is not offered yet.
pub fn endpoint_uri(address: &str) -> Result<String, Error> {
    let invalid = |reason: &str| Error::InvalidAddress { address: address.to_owned(), reason: reason.to_owned() };
    let rest = match address.split_once("://") {
        None => address,
        Some(("http", rest)) => rest,
        Some(("https", _)) => return Err(invalid("tls is not supported yet; use host:port or http://host:port")),
        Some(_) => return Err(invalid("expected host:port or http://host:port")),
    };
    let rest = rest.trim_end_matches('/');
    let Some((host, port)) = rest.rsplit_once(':') else {
        return Err(invalid("expected host:port, e.g. 127.0.0.1:8889"));
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(invalid("expected host:port with a numeric port, e.g. 127.0.0.1:8889"));
    }
    Ok(format!("http://{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_take_host_port_or_an_http_url() {
        assert_eq!(endpoint_uri("127.0.0.1:8889").unwrap(), "http://127.0.0.1:8889");
        assert_eq!(endpoint_uri("http://bbs:8889/").unwrap(), "http://bbs:8889");
        assert_eq!(endpoint_uri("[::1]:8889").unwrap(), "http://[::1]:8889");
        for bad in ["bbs", "bbs:http", ":8889", "https://bbs:8889", "ftp://bbs:1"] {
            let error = endpoint_uri(bad).unwrap_err();
            assert_eq!(error.exit_code(), crate::error::EXIT_USAGE, "{bad}");
        }
    }
}
