//! The dashboard on the admin address, served by the real admin server over the controllers'
//! store and event hub (the test harness's leader context): the JSON and the event stream over
//! HTTP on every backend, and the page in a real browser (headless Chromium driven over the
//! DevTools protocol) on SQLite.
//!
//! The browser test skips when Chromium is not installed, unless `DIEGO_TEST_REQUIRE_CHROMIUM`
//! is set (CI sets it), in which case a missing browser fails it.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use bbs::controllers::actual_lrps::ActualLrps;
use bbs::controllers::desired_lrps::DesiredLrps;
use bbs::controllers::tasks::Tasks;
use bbs::dashboard::Dashboard;
use bbs::dashboard::views::Limits;
use bbs::events::EventHub;
use common::Harness;
use db::Backend;
use db::sql::actual_lrps::StartInfo;
use db::sql::leases::LeaseType;
use futures::StreamExt;
use proto::models::{
    ActualLrpInstanceKey, ActualLrpKey, CellCapacity, CellId, CellPresence, DesiredLrp, DomainName, InstanceGuid,
    NetInfo, ProcessGuid, SchedulingInfo, TaskGuid,
};
use proto::pb::models::v1 as pb;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

#[path = "dashboard/browser.rs"]
mod browser;

on_every_backend!(
    the_json_shows_cells_lrps_with_their_instances_and_tasks,
    lrps_are_paged_and_instances_capped_with_how_many_more,
    events_stream_live_and_a_reader_that_falls_behind_is_told_so,
);

const DOMAIN: &str = "apps";

// ----------------------------------------------------------------------------------------------
// Fixtures

fn guid(s: &str) -> ProcessGuid {
    ProcessGuid::parse(s).unwrap()
}

fn lrp_key(process_guid: &str, index: i32) -> ActualLrpKey {
    ActualLrpKey { process_guid: guid(process_guid), index, domain: DomainName::parse(DOMAIN).unwrap() }
}

fn instance(instance_guid: &str, cell: &str) -> ActualLrpInstanceKey {
    ActualLrpInstanceKey {
        instance_guid: InstanceGuid::parse(instance_guid).unwrap(),
        cell_id: CellId::parse(cell).unwrap(),
    }
}

fn desired(process_guid: &str, instances: i32) -> DesiredLrp {
    let run_info = proto::convert::run_info_from_pb(pb::DesiredLrpRunInfo {
        desired_lrp_key: Some(pb::DesiredLrpKey {
            process_guid: process_guid.into(),
            domain: DOMAIN.into(),
            log_guid: process_guid.into(),
        }),
        action: Some(pb::Action {
            action: Some(pb::action::Action::RunAction(pb::RunAction {
                path: "/bin/app".into(),
                user: "vcap".into(),
                ..Default::default()
            })),
        }),
        start_timeout_ms: 60_000,
        ..Default::default()
    })
    .unwrap();
    DesiredLrp {
        scheduling: SchedulingInfo {
            process_guid: guid(process_guid),
            domain: DomainName::parse(DOMAIN).unwrap(),
            log_guid: process_guid.into(),
            annotation: String::new(),
            instances,
            memory_mb: 256,
            disk_mb: 512,
            max_pids: 0,
            rootfs: "preloaded:busybox".into(),
            routes: Default::default(),
            modification_tag: Default::default(),
            volume_placement: vec![],
            placement_tags: vec![],
            update_strategy: Default::default(),
        },
        run_info,
        metric_tags: Default::default(),
    }
}

fn start_info() -> StartInfo {
    StartInfo {
        net_info: NetInfo { address: "10.0.0.1".into(), ..NetInfo::default() },
        routable: true,
        availability_zone: "z1".into(),
        ..StartInfo::default()
    }
}

/// Registers a live cell with 4 GB, 8 GB of disk and 10 containers.
async fn live_cell(h: &Harness, cell: &str) {
    let presence = CellPresence {
        cell_id: CellId::parse(cell).unwrap(),
        rep_address: format!("{cell}.example:1800"),
        rep_url: String::new(),
        zone: "z1".into(),
        capacity: CellCapacity { memory_mb: 4096, disk_mb: 8192, containers: 10 },
        rootfs_providers: vec![],
        placement_tags: vec![],
        optional_placement_tags: vec![],
        annotations: Default::default(),
    };
    let value = serde_json::to_string(&presence).unwrap();
    h.db.store.acquire_lease(cell, cell, &value, LeaseType::Presence, Duration::from_secs(600)).await.unwrap();
}

