//! Conformance tests of the actual_lrps store operations (bbs.md 2.2, 3.1–3.4, 4.4, 5.4).

use std::collections::BTreeMap;

use db::Error;
use db::sql::actual_lrps::{ActualLrpFilter, IndexRows, StartInfo};
use db::testing::TestDb;
use proto::error::ErrorCode;
use proto::lifecycle::crash::CrashPolicy;
use proto::models::{
    ActualLrp, ActualLrpInstanceKey, ActualLrpKey, ActualLrpState, CellId, DomainName, InstanceGuid, ModificationTag,
    NetInfo, PortMapping, PreferredAddress, Presence, ProcessGuid,
};

use super::NOW_NS;

macro_rules! actual_lrps_tests {
    ($backend:expr) => {
        suite_module!(
            $backend,
            actual_lrps,
            [
                create_unclaimed_stores_unclaimed_rows_with_fresh_epochs,
                create_unclaimed_of_an_existing_index_is_exists_and_writes_nothing,
                create_unclaimed_refuses_negative_indices,
                create_unclaimed_writes_5000_indices_in_one_call,
                listings_filter_by_domain_cell_guid_and_index,
                listings_by_long_guid_lists_span_several_statements,
                undecodable_rows_are_skipped_in_listings_and_corrupt_on_reads,
                claim_takes_an_unclaimed_row_and_clears_placement_error,
                claim_by_the_same_key_writes_nothing,
                claim_by_another_key_is_refused,
                lifecycle_calls_on_a_missing_index_are_not_found,
                start_stores_every_running_field,
                start_by_another_key_is_allowed_on_claimed_but_refused_on_running,
                start_without_an_ordinary_row_creates_a_running_row,
                restarting_with_equal_fields_writes_nothing_and_a_changed_field_writes,
                start_deletes_the_evacuating_and_suspect_rows_of_the_index,
                start_with_an_empty_address_is_invalid_and_writes_nothing,
                crash_restarts_twice_then_leaves_the_row_crashed,
                crash_after_five_minutes_running_resets_the_count,
                crash_by_another_key_or_of_an_unclaimed_row_is_refused,
                crash_reasons_and_placement_errors_are_truncated,
                fail_applies_only_to_unclaimed_rows,
                remove_checks_the_instance_key_when_given,
                unclaim_clears_the_instance_and_keeps_the_crash_count,
                delete_removes_one_presence,
                suspect_and_replace_moves_the_row_and_inserts_a_replacement,
                calls_from_the_suspect_instance_are_ignored_or_delete_it,
                promote_deletes_the_replacement_and_restores_the_suspect,
                modify_index_writes_only_differences,
                modify_index_rolls_back_on_errors_and_refuses_bad_rows,
                concurrent_fails_on_one_row_lose_no_update,
                concurrent_claims_with_different_keys_let_exactly_one_win,
                concurrent_starts_of_a_missing_row_create_it_once,
            ]
        );
    };
}

const SEC: i64 = 1_000_000_000;

fn guid(s: &str) -> ProcessGuid {
    ProcessGuid::parse(s).unwrap()
}

fn domain(s: &str) -> DomainName {
    DomainName::parse(s).unwrap()
}

fn cell(s: &str) -> CellId {
    CellId::parse(s).unwrap()
}

fn key(process_guid: &str, index: i32) -> ActualLrpKey {
    ActualLrpKey { process_guid: guid(process_guid), index, domain: domain("cf-apps") }
}

pub fn ikey(instance: &str, cell_id: &str) -> ActualLrpInstanceKey {
    ActualLrpInstanceKey { instance_guid: InstanceGuid::parse(instance).unwrap(), cell_id: cell(cell_id) }
}

pub fn start_info(address: &str) -> StartInfo {
    StartInfo {
        net_info: NetInfo {
            address: address.into(),
            ports: vec![PortMapping { container_port: 8080, host_port: 61000, ..Default::default() }],
            instance_address: "10.255.0.7".into(),
            preferred_address: PreferredAddress::Host,
            instance_ipv6_address: String::new(),
        },
        internal_routes: vec!["web.apps.internal".into()],
        metric_tags: BTreeMap::from([("app_name".to_owned(), "web".to_owned())]),
        routable: true,
        availability_zone: "z1".into(),
    }
}

async fn create(db: &TestDb, process_guid: &str, indices: &[i32]) -> Vec<ActualLrp> {
    db.store.create_unclaimed_actual_lrps(&guid(process_guid), &domain("cf-apps"), indices, NOW_NS).await.unwrap()
}

async fn rows(db: &TestDb, process_guid: &str, index: i32) -> IndexRows {
    db.store.actual_lrp_index(&guid(process_guid), index).await.unwrap()
}

