//! The BBS as the auctioneer sees it: the live cells, and where failed placements go back.
//! The runner sees only the [`BbsClient`] trait; [`GrpcBbsClient`] is the tonic implementation
//! over a BBS gRPC address, and `testing::FakeBbs` the recording fake.

use std::future::Future;
use std::time::Duration;

use futures::future::BoxFuture;
use proto::pb::bbs::v1 as bbs_pb;
use proto::pb::models::v1 as models_pb;
use tonic::transport::Channel;

use svc::bbs_client::{BbsChannels, CallError};

use crate::error::ClientError;

/// A live cell, as its presence in the BBS announces it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CellPresence {
    /// The cell's id.
    pub cell_id: String,
    /// Where its rep serves gRPC (`host:port`).
    pub rep_address: String,
    /// The zone it announced; the zone in its `State` answer wins when both are set.
    pub zone: String,
}

/// An actual LRP's key: which instance of which desired LRP.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct LrpKey {
    /// The desired LRP's process guid.
    pub process_guid: String,
    /// The instance index.
    pub index: i32,
    /// The desired LRP's domain.
    pub domain: String,
}

/// The BBS calls the auctioneer makes. Implementations must be cheap to call concurrently.
pub trait BbsClient: Send + Sync + 'static {
    /// The live cells (BBS `Cells`).
    fn cells(&self) -> BoxFuture<'_, Result<Vec<CellPresence>, ClientError>>;

    /// Records that an UNCLAIMED instance could not be placed (BBS `FailActualLRP`); it stays
    /// UNCLAIMED with `error` as its placement error until convergence auctions it again.
    fn fail_actual_lrp<'a>(&'a self, key: &'a LrpKey, error: &'a str) -> BoxFuture<'a, Result<(), ClientError>>;

    /// Hands a task back as not placed (BBS `RejectTask`); the BBS retries or fails it.
    fn reject_task<'a>(&'a self, task_guid: &'a str, reason: &'a str) -> BoxFuture<'a, Result<(), ClientError>>;
}

/// The tonic BBS client, on the service toolkit's leader-following core: a standby BBS refuses
/// writes with UNAVAILABLE and names the leader in `x-diego-leader`; such a call is retried once
/// on the leader.
#[derive(Debug)]
pub struct GrpcBbsClient {
    channels: BbsChannels,
}

impl GrpcBbsClient {
    /// A client of the BBS at `address` whose calls time out after `timeout`. Checks the
    /// address at once; connects on the first call. `security`: plaintext or mutual TLS.
    pub fn new(
        address: impl Into<String>,
        timeout: Duration,
        security: svc::tls::Security,
    ) -> Result<Self, ClientError> {
        Ok(Self { channels: BbsChannels::new(address, timeout, security)? })
    }

    /// The configured BBS address.
    pub fn address(&self) -> &str {
        self.channels.address()
    }

    async fn call<T, F, Fut>(&self, call: &'static str, f: F) -> Result<T, ClientError>
    where
        F: Fn(bbs_pb::bbs_client::BbsClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.channels.call(call, |channel| f(bbs_pb::bbs_client::BbsClient::new(channel))).await.map_err(|e| match e {
            CallError::Connect(e) => e.into(),
            CallError::Status { address, status } => ClientError::call(format!("bbs {address}"), call, status),
        })
    }
}

/// A presence as the auctioneer uses it: the gRPC address, falling back to `rep_url`.
pub(crate) fn presence_from_pb(p: models_pb::CellPresence) -> CellPresence {
    let rep_address = if p.rep_address.trim().is_empty() { p.rep_url } else { p.rep_address };
    CellPresence { cell_id: p.cell_id, rep_address, zone: p.zone }
}

impl BbsClient for GrpcBbsClient {
    fn cells(&self) -> BoxFuture<'_, Result<Vec<CellPresence>, ClientError>> {
        Box::pin(async move {
            // Every page: the BBS caps each response at about 3.5 MB and hands back a token.
            let (mut cells, mut page_token) = (Vec::new(), String::new());
            loop {
                let request = bbs_pb::CellsRequest { page_token, ..Default::default() };
                let response = self
                    .call("Cells", |mut c| {
                        let request = request.clone();
                        async move { c.cells(request).await }
                    })
                    .await?;
                cells.extend(response.cells.into_iter().map(presence_from_pb));
                if response.next_page_token.is_empty() {
                    return Ok(cells);
                }
                page_token = response.next_page_token;
            }
        })
    }

    fn fail_actual_lrp<'a>(&'a self, key: &'a LrpKey, error: &'a str) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(async move {
            let request = bbs_pb::FailActualLrpRequest {
                actual_lrp_key: Some(models_pb::ActualLrpKey {
                    process_guid: key.process_guid.clone(),
                    index: key.index,
                    domain: key.domain.clone(),
                }),
                error_message: error.to_owned(),
            };
            self.call("FailActualLRP", |mut c| {
                let request = request.clone();
                async move { c.fail_actual_lrp(request).await }
            })
            .await
            .map(|_| ())
        })
    }

    fn reject_task<'a>(&'a self, task_guid: &'a str, reason: &'a str) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(async move {
            let request =
                bbs_pb::RejectTaskRequest { task_guid: task_guid.to_owned(), rejection_reason: reason.to_owned() };
            self.call("RejectTask", |mut c| {
                let request = request.clone();
                async move { c.reject_task(request).await }
            })
            .await
            .map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_falls_back_to_the_rep_url() {
        let p = presence_from_pb(models_pb::CellPresence {
            cell_id: "c1".into(),
            rep_url: "http://10.0.0.1:1801".into(),
            zone: "z1".into(),
            ..Default::default()
        });
        assert_eq!(p.rep_address, "http://10.0.0.1:1801");
        let p = presence_from_pb(models_pb::CellPresence {
            cell_id: "c1".into(),
            rep_address: "10.0.0.1:1801".into(),
            rep_url: "http://elsewhere".into(),
            ..Default::default()
        });
        assert_eq!(p.rep_address, "10.0.0.1:1801");
        assert_eq!(p.cell_id, "c1");
    }

    #[test]
    fn a_malformed_bbs_address_is_refused_up_front() {
        assert!(GrpcBbsClient::new("", Duration::from_secs(1), svc::tls::Security::Plaintext).is_err());
        assert!(GrpcBbsClient::new("bad address", Duration::from_secs(1), svc::tls::Security::Plaintext).is_err());
        assert!(GrpcBbsClient::new("127.0.0.1:8889", Duration::from_secs(1), svc::tls::Security::Plaintext).is_ok());
    }
}
