//! The BBS as the router's [`RouteSource`]: the full sync lists every routing info
//! (`DesiredLRPRoutingInfos`) and every actual LRP (`ActualLRPs`), page after page; the events
//! come from `SubscribeToInstanceEvents`. Listings may be answered by any BBS; the subscription
//! follows `x-diego-leader` to the leader (the service toolkit's client core).

use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use proto::pb::bbs::v1 as api;
use proto::pb::bbs::v1::bbs_client::BbsClient;
use svc::bbs_client::{BbsChannels, CallError};
use svc::connect::ChannelOptions;
use svc::identity::Role;
use svc::tls::Security;

use crate::emitter::{RouteSource, Sequenced};
use crate::error::RouterError;
use crate::table::Snapshot;
use crate::wire;

/// Most pages one listing may take (a BBS answering pages forever cannot hold the sync).
const MAX_PAGES: usize = 100_000;

/// The tonic source.
#[derive(Debug)]
pub struct GrpcSource {
    /// Listings: every call bounded by the communication timeout.
    listings: BbsChannels,
    /// The event stream: no deadline on the channel (the stream lives as long as it can).
    events: BbsChannels,
}

impl GrpcSource {
    /// A source reading the BBS at `address`. Checks the address at once; connects on use.
    pub fn new(address: &str, timeout: Duration, security: Security) -> Result<Self, RouterError> {
        let bad = |e: svc::connect::ConnectError| RouterError::BadAddress(e.to_string());
        let listings = BbsChannels::new(address, timeout, security.clone()).map_err(bad)?;
        let options = ChannelOptions { timeout: None, ..ChannelOptions::new(timeout, security).expect(Role::Bbs) };
        let events = BbsChannels::with_options(address, options).map_err(bad)?;
        Ok(Self { listings, events })
    }
}

fn call_error(call: &'static str, e: CallError) -> RouterError {
    RouterError::Bbs { call, message: e.to_string() }
}

impl RouteSource for GrpcSource {
    fn snapshot(&self) -> BoxFuture<'_, Result<Snapshot, RouterError>> {
        Box::pin(async move {
            let mut snapshot = Snapshot::default();
            let mut token = String::new();
            for _ in 0..MAX_PAGES {
                let request = api::DesiredLrPsRequest { page_token: token, ..Default::default() };
                let page = self
                    .listings
                    .call("DesiredLRPRoutingInfos", |channel| {
                        let request = request.clone();
                        async move { BbsClient::new(channel).desired_lrp_routing_infos(request).await }
                    })
                    .await
                    .map_err(|e| call_error("DesiredLRPRoutingInfos", e))?;
                snapshot.desired.extend(page.desired_lrps.iter().map(wire::desired_of).filter(|(_, r)| !r.is_empty()));
                token = page.next_page_token;
                if token.is_empty() {
                    break;
                }
            }
            let mut token = String::new();
            for _ in 0..MAX_PAGES {
                let request = api::ActualLrPsRequest { page_token: token, ..Default::default() };
                let page = self
                    .listings
                    .call("ActualLRPs", |channel| {
                        let request = request.clone();
                        async move { BbsClient::new(channel).actual_lr_ps(request).await }
                    })
                    .await
                    .map_err(|e| call_error("ActualLRPs", e))?;
                snapshot.instances.extend(page.actual_lrps.iter().map(wire::instance_of).filter(|i| i.running));
                token = page.next_page_token;
                if token.is_empty() {
                    break;
                }
            }
            Ok(snapshot)
        })
    }

    fn subscribe(&self) -> BoxFuture<'_, Result<BoxStream<'static, Result<Sequenced, RouterError>>, RouterError>> {
        Box::pin(async move {
            let stream = self
                .events
                .call("SubscribeToInstanceEvents", |channel| async move {
                    BbsClient::new(channel)
                        .subscribe_to_instance_events(api::SubscribeToInstanceEventsRequest::default())
                        .await
                })
                .await
                .map_err(|e| call_error("SubscribeToInstanceEvents", e))?;
            Ok(stream
                .map(|item| match item {
                    Ok(event) => Ok((event.sequence, event.event.and_then(wire::change_of))),
                    Err(status) => Err(RouterError::Stream(status.message().to_owned())),
                })
                .boxed())
        })
    }
}