async fn ordinary(db: &TestDb, process_guid: &str, index: i32) -> ActualLrp {
    rows(db, process_guid, index).await.ordinary.expect("an ordinary row")
}

/// Creates `pg` index 0 and brings it to RUNNING under `instance` on `cell_id` at `at`.
async fn running(db: &TestDb, process_guid: &str, instance: &str, cell_id: &str, at: i64) -> ActualLrp {
    if rows(db, process_guid, 0).await.ordinary.is_none() {
        create(db, process_guid, &[0]).await;
    }
    let k = ikey(instance, cell_id);
    db.store.claim_actual_lrp(&guid(process_guid), 0, &k, at).await.unwrap();
    db.store.start_actual_lrp(&key(process_guid, 0), &k, &start_info("10.0.0.1"), at).await.unwrap();
    ordinary(db, process_guid, 0).await
}

/// Adds an EVACUATING copy of the RUNNING ordinary row of index 0.
async fn add_evacuating(db: &TestDb, process_guid: &str) {
    db.store
        .modify_index("test evacuate", &guid(process_guid), 0, |rows| {
            let copy = rows.ordinary.clone().expect("ordinary row");
            rows.evacuating = Some(ActualLrp { modification_tag: ModificationTag::default(), ..copy });
            Ok(())
        })
        .await
        .unwrap();
}

fn assert_refused(err: &Error, code: ErrorCode, parts: &[&str]) {
    assert!(matches!(err, Error::Refused { code: c, .. } if *c == code), "expected {code:?}, got {err:?}");
    assert_eq!(err.code(), code);
    let message = err.to_string();
    for part in parts {
        assert!(message.contains(part), "{message:?} should mention {part:?}");
    }
}

async fn count_rows(db: &TestDb) -> i64 {
    db.store.backend().query_scalar::<i64>("SELECT COUNT(*) FROM actual_lrps").fetch_one(db.store.pool()).await.unwrap()
}

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

/// UNCLAIMED → CLAIMED: key set, placement error and net info cleared, since and tag bumped.
pub async fn claim_takes_an_unclaimed_row_and_clears_placement_error(db: &TestDb) {
    create(db, "web", &[0]).await;
    db.store.fail_actual_lrp(&key("web", 0), "no cell has room", NOW_NS + SEC).await.unwrap();
    let change = db.store.claim_actual_lrp(&guid("web"), 0, &ikey("i-1", "cell-1"), NOW_NS + 2 * SEC).await.unwrap();
    let before = change.before.ordinary.clone().unwrap();
    let after = change.after.ordinary.clone().unwrap();
    assert!(change.changed());
    assert_eq!(before.placement_error, "no cell has room");
    assert_eq!(after.state, ActualLrpState::Claimed);
    assert_eq!(after.instance_key, Some(ikey("i-1", "cell-1")));
    assert_eq!(after.placement_error, "");
    assert_eq!(after.net_info, None);
    assert_eq!(after.since, NOW_NS + 2 * SEC);
    assert_eq!(after.modification_tag, before.modification_tag.incremented());
    assert_eq!(change.after, rows(db, "web", 0).await, "after is what is stored");
}

/// Re-claiming with the same key succeeds without a write.
pub async fn claim_by_the_same_key_writes_nothing(db: &TestDb) {
    create(db, "web", &[0]).await;
    db.store.claim_actual_lrp(&guid("web"), 0, &ikey("i-1", "cell-1"), NOW_NS).await.unwrap();
    let stored = ordinary(db, "web", 0).await;
    let again = db.store.claim_actual_lrp(&guid("web"), 0, &ikey("i-1", "cell-1"), NOW_NS + SEC).await.unwrap();
    assert!(!again.changed());
    assert_eq!(ordinary(db, "web", 0).await, stored);
    assert_eq!(stored.since, NOW_NS);
}

/// Fencing: a claim by another instance key is refused, naming the row.
pub async fn claim_by_another_key_is_refused(db: &TestDb) {
    create(db, "web", &[3]).await;
    db.store.claim_actual_lrp(&guid("web"), 3, &ikey("i-1", "cell-1"), NOW_NS).await.unwrap();
    let err = db.store.claim_actual_lrp(&guid("web"), 3, &ikey("i-2", "cell-2"), NOW_NS).await.unwrap_err();
    assert_refused(&err, ErrorCode::ActualLrpCannotBeClaimed, &["web", "index 3", "CLAIMED", "i-1", "i-2"]);
    running(db, "run", "i-1", "cell-1", NOW_NS).await;
    let err = db.store.claim_actual_lrp(&guid("run"), 0, &ikey("i-9", "cell-1"), NOW_NS).await.unwrap_err();
    assert_refused(&err, ErrorCode::ActualLrpCannotBeClaimed, &["RUNNING"]);
    // Claim by the same key of a RUNNING row goes back to CLAIMED (bbs.md 3.1).
    let change = db.store.claim_actual_lrp(&guid("run"), 0, &ikey("i-1", "cell-1"), NOW_NS + SEC).await.unwrap();
    let after = change.after.ordinary.unwrap();
    assert_eq!(after.state, ActualLrpState::Claimed);
    assert_eq!(after.net_info, None);
}

