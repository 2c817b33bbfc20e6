//! The streamed listings (StreamActualLRPs, StreamDesiredLRPSchedulingInfos, bbs `paging`):
//! on every backend, over thousands of rows, the stream holds exactly what the unary listing's
//! pages hold, in the same order, for every filter; its messages respect the count; a client
//! that stops reading stops the server's reader (rows written while it waits still come); and a
//! cell is refused what the unary listing refuses it. Handlers are called in-process, with the
//! caller's [`Peer`] in the request extensions as the server's layer leaves it.

#[macro_use]
mod common;

use std::time::Duration;

use bbs::grpc::BbsService;
use common::{Harness, START_NS};
use db::Backend;
use db::sql::actual_lrps::StartInfo;
use futures::StreamExt;
use proto::models::{
    ActualLrpInstanceKey, ActualLrpKey, CellId, DesiredLrp, DomainName, InstanceGuid, NetInfo, PortMapping,
    ProcessGuid, SchedulingInfo, UpdateStrategy,
};
use proto::pb::bbs::v1 as api;
use proto::pb::bbs::v1::bbs_server::Bbs;
use proto::pb::models::v1 as pb;
use svc::identity::{Identity, Peer};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request};

on_every_backend!(
    streamed_listings_equal_the_unary_pages_for_every_filter,
    a_client_that_stops_reading_stops_the_reader,
    a_cell_is_refused_the_same_streams_as_listings,
);

/// Desired LRPs in the test data (each with [`INSTANCES`] instances).
const LRPS: usize = 1_200;
/// Instances of each desired LRP.
const INSTANCES: i32 = 2;

fn guid(i: usize) -> String {
    format!("app-{:03}-{i:05}", i % 7)
}

fn desired(i: usize) -> DesiredLrp {
    let domain = if i.is_multiple_of(3) { "cf-tasks" } else { "cf-apps" };
    let run_info = proto::convert::run_info_from_pb(pb::DesiredLrpRunInfo {
        desired_lrp_key: Some(pb::DesiredLrpKey {
            process_guid: guid(i),
            domain: domain.into(),
            log_guid: "log".into(),
        }),
        action: Some(pb::Action {
            action: Some(pb::action::Action::RunAction(pb::RunAction {
                path: "/bin/run".into(),
                user: "vcap".into(),
                ..Default::default()
            })),
        }),
        ports: vec![8080],
        ..Default::default()
    })
    .unwrap();
    let route = format!(r#"[{{"hostnames":["{}.example.com"],"port":8080}}]"#, guid(i));
    let mut routes = std::collections::BTreeMap::from([("cf-router".to_owned(), route.into_bytes())]);
    if i.is_multiple_of(5) {
        routes.insert("opaque".to_owned(), vec![0xff, 0x00, i as u8]);
    }
    DesiredLrp {
        scheduling: SchedulingInfo {
            process_guid: ProcessGuid::parse(guid(i)).unwrap(),
            domain: DomainName::parse(domain).unwrap(),
            log_guid: "log".into(),
            annotation: format!("annotation {i}"),
            instances: INSTANCES,
            memory_mb: 128 + i as i32,
            disk_mb: 1024,
            max_pids: 64,
            rootfs: "preloaded:cflinuxfs4".into(),
            routes,
            modification_tag: Default::default(),
            volume_placement: if i.is_multiple_of(4) { vec!["nfs".into()] } else { vec![] },
            placement_tags: if i.is_multiple_of(2) { vec!["zone-a".into()] } else { vec![] },
            update_strategy: if i.is_multiple_of(6) { UpdateStrategy::Recreate } else { UpdateStrategy::Rolling },
        },
        run_info,
        metric_tags: Default::default(),
    }
}

fn cell(i: usize) -> &'static str {
    if i.is_multiple_of(2) { "cell-a" } else { "cell-b" }
}

