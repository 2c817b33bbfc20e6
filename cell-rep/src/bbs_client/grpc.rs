//! [`GrpcBbsClient`]: the tonic implementation of [`BbsClient`], the only place the rep's
//! BBS requests become `pb` messages and back.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::Duration;

use futures::future::BoxFuture;
use proto::error::ErrorCode;
use proto::models::{ActualLrp, ActualLrpInstanceKey, ActualLrpKey, DesiredLrp, Task};
use proto::pb::bbs::v1 as bbs_pb;
use proto::pb::locket::v1 as locket_pb;
use proto::pb::models::v1 as models_pb;
use svc::bbs_client::{BbsChannels, CallError};
use svc::connect::ConnectError;
use tonic::transport::Channel;

use super::{
    BatchAnswer, BatchSupport, BbsClient, BbsError, PresenceLease, RunningLrp, START_ACTUAL_LRPS, TaskCompletion,
};

/// The tonic client of the BBS (and the Locket it serves), on the service toolkit's
/// leader-following core ([`svc::bbs_client`]): channels are lazy (nothing connects until the
/// first call) and every call times out after the configured timeout. A standby BBS refuses
/// writes with UNAVAILABLE and names the leader in `x-diego-leader`; such a call is retried once
/// on the leader.
#[derive(Debug)]
pub struct GrpcBbsClient {
    channels: BbsChannels,
    /// Whether the BBS serves `StartActualLRPs`.
    batch: BatchSupport,
}

impl GrpcBbsClient {
    /// A client of the BBS at `address` (`host:port` or an `http://` URL) whose connects and
    /// calls time out after `timeout`, with `security`. Checks the address now; connects on the
    /// first call.
    pub fn new(address: impl Into<String>, timeout: Duration, security: svc::tls::Security) -> Result<Self, BbsError> {
        let channels = BbsChannels::new(address, timeout, security).map_err(|e| connect_error("connect", e))?;
        Ok(Self { channels, batch: BatchSupport::default() })
    }

    /// The configured BBS address.
    pub fn address(&self) -> &str {
        self.channels.address()
    }

    /// Runs `f` against the configured address, following a standby's redirect once.
    async fn call<T, F, Fut>(&self, call: &'static str, f: F) -> Result<T, BbsError>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.channels.call(call, f).await.map_err(|e| call_error(call, e))
    }

    /// One `StartActualLRPs` call of at most `MAX_BATCH_ITEMS` starts.
    async fn send_starts(&self, lrps: &[RunningLrp]) -> BatchAnswer {
        let request = bbs_pb::StartActualLrPsRequest { starts: lrps.iter().map(start_request).collect() };
        let answer = self
            .channels
            .call(START_ACTUAL_LRPS, |c| {
                let request = request.clone();
                async move { Self::bbs(c).start_actual_lr_ps(request).await }
            })
            .await;
        match answer {
            Ok(response) => BatchAnswer::Results(
                response.results.into_iter().map(|r| r.error.map_or(Ok(()), |e| Err(batch_item_error(&e)))).collect(),
            ),
            Err(CallError::Status { status, .. }) if status.code() == tonic::Code::Unimplemented => {
                BatchAnswer::Unimplemented
            }
            Err(e) => BatchAnswer::Failed(call_error(START_ACTUAL_LRPS, e)),
        }
    }

    fn bbs(channel: Channel) -> bbs_pb::bbs_client::BbsClient<Channel> {
        bbs_pb::bbs_client::BbsClient::new(channel)
    }
}

/// A failed call as an error of `call`.
fn call_error(call: &'static str, error: CallError) -> BbsError {
    match error {
        CallError::Connect(e) => connect_error(call, e),
        CallError::Status { status, .. } => BbsError::from_status(call, &status),
    }
}