/// Every lifecycle call on an index without the row it needs is NotFound.
pub async fn lifecycle_calls_on_a_missing_index_are_not_found(db: &TestDb) {
    let s = &db.store;
    let k = key("ghost", 2);
    let i = ikey("i-1", "cell-1");
    let errors = vec![
        s.claim_actual_lrp(&guid("ghost"), 2, &i, NOW_NS).await.unwrap_err(),
        s.crash_actual_lrp(&k, &i, "boom", &CrashPolicy::default(), NOW_NS).await.unwrap_err(),
        s.fail_actual_lrp(&k, "no room", NOW_NS).await.unwrap_err(),
        s.remove_actual_lrp(&guid("ghost"), 2, None).await.unwrap_err(),
        s.unclaim_actual_lrp(&k, NOW_NS).await.unwrap_err(),
        s.delete_actual_lrp(&guid("ghost"), 2, Presence::Ordinary).await.unwrap_err(),
        s.suspect_and_replace(&guid("ghost"), 2, NOW_NS).await.unwrap_err(),
        s.promote_suspect(&guid("ghost"), 2, NOW_NS).await.unwrap_err(),
    ];
    for err in errors {
        assert!(
            matches!(&err, Error::NotFound { what: "actual lrp", key } if key.contains("ghost index 2")),
            "{err:?}"
        );
        assert_eq!(err.code(), ErrorCode::ResourceNotFound);
    }
    let err = s.promote_suspect(&guid("ghost"), 2, NOW_NS).await.unwrap_err();
    assert!(err.to_string().contains("suspect"), "{err}");
    assert_eq!(count_rows(db).await, 0);
}

/// CLAIMED → RUNNING stores net info, routes, tags, routable and zone; clears placement error.
pub async fn start_stores_every_running_field(db: &TestDb) {
    create(db, "web", &[0]).await;
    let k = ikey("i-1", "cell-1");
    db.store.claim_actual_lrp(&guid("web"), 0, &k, NOW_NS).await.unwrap();
    let info = start_info("10.0.0.5");
    let change = db.store.start_actual_lrp(&key("web", 0), &k, &info, NOW_NS + SEC).await.unwrap();
    let after = change.after.ordinary.clone().unwrap();
    assert_eq!(after.state, ActualLrpState::Running);
    assert_eq!(after.instance_key, Some(k));
    assert_eq!(after.net_info, Some(info.net_info.clone()));
    assert_eq!(after.internal_routes, info.internal_routes);
    assert_eq!(after.metric_tags, info.metric_tags);
    assert!(after.routable);
    assert_eq!(after.availability_zone, "z1");
    assert_eq!(after.since, NOW_NS + SEC);
    assert_eq!(after.modification_tag.index, 2);
    assert_eq!(ordinary(db, "web", 0).await, after);
    // UNCLAIMED → RUNNING directly (any key).
    create(db, "direct", &[0]).await;
    let change = db.store.start_actual_lrp(&key("direct", 0), &ikey("i-7", "cell-7"), &info, NOW_NS).await.unwrap();
    assert_eq!(change.after.ordinary.unwrap().state, ActualLrpState::Running);
}

/// bbs.md 3.1: CLAIMED → RUNNING accepts any key; RUNNING under another key refuses.
pub async fn start_by_another_key_is_allowed_on_claimed_but_refused_on_running(db: &TestDb) {
    create(db, "web", &[0]).await;
    db.store.claim_actual_lrp(&guid("web"), 0, &ikey("i-1", "cell-1"), NOW_NS).await.unwrap();
    let change = db
        .store
        .start_actual_lrp(&key("web", 0), &ikey("i-2", "cell-2"), &start_info("10.0.0.2"), NOW_NS)
        .await
        .unwrap();
    assert_eq!(change.after.ordinary.unwrap().instance_key, Some(ikey("i-2", "cell-2")));
    let err = db
        .store
        .start_actual_lrp(&key("web", 0), &ikey("i-1", "cell-1"), &start_info("10.0.0.1"), NOW_NS)
        .await
        .unwrap_err();
    assert_refused(&err, ErrorCode::ActualLrpCannotBeStarted, &["web", "index 0", "RUNNING", "i-2", "i-1"]);
    assert_eq!(ordinary(db, "web", 0).await.instance_key, Some(ikey("i-2", "cell-2")));
}