/// Claims and starts `index` of `process_guid` as `key`, as its rep would.
async fn run_instance(h: &Harness, process_guid: &str, index: i32, key: &ActualLrpInstanceKey) {
    let lrps = ActualLrps(&h.ctx);
    lrps.claim(&guid(process_guid), index, key).await.unwrap();
    lrps.start(&lrp_key(process_guid, index), key, &start_info()).await.unwrap();
}

/// The harness's admin server (dashboard wired to its event hub) on a free loopback port.
async fn serve(h: &Harness, limits: Limits) -> (String, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let stop = CancellationToken::new();
    let admin = bbs::admin::admin(h.ctx.leadership.clone()).events(h.ctx.events.clone()).limits(limits);
    tokio::spawn(admin.serve(listener, stop.clone()));
    (address, stop)
}

/// One HTTP/1.1 exchange: status, headers (lowercase names) and body.
async fn http(address: &str, method: &str, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let request = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw)).await.unwrap().unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_lowercase(), body.to_owned())
}

async fn get_json(address: &str, path: &str) -> Value {
    let (status, head, body) = http(address, "GET", path).await;
    assert_eq!(status, 200, "{path}: {body}");
    assert!(head.contains("content-type: application/json"), "{head}");
    serde_json::from_str(&body).unwrap()
}