/// A refused item of `StartActualLRPs` as the error its single call's status would have become:
/// read through the same [`BbsError::from_status`] (the Diego type when named, else the code's).
fn batch_item_error(error: &bbs_pb::BatchError) -> BbsError {
    let mut status = tonic::Status::new(tonic::Code::from_i32(error.code), error.message.clone());
    if !error.r#type.is_empty()
        && let Ok(name) = tonic::metadata::MetadataValue::try_from(error.r#type.as_str())
    {
        status.metadata_mut().insert(proto::error::ERROR_METADATA_KEY, name);
    }
    BbsError::from_status(START_ACTUAL_LRPS, &status)
}

/// The `StartActualLRP` request reporting `lrp` running, alone or as an item of
/// `StartActualLRPs`.
fn start_request(lrp: &RunningLrp) -> bbs_pb::StartActualLrpRequest {
    bbs_pb::StartActualLrpRequest {
        actual_lrp_key: Some(key_pb(&lrp.key)),
        actual_lrp_instance_key: Some(instance_pb(&lrp.instance_key)),
        actual_lrp_net_info: Some(lrp.net_info.clone().into()),
        actual_lrp_internal_routes: internal_routes_pb(&lrp.internal_routes),
        metric_tags: metric_tags_pb(&lrp.metric_tags),
        routable: Some(lrp.routable),
        availability_zone: lrp.availability_zone.clone(),
    }
}

/// A channel that could not be built, as an error of `call`.
fn connect_error(call: &'static str, error: ConnectError) -> BbsError {
    let message = match error {
        ConnectError::BadAddress { address, reason } => format!("invalid bbs address {address:?}: {reason}"),
        other => other.to_string(),
    };
    BbsError::new(call, Some(ErrorCode::InvalidRequest), message)
}

fn key_pb(key: &ActualLrpKey) -> models_pb::ActualLrpKey {
    key.clone().into()
}

fn instance_pb(instance: &ActualLrpInstanceKey) -> models_pb::ActualLrpInstanceKey {
    instance.clone().into()
}

fn internal_routes_pb(routes: &[String]) -> Vec<models_pb::ActualLrpInternalRoute> {
    routes.iter().map(|hostname| models_pb::ActualLrpInternalRoute { hostname: hostname.clone() }).collect()
}

fn metric_tags_pb(tags: &BTreeMap<String, String>) -> HashMap<String, String> {
    tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn invalid(call: &'static str, what: impl std::fmt::Display) -> BbsError {
    BbsError::new(call, Some(ErrorCode::InvalidRecord), format!("invalid answer: {what}"))
}

impl BbsClient for GrpcBbsClient {
    fn claim_actual_lrp<'a>(
        &'a self,
        key: &'a ActualLrpKey,
        instance: &'a ActualLrpInstanceKey,
    ) -> BoxFuture<'a, Result<(), BbsError>> {
        let request = bbs_pb::ClaimActualLrpRequest {
            process_guid: key.process_guid.to_string(),
            index: key.index,
            actual_lrp_instance_key: Some(instance_pb(instance)),
        };
        Box::pin(async move {
            self.call("ClaimActualLRP", |c| {
                let request = request.clone();
                async move { Self::bbs(c).claim_actual_lrp(request).await }
            })
            .await
            .map(drop)
        })
    }

    fn start_actual_lrp<'a>(&'a self, lrp: &'a RunningLrp) -> BoxFuture<'a, Result<(), BbsError>> {
        let request = start_request(lrp);
        Box::pin(async move {
            self.call("StartActualLRP", |c| {
                let request = request.clone();
                async move { Self::bbs(c).start_actual_lrp(request).await }
            })
            .await
            .map(drop)
        })
    }

    fn start_actual_lrps<'a>(
        &'a self,
        lrps: &'a [RunningLrp],
    ) -> BoxFuture<'a, Result<Vec<Result<(), BbsError>>, BbsError>> {
        Box::pin(self.batch.start_actual_lrps(self, lrps, |chunk| self.send_starts(chunk)))
    }

    fn crash_actual_lrp<'a>(
        &'a self,
        key: &'a ActualLrpKey,
        instance: &'a ActualLrpInstanceKey,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), BbsError>> {
        let request = bbs_pb::CrashActualLrpRequest {
            actual_lrp_key: Some(key_pb(key)),
            actual_lrp_instance_key: Some(instance_pb(instance)),
            error_message: wire_text(reason),
        };
        Box::pin(async move {
            self.call("CrashActualLRP", |c| {
                let request = request.clone();
                async move { Self::bbs(c).crash_actual_lrp(request).await }
            })
            .await
            .map(drop)
        })
    }

    fn remove_actual_lrp<'a>(
        &'a self,
        key: &'a ActualLrpKey,
        instance: &'a ActualLrpInstanceKey,
    ) -> BoxFuture<'a, Result<(), BbsError>> {
        let request = bbs_pb::RemoveActualLrpRequest {
            process_guid: key.process_guid.to_string(),
            index: key.index,
            actual_lrp_instance_key: Some(instance_pb(instance)),
        };
        Box::pin(async move {
            self.call("RemoveActualLRP", |c| {
                let request = request.clone();
                async move { Self::bbs(c).remove_actual_lrp(request).await }
            })
            .await
            .map(drop)
        })
    }

    fn evacuate_claimed_actual_lrp<'a>(
        &'a self,
        key: &'a ActualLrpKey,
        instance: &'a ActualLrpInstanceKey,
    ) -> BoxFuture<'a, Result<bool, BbsError>> {
        let request = bbs_pb::EvacuateClaimedActualLrpRequest {
            actual_lrp_key: Some(key_pb(key)),
            actual_lrp_instance_key: Some(instance_pb(instance)),
        };
        Box::pin(async move {
            self.call("EvacuateClaimedActualLRP", |c| {
                let request = request.clone();
                async move { Self::bbs(c).evacuate_claimed_actual_lrp(request).await }
            })
            .await
            .map(|r| r.keep_container)
        })
    }

    fn evacuate_running_actual_lrp<'a>(&'a self, lrp: &'a RunningLrp) -> BoxFuture<'a, Result<bool, BbsError>> {
        let request = bbs_pb::EvacuateRunningActualLrpRequest {
            actual_lrp_key: Some(key_pb(&lrp.key)),
            actual_lrp_instance_key: Some(instance_pb(&lrp.instance_key)),
            actual_lrp_net_info: Some(lrp.net_info.clone().into()),
            actual_lrp_internal_routes: internal_routes_pb(&lrp.internal_routes),
            metric_tags: metric_tags_pb(&lrp.metric_tags),
            routable: Some(lrp.routable),
            availability_zone: lrp.availability_zone.clone(),
        };
        Box::pin(async move {
            self.call("EvacuateRunningActualLRP", |c| {
                let request = request.clone();
                async move { Self::bbs(c).evacuate_running_actual_lrp(request).await }
            })
            .await
            .map(|r| r.keep_container)
        })
    }

    fn evacuate_stopped_actual_lrp<'a>(
        &'a self,
        key: &'a ActualLrpKey,
        instance: &'a ActualLrpInstanceKey,
    ) -> BoxFuture<'a, Result<bool, BbsError>> {
        let request = bbs_pb::EvacuateStoppedActualLrpRequest {
            actual_lrp_key: Some(key_pb(key)),
            actual_lrp_instance_key: Some(instance_pb(instance)),
        };
        Box::pin(async move {
            self.call("EvacuateStoppedActualLRP", |c| {
                let request = request.clone();
                async move { Self::bbs(c).evacuate_stopped_actual_lrp(request).await }
            })
            .await
            .map(|r| r.keep_container)
        })
    }

    fn evacuate_crashed_actual_lrp<'a>(
        &'a self,
        key: &'a ActualLrpKey,
        instance: &'a ActualLrpInstanceKey,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<bool, BbsError>> {
        let request = bbs_pb::EvacuateCrashedActualLrpRequest {
            actual_lrp_key: Some(key_pb(key)),
            actual_lrp_instance_key: Some(instance_pb(instance)),
            error_message: wire_text(reason),
        };
        Box::pin(async move {
            self.call("EvacuateCrashedActualLRP", |c| {
                let request = request.clone();
                async move { Self::bbs(c).evacuate_crashed_actual_lrp(request).await }
            })
            .await
            .map(|r| r.keep_container)
        })
    }

    fn remove_evacuating_actual_lrp<'a>(
        &'a self,
        key: &'a ActualLrpKey,
        instance: &'a ActualLrpInstanceKey,
    ) -> BoxFuture<'a, Result<(), BbsError>> {
        let request = bbs_pb::RemoveEvacuatingActualLrpRequest {
            actual_lrp_key: Some(key_pb(key)),
            actual_lrp_instance_key: Some(instance_pb(instance)),
        };
        Box::pin(async move {
            self.call("RemoveEvacuatingActualLRP", |c| {
                let request = request.clone();
                async move { Self::bbs(c).remove_evacuating_actual_lrp(request).await }
            })
            .await
            .map(drop)
        })
    }

    fn actual_lrps_by_cell<'a>(&'a self, cell_id: &'a str) -> BoxFuture<'a, Result<Vec<ActualLrp>, BbsError>> {
        Box::pin(async move {
            // Every page: the BBS caps each response at about 3.5 MB and hands back a token.
            let (mut all, mut page_token) = (Vec::new(), String::new());
            loop {
                let request =
                    bbs_pb::ActualLrPsRequest { cell_id: cell_id.to_owned(), page_token, ..Default::default() };
                let response = self
                    .call("ActualLRPs", |c| {
                        let request = request.clone();
                        async move { Self::bbs(c).actual_lr_ps(request).await }
                    })
                    .await?;
                all.extend(response.actual_lrps);
                if response.next_page_token.is_empty() {
                    break;
                }
                page_token = response.next_page_token;
            }
            let mut lrps = Vec::with_capacity(all.len());
            for lrp in all {
                match ActualLrp::try_from(lrp) {
                    Ok(lrp) => lrps.push(lrp),
                    // One bad record must not stop the sync of every other one.
                    Err(e) => {
                        tracing::warn!(cell_id, error = %e, "skipping an actual lrp the bbs sent that does not validate")
                    }
                }
            }
            Ok(lrps)
        })
    }

    fn desired_lrp<'a>(&'a self, process_guid: &'a str) -> BoxFuture<'a, Result<DesiredLrp, BbsError>> {
        let request = bbs_pb::DesiredLrpByProcessGuidRequest { process_guid: process_guid.to_owned() };
        Box::pin(async move {
            let response = self
                .call("DesiredLRPByProcessGuid", |c| {
                    let request = request.clone();
                    async move { Self::bbs(c).desired_lrp_by_process_guid(request).await }
                })
                .await?;
            let desired =
                response.desired_lrp.ok_or_else(|| invalid("DesiredLRPByProcessGuid", "desired_lrp is missing"))?;
            DesiredLrp::try_from(desired).map_err(|e| invalid("DesiredLRPByProcessGuid", e))
        })
    }

    fn start_task<'a>(&'a self, task_guid: &'a str, cell_id: &'a str) -> BoxFuture<'a, Result<bool, BbsError>> {
        let request = bbs_pb::StartTaskRequest { task_guid: task_guid.to_owned(), cell_id: cell_id.to_owned() };
        Box::pin(async move {
            self.call("StartTask", |c| {
                let request = request.clone();
                async move { Self::bbs(c).start_task(request).await }
            })
            .await
            .map(|r| r.should_start)
        })
    }

    fn complete_task<'a>(&'a self, completion: &'a TaskCompletion) -> BoxFuture<'a, Result<(), BbsError>> {
        let request = bbs_pb::CompleteTaskRequest {
            task_guid: completion.task_guid.clone(),
            cell_id: completion.cell_id.clone(),
            failed: completion.failed,
            failure_reason: wire_text(&completion.failure_reason),
            result: completion.result.replace('\0', "\u{fffd}"),
        };
        Box::pin(async move {
            self.call("CompleteTask", |c| {
                let request = request.clone();
                async move { Self::bbs(c).complete_task(request).await }
            })
            .await
            .map(drop)
        })
    }

    fn reject_task<'a>(&'a self, task_guid: &'a str, reason: &'a str) -> BoxFuture<'a, Result<(), BbsError>> {
        let request =
            bbs_pb::RejectTaskRequest { task_guid: task_guid.to_owned(), rejection_reason: wire_text(reason) };
        Box::pin(async move {
            self.call("RejectTask", |c| {
                let request = request.clone();
                async move { Self::bbs(c).reject_task(request).await }
            })
            .await
            .map(drop)
        })
    }

    fn tasks_by_cell<'a>(&'a self, cell_id: &'a str) -> BoxFuture<'a, Result<Vec<Task>, BbsError>> {
        Box::pin(async move {
            // Every page, as for actual LRPs.
            let (mut all, mut page_token) = (Vec::new(), String::new());
            loop {
                let request = bbs_pb::TasksRequest { cell_id: cell_id.to_owned(), page_token, ..Default::default() };
                let response = self
                    .call("Tasks", |c| {
                        let request = request.clone();
                        async move { Self::bbs(c).tasks(request).await }
                    })
                    .await?;
                all.extend(response.tasks);
                if response.next_page_token.is_empty() {
                    break;
                }
                page_token = response.next_page_token;
            }
            let mut tasks = Vec::with_capacity(all.len());
            for task in all {
                match Task::try_from(task) {
                    Ok(task) => tasks.push(task),
                    Err(e) => {
                        tracing::warn!(cell_id, error = %e, "skipping a task the bbs sent that does not validate")
                    }
                }
            }
            Ok(tasks)
        })
    }

    fn task_by_guid<'a>(&'a self, task_guid: &'a str) -> BoxFuture<'a, Result<Task, BbsError>> {
        let request = bbs_pb::TaskByGuidRequest { task_guid: task_guid.to_owned() };
        Box::pin(async move {
            let response = self
                .call("TaskByGuid", |c| {
                    let request = request.clone();
                    async move { Self::bbs(c).task_by_guid(request).await }
                })
                .await?;
            let task = response.task.ok_or_else(|| invalid("TaskByGuid", "task is missing"))?;
            Task::try_from(task).map_err(|e| invalid("TaskByGuid", e))
        })
    }

    fn lock_presence<'a>(&'a self, lease: &'a PresenceLease, ttl: Duration) -> BoxFuture<'a, Result<(), BbsError>> {
        let request = svc::lease::locket::lock_request(presence_resource(lease), ttl);
        Box::pin(async move {
            self.call("Lock", |c| {
                let request = request.clone();
                async move { locket_pb::locket_client::LocketClient::new(c).lock(request).await }
            })
            .await
            .map(drop)
        })
    }

    fn release_presence<'a>(&'a self, lease: &'a PresenceLease) -> BoxFuture<'a, Result<(), BbsError>> {
        let request = locket_pb::ReleaseRequest { resource: Some(presence_resource(lease)) };
        Box::pin(async move {
            self.call("Release", |c| {
                let request = request.clone();
                async move { locket_pb::locket_client::LocketClient::new(c).release(request).await }
            })
            .await
            .map(drop)
        })
    }
}

