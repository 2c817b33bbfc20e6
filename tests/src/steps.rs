//! The steps end-to-end tests take through a cluster's BBS, and the waits for what they expect,
//! with one patience for every wait.

use std::time::Duration;

use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;

use crate::cluster::Cluster;
use crate::eventually::eventually;
use crate::probe;

/// How long any wait of the suite may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Desires `lrp`; panics when the BBS refuses it.
pub async fn desire(cluster: &Cluster, lrp: pb::DesiredLrp) {
    cluster.bbs().desire_lrp(api::DesireLrpRequest { desired_lrp: Some(lrp) }).await.expect("desire lrp");
}

/// Scales `guid` to `instances`; panics when the BBS refuses it.
pub async fn scale(cluster: &Cluster, guid: &str, instances: i32) {
    let update = pb::DesiredLrpUpdate { instances: Some(instances), ..Default::default() };
    cluster
        .bbs()
        .update_desired_lrp(api::UpdateDesiredLrpRequest { process_guid: guid.into(), update: Some(update) })
        .await
        .expect("scale");
}

/// Waits until `guid` has exactly `n` ordinary instances, all RUNNING, and returns them.
pub async fn wait_running(cluster: &Cluster, guid: &str, n: usize) -> Vec<pb::ActualLrp> {
    let client = cluster.bbs();
    eventually(&format!("{n} RUNNING instances of {guid}"), PATIENCE, || {
        let client = client.clone();
        async move {
            let all = probe::instances(&client, guid).await;
            let running: Vec<_> = all
                .iter()
                .filter(|a| {
                    a.state == pb::ActualLrpState::Running as i32 && a.presence == pb::Presence::Ordinary as i32
                })
                .cloned()
                .collect();
            let ordinary = all.iter().filter(|a| a.presence == pb::Presence::Ordinary as i32).count();
            (running.len() == n && ordinary == n).then_some(running)
        }
    })
    .await
}

/// Desires task `guid` in `domain`; panics when the BBS refuses it.
pub async fn desire_task(cluster: &Cluster, guid: &str, domain: &str, definition: pb::TaskDefinition) {
    cluster
        .bbs()
        .desire_task(api::DesireTaskRequest {
            task_definition: Some(definition),
            task_guid: guid.into(),
            domain: domain.into(),
        })
        .await
        .expect("desire task");
}

/// Waits until task `guid` is in `state` and returns it.
pub async fn wait_task(cluster: &Cluster, guid: &str, state: pb::task::State) -> pb::Task {
    let client = cluster.bbs();
    eventually(&format!("task {guid} {state:?}"), PATIENCE, || {
        let client = client.clone();
        async move { probe::task(&client, guid).await.filter(|t| t.state == state as i32) }
    })
    .await
}

/// The instance of `guid` at `index` (its ordinary row), if any.
pub async fn instance(cluster: &Cluster, guid: &str, index: i32) -> Option<pb::ActualLrp> {
    probe::instances(&cluster.bbs(), guid).await.into_iter().find(|a| {
        a.presence == pb::Presence::Ordinary as i32 && a.actual_lrp_key.as_ref().is_some_and(|k| k.index == index)
    })
}

/// The state of `lrp` (UNCLAIMED when the wire value is unknown).
pub fn state_of(lrp: &pb::ActualLrp) -> pb::ActualLrpState {
    pb::ActualLrpState::try_from(lrp.state).unwrap_or(pb::ActualLrpState::Unclaimed)
}

/// The raw HTTP/1.0 response to `GET /` from `address`, if it answers.
pub async fn http_get(address: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").await.ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await.ok()?;
    Some(body)
}

/// The Diego error type a status carries in `x-diego-error` (empty when none).
pub fn diego_error(status: &tonic::Status) -> String {
    status.metadata().get("x-diego-error").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

/// A client of the rep at `address`, as the cluster's operator (who may read a rep's `State`).
pub async fn rep_client(
    cluster: &Cluster,
    address: &str,
) -> Option<proto::pb::rep::v1::rep_client::RepClient<tonic::transport::Channel>> {
    let options = svc::connect::ChannelOptions::new(Duration::from_secs(5), cluster.operator_security().clone())
        .expect(svc::identity::Role::Cell);
    let channel = svc::connect::connect(address, &options).await.ok()?;
    Some(proto::pb::rep::v1::rep_client::RepClient::new(channel))
}
