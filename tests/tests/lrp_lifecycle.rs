//! Checklist A1 (and B12, B13, B16 later): desired LRPs reach RUNNING on real processes and serve
//! HTTP; the event stream tells the story.

use std::time::Duration;

use cell_rep::RuntimeKind;
use db::Backend;
use futures::StreamExt;
use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;
use tests::cluster::Cluster;
use tests::eventually::eventually;
use tests::fixtures;

const PATIENCE: Duration = Duration::from_secs(60);

async fn running(
    client: &mut proto::pb::bbs::v1::bbs_client::BbsClient<tonic::transport::Channel>,
    guid: &str,
) -> Vec<pb::ActualLrp> {
    client
        .actual_lr_ps(api::ActualLrPsRequest { process_guid: guid.into(), ..Default::default() })
        .await
        .map(|r| r.into_inner().actual_lrps)
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a.state == pb::ActualLrpState::Running as i32 && a.presence == pb::Presence::Ordinary as i32)
        .collect()
}

async fn http_get(address: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").await.ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await.ok()?;
    Some(body)
}

async fn a1_instances_run_serve_and_tell_their_story(backend: Backend) {
    let Some(cluster) = Cluster::start(backend, 2, RuntimeKind::Process, |_| {}).await else { return };
    let mut client = cluster.bbs();
    let mut events = client
        .subscribe_to_instance_events(api::SubscribeToInstanceEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    client.desire_lrp(api::DesireLrpRequest { desired_lrp: Some(fixtures::http_lrp("web", 3)) }).await.unwrap();
    let instances = eventually("3 RUNNING instances of web", PATIENCE, || {
        let mut c = client.clone();
        async move {
            let r = running(&mut c, "web").await;
            (r.len() == 3).then_some(r)
        }
    })
    .await;
    // Each answers HTTP on its host port with its own index.
    for instance in &instances {
        let net = instance.actual_lrp_net_info.as_ref().expect("running instances have net info");
        let port = net.ports.iter().find(|p| p.container_port == 8080).expect("port 8080 is mapped").host_port;
        let body = http_get(&format!("{}:{port}", net.address)).await.expect("the instance answers HTTP");
        let index = instance.actual_lrp_key.as_ref().unwrap().index;
        assert!(body.contains(&format!("instance {index}")), "{body}");
    }
    // The stream: desired created, then for index 0: created, changed (claimed), changed (running).
    let mut seen = Vec::new();
    while seen.len() < 1 + 3 * 3 {
        let event =
            tokio::time::timeout(Duration::from_secs(10), events.next()).await.expect("events").unwrap().unwrap();
        use pb::instance_event::Event;
        let (kind, index, state) = match &event.event {
            Some(Event::DesiredLrpCreated(_)) => ("desired_created", -1, 0),
            Some(Event::ActualLrpInstanceCreated(e)) => {
                ("created", e.actual_lrp.as_ref().unwrap().actual_lrp_key.as_ref().unwrap().index, 0)
            }
            Some(Event::ActualLrpInstanceChanged(e)) => {
                ("changed", e.actual_lrp_key.as_ref().unwrap().index, e.after.as_ref().unwrap().state)
            }
            _ => ("other", -1, 0),
        };
        seen.push((kind, index, state));
    }
    assert_eq!(seen[0].0, "desired_created");
    let of_index_0: Vec<_> = seen.iter().filter(|(_, i, _)| *i == 0).collect();
    assert_eq!(
        of_index_0.iter().map(|(k, _, s)| (*k, *s)).collect::<Vec<_>>(),
        [
            ("created", 0),
            ("changed", pb::ActualLrpState::Claimed as i32),
            ("changed", pb::ActualLrpState::Running as i32)
        ]
    );
    // Removal stops everything.
    client.remove_desired_lrp(api::RemoveDesiredLrpRequest { process_guid: "web".into() }).await.unwrap();
    eventually("web's instances to be gone", PATIENCE, || {
        let mut c = client.clone();
        async move {
            let all = c
                .actual_lr_ps(api::ActualLrPsRequest { process_guid: "web".into(), ..Default::default() })
                .await
                .ok()?;
            all.into_inner().actual_lrps.is_empty().then_some(())
        }
    })
    .await;
    cluster.shutdown().await;
}

tests::on_every_backend!(a1_instances_run_serve_and_tell_their_story);