/// [`LRPS`] desired LRPs and their actual LRPs; every tenth LRP's instance 0 claimed on a
/// cell, and every twentieth also running there, with net info, internal routes and tags.
async fn seed(h: &Harness) {
    let store = &h.db.store;
    for i in 0..LRPS {
        store.desire_lrp(&desired(i), START_NS).await.unwrap();
    }
    for i in (0..LRPS).step_by(10) {
        let process_guid = ProcessGuid::parse(guid(i)).unwrap();
        let instance_key = ActualLrpInstanceKey {
            instance_guid: InstanceGuid::parse(format!("ig-{i}")).unwrap(),
            cell_id: CellId::parse(cell(i)).unwrap(),
        };
        store.claim_actual_lrp(&process_guid, 0, &instance_key, START_NS + 1).await.unwrap();
        if i.is_multiple_of(20) {
            let domain = desired(i).scheduling.domain;
            let key = ActualLrpKey { process_guid, index: 0, domain };
            let start = StartInfo {
                net_info: NetInfo {
                    address: "10.0.0.1".into(),
                    ports: vec![PortMapping { container_port: 8080, host_port: 61_000, ..Default::default() }],
                    instance_address: "10.255.0.2".into(),
                    ..Default::default()
                },
                internal_routes: vec![format!("{}.apps.internal", guid(i))],
                metric_tags: [("source_id".to_owned(), guid(i))].into(),
                routable: true,
                availability_zone: "z1".into(),
            };
            store.start_actual_lrp(&key, &instance_key, &start, START_NS + 2).await.unwrap();
        }
    }
}

fn service(h: &Harness) -> BbsService {
    BbsService::new(h.ctx.clone(), CancellationToken::new())
}

/// Every actual LRP of `request` through the unary listing's pages.
async fn unary_actuals(bbs: &BbsService, mut request: api::ActualLrPsRequest) -> Vec<pb::ActualLrp> {
    let mut all = Vec::new();
    loop {
        let page = bbs.actual_lr_ps(Request::new(request.clone())).await.unwrap().into_inner();
        all.extend(page.actual_lrps);
        if page.next_page_token.is_empty() {
            return all;
        }
        request.page_token = page.next_page_token;
    }
}

/// Every actual LRP of `request` through the stream, checking each message's count and token.
async fn streamed_actuals(bbs: &BbsService, request: api::ActualLrPsRequest) -> (Vec<pb::ActualLrp>, usize) {
    let limit = request.page_size as usize;
    let mut stream = bbs.stream_actual_lr_ps(Request::new(request)).await.unwrap().into_inner();
    let (mut all, mut messages, mut last_token) = (Vec::new(), 0, String::from("start"));
    while let Some(message) = stream.next().await {
        let message = message.unwrap();
        assert!(!last_token.is_empty(), "only the last message has no token");
        assert!(limit == 0 || message.actual_lrps.len() <= limit, "{} items", message.actual_lrps.len());
        messages += 1;
        last_token = message.next_page_token;
        all.extend(message.actual_lrps);
    }
    assert!(last_token.is_empty(), "the last message has no token");
    (all, messages)
}

async fn unary_infos(bbs: &BbsService, mut request: api::DesiredLrPsRequest) -> Vec<pb::DesiredLrpSchedulingInfo> {
    let mut all = Vec::new();
    loop {
        let page = bbs.desired_lrp_scheduling_infos(Request::new(request.clone())).await.unwrap().into_inner();
        all.extend(page.desired_lrp_scheduling_infos);
        if page.next_page_token.is_empty() {
            return all;
        }
        request.page_token = page.next_page_token;
    }
}

async fn streamed_infos(
    bbs: &BbsService,
    request: api::DesiredLrPsRequest,
) -> (Vec<pb::DesiredLrpSchedulingInfo>, usize) {
    let limit = request.page_size as usize;
    let mut stream = bbs.stream_desired_lrp_scheduling_infos(Request::new(request)).await.unwrap().into_inner();
    let (mut all, mut messages, mut last_token) = (Vec::new(), 0, String::from("start"));
    while let Some(message) = stream.next().await {
        let message = message.unwrap();
        assert!(!last_token.is_empty(), "only the last message has no token");
        let items = message.desired_lrp_scheduling_infos.len();
        assert!(limit == 0 || items <= limit, "{items} items");
        messages += 1;
        last_token = message.next_page_token;
        all.extend(message.desired_lrp_scheduling_infos);
    }
    assert!(last_token.is_empty(), "the last message has no token");
    (all, messages)
}

