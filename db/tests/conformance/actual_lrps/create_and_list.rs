//! Creating UNCLAIMED rows, the filtered listings, and undecodable rows.

use super::*;

/// New rows are UNCLAIMED ordinary instances with their own epoch, routable false, since now.
pub async fn create_unclaimed_stores_unclaimed_rows_with_fresh_epochs(db: &TestDb) {
    let created = create(db, "web", &[0, 1, 2]).await;
    assert_eq!(created.len(), 3);
    for (i, lrp) in created.iter().enumerate() {
        assert_eq!(lrp.key, key("web", i as i32));
        assert_eq!(lrp.state, ActualLrpState::Unclaimed);
        assert_eq!(lrp.presence, Presence::Ordinary);
        assert_eq!(lrp.instance_key, None);
        assert_eq!(lrp.net_info, None);
        assert!(!lrp.routable);
        assert_eq!(lrp.since, NOW_NS);
        assert_eq!(lrp.crash_count, 0);
        assert_eq!(lrp.modification_tag.index, 0);
        assert_eq!(lrp.modification_tag.epoch.len(), 36, "a uuid epoch");
    }
    assert_ne!(created[0].modification_tag.epoch, created[1].modification_tag.epoch);
    assert_ne!(created[1].modification_tag.epoch, created[2].modification_tag.epoch);
    let listed =
        db.store.actual_lrps(&ActualLrpFilter { process_guid: Some(guid("web")), ..Default::default() }).await.unwrap();
    assert_eq!(listed, created);
    assert!(create(db, "empty", &[]).await.is_empty());
}

/// A duplicate index fails the whole call with Exists and nothing of it is written.
pub async fn create_unclaimed_of_an_existing_index_is_exists_and_writes_nothing(db: &TestDb) {
    create(db, "web", &[0, 1]).await;
    let err =
        db.store.create_unclaimed_actual_lrps(&guid("web"), &domain("cf-apps"), &[1, 2], NOW_NS).await.unwrap_err();
    assert!(matches!(err, Error::Exists { what: "actual lrp", .. }), "{err:?}");
    assert_eq!(err.code(), ErrorCode::ResourceExists);
    assert!(err.to_string().contains("web"), "{err}");
    assert!(rows(db, "web", 2).await.is_empty(), "the transaction rolled back");
    let err =
        db.store.create_unclaimed_actual_lrps(&guid("other"), &domain("cf-apps"), &[4, 4], NOW_NS).await.unwrap_err();
    assert!(matches!(err, Error::Exists { .. }), "an index listed twice: {err:?}");
    assert_eq!(count_rows(db).await, 2);
}

/// Indices are never negative.
pub async fn create_unclaimed_refuses_negative_indices(db: &TestDb) {
    let err =
        db.store.create_unclaimed_actual_lrps(&guid("web"), &domain("cf-apps"), &[0, -1], NOW_NS).await.unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    assert_eq!(err.code(), ErrorCode::InvalidRequest);
    assert_eq!(count_rows(db).await, 0);
}

/// A large desire is one set-based call, chunked under every placeholder limit.
pub async fn create_unclaimed_writes_5000_indices_in_one_call(db: &TestDb) {
    let indices: Vec<i32> = (0..5000).collect();
    let created = create(db, "big", &indices).await;
    assert_eq!(created.len(), 5000);
    let listed =
        db.store.actual_lrps(&ActualLrpFilter { process_guid: Some(guid("big")), ..Default::default() }).await.unwrap();
    assert_eq!(listed.len(), 5000);
    let listed_indices: Vec<i32> = listed.iter().map(|l| l.key.index).collect();
    assert_eq!(listed_indices, indices, "sorted by index");
    assert_eq!(listed, created);
}