/// With no ordinary row (purged BBS), start creates a RUNNING row with a fresh epoch.
pub async fn start_without_an_ordinary_row_creates_a_running_row(db: &TestDb) {
    let k = ikey("i-1", "cell-1");
    let change = db.store.start_actual_lrp(&key("lost", 4), &k, &start_info("10.0.0.4"), NOW_NS).await.unwrap();
    assert!(change.before.is_empty());
    let after = change.after.ordinary.clone().unwrap();
    assert_eq!(after.key, key("lost", 4));
    assert_eq!(after.state, ActualLrpState::Running);
    assert_eq!(after.instance_key, Some(k));
    assert_eq!(after.since, NOW_NS);
    assert_eq!(after.modification_tag.index, 0);
    assert!(!after.modification_tag.epoch.is_empty());
    assert_eq!(ordinary(db, "lost", 4).await, after);
}

/// The rep's re-assert writes nothing; a changed field (routable flip) is a write.
pub async fn restarting_with_equal_fields_writes_nothing_and_a_changed_field_writes(db: &TestDb) {
    let first = running(db, "web", "i-1", "cell-1", NOW_NS).await;
    let k = ikey("i-1", "cell-1");
    let again =
        db.store.start_actual_lrp(&key("web", 0), &k, &start_info("10.0.0.1"), NOW_NS + 30 * SEC).await.unwrap();
    assert!(!again.changed());
    assert_eq!(ordinary(db, "web", 0).await, first);
    let mut flipped = start_info("10.0.0.1");
    flipped.routable = false;
    let change = db.store.start_actual_lrp(&key("web", 0), &k, &flipped, NOW_NS + 60 * SEC).await.unwrap();
    let after = change.after.ordinary.unwrap();
    assert!(!after.routable);
    assert_eq!(after.since, NOW_NS + 60 * SEC);
    assert_eq!(after.modification_tag, first.modification_tag.incremented());
}

/// When the ordinary row becomes RUNNING, the evacuating and suspect copies go, in one call.
pub async fn start_deletes_the_evacuating_and_suspect_rows_of_the_index(db: &TestDb) {
    running(db, "web", "i-old", "cell-old", NOW_NS).await;
    add_evacuating(db, "web").await;
    db.store.suspect_and_replace(&guid("web"), 0, NOW_NS).await.unwrap();
    let before = rows(db, "web", 0).await;
    assert!(before.evacuating.is_some() && before.suspect.is_some());
    assert_eq!(before.ordinary.as_ref().unwrap().state, ActualLrpState::Unclaimed);
    let k = ikey("i-new", "cell-new");
    db.store.claim_actual_lrp(&guid("web"), 0, &k, NOW_NS + SEC).await.unwrap();
    let change =
        db.store.start_actual_lrp(&key("web", 0), &k, &start_info("10.0.0.9"), NOW_NS + 2 * SEC).await.unwrap();
    assert!(change.before.evacuating.is_some() && change.before.suspect.is_some());
    assert_eq!(change.after.evacuating, None);
    assert_eq!(change.after.suspect, None);
    let stored = rows(db, "web", 0).await;
    assert_eq!(stored, change.after);
    assert_eq!(stored.ordinary.unwrap().state, ActualLrpState::Running);
    assert_eq!(count_rows(db).await, 1);
}

/// RUNNING requires an address: refused as invalid, and the row is unchanged.
pub async fn start_with_an_empty_address_is_invalid_and_writes_nothing(db: &TestDb) {
    create(db, "web", &[0]).await;
    let before = ordinary(db, "web", 0).await;
    let err =
        db.store.start_actual_lrp(&key("web", 0), &ikey("i-1", "cell-1"), &start_info(""), NOW_NS).await.unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    assert_eq!(err.code(), ErrorCode::InvalidRequest);
    assert!(err.to_string().contains("address"), "{err}");
    assert_eq!(ordinary(db, "web", 0).await, before);
}

