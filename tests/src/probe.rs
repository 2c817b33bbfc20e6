//! Read helpers for end-to-end assertions.

use proto::pb::bbs::v1 as api;
use proto::pb::bbs::v1::bbs_client::BbsClient;
use proto::pb::models::v1 as pb;
use tonic::transport::Channel;

/// Every actual LRP row of `guid` (empty when the BBS cannot be read right now).
pub async fn instances(client: &BbsClient<Channel>, guid: &str) -> Vec<pb::ActualLrp> {
    let mut client = client.clone();
    client
        .actual_lr_ps(api::ActualLrPsRequest { process_guid: guid.into(), ..Default::default() })
        .await
        .map(|r| r.into_inner().actual_lrps)
        .unwrap_or_default()
}

/// The ordinary RUNNING instances of `guid`.
pub async fn running(client: &BbsClient<Channel>, guid: &str) -> Vec<pb::ActualLrp> {
    instances(client, guid)
        .await
        .into_iter()
        .filter(|a| a.state == pb::ActualLrpState::Running as i32 && a.presence == pb::Presence::Ordinary as i32)
        .collect()
}

/// The cell of an instance ("" when it has none).
pub fn cell(lrp: &pb::ActualLrp) -> &str {
    lrp.actual_lrp_instance_key.as_ref().map_or("", |k| k.cell_id.as_str())
}

/// The instance guid of an instance ("" when it has none).
pub fn instance_guid(lrp: &pb::ActualLrp) -> &str {
    lrp.actual_lrp_instance_key.as_ref().map_or("", |k| k.instance_guid.as_str())
}

/// A task, if it exists.
pub async fn task(client: &BbsClient<Channel>, guid: &str) -> Option<pb::Task> {
    let mut client = client.clone();
    client.task_by_guid(api::TaskByGuidRequest { task_guid: guid.into() }).await.ok()?.into_inner().task
}
