//! The reps as the auctioneer sees them: `State` (the bid) and `Perform` (the win). The runner
//! sees only the [`RepClient`] trait; [`GrpcRepClient`] is the tonic implementation (channels
//! from [`svc::connect`]), and
//! `testing::FakeReps` the recording fake. Conversions to and from the wire live in `wire.rs`.

use proto::bounds::{CHUNK_BYTES, chunk_by_size};
use std::time::Duration;

use futures::future::BoxFuture;
use proto::pb::rep::v1 as rep_pb;
use svc::connect::ChannelOptions;
use svc::identity::Role;

use crate::batch::Work;
use crate::connector::Connector;
use crate::error::ClientError;
use crate::placement::CellState;
use crate::wire;

/// The rep calls the auctioneer makes, to the rep of cell `cell_id` at its address
/// (`CellPresence::rep_address`).
pub trait RepClient: Send + Sync + 'static {
    /// The cell's current state, converted for placement. The caller bounds the call with its
    /// per-cell timeout.
    fn state<'a>(&'a self, cell_id: &'a str, address: &'a str) -> BoxFuture<'a, Result<CellState, ClientError>>;

    /// Asks the cell to reserve `work`; returns the part it could not accept.
    fn perform<'a>(
        &'a self,
        cell_id: &'a str,
        address: &'a str,
        work: Work,
    ) -> BoxFuture<'a, Result<Work, ClientError>>;
}

/// The tonic rep client: one lazily connected channel per rep address and cell. Under mutual TLS
/// the rep must present the certificate of the cell it is called as (`diego://cell/<cell-id>`).
#[derive(Debug)]
pub struct GrpcRepClient {
    connector: Connector,
    state_timeout: Duration,
}

impl GrpcRepClient {
    /// A client whose `State` calls time out after `state_timeout` and other calls after
    /// `timeout`, with `security`.
    pub fn new(state_timeout: Duration, timeout: Duration, security: svc::tls::Security) -> Self {
        let options = ChannelOptions::new(timeout, security).expect(Role::Cell);
        Self { connector: Connector::with_options(options), state_timeout }
    }

    fn client(
        &self,
        cell_id: &str,
        address: &str,
    ) -> Result<rep_pb::rep_client::RepClient<tonic::transport::Channel>, ClientError> {
        Ok(rep_pb::rep_client::RepClient::new(self.connector.cell_channel(address, cell_id)?))
    }
}

impl RepClient for GrpcRepClient {
    fn state<'a>(&'a self, cell_id: &'a str, address: &'a str) -> BoxFuture<'a, Result<CellState, ClientError>> {
        Box::pin(async move {
            let mut request = tonic::Request::new(rep_pb::StateRequest {});
            // Also tell the rep, so it stops working on an answer nobody waits for.
            request.set_timeout(self.state_timeout);
            let state = self
                .client(cell_id, address)?
                .state(request)
                .await
                .map_err(|status| ClientError::call(format!("rep {address}"), "State", status))?;
            Ok(wire::cell_state_from_pb(state.into_inner()))
        })
    }

    fn perform<'a>(
        &'a self,
        cell_id: &'a str,
        address: &'a str,
        work: Work,
    ) -> BoxFuture<'a, Result<Work, ClientError>> {
        Box::pin(async move {
            // More work than one request carries goes in several: LRPs first, then tasks.
            let whole = wire::work_to_pb(&work);
            let lrps = chunk_by_size(whole.lrps, CHUNK_BYTES, ("Work", "lrps"));
            let tasks = chunk_by_size(whole.tasks, CHUNK_BYTES, ("Work", "tasks"));
            let requests = lrps
                .into_iter()
                .map(|lrps| rep_pb::Work { lrps, tasks: Vec::new() })
                .chain(tasks.into_iter().map(|tasks| rep_pb::Work { lrps: Vec::new(), tasks }));
            let mut refused = Work::default();
            let mut client = self.client(cell_id, address)?;
            let mut sent_any = false;
            let mut requests = requests.peekable();
            while let Some(request) = requests.next() {
                let part = match client.perform(request.clone()).await {
                    Ok(response) => wire::refused_from_pb(response.into_inner()),
                    Err(status) if !sent_any => {
                        return Err(ClientError::call(format!("rep {address}"), "Perform", status));
                    }
                    // The cell took earlier parts: this one and the rest count as refused.
                    Err(status) => {
                        tracing::warn!(%address, %status, "perform failed part-way; the rest counts as refused");
                        let rest = std::iter::once(request).chain(requests.by_ref());
                        let (lrps, tasks): (Vec<_>, Vec<_>) = rest.map(|w| (w.lrps, w.tasks)).unzip();
                        let unsent = rep_pb::PerformResponse {
                            failed_lrps: lrps.into_iter().flatten().collect(),
                            failed_tasks: tasks.into_iter().flatten().collect(),
                        };
                        wire::refused_from_pb(unsent)
                    }
                };
                sent_any = true;
                refused.lrps.extend(part.lrps);
                refused.tasks.extend(part.tasks);
            }
            Ok(refused)
        })
    }
}