/// bbs.md 3.2 through the store: 1st and 2nd crash restart at once, the 3rd leaves CRASHED.
pub async fn crash_restarts_twice_then_leaves_the_row_crashed(db: &TestDb) {
    let policy = CrashPolicy::default();
    let k = ikey("i-1", "cell-1");
    running(db, "web", "i-1", "cell-1", NOW_NS).await;
    let first = db.store.crash_actual_lrp(&key("web", 0), &k, "exit 1", &policy, NOW_NS + SEC).await.unwrap();
    assert!(first.value.restart_now);
    assert_eq!(first.value.crash_count, 1);
    let row = first.after.ordinary.unwrap();
    assert_eq!(row.state, ActualLrpState::Unclaimed);
    assert_eq!(row.instance_key, None);
    assert_eq!(row.net_info, None);
    assert_eq!(row.crash_count, 1);
    assert_eq!(row.crash_reason, "exit 1");
    assert_eq!(row.since, NOW_NS + SEC);

    running(db, "web", "i-2", "cell-1", NOW_NS + 2 * SEC).await;
    let second = db
        .store
        .crash_actual_lrp(&key("web", 0), &ikey("i-2", "cell-1"), "exit 2", &policy, NOW_NS + 3 * SEC)
        .await
        .unwrap();
    assert!(second.value.restart_now);
    assert_eq!(second.value.crash_count, 2);
    assert_eq!(second.after.ordinary.unwrap().state, ActualLrpState::Unclaimed);

    running(db, "web", "i-3", "cell-1", NOW_NS + 4 * SEC).await;
    let third = db
        .store
        .crash_actual_lrp(&key("web", 0), &ikey("i-3", "cell-1"), "exit 3", &policy, NOW_NS + 5 * SEC)
        .await
        .unwrap();
    assert!(!third.value.restart_now);
    assert_eq!(third.value.crash_count, 3);
    let row = ordinary(db, "web", 0).await;
    assert_eq!(row.state, ActualLrpState::Crashed);
    assert_eq!(row.crash_count, 3);
    assert_eq!(row.crash_reason, "exit 3");
    assert_eq!(row.instance_key, None);
    // A CRASHED row refuses claims (it has no key to match).
    let err = db.store.claim_actual_lrp(&guid("web"), 0, &ikey("i-4", "cell-1"), NOW_NS).await.unwrap_err();
    assert_refused(&err, ErrorCode::ActualLrpCannotBeClaimed, &["CRASHED"]);
}

/// A crash after more than 5 minutes RUNNING counts from 1 again.
pub async fn crash_after_five_minutes_running_resets_the_count(db: &TestDb) {
    let policy = CrashPolicy::default();
    for (i, at) in [NOW_NS, NOW_NS + 2 * SEC, NOW_NS + 4 * SEC].into_iter().enumerate() {
        let instance = format!("i-{i}");
        running(db, "web", &instance, "cell-1", at).await;
        db.store.crash_actual_lrp(&key("web", 0), &ikey(&instance, "cell-1"), "boom", &policy, at + SEC).await.unwrap();
    }
    assert_eq!(ordinary(db, "web", 0).await.crash_count, 3);
    // Convergence restarts the CRASHED row; it runs for 5 minutes and a bit, then crashes.
    db.store.unclaim_actual_lrp(&key("web", 0), NOW_NS + 60 * SEC).await.unwrap();
    let started = NOW_NS + 61 * SEC;
    running(db, "web", "i-9", "cell-1", started).await;
    let crash = db
        .store
        .crash_actual_lrp(&key("web", 0), &ikey("i-9", "cell-1"), "late", &policy, started + 5 * 60 * SEC + 1)
        .await
        .unwrap();
    assert_eq!(crash.value.crash_count, 1);
    assert!(crash.value.restart_now);
    assert_eq!(ordinary(db, "web", 0).await.state, ActualLrpState::Unclaimed);
}

/// Fencing on crash: another key, or a row without a key, refuses.
pub async fn crash_by_another_key_or_of_an_unclaimed_row_is_refused(db: &TestDb) {
    let policy = CrashPolicy::default();
    running(db, "web", "i-1", "cell-1", NOW_NS).await;
    let before = ordinary(db, "web", 0).await;
    let err =
        db.store.crash_actual_lrp(&key("web", 0), &ikey("i-2", "cell-1"), "x", &policy, NOW_NS).await.unwrap_err();
    assert_refused(&err, ErrorCode::ActualLrpCannotBeCrashed, &["web", "index 0", "RUNNING", "i-1", "i-2"]);
    assert_eq!(ordinary(db, "web", 0).await, before);
    create(db, "idle", &[0]).await;
    let err =
        db.store.crash_actual_lrp(&key("idle", 0), &ikey("i-1", "cell-1"), "x", &policy, NOW_NS).await.unwrap_err();
    assert_refused(&err, ErrorCode::ActualLrpCannotBeCrashed, &["UNCLAIMED"]);
}

/// Reasons longer than 1024 characters are cut with a "(truncated)" suffix.
pub async fn crash_reasons_and_placement_errors_are_truncated(db: &TestDb) {
    let long = "é".repeat(3000);
    create(db, "pending", &[0]).await;
    db.store.fail_actual_lrp(&key("pending", 0), &long, NOW_NS).await.unwrap();
    let error = ordinary(db, "pending", 0).await.placement_error;
    assert_eq!(error.chars().count(), 1024);
    assert!(error.ends_with("(truncated)"));
    running(db, "web", "i-1", "cell-1", NOW_NS).await;
    db.store
        .crash_actual_lrp(&key("web", 0), &ikey("i-1", "cell-1"), &long, &CrashPolicy::default(), NOW_NS)
        .await
        .unwrap();
    let reason = ordinary(db, "web", 0).await.crash_reason;
    assert_eq!(reason.chars().count(), 1024);
    assert!(reason.ends_with("(truncated)"));
}