/// Every filter uses AND; results are sorted by guid, index, presence.
pub async fn listings_filter_by_domain_cell_guid_and_index(db: &TestDb) {
    create(db, "b-web", &[0, 1]).await;
    db.store.create_unclaimed_actual_lrps(&guid("a-worker"), &domain("other"), &[0, 1], NOW_NS).await.unwrap();
    db.store.claim_actual_lrp(&guid("b-web"), 1, &ikey("i-1", "cell-1"), NOW_NS).await.unwrap();
    db.store.claim_actual_lrp(&guid("a-worker"), 0, &ikey("i-2", "cell-1"), NOW_NS).await.unwrap();
    db.store.claim_actual_lrp(&guid("a-worker"), 1, &ikey("i-3", "cell-2"), NOW_NS).await.unwrap();
    db.store.start_actual_lrp(&key("b-web", 1), &ikey("i-1", "cell-1"), &start_info("10.0.0.1"), NOW_NS).await.unwrap();
    // An evacuating copy on cell-1 too.
    db.store
        .modify_index("test evacuate", &guid("b-web"), 1, |rows| {
            let copy = rows.ordinary.clone().unwrap();
            rows.evacuating = Some(ActualLrp { modification_tag: ModificationTag::default(), ..copy });
            Ok(())
        })
        .await
        .unwrap();

    let ids = |lrps: Vec<ActualLrp>| -> Vec<(String, i32, Presence)> {
        lrps.into_iter().map(|l| (l.key.process_guid.into_string(), l.key.index, l.presence)).collect()
    };
    let all = ids(db.store.actual_lrps(&ActualLrpFilter::default()).await.unwrap());
    assert_eq!(
        all,
        vec![
            ("a-worker".into(), 0, Presence::Ordinary),
            ("a-worker".into(), 1, Presence::Ordinary),
            ("b-web".into(), 0, Presence::Ordinary),
            ("b-web".into(), 1, Presence::Ordinary),
            ("b-web".into(), 1, Presence::Evacuating),
        ]
    );
    let by_cell = |c: &str| ActualLrpFilter { cell_id: Some(cell(c)), ..Default::default() };
    assert_eq!(
        ids(db.store.actual_lrps(&by_cell("cell-1")).await.unwrap()),
        vec![
            ("a-worker".into(), 0, Presence::Ordinary),
            ("b-web".into(), 1, Presence::Ordinary),
            ("b-web".into(), 1, Presence::Evacuating),
        ]
    );
    assert!(db.store.actual_lrps(&by_cell("cell-9")).await.unwrap().is_empty());
    let by_domain = ActualLrpFilter { domain: Some(domain("other")), ..Default::default() };
    assert_eq!(ids(db.store.actual_lrps(&by_domain).await.unwrap()).len(), 2);
    let domain_and_cell = ActualLrpFilter { domain: Some(domain("other")), ..by_cell("cell-1") };
    assert_eq!(
        ids(db.store.actual_lrps(&domain_and_cell).await.unwrap()),
        vec![("a-worker".into(), 0, Presence::Ordinary)]
    );
    let by_index = ActualLrpFilter { index: Some(1), ..Default::default() };
    assert_eq!(ids(db.store.actual_lrps(&by_index).await.unwrap()).len(), 3);
    let guid_and_index = ActualLrpFilter { process_guid: Some(guid("b-web")), index: Some(1), ..Default::default() };
    assert_eq!(
        ids(db.store.actual_lrps(&guid_and_index).await.unwrap()),
        vec![("b-web".into(), 1, Presence::Ordinary), ("b-web".into(), 1, Presence::Evacuating)]
    );
    let list = ActualLrpFilter { process_guids: vec![guid("b-web"), guid("nope")], ..by_cell("cell-1") };
    assert_eq!(
        ids(db.store.actual_lrps(&list).await.unwrap()),
        vec![("b-web".into(), 1, Presence::Ordinary), ("b-web".into(), 1, Presence::Evacuating)]
    );
    // The stored row reads back whole, blobs included.
    let running = db.store.actual_lrps(&guid_and_index).await.unwrap().remove(0);
    let expected = start_info("10.0.0.1");
    assert_eq!(running.net_info, Some(expected.net_info));
    assert_eq!(running.internal_routes, expected.internal_routes);
    assert_eq!(running.metric_tags, expected.metric_tags);
}

/// More guids than one IN list holds: split, padded and merged without duplicates.
pub async fn listings_by_long_guid_lists_span_several_statements(db: &TestDb) {
    let names: Vec<String> = (0..530).map(|i| format!("pg-{i:04}")).collect();
    // One multi-row INSERT: 530 separate desires would only slow the suite down.
    let row = "(?, 0, 0, 'cf-apps', 'UNCLAIMED', '', '', '', 0, '', 0, ?, ?, ?, 0, '', 'e', 0)";
    let sql = format!(
        "INSERT INTO actual_lrps (process_guid, instance_index, presence, domain, state, instance_guid, \
         cell_id, placement_error, crash_count, crash_reason, since, net_info, internal_routes, metric_tags, \
         routable, availability_zone, modification_tag_epoch, modification_tag_index) VALUES {}",
        vec![row; names.len()].join(", ")
    );
    let mut insert = db.store.backend().query(&sql);
    for name in &names {
        insert = insert.bind(name.clone()).bind(Vec::<u8>::new()).bind(Vec::<u8>::new()).bind(Vec::<u8>::new());
    }
    insert.execute(db.store.pool()).await.unwrap();
    let mut wanted: Vec<ProcessGuid> = names.iter().take(520).map(|n| guid(n)).collect();
    wanted.push(guid("pg-0003")); // listed twice
    wanted.push(guid("absent"));
    let listed = db.store.actual_lrps(&ActualLrpFilter { process_guids: wanted, ..Default::default() }).await.unwrap();
    assert_eq!(listed.len(), 520);
    let got: Vec<&str> = listed.iter().map(|l| l.key.process_guid.as_str()).collect();
    let expected: Vec<&str> = names.iter().take(520).map(String::as_str).collect();
    assert_eq!(got, expected);
}

/// Corrupt rows are skipped by listings and reported by single reads and lifecycle calls.
pub async fn undecodable_rows_are_skipped_in_listings_and_corrupt_on_reads(db: &TestDb) {
    create(db, "web", &[0, 1]).await;
    db.store
        .backend()
        .query("UPDATE actual_lrps SET state = 'BOGUS' WHERE process_guid = ? AND instance_index = ?")
        .bind("web")
        .bind(1_i64)
        .execute(db.store.pool())
        .await
        .unwrap();
    let listed = db.store.actual_lrps(&ActualLrpFilter::default()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key.index, 0);
    let err = db.store.actual_lrp_index(&guid("web"), 1).await.unwrap_err();
    assert!(matches!(err, Error::Corrupt { what: "actual lrp", .. }), "{err:?}");
    assert_eq!(err.code(), ErrorCode::InvalidRecord);
    let err = db.store.claim_actual_lrp(&guid("web"), 1, &ikey("i", "c"), NOW_NS).await.unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    // A corrupt blob is corrupt too.
    db.store
        .backend()
        .query("UPDATE actual_lrps SET metric_tags = ? WHERE process_guid = ? AND instance_index = ?")
        .bind(vec![0x01_u8, 0x00, b'{'])
        .bind("web")
        .bind(0_i64)
        .execute(db.store.pool())
        .await
        .unwrap();
    assert!(db.store.actual_lrps(&ActualLrpFilter::default()).await.unwrap().is_empty());
    let err = db.store.actual_lrp_index(&guid("web"), 0).await.unwrap_err();
    assert!(err.to_string().contains("metric_tags"), "{err}");
}
