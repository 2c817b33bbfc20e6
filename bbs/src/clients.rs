//! Outbound calls: start requests to the auctioneer and stop / cancel / update calls to reps.
//! Controllers see only the traits; the tonic implementations (one [`Connector`] each) live here,
//! and recording fakes live in [`crate::testing`]. Every call has a timeout, so a slow or dead
//! peer never stalls an API call for long; callers fire rep calls concurrently and off the
//! request path where Diego does.

use proto::bounds::{CHUNK_BYTES, chunk_by_size};
use std::time::Duration;

use futures::future::BoxFuture;
use proto::pb::auctioneer::v1 as auction_pb;
use proto::pb::models::v1 as models_pb;
use proto::pb::rep::v1 as rep_pb;
use svc::connect::{ChannelOptions, ConnectError};
use svc::identity::Role;
use svc::tls::Security;
use tonic::transport::Channel;

/// A failed outbound call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The peer's address is unknown (no auctioneer holds its lock, no such cell).
    #[error("no address for {0}")]
    NoAddress(String),
    /// The address cannot be used.
    #[error("invalid address {address}: {reason}")]
    BadAddress {
        /// The address.
        address: String,
        /// Why.
        reason: String,
    },
    /// The call failed.
    #[error("{peer} {call}: {status}")]
    Call {
        /// Who was called.
        peer: String,
        /// What was called.
        call: &'static str,
        /// The status it failed with.
        status: tonic::Status,
    },
}

pub use proto::models::{LrpStartRequest, TaskStartRequest};

/// The auctioneer, as the BBS calls it: one call per API request or convergence pass.
pub trait AuctioneerClient: Send + Sync + 'static {
    /// Enqueues LRP instances for the next auction.
    fn request_lrp_auctions(&self, requests: Vec<LrpStartRequest>) -> BoxFuture<'_, Result<(), ClientError>>;
    /// Enqueues tasks for the next auction.
    fn request_task_auctions(&self, requests: Vec<TaskStartRequest>) -> BoxFuture<'_, Result<(), ClientError>>;
}

/// The rep of cell `cell_id`, addressed by its `rep_address`.
pub trait RepClient: Send + Sync + 'static {
    /// Stops an LRP instance; the rep then removes the actual LRP itself.
    fn stop_lrp_instance<'a>(
        &'a self,
        cell_id: &'a str,
        rep_address: &'a str,
        process_guid: &'a str,
        instance_guid: &'a str,
        index: i32,
    ) -> BoxFuture<'a, Result<(), ClientError>>;
    /// Cancels a task.
    fn cancel_task<'a>(
        &'a self,
        cell_id: &'a str,
        rep_address: &'a str,
        task_guid: &'a str,
    ) -> BoxFuture<'a, Result<(), ClientError>>;
    /// Pushes new internal routes and metric tags to a running instance.
    fn update_lrp_instance<'a>(
        &'a self,
        cell_id: &'a str,
        rep_address: &'a str,
        process_guid: &'a str,
        instance_guid: &'a str,
        internal_routes: Vec<String>,
        metric_tags: std::collections::BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<(), ClientError>>;
}

/// Channels cached by address (connecting on first use), from the service toolkit's one connector
/// ([`svc::connect`], where TLS and message-size limits get switched on).
pub use svc::connect::Connector;

impl From<ConnectError> for ClientError {
    fn from(error: ConnectError) -> Self {
        match error {
            ConnectError::BadAddress { address, reason } => ClientError::BadAddress { address, reason },
            // Only eager connections fail this way; the connector never connects up front.
            ConnectError::Unreachable { ref address, .. } | ConnectError::Timeout { ref address, .. } => {
                ClientError::BadAddress { address: address.clone(), reason: error.to_string() }
            }
        }
    }
}

/// Finds the auctioneer's address: fixed by configuration, or the value of its Locket lock.
pub trait AuctioneerLocator: Send + Sync + 'static {
    /// The current address.
    fn locate(&self) -> BoxFuture<'_, Result<String, ClientError>>;
}

/// The tonic auctioneer client.
pub struct GrpcAuctioneerClient<L> {
    locator: L,
    connector: Connector,
}

impl<L: AuctioneerLocator> GrpcAuctioneerClient<L> {
    /// A client that finds the auctioneer through `locator`, with `security` (under mutual TLS
    /// the server must present a `diego://auctioneer` certificate).
    pub fn new(locator: L, timeout: Duration, security: Security) -> Self {
        let options = ChannelOptions::new(timeout, security).expect(Role::Auctioneer);
        Self { locator, connector: Connector::with_options(options) }
    }

    async fn client(&self) -> Result<(String, auction_pb::auctioneer_client::AuctioneerClient<Channel>), ClientError> {
        let address = self.locator.locate().await?;
        let channel = self.connector.channel(&address)?;
        Ok((address, auction_pb::auctioneer_client::AuctioneerClient::new(channel)))
    }
}

