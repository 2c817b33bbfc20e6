//! Instance event streams: order and sequences, and a lagging subscriber closed.

use super::*;

on_every_backend!(
    lifecycle_events_arrive_in_order_with_increasing_sequences,
    a_lagging_subscriber_is_closed,
    a_stopping_bbs_ends_its_event_streams,
);

fn kind(event: &pb::InstanceEvent) -> &'static str {
    use pb::instance_event::Event;
    match event.event {
        Some(Event::DesiredLrpCreated(_)) => "desired_created",
        Some(Event::DesiredLrpChanged(_)) => "desired_changed",
        Some(Event::DesiredLrpRemoved(_)) => "desired_removed",
        Some(Event::ActualLrpInstanceCreated(_)) => "created",
        Some(Event::ActualLrpInstanceChanged(_)) => "changed",
        Some(Event::ActualLrpInstanceRemoved(_)) => "removed",
        Some(Event::ActualLrpCrashed(_)) => "crashed",
        None => "none",
    }
}

async fn lifecycle_events_arrive_in_order_with_increasing_sequences(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let server = Server::start(&db.url, |_| {}).await;
    let mut client = server.leader_client().await;
    let mut stream = client
        .subscribe_to_instance_events(api::SubscribeToInstanceEventsRequest::default())
        .await
        .unwrap()
        .into_inner();

    client.desire_lrp(api::DesireLrpRequest { desired_lrp: Some(desired("ev", 1)) }).await.unwrap();
    client
        .claim_actual_lrp(api::ClaimActualLrpRequest {
            process_guid: "ev".into(),
            index: 0,
            actual_lrp_instance_key: Some(instance_key("ig", "cell-1")),
        })
        .await
        .unwrap();
    client
        .start_actual_lrp(api::StartActualLrpRequest {
            actual_lrp_key: Some(lrp_key("ev", 0)),
            actual_lrp_instance_key: Some(instance_key("ig", "cell-1")),
            actual_lrp_net_info: Some(net_info()),
            ..Default::default()
        })
        .await
        .unwrap();
    client
        .crash_actual_lrp(api::CrashActualLrpRequest {
            actual_lrp_key: Some(lrp_key("ev", 0)),
            actual_lrp_instance_key: Some(instance_key("ig", "cell-1")),
            error_message: "exit status 1".into(),
        })
        .await
        .unwrap();
    client.remove_desired_lrp(api::RemoveDesiredLrpRequest { process_guid: "ev".into() }).await.unwrap();

    let expected = [
        "desired_created",
        "created",
        "changed", // claimed
        "changed", // running
        "crashed", // first crash restarts at once:
        "removed", // the old instance is gone,
        "created", // a new one waits for a cell
        "desired_removed",
        "removed", // the UNCLAIMED instance is deleted with its desired LRP
    ];
    let mut kinds = Vec::new();
    let mut last = 0;
    while kinds.len() < expected.len() {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap_or_else(|_| panic!("events stopped after {kinds:?}"))
            .expect("stream ended")
            .expect("stream failed");
        assert_eq!(event.sequence, last + 1, "sequences increase by one");
        last = event.sequence;
        kinds.push(kind(&event));
    }
    assert_eq!(kinds, expected);
    server.stop().await;
}

async fn a_lagging_subscriber_is_closed(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let server = Server::start(&db.url, |c| c.event_buffer = 8).await;
    let mut client = server.leader_client().await;
    // The subscriber has its own connection with small HTTP/2 windows (hyper's client default is
    // 2 MiB per stream, which would swallow the whole burst), so the server's stream blocks soon.
    let small_window = Channel::from_shared(format!("http://{}", server.address))
        .unwrap()
        .initial_stream_window_size(Some(64 * 1024))
        .initial_connection_window_size(Some(64 * 1024))
        .connect()
        .await
        .unwrap();
    let mut stream = BbsClient::new(small_window)
        .subscribe_to_task_events(api::SubscribeToTaskEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    // Far more than the transport buffers plus 8 events: each event carries a 10 KiB annotation.
    for i in 0..200 {
        let definition = pb::TaskDefinition {
            root_fs: "preloaded:busybox".into(),
            action: Some(run_action()),
            annotation: "a".repeat(10 * 1024),
            ..Default::default()
        };
        client
            .desire_task(api::DesireTaskRequest {
                task_definition: Some(definition),
                task_guid: format!("t{i}"),
                domain: "d".into(),
            })
            .await
            .unwrap();
    }
    let mut received = 0;
    let status = loop {
        let next = tokio::time::timeout(Duration::from_secs(10), stream.next()).await;
        let next = next.unwrap_or_else(|_| panic!("stream stalled after {received} events"));
        match next {
            Some(Ok(_)) => received += 1,
            Some(Err(status)) => break status,
            None => panic!("stream ended without a status after {received} events"),
        }
    };
    assert!(received < 200, "the subscriber received everything; it never lagged");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}");
    assert!(status.message().contains("slow consumer"), "{}", status.message());
    server.stop().await;
}

/// A BBS told to stop ends its open event streams rather than waiting for their subscribers
/// (a router, `diego events`) to hang up: it stops well within its 10 s drain limit.
async fn a_stopping_bbs_ends_its_event_streams(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let server = Server::start(&db.url, |_| {}).await;
    let mut client = server.leader_client().await;
    let mut instances = client
        .subscribe_to_instance_events(api::SubscribeToInstanceEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut tasks =
        client.subscribe_to_task_events(api::SubscribeToTaskEventsRequest::default()).await.unwrap().into_inner();
    server.stop_within(Duration::from_secs(5)).await;
    for ended in [instances.next().await.map(|e| e.map(|_| ())), tasks.next().await.map(|e| e.map(|_| ()))] {
        assert!(!matches!(ended, Some(Ok(()))), "an event after the stop: {ended:?}");
    }
}
