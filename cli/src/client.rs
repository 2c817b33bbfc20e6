//! The CLI's connection to a BBS: the address rule and the eager connection (so an
//! unreachable BBS is reported as such, exit code 3) come from the service toolkit's one
//! connector ([`svc::connect`]); here are unary calls with a deadline whose failures are
//! classified by [`Error::from_status`], and [`Bbs::all`], which reads a list RPC page after
//! page.

use std::future::Future;
use std::time::Duration;

use proto::pb::bbs::v1 as api;
use proto::pb::bbs::v1::bbs_client::BbsClient;
use proto::pb::locket::v1::locket_client::LocketClient;
use proto::pb::models::v1 as pb;
use svc::config::tls::TlsConfig;
use svc::connect::{ChannelOptions, ConnectError};
use svc::tls::Security;
use tonic::transport::Channel;

use crate::GlobalArgs;
use crate::error::{Error, root_cause};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one unary call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A connected BBS client.
#[derive(Clone)]
pub struct Bbs {
    client: BbsClient<Channel>,
    channel: Channel,
    address: String,
}

impl Bbs {
    /// Connects to `address` (`host:port`, or `http://host:port`) with `security`.
    pub async fn connect(address: &str, security: Security) -> Result<Bbs, Error> {
        // No channel-wide deadline: unary calls get theirs in `unary`, and event streams none.
        let options = ChannelOptions { timeout: None, ..ChannelOptions::new(CONNECT_TIMEOUT, security) };
        let channel = svc::connect::connect(address, &options).await.map_err(|e| connect_error(address, e))?;
        Ok(Bbs { client: BbsClient::new(channel.clone()), channel, address: address.to_owned() })
    }

    /// The address this client talks to.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// A handle for one call (cheap: the channel is shared).
    pub fn raw(&self) -> BbsClient<Channel> {
        self.client.clone()
    }

    /// A Locket client on the same connection (every BBS serves Locket: the leader leases).
    pub fn locket(&self) -> LocketClient<Channel> {
        LocketClient::new(self.channel.clone())
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

    /// One page of a list RPC: `call(client, request)` with `request`'s page size and token
    /// set; returns its items and the token of the next page (empty after the last).
    pub async fn page<Req, Resp, Fut>(
        &self,
        request: &Req,
        page_size: u32,
        page_token: String,
        call: impl Fn(BbsClient<Channel>, Req) -> Fut,
    ) -> Result<(Vec<Resp::Item>, String), Error>
    where
        Req: PagedRequest,
        Resp: PagedResponse,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let mut request = request.clone();
        request.set_page(page_size, page_token);
        Ok(self.unary(call(self.raw(), request)).await?.into_page())
    }

    /// Every item of a list RPC, read page after page (the BBS caps each page at about 3.5 MB,
    /// so a big listing never passes the 4 MB message limit) until no token is left. Each page
    /// is one call with its own deadline.
    pub async fn all<Req, Resp, Fut>(
        &self,
        request: Req,
        call: impl Fn(BbsClient<Channel>, Req) -> Fut,
    ) -> Result<Vec<Resp::Item>, Error>
    where
        Req: PagedRequest,
        Resp: PagedResponse,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let (mut items, mut token) = (Vec::new(), String::new());
        loop {
            let (page, next) = self.page(&request, 0, token, &call).await?;
            items.extend(page);
            if next.is_empty() {
                return Ok(items);
            }
            token = next;
        }
    }
}

/// A list request that takes a page size and a continuation token.
pub trait PagedRequest: Clone {
    /// Sets the page size (0: as many as fit) and the token of the page to read.
    fn set_page(&mut self, page_size: u32, page_token: String);
}

/// A list response: one page of items and the next page's token.
pub trait PagedResponse {
    /// What the listing lists.
    type Item;
    /// The items and the next page's token (empty after the last page).
    fn into_page(self) -> (Vec<Self::Item>, String);
}

macro_rules! paged_request {
    ($($request:ty),*) => {$(
        impl PagedRequest for $request {
            fn set_page(&mut self, page_size: u32, page_token: String) {
                self.page_size = page_size;
                self.page_token = page_token;
            }
        }
    )*};
}

