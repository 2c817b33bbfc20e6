//! Locket, standbys naming the leader (`x-diego-leader`), fencing of a deposed leader, handover
//! on shutdown, and cell presences expiring.

use super::*;

on_every_backend!(locket_locks_presences_and_cells, a_standby_serves_reads_and_names_the_leader,);

async fn locket_locks_presences_and_cells(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let server = Server::start(&db.url, |_| {}).await;
    let channel = Channel::from_shared(format!("http://{}", server.address)).unwrap().connect_lazy();
    let mut locket = LocketClient::new(channel);
    let presence = proto::models::CellPresence {
        cell_id: proto::models::CellId::parse("cell-1").unwrap(),
        rep_address: "127.0.0.1:1801".into(),
        rep_url: String::new(),
        zone: "z1".into(),
        capacity: proto::models::CellCapacity { memory_mb: 1024, disk_mb: 1024, containers: 10 },
        rootfs_providers: vec![],
        placement_tags: vec![],
        optional_placement_tags: vec![],
        annotations: Default::default(),
    };
    let resource = |owner: &str| locket::Resource {
        key: "cell-1".into(),
        owner: owner.into(),
        value: serde_json::to_string(&presence).unwrap(),
        type_code: locket::TypeCode::Presence as i32,
    };
    let mut term = 0;
    for _ in 0..100 {
        match locket.lock(locket::LockRequest { resource: Some(resource("rep-a")), ttl_in_seconds: 30 }).await {
            Ok(response) => {
                term = response.into_inner().term;
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert_eq!(term, 1);
    let status =
        locket.lock(locket::LockRequest { resource: Some(resource("rep-b")), ttl_in_seconds: 30 }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::AlreadyExists);
    assert_eq!(diego_error(&status), "LockCollision");
    let all = locket
        .fetch_all(locket::FetchAllRequest { type_code: locket::TypeCode::Presence as i32 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.resources.len(), 1);

    let mut client = server.client().await;
    let cells = client.cells(api::CellsRequest::default()).await.unwrap().into_inner().cells;
    assert_eq!(cells.len(), 1);
    assert_eq!((cells[0].cell_id.as_str(), cells[0].zone.as_str()), ("cell-1", "z1"));

    locket.release(locket::ReleaseRequest { resource: Some(resource("rep-a")) }).await.unwrap();
    let status = locket.fetch(locket::FetchRequest { key: "cell-1".into() }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    let status =
        locket.lock(locket::LockRequest { resource: Some(resource("rep-a")), ttl_in_seconds: 0 }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    server.stop().await;
}

async fn a_standby_serves_reads_and_names_the_leader(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let leader = Server::start(&db.url, |_| {}).await;
    let mut leader_client = leader.leader_client().await;
    leader_client.desire_lrp(api::DesireLrpRequest { desired_lrp: Some(desired("kept", 1)) }).await.unwrap();
    let standby = Server::start(&db.url, |_| {}).await;
    let mut standby_client = standby.client().await;
    // Reads work on the standby.
    let all = standby_client.desired_lr_ps(api::DesiredLrPsRequest::default()).await.unwrap().into_inner();
    assert_eq!(all.desired_lrps.len(), 1);
    // Writes are refused with the leader's address, as soon as the standby knows it.
    let mut status = None;
    for _ in 0..100 {
        let err = standby_client
            .desire_lrp(api::DesireLrpRequest { desired_lrp: Some(desired("refused", 1)) })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
        if err.metadata().get(LEADER_METADATA_KEY).is_some() {
            status = Some(err);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = status.expect("the standby never named the leader");
    assert_eq!(status.metadata().get(LEADER_METADATA_KEY).unwrap().to_str().unwrap(), leader.address);
    // Event streams need the leader too.
    let status =
        standby_client.subscribe_to_task_events(api::SubscribeToTaskEventsRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    standby.stop().await;
    leader.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_cannot_commit() {
    for backend in Backend::ALL {
        let Some(db) = TestDb::create(backend).await else { continue };
        // A leader that won the lease with a 1 s TTL and then "paused": it never renews.
        let leadership = bbs::leader::Leadership::new(
            db.store.clone(),
            "paused-leader".into(),
            "10.0.0.1:8889".into(),
            Duration::from_secs(1),
            Duration::from_millis(500),
        );
        assert!(matches!(leadership.tick().await, Some(bbs::leader::LeaderState::Leading { .. })));
        let writer = leadership.writer().expect("it believes it leads");
        // While it still holds the lease, its writes commit.
        writer.upsert_domain(&proto::models::DomainName::parse("before").unwrap(), Duration::ZERO, 1).await.unwrap();
        // The lease expires and another BBS steals it.
        tokio::time::sleep(Duration::from_millis(1_300)).await;
        let stolen = db
            .store
            .acquire_lease(
                bbs::leader::BBS_LOCK_KEY,
                "new-leader",
                "10.0.0.2:8889",
                db::sql::leases::LeaseType::Lock,
                Duration::from_secs(30),
            )
            .await
            .unwrap();
        assert_eq!(stolen.term, 2);
        // The paused leader still believes it leads, but every write is refused by the fence.
        assert!(leadership.is_leader());
        let err = writer
            .upsert_domain(&proto::models::DomainName::parse("after").unwrap(), Duration::ZERO, 1)
            .await
            .unwrap_err();
        assert!(matches!(err, db::Error::Fenced { .. }), "{err}");
        assert_eq!(err.code(), proto::error::ErrorCode::Unavailable);
        let domains = db.store.fresh_domains(0).await.unwrap();
        assert_eq!(
            domains.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
            ["before"],
            "the fenced write must not commit"
        );
        eprintln!("{}: deposed leader fenced", backend.name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_releases_the_lease_so_a_standby_takes_over_at_once() {
    let db = TestDb::create(Backend::Sqlite).await.unwrap();
    let server = Server::start(&db.url, |c| c.lock_ttl = Duration::from_secs(60)).await;
    let _ = server.leader_client().await;
    assert!(db.store.fetch_lease(bbs::leader::BBS_LOCK_KEY).await.is_ok());
    server.stop().await;
    // With a 60 s TTL, only an explicit release frees the lease this quickly.
    let err = db.store.fetch_lease(bbs::leader::BBS_LOCK_KEY).await.unwrap_err();
    assert!(matches!(err, db::Error::NotFound { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_cell_presence_is_noticed_without_waiting_for_convergence() {
    let db = TestDb::create(Backend::Sqlite).await.unwrap();
    let lost_cells = tokio::sync::broadcast::channel(1024).0;
    let mut lost = lost_cells.subscribe();
    let server = Server::start_with(
        &db.url,
        |c| c.presence_check_interval = Duration::from_millis(200),
        |o| o.lost_cells = Some(lost_cells.clone()),
    )
    .await;
    let _ = server.leader_client().await;
    db.store
        .acquire_lease("doomed-cell", "rep-x", "{}", db::sql::leases::LeaseType::Presence, Duration::from_secs(1))
        .await
        .unwrap();
    // The rep stops renewing; the leader notices the expiry on its next presence check.
    let cell = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match lost.recv().await {
                Ok(cell) if cell == "doomed-cell" => return cell,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(e) => panic!("lost-cell channel closed: {e}"),
            }
        }
    })
    .await
    .expect("the expired presence was never noticed");
    assert_eq!(cell, "doomed-cell");
    assert!(db.store.fetch_lease("doomed-cell").await.is_err());
    server.stop().await;
}