fn states(lrp: &Value) -> Vec<(i64, String)> {
    lrp["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["index"].as_i64().unwrap(), i["state"].as_str().unwrap().to_owned()))
        .collect()
}

// ----------------------------------------------------------------------------------------------
// Over HTTP

async fn the_json_shows_cells_lrps_with_their_instances_and_tasks(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    live_cell(&h, "cell-1").await;
    live_cell(&h, "cell-2").await;
    DesiredLrps(&h.ctx).desire(desired("web", 3)).await.unwrap();
    run_instance(&h, "web", 0, &instance("ig-0", "cell-1")).await;
    run_instance(&h, "web", 1, &instance("ig-1", "cell-1")).await;
    ActualLrps(&h.ctx).fail(&lrp_key("web", 2), "found no compatible cell").await.unwrap();
    // The shared task fixture, at the size the cells' use below counts.
    let definition = db::testing::fixtures::task_definition(|d| {
        d.memory_mb = 128;
        d.disk_mb = 64;
    });
    let task_guid = TaskGuid::parse("job-1").unwrap();
    Tasks(&h.ctx).desire(&task_guid, &DomainName::parse("jobs").unwrap(), &definition).await.unwrap();
    let (address, stop) = serve(&h, Limits::default()).await;

    let status = get_json(&address, "/api/status").await;
    assert_eq!(status, serde_json::json!({ "leading": true, "leader": null, "events": true }));

    let cells = get_json(&address, "/api/cells").await;
    let cell_ids: Vec<_> = cells["cells"].as_array().unwrap().iter().map(|c| c["cell_id"].as_str().unwrap()).collect();
    assert_eq!(cell_ids, ["cell-1", "cell-2"]);
    let first = &cells["cells"][0];
    assert_eq!(first["capacity"], serde_json::json!({ "memory_mb": 4096, "disk_mb": 8192, "containers": 10 }));
    assert_eq!(first["used"], serde_json::json!({ "memory_mb": 512, "disk_mb": 1024, "containers": 2 }));
    assert_eq!(first["instances"], 2);
    assert_eq!(cells["cells"][1]["used"]["containers"], 0);

    let lrps = get_json(&address, "/api/lrps").await;
    let web = &lrps["lrps"][0];
    assert_eq!(web["process_guid"], "web");
    assert_eq!(web["desired_instances"], 3);
    assert_eq!(states(web), [(0, "RUNNING".to_owned()), (1, "RUNNING".to_owned()), (2, "UNCLAIMED".to_owned())]);
    assert_eq!(web["instances"][0]["cell_id"], "cell-1");
    assert_eq!(web["instances"][2]["placement_error"], "found no compatible cell");
    assert_eq!(web["more_instances"], 0);
    assert_eq!(lrps["next_after"], Value::Null);

    let tasks = get_json(&address, "/api/tasks").await;
    assert_eq!(tasks["total"], serde_json::json!({ "count": 1, "at_least": false }));
    assert_eq!(tasks["states"]["PENDING"], 1);
    assert_eq!(tasks["recent"][0]["task_guid"], "job-1");

    // The page and its assets, same-origin only; nothing that writes.
    let (status, head, body) = http(&address, "GET", "/").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(head.contains("content-security-policy: default-src 'none'; script-src 'self'"), "{head}");
    assert!(body.contains("<script src=\"dashboard.js\" defer></script>"), "{body}");
    let (status, head, _) = http(&address, "GET", "/dashboard.js").await;
    assert!(status == 200 && head.contains("content-type: text/javascript"), "{head}");
    let (status, head, _) = http(&address, "POST", "/api/lrps").await;
    assert_eq!(status, 405);
    assert!(head.contains("allow: get, head"), "{head}");
    let (status, _, body) = http(&address, "GET", "/api/lrps?after=%3Cscript%3E").await;
    assert_eq!(status, 400, "{body}");
    // The shared admin routes answer as before.
    assert_eq!(http(&address, "GET", "/leader").await.2, "leader\n");
    assert_eq!(http(&address, "GET", "/healthz").await.2, "ok\n");
    let (status, _, body) = http(&address, "GET", "/nope").await;
    assert_eq!(status, 404);
    assert!(body.contains("/leader"), "{body}");
    stop.cancel();
}

async fn lrps_are_paged_and_instances_capped_with_how_many_more(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    for name in ["a", "b", "c", "d", "e"] {
        DesiredLrps(&h.ctx).desire(desired(name, 4)).await.unwrap();
    }
    let limits = Limits { lrps_per_page: 2, instances_per_lrp: 3, lrps_counted: 2, ..Limits::default() };
    let (address, stop) = serve(&h, limits).await;

    let first = get_json(&address, "/api/lrps").await;
    let guids = |page: &Value| -> Vec<String> {
        page["lrps"].as_array().unwrap().iter().map(|l| l["process_guid"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(guids(&first), ["a", "b"]);
    assert_eq!(first["next_after"], "b");
    assert_eq!(first["more_lrps"], serde_json::json!({ "count": 2, "at_least": true }), "counting stops at 2");
    assert_eq!(states(&first["lrps"][0]).len(), 3, "at most 3 instances per LRP");
    assert_eq!(first["lrps"][0]["more_instances"], 1);

    let second = get_json(&address, "/api/lrps?after=b").await;
    assert_eq!(guids(&second), ["c", "d"]);
    assert_eq!(second["more_lrps"], serde_json::json!({ "count": 1, "at_least": false }));
    let last = get_json(&address, "/api/lrps?after=d").await;
    assert_eq!(guids(&last), ["e"]);
    assert_eq!(last["next_after"], Value::Null);
    assert_eq!(last["more_lrps"]["count"], 0);
    stop.cancel();
}

/// Reads the event stream of `stream` until `until` is in what was read (or 10 s pass).
async fn read_until(stream: &mut TcpStream, read: &mut String, until: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut buffer = [0_u8; 4096];
    while !read.contains(until) {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buffer))
            .await
            .unwrap_or_else(|_| panic!("no {until:?} in the stream so far: {read}"))
            .unwrap();
        assert!(n > 0, "the stream ended before {until:?}: {read}");
        read.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
}

async fn events_stream_live_and_a_reader_that_falls_behind_is_told_so(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    DesiredLrps(&h.ctx).desire(desired("web", 1)).await.unwrap();
    let (address, stop) = serve(&h, Limits::default()).await;

    let mut stream = TcpStream::connect(&address).await.unwrap();
    let request = format!("GET /api/events HTTP/1.1\r\nHost: {address}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut read = String::new();
    read_until(&mut stream, &mut read, "event: open").await;
    assert!(read.to_lowercase().contains("content-type: text/event-stream"), "{read}");

    // A crash through the controller reaches the stream as it happens.
    let key = instance("ig-0", "cell-1");
    run_instance(&h, "web", 0, &key).await;
    ActualLrps(&h.ctx).crash(&lrp_key("web", 0), &key, "Exited with status 1").await.unwrap();
    read_until(&mut stream, &mut read, "\"kind\":\"actual_lrp_crashed\"").await;
    let crashed = read.lines().find(|l| l.contains("actual_lrp_crashed")).unwrap();
    let crashed: Value = serde_json::from_str(crashed.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(crashed["guid"], "web");
    assert_eq!(crashed["index"], 0);
    assert_eq!(crashed["detail"], "Exited with status 1");

    stop.cancel();

    // A reader that falls more than the hub's buffer behind is told why its stream ends, as a
    // slow gRPC subscriber is, and the stream ends there.
    let hub = Arc::new(EventHub::new(4));
    let dashboard = Dashboard::new(h.ctx.leadership.clone()).with_events(hub.clone());
    let Ok(stream) = dashboard.events() else { panic!("a leader with a hub streams events") };
    for i in 0..10 {
        hub.publish_task(pb::task_event::Event::TaskRemoved(pb::TaskRemovedEvent {
            task: Some(pb::Task { task_guid: format!("t{i}"), ..Default::default() }),
        }));
    }
    let messages: Vec<String> = tokio::time::timeout(Duration::from_secs(10), stream.collect()).await.unwrap();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(messages[0].starts_with("event: open\n"), "{messages:?}");
    assert!(
        messages[1].starts_with("event: closed\ndata: {\"reason\":\"slow consumer: fell more than 4 events behind"),
        "{messages:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_says_it_is_one_and_streams_no_events() {
    let Some(h) = Harness::standby(Backend::Sqlite).await else { return };
    let (address, stop) = serve(&h, Limits::default()).await;
    let status = get_json(&address, "/api/status").await;
    assert_eq!(status, serde_json::json!({ "leading": false, "leader": "10.0.0.9:8889", "events": false }));
    let (code, _, body) = http(&address, "GET", "/api/events").await;
    assert_eq!(code, 503);
    assert!(body.contains("standby") && body.contains("10.0.0.9:8889"), "{body}");
    // Standbys read the database: the listings still answer.
    assert_eq!(get_json(&address, "/api/lrps").await["lrps"], serde_json::json!([]));
    stop.cancel();
}

/// `GET path` over HTTPS, trusting only the cluster CA at `ca` and presenting no certificate.
async fn get_https(address: &str, ca: &std::path::Path, path: &str) -> Result<String, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(address).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut stream = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    // A peer that closes without close_notify still gave the whole response.
    let _ = stream.read_to_end(&mut response).await;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_admin_tls_the_dashboard_is_served_over_https_only() {
    use svc::config::tls::TlsConfig;
    use svc::identity::Role;
    let Some(h) = Harness::leader(Backend::Sqlite).await else { return };
    DesiredLrps(&h.ctx).desire(desired("web", 1)).await.unwrap();
    let pki = svc::pki::Pki::for_tests();
    let tls = TlsConfig { admin: true, ..pki.test_tls(Role::Bbs, "") };
    let security = tls.security().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let stop = CancellationToken::new();
    let admin = bbs::admin::admin(h.ctx.leadership.clone()).events(h.ctx.events.clone()).tls(tls.admin_tls(&security));
    tokio::spawn(admin.serve(listener, stop.clone()));

    let page = get_https(&address, &pki.ca_path(), "/").await.expect("an HTTPS client without a certificate");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("dashboard.js"), "{page}");
    let lrps = get_https(&address, &pki.ca_path(), "/api/lrps").await.unwrap();
    assert!(lrps.contains("\"process_guid\":\"web\""), "{lrps}");
    assert!(get_https(&address, &pki.ca_path(), "/leader").await.unwrap().ends_with("leader\n"));
    // Plain HTTP gets no answer: the bytes are not a TLS handshake.
    let mut plain = TcpStream::connect(&address).await.unwrap();
    plain.write_all(b"GET /api/lrps HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), plain.read_to_end(&mut answer)).await;
    assert!(!String::from_utf8_lossy(&answer).contains("web"), "plain HTTP must not be served");
    stop.cancel();
}

// ----------------------------------------------------------------------------------------------
// In a browser

/// The instances of `process_guid` the page shows, as `[index, state]` pairs, and whether the
/// page was not reloaded since the marker was set (`window.dashboardTestMarker`).
const INSTANCES_JS: &str = r#"JSON.stringify({
  instances: Array.from(document.querySelectorAll('.lrp .instance'))
    .filter((node) => node.dataset.processGuid === PROCESS_GUID)
    .map((node) => [Number(node.dataset.index), node.dataset.state, node.querySelector('.state').textContent]),
  marker: window.dashboardTestMarker === 42,
  events: Array.from(document.querySelectorAll('#events .event')).map((node) => node.textContent),
  eventsStatus: document.getElementById('events-status').textContent,
  cells: Array.from(document.querySelectorAll('.cell-card')).map((node) => [node.dataset.cellId, node.querySelectorAll('meter').length]),
  injected: document.getElementById('injected') !== null,
  placementErrors: Array.from(document.querySelectorAll('.instance .why')).map((node) => node.textContent),
})"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_shows_the_instances_and_turns_a_crashed_one_red_without_reloading() {
    let Some(chromium) = browser::chromium() else { return };
    let Some(h) = Harness::leader(Backend::Sqlite).await else { return };
    live_cell(&h, "cell-1").await;
    DesiredLrps(&h.ctx).desire(desired("web", 3)).await.unwrap();
    let key = instance("ig-1", "cell-1");
    run_instance(&h, "web", 0, &instance("ig-0", "cell-1")).await;
    // Crashes 1 and 2 restart at once; the 3rd (below) leaves the instance CRASHED.
    for _ in 0..2 {
        run_instance(&h, "web", 1, &key).await;
        ActualLrps(&h.ctx).crash(&lrp_key("web", 1), &key, "Exited with status 1").await.unwrap();
    }
    run_instance(&h, "web", 1, &key).await;
    // Data goes into the page as text: markup in a placement error stays text.
    let hostile = "<b id=\"injected\">no cell</b><img src=x onerror=\"document.body.id='injected'\">";
    ActualLrps(&h.ctx).fail(&lrp_key("web", 2), hostile).await.unwrap();
    let (address, stop) = serve(&h, Limits::default()).await;

    let page = Arc::new(browser::Page::open(&chromium, &format!("http://{address}/")).await);
    let script = INSTANCES_JS.replace("PROCESS_GUID", "'web'");
    let seen = page
        .wait_for("instances 0 and 1 RUNNING with a live event stream", &script, |v| {
            let shown = &v["instances"];
            shown[0] == serde_json::json!([0, "RUNNING", "RUNNING"])
                && shown[1] == serde_json::json!([1, "RUNNING", "RUNNING"])
                && shown[2][1] == "UNCLAIMED"
                && v["eventsStatus"] == "live"
        })
        .await;
    assert_eq!(seen["cells"], serde_json::json!([["cell-1", 3]]), "one live cell with 3 capacity bars");
    assert_eq!(seen["injected"], false, "markup from the data must not become elements");
    let reasons = seen["placementErrors"].as_array().unwrap();
    assert!(reasons.contains(&serde_json::json!(hostile)), "the placement error shows as text: {reasons:?}");

    page.evaluate("window.dashboardTestMarker = 42").await;
    ActualLrps(&h.ctx).crash(&lrp_key("web", 1), &key, "Exited with status 1").await.unwrap();
    let seen = page
        .wait_for("instance 1 CRASHED on the same page, and the crash in the event log", &script, |v| {
            let logged = v["events"].as_array().is_some_and(|events| {
                events
                    .iter()
                    .any(|e| e.as_str().is_some_and(|e| e.contains("actual_lrp_crashed") && e.contains("web/1")))
            });
            v["instances"][1] == serde_json::json!([1, "CRASHED", "CRASHED"]) && logged
        })
        .await;
    assert_eq!(seen["marker"], true, "the page updated without reloading");
    assert_eq!(seen["instances"][0], serde_json::json!([0, "RUNNING", "RUNNING"]));
    // DIEGO_DASHBOARD_SCREENSHOT=page.png keeps a picture of the page for a person to look at.
    if let Some(path) = std::env::var_os("DIEGO_DASHBOARD_SCREENSHOT") {
        page.screenshot(std::path::Path::new(&path)).await;
    }
    page.close().await;
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_on_a_standby_shows_a_banner_naming_the_leader() {
    let Some(chromium) = browser::chromium() else { return };
    let Some(h) = Harness::standby(Backend::Sqlite).await else { return };
    let (address, stop) = serve(&h, Limits::default()).await;
    let page = browser::Page::open(&chromium, &format!("http://{address}/")).await;
    let script = r#"JSON.stringify({
      role: document.getElementById('role').textContent,
      banner: document.getElementById('banner').hidden ? null : document.getElementById('banner').textContent,
      events: document.getElementById('events-status').textContent,
    })"#;
    let seen = page.wait_for("the standby banner", script, |v| v["role"] == "standby").await;
    let banner = seen["banner"].as_str().unwrap_or_default();
    assert!(banner.contains("standby") && banner.contains("10.0.0.9:8889"), "{banner}");
    assert_eq!(seen["events"], "not connected", "a standby's page does not subscribe");
    page.close().await;
    stop.cancel();
}