macro_rules! paged_response {
    ($($response:ty => $field:ident: $item:ty),*) => {$(
        impl PagedResponse for $response {
            type Item = $item;
            fn into_page(self) -> (Vec<$item>, String) {
                (self.$field, self.next_page_token)
            }
        }
    )*};
}

paged_request!(api::ActualLrPsRequest, api::DesiredLrPsRequest, api::TasksRequest, api::CellsRequest);
paged_response!(
    api::ActualLrPsResponse => actual_lrps: pb::ActualLrp,
    api::DesiredLrPsResponse => desired_lrps: pb::DesiredLrp,
    api::DesiredLrpSchedulingInfosResponse => desired_lrp_scheduling_infos: pb::DesiredLrpSchedulingInfo,
    api::DesiredLrpRoutingInfosResponse => desired_lrps: pb::DesiredLrpRoutingInfo,
    api::TasksResponse => tasks: pb::Task,
    api::CellsResponse => cells: pb::CellPresence
);

/// Where `diego dev` keeps its certificates, relative to the directory it runs in: the CLI's
/// default CA, certificate and key.
pub const DEV_TLS_DIR: &str = ".diego-dev/tls";

/// The transport security `global` asks for: plaintext with `--insecure-plaintext`; mutual TLS
/// with the three `--tls-*` files (or `DIEGO_TLS_*`) when any is given; otherwise with the
/// operator certificate of a `diego dev` run in this directory. Refused with one line when
/// none is there or a file is unusable.
pub fn security(global: &GlobalArgs) -> Result<Security, Error> {
    if global.insecure_plaintext {
        return Ok(Security::Plaintext);
    }
    let given = global.tls_ca.is_some() || global.tls_cert.is_some() || global.tls_key.is_some();
    let config = if given {
        TlsConfig::mutual(
            global.tls_ca.clone().unwrap_or_default(),
            global.tls_cert.clone().unwrap_or_default(),
            global.tls_key.clone().unwrap_or_default(),
        )
    } else {
        let dir = std::path::Path::new(DEV_TLS_DIR);
        if !dir.join("ca.pem").exists() {
            return Err(Error::Tls(format!(
                "no client certificate: pass --tls-ca, --tls-cert and --tls-key (or set DIEGO_TLS_CA, DIEGO_TLS_CERT, DIEGO_TLS_KEY), run this where 'diego dev' keeps {DEV_TLS_DIR}, or pass --insecure-plaintext for a plaintext bbs"
            )));
        }
        TlsConfig::mutual(dir.join("ca.pem"), dir.join("operator.pem"), dir.join("operator-key.pem"))
    };
    config.security().map_err(|e| Error::Tls(e.to_string()))
}

/// The URI of a BBS address; `host:port` gets `http://` in front (the toolkit's rule).
pub fn endpoint_uri(address: &str) -> Result<String, Error> {
    svc::connect::endpoint_uri(address).map_err(|e| connect_error(address, e))
}

/// A connection failure as the CLI reports it.
fn connect_error(address: &str, error: ConnectError) -> Error {
    match error {
        ConnectError::BadAddress { reason, .. } => Error::InvalidAddress { address: address.to_owned(), reason },
        ConnectError::Unreachable { source, .. } => {
            let reason = svc::tls::tls_failure(&source).unwrap_or_else(|| root_cause(&source));
            Error::Unreachable { address: address.to_owned(), reason }
        }
        ConnectError::Timeout { timeout, .. } => {
            Error::Timeout { address: address.to_owned(), seconds: timeout.as_secs() }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_take_host_port_or_an_http_url() {
        assert_eq!(endpoint_uri("127.0.0.1:8889").unwrap(), "http://127.0.0.1:8889");
        assert_eq!(endpoint_uri("http://bbs:8889/").unwrap(), "http://bbs:8889");
        assert_eq!(endpoint_uri("[::1]:8889").unwrap(), "http://[::1]:8889");
        assert_eq!(endpoint_uri("https://bbs:8889").unwrap(), "https://bbs:8889");
        for bad in ["bbs", "bbs:http", ":8889", "ftp://bbs:1"] {
            let error = endpoint_uri(bad).unwrap_err();
            assert_eq!(error.exit_code(), crate::error::EXIT_USAGE, "{bad}");
        }
    }
}
