//! The list RPCs page (bbs `paging`): listings bigger than the default 4 MiB gRPC message limit
//! come back through a default-configured tonic client in pages that each fit, and together hold
//! every item once, in key order. On every configured backend.

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use bbs::config::BbsConfig;
use db::Backend;
use db::testing::TestDb;
use prost::Message;
use proto::models::{DomainName, ProcessGuid};
use proto::pb::bbs::v1 as api;
use proto::pb::bbs::v1::bbs_client::BbsClient;
use proto::pb::locket::v1 as locket;
use proto::pb::models::v1 as pb;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// The default message limit of a tonic (and grpc-go) client.
const DEFAULT_LIMIT: usize = 4 * 1024 * 1024;

/// One in-process BBS over `url`, and a default client of it once it leads.
async fn start(
    url: &str,
) -> (CancellationToken, tokio::task::JoinHandle<Result<(), bbs::RunError>>, BbsClient<Channel>) {
    let (shutdown, task, client, _) = start_with_address(url).await;
    (shutdown, task, client)
}

/// As [`start`], with the server's URL too.
async fn start_with_address(
    url: &str,
) -> (CancellationToken, tokio::task::JoinHandle<Result<(), bbs::RunError>>, BbsClient<Channel>, String) {
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", grpc.local_addr().unwrap());
    let config = BbsConfig {
        encryption_keys_file: db::testing::test_key_file(),
        database_url: url.to_owned(),
        lock_ttl: Duration::from_secs(2),
        lock_retry_interval: Duration::from_millis(200),
        tls: svc::config::tls::TlsConfig::insecure_plaintext(),
        ..BbsConfig::default()
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(bbs::run(
        config.validate().unwrap(),
        bbs::Listeners { grpc, admin },
        bbs::Overrides::default(),
        shutdown.clone(),
    ));
    for _ in 0..200 {
        if let Ok(mut client) = BbsClient::connect(endpoint.clone()).await {
            let upsert = api::UpsertDomainRequest { domain: "probe".into(), ttl: 0 };
            if client.upsert_domain(upsert).await.is_ok() {
                return (shutdown, task, client, endpoint);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("bbs at {endpoint} never became the leader");
}

/// A desired LRP whose environment is 4 × 100 KB (within the 512 KiB environment limit).
fn big_lrp(guid: &str) -> pb::DesiredLrp {
    pb::DesiredLrp {
        environment_variables: (0..4)
            .map(|i| pb::EnvironmentVariable {
                name: format!("BIG_{i}"),
                value: format!("{guid}{}", "v".repeat(100_000)),
            })
            .collect(),
        ..common::shell_lrp(guid, 0)
    }
}

on_every_backend!(
    desired_lrps_over_4_mb_come_back_in_pages_under_4_mb,
    a_hundred_thousand_instances_page_by_size_and_by_count,
    tasks_page_by_count_and_bad_tokens_are_invalid,
    cells_over_4_mb_come_back_in_pages_under_4_mb,
);

/// Twelve desired LRPs of ~400 KB each (4.8 MB in all): a default client reads them all, page
/// after page, each page under 4 MiB; the lighter views of the same LRPs fit one page.
async fn desired_lrps_over_4_mb_come_back_in_pages_under_4_mb(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let (shutdown, task, mut client) = start(&db.url).await;
    let guids: Vec<String> = (0..12).map(|i| format!("big-{i:02}")).collect();
    for guid in guids.iter().rev() {
        client.desire_lrp(api::DesireLrpRequest { desired_lrp: Some(big_lrp(guid)) }).await.unwrap();
    }

    let (mut seen, mut token, mut pages, mut total) = (Vec::new(), String::new(), 0, 0);
    loop {
        let request = api::DesiredLrPsRequest { page_token: token.clone(), ..Default::default() };
        let page = client.desired_lr_ps(request).await.expect("every page fits the default limit").into_inner();
        assert!(page.encoded_len() < DEFAULT_LIMIT, "a page of {} bytes", page.encoded_len());
        total += page.encoded_len();
        pages += 1;
        seen.extend(page.desired_lrps.iter().map(|lrp| {
            assert_eq!(lrp.environment_variables.len(), 4, "records come whole");
            lrp.process_guid.clone()
        }));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert!(total > DEFAULT_LIMIT, "the listing is {total} bytes: too small to prove anything");
    assert!(pages >= 2);
    assert_eq!(seen, guids, "every LRP once, in guid order");

    // A count limit applies on top of the size cap.
    let request = api::DesiredLrPsRequest { page_size: 5, ..Default::default() };
    let page = client.desired_lr_ps(request).await.unwrap().into_inner();
    assert_eq!(page.desired_lrps.len(), 5);
    let request = api::DesiredLrPsRequest { page_size: 5, page_token: page.next_page_token, ..Default::default() };
    let page = client.desired_lr_ps(request).await.unwrap().into_inner();
    assert_eq!(page.desired_lrps[0].process_guid, "big-05");

    // The scheduling and routing views carry no environment: one page, no token.
    let infos = client.desired_lrp_scheduling_infos(api::DesiredLrPsRequest::default()).await.unwrap().into_inner();
    assert_eq!((infos.desired_lrp_scheduling_infos.len(), infos.next_page_token.as_str()), (12, ""));
    let routes = client.desired_lrp_routing_infos(api::DesiredLrPsRequest::default()).await.unwrap().into_inner();
    assert_eq!((routes.desired_lrps.len(), routes.next_page_token.as_str()), (12, ""));
    // Paging keeps the filter.
    let request = api::DesiredLrPsRequest { page_size: 1, app_guids: vec!["big-1".into()], ..Default::default() };
    let page = client.desired_lrp_scheduling_infos(request.clone()).await.unwrap().into_inner();
    let next = api::DesiredLrPsRequest { page_token: page.next_page_token, ..request };
    let rest = client.desired_lrp_scheduling_infos(next).await.unwrap().into_inner();
    let got: Vec<_> = page
        .desired_lrp_scheduling_infos
        .iter()
        .chain(&rest.desired_lrp_scheduling_infos)
        .map(|i| i.desired_lrp_key.as_ref().unwrap().process_guid.clone())
        .collect();
    assert_eq!((got, rest.next_page_token.as_str()), (vec!["big-10".to_owned(), "big-11".to_owned()], ""));

    shutdown.cancel();
    task.await.unwrap().unwrap();
}

/// 100,000 instances of one LRP (far over 4 MiB as ActualLRPs): unpaged requests get pages
/// that fit, the size cap wins over a large page size, too large a page size is refused, and
/// the pages together hold every instance once, in index order.
async fn a_hundred_thousand_instances_page_by_size_and_by_count(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let (shutdown, task, mut client) = start(&db.url).await;
    let indices: Vec<i32> = (0..100_000).collect();
    let (guid, domain) = (ProcessGuid::parse("many").unwrap(), DomainName::parse("apps").unwrap());
    db.store.create_unclaimed_actual_lrps(&guid, &domain, &indices, 0).await.unwrap();

    let (mut seen, mut token, mut total) = (Vec::new(), String::new(), 0);
    loop {
        let request = api::ActualLrPsRequest { process_guid: "many".into(), page_token: token, ..Default::default() };
        let page = client.actual_lr_ps(request).await.expect("every page fits the default limit").into_inner();
        assert!(page.encoded_len() < DEFAULT_LIMIT, "a page of {} bytes", page.encoded_len());
        total += page.encoded_len();
        seen.extend(page.actual_lrps.iter().map(|lrp| lrp.actual_lrp_key.as_ref().unwrap().index));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert!(total > DEFAULT_LIMIT, "the listing is {total} bytes: too small to prove anything");
    assert_eq!(seen, indices, "every instance once, in index order");

    let request = api::ActualLrPsRequest { page_size: 1_000_000, ..Default::default() };
    let status = client.actual_lr_ps(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("page_size"), "{}", status.message());
    let request = api::ActualLrPsRequest { page_size: 100_000, ..Default::default() };
    let page = client.actual_lr_ps(request).await.unwrap().into_inner();
    let first = page.actual_lrps.len();
    assert!(first < 100_000 && !page.next_page_token.is_empty(), "{first} instances in a page");
    assert!(page.encoded_len() < DEFAULT_LIMIT);
    let request = api::ActualLrPsRequest { page_size: 3, page_token: page.next_page_token, ..Default::default() };
    let page = client.actual_lr_ps(request).await.unwrap().into_inner();
    let got: Vec<i32> = page.actual_lrps.iter().map(|lrp| lrp.actual_lrp_key.as_ref().unwrap().index).collect();
    let first = i32::try_from(first).unwrap();
    assert_eq!(got, [first, first + 1, first + 2]);

    shutdown.cancel();
    task.await.unwrap().unwrap();
}

/// Tasks page by count; a token that is garbage or from another listing is INVALID_ARGUMENT.
async fn tasks_page_by_count_and_bad_tokens_are_invalid(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let (shutdown, task, mut client) = start(&db.url).await;
    for guid in ["t-3", "t-1", "t-5", "t-2", "t-4"] {
        let definition = pb::TaskDefinition {
            root_fs: "preloaded:busybox".into(),
            action: big_lrp("x").action,
            ..Default::default()
        };
        let request =
            api::DesireTaskRequest { task_definition: Some(definition), task_guid: guid.into(), domain: "d".into() };
        client.desire_task(request).await.unwrap();
    }
    let (mut seen, mut token, mut pages) = (BTreeSet::new(), String::new(), Vec::new());
    loop {
        let request = api::TasksRequest { page_size: 2, page_token: token, ..Default::default() };
        let page = client.tasks(request).await.unwrap().into_inner();
        pages.push(page.tasks.iter().map(|t| t.task_guid.clone()).collect::<Vec<_>>());
        seen.extend(page.tasks.into_iter().map(|t| t.task_guid));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, [vec!["t-1", "t-2"], vec!["t-3", "t-4"], vec!["t-5"]]);
    assert_eq!(seen.len(), 5);

    let actual_token = client
        .actual_lr_ps(api::ActualLrPsRequest { page_size: 1, ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .next_page_token;
    let desired_token = bbs::paging::encode_token(&bbs::paging::DesiredCursor("t-1".into()));
    for bad in ["not-a-token", "5b5d", desired_token.as_str()] {
        let request = api::TasksRequest { page_token: bad.into(), ..Default::default() };
        let status = client.tasks(request).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{bad}");
        assert!(status.message().contains("page_token"), "{}", status.message());
    }
    // No actual LRPs exist, so ActualLRPs issued no token to misuse; an empty token is the first page.
    assert_eq!(actual_token, "");

    shutdown.cancel();
    task.await.unwrap().unwrap();
}

/// Eighty cells whose presences carry ~55 KB of placement tags (4.4 MB in all): Cells answers in
/// pages under 4 MiB that together list every cell once, by cell id.
async fn cells_over_4_mb_come_back_in_pages_under_4_mb(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let (shutdown, task, mut client, endpoint) = start_with_address(&db.url).await;
    let mut locket = locket::locket_client::LocketClient::connect(endpoint).await.unwrap();
    let ids: Vec<String> = (0..80).map(|i| format!("cell-{i:02}")).collect();
    for id in ids.iter().rev() {
        let presence = serde_json::json!({
            "cell_id": id,
            "rep_address": "127.0.0.1:1801",
            "capacity": { "memory_mb": 1024, "disk_mb": 1024, "containers": 10 },
            "placement_tags": [format!("{id}-{}", "t".repeat(55_000))],
        });
        let resource = locket::Resource {
            key: id.clone(),
            owner: id.clone(),
            value: presence.to_string(),
            type_code: locket::TypeCode::Presence as i32,
        };
        locket.lock(locket::LockRequest { resource: Some(resource), ttl_in_seconds: 60 }).await.unwrap();
    }
    let (mut seen, mut token, mut total) = (Vec::new(), String::new(), 0);
    loop {
        let request = api::CellsRequest { page_token: token, ..Default::default() };
        let page = client.cells(request).await.expect("every page fits the default limit").into_inner();
        assert!(page.encoded_len() < DEFAULT_LIMIT, "a page of {} bytes", page.encoded_len());
        total += page.encoded_len();
        seen.extend(page.cells.into_iter().map(|c| c.cell_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert!(total > DEFAULT_LIMIT, "the listing is {total} bytes: too small to prove anything");
    assert_eq!(seen, ids, "every cell once, by cell id");
    let page = client.cells(api::CellsRequest { page_size: 30, ..Default::default() }).await.unwrap().into_inner();
    assert_eq!((page.cells.len(), page.cells[29].cell_id.as_str()), (30, "cell-29"));

    shutdown.cancel();
    task.await.unwrap().unwrap();
}