async fn streamed_listings_equal_the_unary_pages_for_every_filter(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    seed(&h).await;
    let bbs = service(&h);

    let actual_requests = [
        (api::ActualLrPsRequest::default(), LRPS * INSTANCES as usize),
        (api::ActualLrPsRequest { page_size: 97, ..Default::default() }, LRPS * INSTANCES as usize),
        (api::ActualLrPsRequest { domain: "cf-tasks".into(), page_size: 50, ..Default::default() }, 800),
        (api::ActualLrPsRequest { cell_id: "cell-a".into(), page_size: 7, ..Default::default() }, 120),
        (api::ActualLrPsRequest { cell_id: "cell-b".into(), ..Default::default() }, 0),
        (api::ActualLrPsRequest { process_guid: guid(20), index: Some(0), ..Default::default() }, 1),
        (
            api::ActualLrPsRequest { process_guids: (0..300).map(guid).collect(), page_size: 33, ..Default::default() },
            600,
        ),
    ];
    for (request, count) in actual_requests {
        let unary = unary_actuals(&bbs, request.clone()).await;
        let (streamed, messages) = streamed_actuals(&bbs, request.clone()).await;
        assert_eq!(unary.len(), count, "{request:?}");
        assert!(streamed == unary, "{request:?}: the stream differs from the pages");
        if request.page_size > 0 {
            assert!(messages >= count / request.page_size as usize, "{messages} messages for {request:?}");
        }
    }
    let running: Vec<_> = unary_actuals(&bbs, api::ActualLrPsRequest::default())
        .await
        .into_iter()
        .filter(|lrp| lrp.state == pb::ActualLrpState::Running as i32)
        .collect();
    assert_eq!(running.len(), LRPS / 20);
    assert!(running.iter().all(|lrp| lrp.actual_lrp_net_info.is_some() && !lrp.metric_tags.is_empty()));

    let desired_requests = [
        (api::DesiredLrPsRequest::default(), LRPS),
        (api::DesiredLrPsRequest { page_size: 101, ..Default::default() }, LRPS),
        (api::DesiredLrPsRequest { domain: "cf-apps".into(), page_size: 64, ..Default::default() }, 800),
        (api::DesiredLrPsRequest { app_guids: vec!["app-003".into()], page_size: 10, ..Default::default() }, 171),
        (
            api::DesiredLrPsRequest {
                domain: "cf-tasks".into(),
                process_guids: (0..90).map(guid).collect(),
                page_size: 4,
                ..Default::default()
            },
            30,
        ),
    ];
    for (request, count) in desired_requests {
        let unary = unary_infos(&bbs, request.clone()).await;
        let (streamed, _) = streamed_infos(&bbs, request.clone()).await;
        assert_eq!(unary.len(), count, "{request:?}");
        assert!(streamed == unary, "{request:?}: the stream differs from the pages");
    }
    let all = unary_infos(&bbs, api::DesiredLrPsRequest::default()).await;
    assert_eq!(all.iter().filter(|info| info.routes.contains_key("opaque")).count(), LRPS / 5);

    // A stream starts after a token, as a page does.
    let first = bbs
        .actual_lr_ps(Request::new(api::ActualLrPsRequest { page_size: 1000, ..Default::default() }))
        .await
        .unwrap()
        .into_inner();
    let rest = api::ActualLrPsRequest { page_token: first.next_page_token, ..Default::default() };
    let (tail, _) = streamed_actuals(&bbs, rest).await;
    assert!(tail == unary_actuals(&bbs, api::ActualLrPsRequest::default()).await[1000..]);
    // A bad request fails the call itself, as it fails the unary one.
    let bad = api::ActualLrPsRequest { page_size: 1_000_000, ..Default::default() };
    let status = bbs.stream_actual_lr_ps(Request::new(bad)).await.err().expect("too large a page");
    assert_eq!(status.code(), Code::InvalidArgument);
    let bad = api::DesiredLrPsRequest { page_token: "zz".into(), ..Default::default() };
    let status = bbs.stream_desired_lrp_scheduling_infos(Request::new(bad)).await.err().expect("a bad token");
    assert_eq!(status.code(), Code::InvalidArgument);
}