/// FailActualLRP: UNCLAIMED only; stores the error and bumps since.
pub async fn fail_applies_only_to_unclaimed_rows(db: &TestDb) {
    create(db, "web", &[0]).await;
    let change = db.store.fail_actual_lrp(&key("web", 0), "insufficient resources", NOW_NS + 7).await.unwrap();
    let after = change.after.ordinary.unwrap();
    assert_eq!(after.state, ActualLrpState::Unclaimed);
    assert_eq!(after.placement_error, "insufficient resources");
    assert_eq!(after.since, NOW_NS + 7);
    assert_eq!(after.modification_tag.index, 1);
    db.store.claim_actual_lrp(&guid("web"), 0, &ikey("i-1", "cell-1"), NOW_NS).await.unwrap();
    let err = db.store.fail_actual_lrp(&key("web", 0), "late", NOW_NS).await.unwrap_err();
    assert_refused(&err, ErrorCode::ActualLrpCannotBeFailed, &["web", "index 0", "CLAIMED"]);
}

/// RemoveActualLRP fences on the instance key when one is given.
pub async fn remove_checks_the_instance_key_when_given(db: &TestDb) {
    running(db, "web", "i-1", "cell-1", NOW_NS).await;
    let err = db.store.remove_actual_lrp(&guid("web"), 0, Some(&ikey("i-2", "cell-1"))).await.unwrap_err();
    assert_refused(&err, ErrorCode::ActualLrpCannotBeRemoved, &["web", "index 0", "RUNNING"]);
    let change = db.store.remove_actual_lrp(&guid("web"), 0, Some(&ikey("i-1", "cell-1"))).await.unwrap();
    assert!(change.before.ordinary.is_some());
    assert!(change.after.is_empty());
    assert!(rows(db, "web", 0).await.is_empty());

    create(db, "idle", &[0]).await;
    let err = db.store.remove_actual_lrp(&guid("idle"), 0, Some(&ikey("i-1", "cell-1"))).await.unwrap_err();
    assert_refused(&err, ErrorCode::ActualLrpCannotBeRemoved, &["UNCLAIMED"]);
    db.store.remove_actual_lrp(&guid("idle"), 0, None).await.unwrap();
    assert_eq!(count_rows(db).await, 0);
}

/// Internal unclaim: back to UNCLAIMED without key or net info; the crash count stays.
pub async fn unclaim_clears_the_instance_and_keeps_the_crash_count(db: &TestDb) {
    let policy = CrashPolicy::default();
    running(db, "web", "i-1", "cell-1", NOW_NS).await;
    db.store.crash_actual_lrp(&key("web", 0), &ikey("i-1", "cell-1"), "x", &policy, NOW_NS).await.unwrap();
    running(db, "web", "i-2", "cell-1", NOW_NS).await;
    let before = ordinary(db, "web", 0).await;
    let change = db.store.unclaim_actual_lrp(&key("web", 0), NOW_NS + SEC).await.unwrap();
    let after = change.after.ordinary.unwrap();
    assert_eq!(after.state, ActualLrpState::Unclaimed);
    assert_eq!(after.instance_key, None);
    assert_eq!(after.net_info, None);
    assert_eq!(after.crash_count, 1);
    assert_eq!(after.since, NOW_NS + SEC);
    assert_eq!(after.modification_tag, before.modification_tag.incremented());
    let again = db.store.unclaim_actual_lrp(&key("web", 0), NOW_NS + 2 * SEC).await.unwrap();
    assert!(!again.changed(), "an UNCLAIMED row is left as it is");
}

/// delete_actual_lrp removes exactly the named presence.
pub async fn delete_removes_one_presence(db: &TestDb) {
    running(db, "web", "i-1", "cell-1", NOW_NS).await;
    add_evacuating(db, "web").await;
    let change = db.store.delete_actual_lrp(&guid("web"), 0, Presence::Evacuating).await.unwrap();
    assert!(change.before.evacuating.is_some());
    assert_eq!(change.after.evacuating, None);
    assert_eq!(change.after.ordinary, change.before.ordinary);
    let err = db.store.delete_actual_lrp(&guid("web"), 0, Presence::Evacuating).await.unwrap_err();
    assert!(matches!(&err, Error::NotFound { key, .. } if key.contains("evacuating")), "{err:?}");
    db.store.delete_actual_lrp(&guid("web"), 0, Presence::Ordinary).await.unwrap();
    assert_eq!(count_rows(db).await, 0);
}

