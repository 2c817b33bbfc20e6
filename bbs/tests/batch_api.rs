//! The batch RPCs, DesireLRPs and StartActualLRPs, through the gRPC service on every backend:
//! one result per item in request order, each item refused on its own, the events and start
//! requests of the items applied, a cell held to its own instance keys, and nothing written
//! when the fence check fails.

#[macro_use]
mod common;

use std::time::Duration;

use bbs::grpc::BbsService;
use common::Harness;
use db::Backend;
use futures::StreamExt;
use proto::pb::bbs::v1 as api;
use proto::pb::bbs::v1::bbs_server::Bbs;
use proto::pb::models::v1 as pb;
use svc::identity::{Identity, Peer};
use tonic::{Code, Request};

on_every_backend!(
    desire_lrps_answers_each_item_and_publishes_what_single_desires_would,
    start_actual_lrps_answers_each_start_and_publishes_the_changes,
    a_cell_cannot_start_another_cells_instances_in_a_batch,
    a_fenced_out_batch_is_unavailable_and_writes_nothing,
);

fn desired(guid: &str, instances: i32) -> pb::DesiredLrp {
    pb::DesiredLrp { ports: vec![8080], ..common::shell_lrp(guid, instances) }
}

fn start(guid: &str, index: i32, instance: &str, cell: &str) -> api::StartActualLrpRequest {
    api::StartActualLrpRequest {
        actual_lrp_key: Some(pb::ActualLrpKey { process_guid: guid.into(), index, domain: "apps".into() }),
        actual_lrp_instance_key: Some(pb::ActualLrpInstanceKey {
            instance_guid: instance.into(),
            cell_id: cell.into(),
        }),
        actual_lrp_net_info: Some(pb::ActualLrpNetInfo {
            address: "10.0.0.1".into(),
            ports: vec![pb::PortMapping { container_port: 8080, host_port: 61001, ..Default::default() }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn as_cell<T>(message: T, cell: &str) -> Request<T> {
    let mut request = Request::new(message);
    let identity = Identity::parse_uri(&format!("diego://cell/{cell}")).unwrap();
    request.extensions_mut().insert(Peer::Verified(identity));
    request
}

/// Each result's Diego error type (`""` for an applied item).
fn types(response: &api::BatchResponse) -> Vec<&str> {
    response.results.iter().map(|r| r.error.as_ref().map_or("", |e| e.r#type.as_str())).collect()
}

/// The next `n` instance events as (kind, process guid, index).
/// Events grouped by process guid, each guid's in the order received: the order a batch
/// promises (per key, not across keys).
fn per_key(events: Vec<(&'static str, String, i32)>) -> std::collections::BTreeMap<String, Vec<(&'static str, i32)>> {
    let mut out: std::collections::BTreeMap<String, Vec<(&'static str, i32)>> = Default::default();
    for (what, guid, index) in events {
        out.entry(guid).or_default().push((what, index));
    }
    out
}

async fn next_events(
    stream: &mut (impl futures::Stream<Item = Result<pb::InstanceEvent, tonic::Status>> + Unpin),
    n: usize,
) -> Vec<(&'static str, String, i32)> {
    use pb::instance_event::Event;
    let mut out = Vec::new();
    while out.len() < n {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap_or_else(|_| panic!("events stopped after {out:?}"))
            .expect("stream ended")
            .expect("stream failed");
        let lrp_key = |lrp: &Option<pb::ActualLrp>| {
            let key = lrp.as_ref().and_then(|l| l.actual_lrp_key.clone()).unwrap_or_default();
            (key.process_guid, key.index)
        };
        out.push(match event.event {
            Some(Event::DesiredLrpCreated(e)) => ("desired_created", e.desired_lrp.unwrap().process_guid, -1),
            Some(Event::ActualLrpInstanceCreated(e)) => {
                let (guid, index) = lrp_key(&e.actual_lrp);
                ("created", guid, index)
            }
            Some(Event::ActualLrpInstanceChanged(e)) => {
                let key = e.actual_lrp_key.unwrap_or_default();
                ("changed", key.process_guid, key.index)
            }
            other => panic!("unexpected event {other:?}"),
        });
    }
    out
}

async fn desired_count(h: &Harness) -> i64 {
    let sql = "SELECT COUNT(*) FROM desired_lrps";
    h.db.store.backend().query_scalar::<i64>(sql).fetch_one(h.db.store.pool()).await.unwrap()
}

async fn desire_lrps_answers_each_item_and_publishes_what_single_desires_would(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    let mut ctx = h.ctx.clone();
    ctx.max_lrp_instances = 10;
    let bbs = BbsService::new(ctx, tokio_util::sync::CancellationToken::new());
    bbs.desire_lrp(Request::new(api::DesireLrpRequest { desired_lrp: Some(desired("taken", 1)) })).await.unwrap();
    let mut events = bbs
        .subscribe_to_instance_events(Request::new(api::SubscribeToInstanceEventsRequest::default()))
        .await
        .unwrap()
        .into_inner();

    let batch = vec![
        desired("a", 2),
        desired("", 1),
        desired("taken", 3),
        desired("a", 1),
        desired("big", 11),
        desired("b", 1),
    ];
    let response =
        bbs.desire_lr_ps(Request::new(api::DesireLrPsRequest { desired_lrps: batch })).await.unwrap().into_inner();
    assert_eq!(types(&response), ["", "InvalidRequest", "ResourceExists", "ResourceExists", "InvalidRequest", ""]);
    let codes: Vec<i32> = response.results.iter().map(|r| r.error.as_ref().map_or(0, |e| e.code)).collect();
    let (invalid, exists) = (Code::InvalidArgument as i32, Code::AlreadyExists as i32);
    assert_eq!(codes, [0, invalid, exists, exists, invalid, 0]);
    let big = &response.results[4].error.as_ref().unwrap().message;
    assert!(big.contains("desired_lrp.instances") && big.contains("max_lrp_instances"), "{big}");

    // The events of two single desires, each guid's in order (the batch publishes each guid's
    // under its stripe; different guids' in no fixed order).
    let expected = [
        ("desired_created", "a".to_owned(), -1),
        ("created", "a".to_owned(), 0),
        ("created", "a".to_owned(), 1),
        ("desired_created", "b".to_owned(), -1),
        ("created", "b".to_owned(), 0),
    ];
    assert_eq!(per_key(next_events(&mut events, 5).await), per_key(expected.to_vec()));
    // One auction call (after the single desire's) asking for both LRPs' instances.
    let calls = h.auctioneer.wait_lrp_calls(2).await;
    let batch_call: Vec<(String, Vec<i32>)> =
        calls[1].iter().map(|r| (r.process_guid.to_string(), r.indices.clone())).collect();
    assert_eq!(batch_call, [("a".to_owned(), vec![0, 1]), ("b".to_owned(), vec![0])]);
    assert_eq!(desired_count(&h).await, 3);
}

async fn start_actual_lrps_answers_each_start_and_publishes_the_changes(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    let bbs = BbsService::new(h.ctx.clone(), tokio_util::sync::CancellationToken::new());
    let request = api::DesireLrPsRequest { desired_lrps: vec![desired("app", 3)] };
    assert_eq!(types(&bbs.desire_lr_ps(Request::new(request)).await.unwrap().into_inner()), [""]);
    let mut events = bbs
        .subscribe_to_instance_events(Request::new(api::SubscribeToInstanceEventsRequest::default()))
        .await
        .unwrap()
        .into_inner();

    let no_net_info = api::StartActualLrpRequest { actual_lrp_net_info: None, ..start("app", 1, "i-1", "cell-1") };
    let starts = vec![
        start("app", 0, "i-0", "cell-1"),
        no_net_info,
        start("app", 0, "i-other", "cell-1"),
        start("app", 2, "i-2", "cell-1"),
        start("app", 0, "i-0", "cell-1"),
    ];
    let response =
        bbs.start_actual_lr_ps(as_cell(api::StartActualLrPsRequest { starts }, "cell-1")).await.unwrap().into_inner();
    assert_eq!(types(&response), ["", "InvalidRequest", "ActualLRPCannotBeStarted", "", ""]);
    let refused = response.results[2].error.as_ref().unwrap();
    assert_eq!(refused.code, Code::FailedPrecondition as i32);

    // One change per start that changed a row; the re-assert at the end changes nothing.
    let expected = [("changed", "app".to_owned(), 0), ("changed", "app".to_owned(), 2)];
    // Two indices, two stripes: in no fixed order.
    let mut received = next_events(&mut events, 2).await;
    received.sort();
    assert_eq!(received, expected);
    let lrps = h.db.store.actual_lrps(&Default::default()).await.unwrap();
    let states: Vec<(i32, &str)> = lrps.iter().map(|l| (l.key.index, l.state.as_str())).collect();
    assert_eq!(states, [(0, "RUNNING"), (1, "UNCLAIMED"), (2, "RUNNING")]);
}

async fn a_cell_cannot_start_another_cells_instances_in_a_batch(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    let bbs = BbsService::new(h.ctx.clone(), tokio_util::sync::CancellationToken::new());
    let request = api::DesireLrPsRequest { desired_lrps: vec![desired("app", 2)] };
    bbs.desire_lr_ps(Request::new(request)).await.unwrap();
    let starts = vec![start("app", 0, "i-0", "cell-1"), start("app", 1, "i-1", "cell-2")];
    let status = bbs.start_actual_lr_ps(as_cell(api::StartActualLrPsRequest { starts }, "cell-1")).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let lrps = h.db.store.actual_lrps(&Default::default()).await.unwrap();
    assert!(lrps.iter().all(|l| l.state.as_str() == "UNCLAIMED"), "nothing of the refused call was applied");
}

async fn a_fenced_out_batch_is_unavailable_and_writes_nothing(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    let bbs = BbsService::new(h.ctx.clone(), tokio_util::sync::CancellationToken::new());
    bbs.desire_lr_ps(Request::new(api::DesireLrPsRequest { desired_lrps: vec![desired("app", 1)] })).await.unwrap();
    // The lease this leader writes under is gone (as when another BBS took it over).
    h.db.store.backend().query("DELETE FROM leases").execute(h.db.store.pool()).await.unwrap();

    let request = api::DesireLrPsRequest { desired_lrps: vec![desired("x", 1), desired("y", 1)] };
    let status = bbs.desire_lr_ps(Request::new(request)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let starts = vec![start("app", 0, "i-0", "cell-1")];
    let status = bbs.start_actual_lr_ps(Request::new(api::StartActualLrPsRequest { starts })).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(desired_count(&h).await, 1);
    let lrps = h.db.store.actual_lrps(&Default::default()).await.unwrap();
    assert_eq!(lrps.len(), 1);
    assert_eq!(lrps[0].state.as_str(), "UNCLAIMED");
}