/// The client reads one message of a long stream and waits; rows written meanwhile past where
/// the reader stopped still come (they would not, had the server read the listing to its end
/// before the client caught up), and the stream then ends as usual.
async fn a_client_that_stops_reading_stops_the_reader(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    seed(&h).await;
    let bbs = service(&h);

    let request = api::ActualLrPsRequest { page_size: 20, ..Default::default() };
    let mut actuals = bbs.stream_actual_lr_ps(Request::new(request)).await.unwrap().into_inner();
    let request = api::DesiredLrPsRequest { page_size: 20, ..Default::default() };
    let mut infos = bbs.stream_desired_lrp_scheduling_infos(Request::new(request)).await.unwrap().into_inner();
    let first_actuals = actuals.next().await.unwrap().unwrap().actual_lrps.len();
    let first_infos = infos.next().await.unwrap().unwrap().desired_lrp_scheduling_infos.len();
    assert_eq!((first_actuals, first_infos), (20, 20));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Written while the client waits: keys after every seeded one.
    let late = ProcessGuid::parse("zzz-late").unwrap();
    let mut lrp = desired(0);
    lrp.scheduling.process_guid = late.clone();
    h.db.store.desire_lrp(&lrp, START_NS).await.unwrap();

    let mut actual_total = first_actuals;
    let mut saw_late_actual = false;
    while let Some(message) = actuals.next().await {
        let message = message.unwrap();
        actual_total += message.actual_lrps.len();
        saw_late_actual |=
            message.actual_lrps.iter().any(|a| a.actual_lrp_key.as_ref().unwrap().process_guid == "zzz-late");
    }
    let mut info_total = first_infos;
    let mut saw_late_info = false;
    while let Some(message) = infos.next().await {
        let message = message.unwrap();
        info_total += message.desired_lrp_scheduling_infos.len();
        saw_late_info |= message
            .desired_lrp_scheduling_infos
            .iter()
            .any(|i| i.desired_lrp_key.as_ref().unwrap().process_guid == "zzz-late");
    }
    assert!(saw_late_actual && saw_late_info, "the readers had read ahead to the end while the client waited");
    assert_eq!(actual_total, (LRPS + 1) * INSTANCES as usize);
    assert_eq!(info_total, LRPS + 1);
}

fn as_peer<T>(message: T, uri: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.extensions_mut().insert(Peer::Verified(Identity::parse_uri(uri).unwrap()));
    request
}

/// A cell may list its own cell's instances only, streamed or not; the role table gives each
/// stream the rules of its unary listing.
async fn a_cell_is_refused_the_same_streams_as_listings(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    seed(&h).await;
    let bbs = service(&h);
    let cell_a = "diego://cell/cell-a";
    for cell_id in ["cell-b", ""] {
        let request = api::ActualLrPsRequest { cell_id: cell_id.into(), ..Default::default() };
        let unary = bbs.actual_lr_ps(as_peer(request.clone(), cell_a)).await.expect_err("another cell's listing");
        let streamed = bbs.stream_actual_lr_ps(as_peer(request, cell_a)).await.err().expect("another cell's stream");
        assert_eq!((streamed.code(), streamed.message()), (unary.code(), unary.message()));
        assert_eq!(streamed.code(), Code::PermissionDenied);
    }
    let own = api::ActualLrPsRequest { cell_id: "cell-a".into(), ..Default::default() };
    let mut stream = bbs.stream_actual_lr_ps(as_peer(own, cell_a)).await.unwrap().into_inner();
    let mut own_count = 0;
    while let Some(message) = stream.next().await {
        own_count += message.unwrap().actual_lrps.len();
    }
    assert_eq!(own_count, 120);
}

/// The role table gives each stream exactly the rules of the unary listing it streams. Needs
/// the two streams' rows in `svc/src/authz.rs` (unknown methods are refused to everyone).
#[test]
fn each_stream_has_the_role_rules_of_its_listing() {
    use svc::authz::rule;
    use svc::identity::Role;
    for role in Role::ALL {
        for (stream, listing) in
            [("StreamActualLRPs", "ActualLRPs"), ("StreamDesiredLRPSchedulingInfos", "DesiredLRPSchedulingInfos")]
        {
            let rule_of = |name: &str| rule(role, &format!("/diego.bbs.v1.Bbs/{name}"));
            assert_eq!(rule_of(stream), rule_of(listing), "{role:?} {stream}");
        }
    }
}