/// bbs.md 3.4: the ordinary row becomes SUSPECT and a fresh UNCLAIMED row replaces it.
pub async fn suspect_and_replace_moves_the_row_and_inserts_a_replacement(db: &TestDb) {
    let original = running(db, "web", "i-1", "cell-1", NOW_NS).await;
    let change = db.store.suspect_and_replace(&guid("web"), 0, NOW_NS + SEC).await.unwrap();
    let suspect = change.after.suspect.clone().unwrap();
    assert_eq!(suspect.presence, Presence::Suspect);
    assert_eq!(suspect.state, ActualLrpState::Running);
    assert_eq!(suspect.instance_key, original.instance_key);
    assert_eq!(suspect.net_info, original.net_info);
    assert_eq!(suspect.since, original.since);
    assert_eq!(suspect.modification_tag, original.modification_tag.incremented());
    let replacement = change.after.ordinary.clone().unwrap();
    assert_eq!(replacement.state, ActualLrpState::Unclaimed);
    assert_eq!(replacement.since, NOW_NS + SEC);
    assert_eq!(replacement.modification_tag.index, 0);
    assert_ne!(replacement.modification_tag.epoch, original.modification_tag.epoch);
    assert_eq!(rows(db, "web", 0).await, change.after);

    let err = db.store.suspect_and_replace(&guid("web"), 0, NOW_NS).await.unwrap_err();
    assert_refused(&err, ErrorCode::InvalidStateTransition, &["web", "index 0", "suspect"]);
    create(db, "idle", &[0]).await;
    let err = db.store.suspect_and_replace(&guid("idle"), 0, NOW_NS).await.unwrap_err();
    assert_refused(&err, ErrorCode::InvalidStateTransition, &["UNCLAIMED"]);
}

/// Claim and start from the suspect's instance are ignored; its crash deletes it.
pub async fn calls_from_the_suspect_instance_are_ignored_or_delete_it(db: &TestDb) {
    running(db, "web", "i-1", "cell-1", NOW_NS).await;
    db.store.suspect_and_replace(&guid("web"), 0, NOW_NS).await.unwrap();
    let before = rows(db, "web", 0).await;
    let k = ikey("i-1", "cell-1");
    let claim = db.store.claim_actual_lrp(&guid("web"), 0, &k, NOW_NS + SEC).await.unwrap();
    assert!(!claim.changed());
    let start = db.store.start_actual_lrp(&key("web", 0), &k, &start_info("10.0.0.1"), NOW_NS + SEC).await.unwrap();
    assert!(!start.changed());
    assert_eq!(rows(db, "web", 0).await, before);
    let crash = db.store.crash_actual_lrp(&key("web", 0), &k, "gone", &CrashPolicy::default(), NOW_NS).await.unwrap();
    assert!(!crash.value.restart_now);
    assert_eq!(crash.after.suspect, None);
    assert_eq!(crash.after.ordinary, before.ordinary, "the replacement is untouched");
    assert_eq!(rows(db, "web", 0).await, crash.after);
}

/// Promote: the replacement goes, the suspect row becomes ordinary with its identity.
pub async fn promote_deletes_the_replacement_and_restores_the_suspect(db: &TestDb) {
    let original = running(db, "web", "i-1", "cell-1", NOW_NS).await;
    db.store.suspect_and_replace(&guid("web"), 0, NOW_NS).await.unwrap();
    db.store.claim_actual_lrp(&guid("web"), 0, &ikey("i-2", "cell-2"), NOW_NS).await.unwrap();
    let change = db.store.promote_suspect(&guid("web"), 0, NOW_NS + SEC).await.unwrap();
    assert_eq!(change.after.suspect, None);
    let promoted = change.after.ordinary.clone().unwrap();
    assert_eq!(promoted.presence, Presence::Ordinary);
    assert_eq!(promoted.state, ActualLrpState::Running);
    assert_eq!(promoted.instance_key, original.instance_key);
    assert_eq!(promoted.since, original.since);
    assert_eq!(promoted.modification_tag.epoch, original.modification_tag.epoch);
    assert_eq!(promoted.modification_tag.index, original.modification_tag.index + 2);
    assert_eq!(rows(db, "web", 0).await, change.after);
    assert_eq!(count_rows(db).await, 1);
}

