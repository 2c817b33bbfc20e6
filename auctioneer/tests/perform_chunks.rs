//! `Perform` of more work than one request may carry (`Work.lrps` at most 10 000, 3 MiB per
//! request) goes to the cell in parts, through a real gRPC Rep server; a part that fails after
//! others were taken counts as refused, and a first part that fails fails the whole call.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use auctioneer::batch::Work;
use auctioneer::rep_client::{GrpcRepClient, RepClient};
use auctioneer::testing::{lrp, task};
use proto::pb::rep::v1 as rep;
use tonic::{Request, Response, Status};

/// Records the size of each `Perform`; fails the call numbered `fail_on` (1-based).
#[derive(Default)]
struct CountingCell {
    calls: Mutex<Vec<(usize, usize)>>,
    fail_on: Option<usize>,
}

/// The served handle on a [`CountingCell`] the test keeps too.
struct Served(Arc<CountingCell>);

#[tonic::async_trait]
impl rep::rep_server::Rep for Served {
    async fn state(&self, _: Request<rep::StateRequest>) -> Result<Response<rep::CellState>, Status> {
        Ok(Response::new(rep::CellState::default()))
    }
    async fn perform(&self, request: Request<rep::Work>) -> Result<Response<rep::PerformResponse>, Status> {
        let work = request.into_inner();
        let mut calls = self.0.calls.lock().unwrap();
        calls.push((work.lrps.len(), work.tasks.len()));
        if Some(calls.len()) == self.0.fail_on {
            return Err(Status::unavailable("cell restarting"));
        }
        // The cell refuses index 7 of every LRP it sees.
        let failed_lrps =
            work.lrps.into_iter().filter(|l| l.actual_lrp_key.as_ref().is_some_and(|k| k.index == 7)).collect();
        Ok(Response::new(rep::PerformResponse { failed_lrps, failed_tasks: vec![] }))
    }
    async fn stop_lrp_instance(
        &self,
        _: Request<rep::StopLrpInstanceRequest>,
    ) -> Result<Response<rep::StopLrpInstanceResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }
    async fn cancel_task(
        &self,
        _: Request<rep::CancelTaskRequest>,
    ) -> Result<Response<rep::CancelTaskResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }
    async fn update_lrp_instance(
        &self,
        _: Request<rep::UpdateLrpInstanceRequest>,
    ) -> Result<Response<rep::UpdateLrpInstanceResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }
    async fn evacuate(&self, _: Request<rep::EvacuateRequest>) -> Result<Response<rep::EvacuateResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }
    async fn ping(&self, _: Request<rep::PingRequest>) -> Result<Response<rep::PingResponse>, Status> {
        Ok(Response::new(rep::PingResponse { available: true }))
    }
}

async fn serve(cell: Arc<CountingCell>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(rep::rep_server::RepServer::new(Served(cell)))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    address
}

fn big_work() -> Work {
    Work {
        lrps: (0..25_000).map(|i| lrp(&format!("app-{}", i / 10), i % 10, 1)).collect(),
        tasks: (0..3).map(|i| task(&format!("t{i}"), 1)).collect(),
    }
}

#[tokio::test]
async fn more_work_than_one_request_carries_goes_in_parts() {
    let cell = Arc::new(CountingCell::default());
    let address = serve(cell.clone()).await;
    let client = GrpcRepClient::new(Duration::from_secs(5), Duration::from_secs(30), svc::tls::Security::Plaintext);
    let refused = client.perform("cell-1", &address, big_work()).await.expect("performed");
    assert_eq!(*cell.calls.lock().unwrap(), vec![(10_000, 0), (10_000, 0), (5_000, 0), (0, 3)]);
    assert_eq!(refused.lrps.len(), 2_500, "each part's refusals come back");
    assert!(refused.lrps.iter().all(|l| l.index == 7));
    assert!(refused.tasks.is_empty());
}

#[tokio::test]
async fn a_part_failing_after_others_were_taken_counts_as_refused() {
    let cell = Arc::new(CountingCell { fail_on: Some(2), ..Default::default() });
    let address = serve(cell.clone()).await;
    let client = GrpcRepClient::new(Duration::from_secs(5), Duration::from_secs(30), svc::tls::Security::Plaintext);
    let refused = client.perform("cell-1", &address, big_work()).await.expect("the first part was taken");
    assert_eq!(cell.calls.lock().unwrap().len(), 2, "nothing is sent after a failed part");
    // Part 1's index-7 refusals, then all of parts 2 and 3 and the tasks.
    assert_eq!(refused.lrps.len(), 1_000 + 15_000);
    assert_eq!(refused.tasks.len(), 3);
}

#[tokio::test]
async fn a_first_part_failing_fails_the_call() {
    let cell = Arc::new(CountingCell { fail_on: Some(1), ..Default::default() });
    let address = serve(cell.clone()).await;
    let client = GrpcRepClient::new(Duration::from_secs(5), Duration::from_secs(30), svc::tls::Security::Plaintext);
    assert!(client.perform("cell-1", &address, big_work()).await.is_err());
    assert_eq!(cell.calls.lock().unwrap().len(), 1);
}