fn presence_resource(lease: &PresenceLease) -> locket_pb::Resource {
    svc::lease::locket::resource(lease.key(), &lease.owner, &lease.value(), locket_pb::TypeCode::Presence)
}

/// A reason as the BBS accepts it: process output may hold NUL, which no request may carry, and
/// any length, which the BBS stores cut to `MAX_REASON_CHARS`; cut it here so it always fits.
fn wire_text(reason: &str) -> String {
    proto::models::validation::truncate_reason(&reason.replace('\0', "\u{fffd}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_reach_the_bbs_without_nul_and_within_its_limit() {
        assert_eq!(wire_text("exit status 1"), "exit status 1");
        assert_eq!(wire_text("bad\0byte"), "bad\u{fffd}byte");
        let long = wire_text(&"x".repeat(100_000));
        assert_eq!(long.chars().count(), proto::models::validation::MAX_REASON_CHARS);
        let (max, _) = proto::limits::string_limit("CrashActualLRPRequest", "error_message");
        assert!(long.len() <= max);
    }

    #[test]
    fn a_malformed_bbs_address_is_refused_up_front() {
        assert!(GrpcBbsClient::new("", Duration::from_secs(1), svc::tls::Security::Plaintext).is_err());
        assert!(GrpcBbsClient::new("bad address", Duration::from_secs(1), svc::tls::Security::Plaintext).is_err());
        assert!(GrpcBbsClient::new("127.0.0.1:8889", Duration::from_secs(1), svc::tls::Security::Plaintext).is_ok());
    }

    #[test]
    fn a_refused_batch_item_is_the_error_its_single_call_would_have_been() {
        for code in ErrorCode::ALL {
            let item = bbs_pb::BatchError {
                r#type: code.name().to_owned(),
                code: code.grpc_code() as i32,
                message: format!("{code} happened"),
            };
            let single = BbsError::from_status(START_ACTUAL_LRPS, &code.to_status(format!("{code} happened")));
            assert_eq!(batch_item_error(&item), single);
        }
        // No type named: the code's, as for a status without `x-diego-error`.
        let unnamed =
            bbs_pb::BatchError { r#type: String::new(), code: tonic::Code::Unavailable as i32, message: "".into() };
        assert!(batch_item_error(&unnamed).is(ErrorCode::Unavailable));
    }

    #[tokio::test]
    async fn a_bbs_that_does_not_serve_the_batch_call_gets_single_calls_from_then_on() {
        // A server with no Bbs service answers every Bbs call UNIMPLEMENTED.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let (_, router) = svc::server::grpc_server(&[], 1 << 20);
        let shutdown = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { svc::server::serve(router, listener, &svc::tls::Security::Plaintext, shutdown).await }
        });
        let client =
            GrpcBbsClient::new(address, Duration::from_secs(5), svc::tls::Security::Plaintext).expect("client");

        let lrps = [crate::testing::running_lrp("web", 0, "cell-1"), crate::testing::running_lrp("web", 1, "cell-1")];
        let results = client.start_actual_lrps(&lrps).await.expect("not an error of the whole call");
        assert_eq!(results.len(), 2);
        for result in results {
            // Each start went as its own StartActualLRP (which this server does not serve either).
            assert_eq!(result.expect_err("unimplemented").call, "StartActualLRP");
        }
        assert!(!client.batch.batch_worth_trying(), "the next pass goes straight to single calls");
        shutdown.cancel();
        let _ = server.await;
    }

    #[tokio::test]
    async fn an_unreachable_bbs_is_an_unavailable_error() {
        // Port 1 on loopback refuses connections.
        let client = GrpcBbsClient::new("127.0.0.1:1", Duration::from_secs(2), svc::tls::Security::Plaintext)
            .expect("valid address");
        let error = client.tasks_by_cell("cell-1").await.expect_err("nothing listens on port 1");
        assert_eq!(error.call, "Tasks");
        assert!(error.is(ErrorCode::Unavailable), "{error:?}");
    }
}