/// Unchanged rows are not written; changed ones get index + 1; new ones a fresh epoch.
pub async fn modify_index_writes_only_differences(db: &TestDb) {
    running(db, "web", "i-1", "cell-1", NOW_NS).await;
    let noop = db.store.modify_index("test noop", &guid("web"), 0, |_| Ok(42)).await.unwrap();
    assert_eq!(noop.value, 42);
    assert_eq!(noop.before, noop.after);
    let original = noop.before.ordinary.clone().unwrap();
    let change = db
        .store
        .modify_index("test change", &guid("web"), 0, |rows| {
            let ordinary = rows.ordinary.as_mut().unwrap();
            ordinary.availability_zone = "z2".into();
            let copy = ordinary.clone();
            rows.evacuating = Some(ActualLrp { modification_tag: ModificationTag::default(), ..copy });
            Ok(())
        })
        .await
        .unwrap();
    let ordinary_after = change.after.ordinary.clone().unwrap();
    assert_eq!(ordinary_after.availability_zone, "z2");
    assert_eq!(ordinary_after.modification_tag, original.modification_tag.incremented());
    let evacuating = change.after.evacuating.clone().unwrap();
    assert_eq!(evacuating.presence, Presence::Evacuating, "the slot sets the presence");
    assert_eq!(evacuating.modification_tag.index, 0);
    assert_ne!(evacuating.modification_tag.epoch, original.modification_tag.epoch);
    assert_eq!(rows(db, "web", 0).await, change.after);
    // Touching only the evacuating row leaves the ordinary row's tag alone.
    let change = db
        .store
        .modify_index("test evacuating only", &guid("web"), 0, |rows| {
            rows.evacuating.as_mut().unwrap().availability_zone = "z3".into();
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(change.after.ordinary, change.before.ordinary);
    assert_eq!(change.after.evacuating.unwrap().modification_tag.index, 1);
}

/// Callback errors are returned as they are and roll back; invalid rows are refused.
pub async fn modify_index_rolls_back_on_errors_and_refuses_bad_rows(db: &TestDb) {
    create(db, "web", &[0]).await;
    let before = rows(db, "web", 0).await;
    let err = db
        .store
        .modify_index("test error", &guid("web"), 0, |rows| -> db::Result<()> {
            rows.ordinary = None;
            Err(Error::refused(ErrorCode::ResourceConflict, "changed my mind"))
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Refused { code: ErrorCode::ResourceConflict, message } if message == "changed my mind")
    );
    assert_eq!(rows(db, "web", 0).await, before);
    // An UNCLAIMED suspect cannot exist (bbs.md 2.2).
    let err = db
        .store
        .modify_index("test bad presence", &guid("web"), 0, |rows| {
            rows.suspect = rows.ordinary.clone();
            Ok(())
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    // A row must stay in its index.
    let err = db
        .store
        .modify_index("test bad key", &guid("web"), 0, |rows| {
            rows.ordinary.as_mut().unwrap().key.index = 1;
            Ok(())
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    assert_eq!(rows(db, "web", 0).await, before);
    assert!(rows(db, "web", 1).await.is_empty());
}

/// Eight concurrent FailActualLRP on one row: every write lands (no lost update).
pub async fn concurrent_fails_on_one_row_lose_no_update(db: &TestDb) {
    create(db, "web", &[0]).await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = db.store.clone();
            tokio::spawn(
                async move { store.fail_actual_lrp(&key("web", 0), &format!("attempt {i}"), NOW_NS + i).await },
            )
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let row = ordinary(db, "web", 0).await;
    assert_eq!(row.modification_tag.index, 8);
    assert!(row.placement_error.starts_with("attempt "));
}

/// Eight concurrent claims with different keys: exactly one wins, the rest are refused.
pub async fn concurrent_claims_with_different_keys_let_exactly_one_win(db: &TestDb) {
    create(db, "web", &[0]).await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = db.store.clone();
            tokio::spawn(async move {
                let k = ikey(&format!("i-{i}"), &format!("cell-{i}"));
                (k.clone(), store.claim_actual_lrp(&guid("web"), 0, &k, NOW_NS).await)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let (k, outcome) = task.await.unwrap();
        match outcome {
            Ok(_) => winners.push(k),
            Err(err) => assert_eq!(err.code(), ErrorCode::ActualLrpCannotBeClaimed, "{err}"),
        }
    }
    assert_eq!(winners.len(), 1);
    let row = ordinary(db, "web", 0).await;
    assert_eq!(row.instance_key.as_ref(), winners.first());
    assert_eq!(row.modification_tag.index, 1);
}

/// Concurrent starts that each create the missing row: one insert wins, the others retry and
/// find it (no lock covers a row that does not exist yet).
pub async fn concurrent_starts_of_a_missing_row_create_it_once(db: &TestDb) {
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let store = db.store.clone();
            tokio::spawn(async move {
                store.start_actual_lrp(&key("web", 0), &ikey("i-1", "cell-1"), &start_info("10.0.0.1"), NOW_NS).await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let row = ordinary(db, "web", 0).await;
    assert_eq!(row.state, ActualLrpState::Running);
    assert_eq!(row.modification_tag.index, 0);
    assert_eq!(count_rows(db).await, 1);
}