impl<L: AuctioneerLocator> AuctioneerClient for GrpcAuctioneerClient<L> {
    fn request_lrp_auctions(&self, requests: Vec<LrpStartRequest>) -> BoxFuture<'_, Result<(), ClientError>> {
        Box::pin(async move {
            let (address, mut client) = self.client().await?;
            let lrp_start_requests = requests.iter().map(auction_pb::LrpStartRequest::from).collect();
            // A convergence pass may start more than one request can carry: split the batch.
            for lrp_start_requests in
                chunk_by_size(lrp_start_requests, CHUNK_BYTES, ("RequestLRPAuctionsRequest", "lrp_start_requests"))
            {
                client
                    .request_lrp_auctions(auction_pb::RequestLrpAuctionsRequest { lrp_start_requests })
                    .await
                    .map_err(|status| ClientError::Call {
                        peer: format!("auctioneer {address}"),
                        call: "RequestLRPAuctions",
                        status,
                    })?;
            }
            Ok(())
        })
    }

    fn request_task_auctions(&self, requests: Vec<TaskStartRequest>) -> BoxFuture<'_, Result<(), ClientError>> {
        Box::pin(async move {
            let (address, mut client) = self.client().await?;
            let task_start_requests = requests.iter().map(auction_pb::TaskStartRequest::from).collect();
            for task_start_requests in
                chunk_by_size(task_start_requests, CHUNK_BYTES, ("RequestTaskAuctionsRequest", "task_start_requests"))
            {
                client
                    .request_task_auctions(auction_pb::RequestTaskAuctionsRequest { task_start_requests })
                    .await
                    .map_err(|status| ClientError::Call {
                        peer: format!("auctioneer {address}"),
                        call: "RequestTaskAuctions",
                        status,
                    })?;
            }
            Ok(())
        })
    }
}

/// The tonic rep client: one lazily connected channel per rep address and cell. Under mutual TLS
/// the rep must present the certificate of the cell it is called as (`diego://cell/<cell-id>`).
pub struct GrpcRepClient {
    connector: Connector,
}

impl GrpcRepClient {
    /// A client whose calls time out after `timeout`, with `security`.
    pub fn new(timeout: Duration, security: Security) -> Self {
        Self { connector: Connector::with_options(ChannelOptions::new(timeout, security).expect(Role::Cell)) }
    }

    fn client(&self, cell_id: &str, address: &str) -> Result<rep_pb::rep_client::RepClient<Channel>, ClientError> {
        Ok(rep_pb::rep_client::RepClient::new(self.connector.cell_channel(address, cell_id)?))
    }
}

impl RepClient for GrpcRepClient {
    fn stop_lrp_instance<'a>(
        &'a self,
        cell_id: &'a str,
        rep_address: &'a str,
        process_guid: &'a str,
        instance_guid: &'a str,
        index: i32,
    ) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(async move {
            let request = rep_pb::StopLrpInstanceRequest {
                process_guid: process_guid.to_owned(),
                instance_guid: instance_guid.to_owned(),
                index,
            };
            self.client(cell_id, rep_address)?.stop_lrp_instance(request).await.map(|_| ()).map_err(|status| {
                ClientError::Call { peer: format!("rep {rep_address}"), call: "StopLRPInstance", status }
            })
        })
    }

    fn cancel_task<'a>(
        &'a self,
        cell_id: &'a str,
        rep_address: &'a str,
        task_guid: &'a str,
    ) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(async move {
            self.client(cell_id, rep_address)?
                .cancel_task(rep_pb::CancelTaskRequest { task_guid: task_guid.to_owned() })
                .await
                .map(|_| ())
                .map_err(|status| ClientError::Call { peer: format!("rep {rep_address}"), call: "CancelTask", status })
        })
    }

    fn update_lrp_instance<'a>(
        &'a self,
        cell_id: &'a str,
        rep_address: &'a str,
        process_guid: &'a str,
        instance_guid: &'a str,
        internal_routes: Vec<String>,
        metric_tags: std::collections::BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(async move {
            let request = rep_pb::UpdateLrpInstanceRequest {
                process_guid: process_guid.to_owned(),
                instance_guid: instance_guid.to_owned(),
                internal_routes: internal_routes
                    .into_iter()
                    .map(|hostname| models_pb::ActualLrpInternalRoute { hostname })
                    .collect(),
                metric_tags: metric_tags.into_iter().collect(),
            };
            self.client(cell_id, rep_address)?.update_lrp_instance(request).await.map(|_| ()).map_err(|status| {
                ClientError::Call { peer: format!("rep {rep_address}"), call: "UpdateLRPInstance", status }
            })
        })
    }
}
