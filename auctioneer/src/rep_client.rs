//! The reps as the auctioneer sees them: `State` (the bid) and `Perform` (the win). The runner
//! sees only the [`RepClient`] trait; [`GrpcRepClient`] is the tonic implementation, and
//! `testing::FakeReps` the recording fake. Conversions to and from the wire live in `wire.rs`.

use std::time::Duration;

use futures::future::BoxFuture;
use proto::pb::rep::v1 as rep_pb;

use crate::batch::Work;
use crate::connector::Connector;
use crate::error::ClientError;
use crate::placement::CellState;
use crate::wire;

/// The rep calls the auctioneer makes, by the rep's address (`CellPresence::rep_address`).
pub trait RepClient: Send + Sync + 'static {
    /// The cell's current state, converted for placement. The caller bounds the call with its
    /// per-cell timeout.
    fn state<'a>(&'a self, address: &'a str) -> BoxFuture<'a, Result<CellState, ClientError>>;

    /// Asks the cell to reserve `work`; returns the part it could not accept.
    fn perform<'a>(&'a self, address: &'a str, work: Work) -> BoxFuture<'a, Result<Work, ClientError>>;
}

/// The tonic rep client: one lazily connected channel per rep address.
#[derive(Debug)]
pub struct GrpcRepClient {
    connector: Connector,
    state_timeout: Duration,
}

impl GrpcRepClient {
    /// A client whose `State` calls time out after `state_timeout` and other calls after
    /// `timeout`.
    pub fn new(state_timeout: Duration, timeout: Duration) -> Self {
        Self { connector: Connector::new(timeout), state_timeout }
    }

    fn client(&self, address: &str) -> Result<rep_pb::rep_client::RepClient<tonic::transport::Channel>, ClientError> {
        Ok(rep_pb::rep_client::RepClient::new(self.connector.channel(address)?))
    }
}

impl RepClient for GrpcRepClient {
    fn state<'a>(&'a self, address: &'a str) -> BoxFuture<'a, Result<CellState, ClientError>> {
        Box::pin(async move {
            let mut request = tonic::Request::new(rep_pb::StateRequest {});
            // Also tell the rep, so it stops working on an answer nobody waits for.
            request.set_timeout(self.state_timeout);
            let state = self
                .client(address)?
                .state(request)
                .await
                .map_err(|status| ClientError::call(format!("rep {address}"), "State", status))?;
            Ok(wire::cell_state_from_pb(state.into_inner()))
        })
    }

    fn perform<'a>(&'a self, address: &'a str, work: Work) -> BoxFuture<'a, Result<Work, ClientError>> {
        Box::pin(async move {
            let response = self
                .client(address)?
                .perform(wire::work_to_pb(&work))
                .await
                .map_err(|status| ClientError::call(format!("rep {address}"), "Perform", status))?;
            Ok(wire::refused_from_pb(response.into_inner()))
        })
    }
}
