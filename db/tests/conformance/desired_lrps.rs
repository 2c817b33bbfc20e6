//! Conformance tests of the desired_lrps store operations (bbs.md 2.1, 5.4).

use std::collections::BTreeMap;

use db::Error;
use db::sql::desired_lrps::DesiredLrpFilter;
use db::testing::TestDb;
use proto::models::{
    ActualLrpState, DesiredLrp, DesiredLrpUpdate, DomainName, MetricTagValue, Presence, ProcessGuid, SchedulingInfo,
    UpdateStrategy,
};
use proto::pb::models::v1 as pb;

use super::NOW_NS;

macro_rules! desired_lrps_tests {
    ($backend:expr) => {
        suite_module!(
            $backend,
            desired_lrps,
            [
                desiring_stores_the_lrp_with_a_fresh_tag_and_its_unclaimed_instances,
                desiring_a_taken_guid_is_exists_and_changes_nothing,
                a_desire_whose_instances_cannot_be_written_leaves_nothing_behind,
                listings_filter_by_domain_and_ored_guid_lists,
                app_guid_patterns_escape_like_wildcards,
                long_guid_lists_are_split_without_duplicates,
                the_scheduling_and_routing_views_match_the_stored_lrp,
                a_corrupt_run_info_only_hides_the_whole_lrp,
                a_corrupt_scheduling_column_hides_the_row_everywhere,
                update_applies_only_the_given_fields_and_bumps_the_index,
                update_re_encodes_image_credentials_in_run_info,
                half_set_image_credentials_are_invalid_and_change_nothing,
                growing_instances_creates_unclaimed_rows_for_new_indices_only,
                shrinking_instances_only_changes_the_count,
                missing_lrps_are_not_found,
                remove_returns_the_lrp_and_leaves_its_actual_lrps,
                concurrent_updates_of_one_lrp_lose_nothing,
            ]
        );
    };
}

fn guid(s: &str) -> ProcessGuid {
    ProcessGuid::parse(s).unwrap()
}

fn domain(s: &str) -> DomainName {
    DomainName::parse(s).unwrap()
}

/// A realistic desired LRP of `instances` instances.
pub fn desired(process_guid: &str, domain_name: &str, instances: i32) -> DesiredLrp {
    let run_action = pb::Action {
        action: Some(pb::action::Action::RunAction(pb::RunAction {
            path: "/home/vcap/app/start".into(),
            user: "vcap".into(),
            ..Default::default()
        })),
    };
    let run_info = proto::convert::run_info_from_pb(pb::DesiredLrpRunInfo {
        desired_lrp_key: Some(pb::DesiredLrpKey {
            process_guid: process_guid.into(),
            domain: domain_name.into(),
            log_guid: "log-guid".into(),
        }),
        action: Some(run_action),
        ports: vec![8080],
        privileged: true,
        start_timeout_ms: 60_000,
        ..Default::default()
    })
    .unwrap();
    DesiredLrp {
        scheduling: SchedulingInfo {
            process_guid: guid(process_guid),
            domain: domain(domain_name),
            log_guid: "log-guid".into(),
            annotation: "created by the suite".into(),
            instances,
            memory_mb: 256,
            disk_mb: 1024,
            max_pids: 100,
            rootfs: "preloaded:cflinuxfs4".into(),
            routes: [
                ("cf-router".to_owned(), br#"[{"hostnames":["app.example.com"],"port":8080}]"#.to_vec()),
                ("binary".to_owned(), vec![0xff, 0x00]),
            ]
            .into(),
            modification_tag: Default::default(),
            volume_placement: vec!["nfsv3driver".into()],
            placement_tags: vec!["zone-a".into(), "gpu".into()],
            update_strategy: UpdateStrategy::Recreate,
        },
        run_info,
        metric_tags: [
            ("source_id".to_owned(), MetricTagValue::Static("app".into())),
            ("instance".to_owned(), MetricTagValue::Index),
            ("guid".to_owned(), MetricTagValue::InstanceGuid),
        ]
        .into(),
    }
}

async fn actual_count(db: &TestDb, process_guid: &str) -> i64 {
    db.store
        .backend()
        .query_scalar::<i64>("SELECT COUNT(*) FROM actual_lrps WHERE process_guid = ?")
        .bind(process_guid.to_owned())
        .fetch_one(db.store.pool())
        .await
        .unwrap()
}

async fn corrupt(db: &TestDb, column: &str, process_guid: &str, blob: &[u8]) {
    let sql = format!("UPDATE desired_lrps SET {column} = ? WHERE process_guid = ?");
    let query = db.store.backend().query(&sql).bind(blob.to_vec()).bind(process_guid.to_owned());
    query.execute(db.store.pool()).await.unwrap();
}

fn guids_of(lrps: &[DesiredLrp]) -> Vec<&str> {
    lrps.iter().map(|l| l.scheduling.process_guid.as_str()).collect()
}

fn filter(domain_name: Option<&str>, process_guids: &[&str], app_guids: &[&str]) -> DesiredLrpFilter {
    DesiredLrpFilter {
        domain: domain_name.map(domain),
        process_guids: process_guids.iter().map(|g| guid(g)).collect(),
        app_guids: app_guids.iter().map(|g| (*g).to_owned()).collect(),
    }
}

/// Desire stores the LRP with a new epoch at index 0 and its run info's created_at, and creates
/// one UNCLAIMED ordinary actual LRP per index.
pub async fn desiring_stores_the_lrp_with_a_fresh_tag_and_its_unclaimed_instances(db: &TestDb) {
    let lrp = desired("app1-v1", "cf-apps", 3);
    let (stored, created) = db.store.desire_lrp(&lrp, NOW_NS).await.unwrap();
    assert_eq!(stored.scheduling.modification_tag.index, 0);
    assert_eq!(stored.scheduling.modification_tag.epoch.len(), 36, "a uuid epoch");
    assert_eq!(stored.run_info.as_pb().created_at, NOW_NS);
    let mut expected = lrp.clone();
    expected.scheduling.modification_tag = stored.scheduling.modification_tag.clone();
    expected.run_info = stored.run_info.clone();
    assert_eq!(stored, expected);
    assert_eq!(db.store.desired_lrp(&guid("app1-v1")).await.unwrap(), stored);

    let indices: Vec<i32> = created.iter().map(|a| a.key.index).collect();
    assert_eq!(indices, [0, 1, 2]);
    for actual in &created {
        assert_eq!(actual.key.process_guid.as_str(), "app1-v1");
        assert_eq!(actual.key.domain.as_str(), "cf-apps");
        assert_eq!(actual.state, ActualLrpState::Unclaimed);
        assert_eq!(actual.presence, Presence::Ordinary);
        assert_eq!(actual.since, NOW_NS);
    }
    assert_eq!(actual_count(db, "app1-v1").await, 3);

    // A second desire gets another epoch; zero instances create no actual LRPs.
    let (other, none) = db.store.desire_lrp(&desired("app1-v2", "cf-apps", 0), NOW_NS).await.unwrap();
    assert_ne!(other.scheduling.modification_tag.epoch, stored.scheduling.modification_tag.epoch);
    assert!(none.is_empty());
}

/// A duplicate guid is `Exists` and neither the row nor its instances change.
pub async fn desiring_a_taken_guid_is_exists_and_changes_nothing(db: &TestDb) {
    let (stored, _) = db.store.desire_lrp(&desired("app1-v1", "cf-apps", 2), NOW_NS).await.unwrap();
    let again = desired("app1-v1", "other-domain", 5);
    let err = db.store.desire_lrp(&again, NOW_NS + 1).await.unwrap_err();
    assert!(matches!(&err, Error::Exists { what: "desired lrp", key } if key == "app1-v1"), "{err}");
    assert_eq!(err.code(), proto::error::ErrorCode::ResourceExists);
    assert_eq!(db.store.desired_lrp(&guid("app1-v1")).await.unwrap(), stored);
    assert_eq!(actual_count(db, "app1-v1").await, 2);
}

/// The desired row and its instances are one transaction: when the instances cannot be written,
/// the desired row is not there either.
pub async fn a_desire_whose_instances_cannot_be_written_leaves_nothing_behind(db: &TestDb) {
    db.store.backend().query("DROP TABLE actual_lrps").execute(db.store.pool()).await.unwrap();
    let err = db.store.desire_lrp(&desired("app1-v1", "cf-apps", 2), NOW_NS).await.unwrap_err();
    assert!(matches!(err, Error::Unrecoverable { .. }), "{err}");
    let err = db.store.desired_lrp(&guid("app1-v1")).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { what: "desired lrp", .. }), "{err}");
    assert!(db.store.desired_lrps(&DesiredLrpFilter::default()).await.unwrap().is_empty());
}

/// The domain is ANDed with the ORed process guid and app guid lists; results are sorted.
pub async fn listings_filter_by_domain_and_ored_guid_lists(db: &TestDb) {
    for (g, d) in [("app2-v1", "other"), ("app1-v2", "cf-apps"), ("app1-v1", "cf-apps"), ("app3-v1", "cf-apps")] {
        db.store.desire_lrp(&desired(g, d, 1), NOW_NS).await.unwrap();
    }
    let all = db.store.desired_lrps(&DesiredLrpFilter::default()).await.unwrap();
    assert_eq!(guids_of(&all), ["app1-v1", "app1-v2", "app2-v1", "app3-v1"]);
    let cases: [(DesiredLrpFilter, &[&str]); 7] = [
        (filter(Some("cf-apps"), &[], &[]), &["app1-v1", "app1-v2", "app3-v1"]),
        (filter(Some("nowhere"), &[], &[]), &[]),
        (filter(None, &["app3-v1", "app2-v1", "missing"], &[]), &["app2-v1", "app3-v1"]),
        (filter(None, &[], &["app1"]), &["app1-v1", "app1-v2"]),
        (filter(None, &["app2-v1"], &["app1"]), &["app1-v1", "app1-v2", "app2-v1"]),
        (filter(Some("cf-apps"), &["app2-v1"], &["app1"]), &["app1-v1", "app1-v2"]),
        (filter(Some("other"), &["app1-v1"], &["app3"]), &[]),
    ];
    for (f, expected) in cases {
        let lrps = db.store.desired_lrps(&f).await.unwrap();
        assert_eq!(guids_of(&lrps), expected, "desired_lrps({f:?})");
        let infos = db.store.scheduling_infos(&f).await.unwrap();
        let infos: Vec<&str> = infos.iter().map(|s| s.process_guid.as_str()).collect();
        assert_eq!(infos, expected, "scheduling_infos({f:?})");
        let routing = db.store.routing_infos(&f).await.unwrap();
        let routing: Vec<&str> = routing.iter().map(|(s, _)| s.process_guid.as_str()).collect();
        assert_eq!(routing, expected, "routing_infos({f:?})");
    }
}

/// `_` and `%` in an app guid match themselves only.
pub async fn app_guid_patterns_escape_like_wildcards(db: &TestDb) {
    for g in ["app_1-v1", "appz1-v1", "other"] {
        db.store.desire_lrp(&desired(g, "cf-apps", 0), NOW_NS).await.unwrap();
    }
    let lrps = db.store.desired_lrps(&filter(None, &[], &["app_1"])).await.unwrap();
    assert_eq!(guids_of(&lrps), ["app_1-v1"]);
    assert!(db.store.desired_lrps(&filter(None, &[], &["%"])).await.unwrap().is_empty());
    assert!(db.store.desired_lrps(&filter(None, &[], &["app!"])).await.unwrap().is_empty());
}

/// A filter listing more guids than one statement binds still returns each match once.
pub async fn long_guid_lists_are_split_without_duplicates(db: &TestDb) {
    for g in ["p-0007", "p-0650", "p-1100"] {
        db.store.desire_lrp(&desired(g, "cf-apps", 0), NOW_NS).await.unwrap();
    }
    let many: Vec<String> = (0..1200).map(|i| format!("p-{i:04}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let lrps = db.store.desired_lrps(&filter(Some("cf-apps"), &many, &["p-11"])).await.unwrap();
    assert_eq!(guids_of(&lrps), ["p-0007", "p-0650", "p-1100"]);
    let infos = db.store.scheduling_infos(&filter(None, &many[600..], &[])).await.unwrap();
    assert_eq!(infos.len(), 2);
}

/// The scheduling and routing views are the scheduling half (plus metric tags) of the record.
pub async fn the_scheduling_and_routing_views_match_the_stored_lrp(db: &TestDb) {
    let (stored, _) = db.store.desire_lrp(&desired("app1-v1", "cf-apps", 1), NOW_NS).await.unwrap();
    assert_eq!(db.store.scheduling_info(&guid("app1-v1")).await.unwrap(), stored.scheduling);
    let infos = db.store.scheduling_infos(&DesiredLrpFilter::default()).await.unwrap();
    assert_eq!(infos, std::slice::from_ref(&stored.scheduling));
    let routing = db.store.routing_infos(&DesiredLrpFilter::default()).await.unwrap();
    assert_eq!(routing, [(stored.scheduling.clone(), stored.metric_tags.clone())]);
    // Opaque route bytes survive exactly, UTF-8 or not.
    assert_eq!(stored.scheduling.routes.get("binary"), Some(&vec![0xff, 0x00]));
}

/// A run info that cannot be decoded hides the LRP from whole-record reads only: the scheduling
/// and routing views never read it.
pub async fn a_corrupt_run_info_only_hides_the_whole_lrp(db: &TestDb) {
    db.store.desire_lrp(&desired("app1-v1", "cf-apps", 1), NOW_NS).await.unwrap();
    let (good, _) = db.store.desire_lrp(&desired("app2-v1", "cf-apps", 1), NOW_NS).await.unwrap();
    corrupt(db, "run_info", "app1-v1", &[0x02, 0x00, 0xff, 0xff]).await;
    let all = db.store.desired_lrps(&DesiredLrpFilter::default()).await.unwrap();
    assert_eq!(all, [good]);
    let err = db.store.desired_lrp(&guid("app1-v1")).await.unwrap_err();
    assert!(matches!(&err, Error::Corrupt { what: "desired lrp", key, .. } if key == "app1-v1"), "{err}");
    assert_eq!(err.code(), proto::error::ErrorCode::InvalidRecord);
    assert_eq!(db.store.scheduling_info(&guid("app1-v1")).await.unwrap().instances, 1);
    assert_eq!(db.store.scheduling_infos(&DesiredLrpFilter::default()).await.unwrap().len(), 2);
    assert_eq!(db.store.routing_infos(&DesiredLrpFilter::default()).await.unwrap().len(), 2);
    // Writes that must decode the record refuse it rather than guess.
    let update = DesiredLrpUpdate { instances: Some(3), ..Default::default() };
    assert!(matches!(db.store.update_desired_lrp(&guid("app1-v1"), &update, NOW_NS).await, Err(Error::Corrupt { .. })));
    assert!(matches!(db.store.remove_desired_lrp(&guid("app1-v1")).await, Err(Error::Corrupt { .. })));
}

/// A scheduling column that cannot be decoded hides the row from every view.
pub async fn a_corrupt_scheduling_column_hides_the_row_everywhere(db: &TestDb) {
    db.store.desire_lrp(&desired("app1-v1", "cf-apps", 1), NOW_NS).await.unwrap();
    db.store.desire_lrp(&desired("app2-v1", "cf-apps", 1), NOW_NS).await.unwrap();
    corrupt(db, "routes", "app1-v1", b"not a codec blob").await;
    let err = db.store.scheduling_info(&guid("app1-v1")).await.unwrap_err();
    assert!(matches!(err, Error::Corrupt { what: "desired lrp", .. }), "{err}");
    assert!(matches!(db.store.desired_lrp(&guid("app1-v1")).await, Err(Error::Corrupt { .. })));
    let f = DesiredLrpFilter::default();
    assert_eq!(guids_of(&db.store.desired_lrps(&f).await.unwrap()), ["app2-v1"]);
    assert_eq!(db.store.scheduling_infos(&f).await.unwrap().len(), 1);
    assert_eq!(db.store.routing_infos(&f).await.unwrap().len(), 1);
}

/// An update changes only its `Some` fields and increments the modification index.
pub async fn update_applies_only_the_given_fields_and_bumps_the_index(db: &TestDb) {
    let (stored, _) = db.store.desire_lrp(&desired("app1-v1", "cf-apps", 2), NOW_NS).await.unwrap();
    let routes: BTreeMap<String, Vec<u8>> = [("tcp-router".to_owned(), b"[]".to_vec())].into();
    let update = DesiredLrpUpdate { routes: Some(routes.clone()), annotation: Some("v2".into()), ..Default::default() };
    let changed = db.store.update_desired_lrp(&guid("app1-v1"), &update, NOW_NS).await.unwrap();
    assert_eq!(changed.before, stored);
    assert!(changed.created.is_empty());
    let mut expected = stored.clone();
    expected.scheduling.routes = routes;
    expected.scheduling.annotation = "v2".into();
    expected.scheduling.modification_tag.index = 1;
    assert_eq!(changed.after, expected);
    assert_eq!(db.store.desired_lrp(&guid("app1-v1")).await.unwrap(), expected);

    let tags: BTreeMap<String, MetricTagValue> = [("source_id".to_owned(), MetricTagValue::Static("x".into()))].into();
    let update = DesiredLrpUpdate { metric_tags: Some(tags.clone()), ..Default::default() };
    let changed = db.store.update_desired_lrp(&guid("app1-v1"), &update, NOW_NS).await.unwrap();
    assert_eq!(changed.after.metric_tags, tags);
    assert_eq!(changed.after.scheduling.annotation, "v2");
    assert_eq!(changed.after.scheduling.modification_tag.index, 2);
    assert_eq!(changed.after.scheduling.modification_tag.epoch, stored.scheduling.modification_tag.epoch);
    // An empty update still counts as a write.
    let changed = db.store.update_desired_lrp(&guid("app1-v1"), &DesiredLrpUpdate::default(), NOW_NS).await.unwrap();
    assert_eq!(changed.after.scheduling.modification_tag.index, 3);
    assert_eq!(db.store.desired_lrp(&guid("app1-v1")).await.unwrap(), changed.after);
}

/// Image credentials live in the run info blob, which the update rewrites.
pub async fn update_re_encodes_image_credentials_in_run_info(db: &TestDb) {
    db.store.desire_lrp(&desired("app1-v1", "cf-apps", 1), NOW_NS).await.unwrap();
    let update = DesiredLrpUpdate {
        image_username: Some("user".into()),
        image_password: Some("secret".into()),
        ..Default::default()
    };
    let changed = db.store.update_desired_lrp(&guid("app1-v1"), &update, NOW_NS).await.unwrap();
    assert_eq!(changed.after.run_info.as_pb().image_username, "user");
    assert_eq!(changed.after.run_info.as_pb().image_password, "secret");
    assert_eq!(changed.after.run_info.as_pb().ports, [8080]);
    let reread = db.store.desired_lrp(&guid("app1-v1")).await.unwrap();
    assert_eq!(reread, changed.after);
    // Changing one of a set pair keeps the other.
    let update = DesiredLrpUpdate { image_password: Some("rotated".into()), ..Default::default() };
    let changed = db.store.update_desired_lrp(&guid("app1-v1"), &update, NOW_NS).await.unwrap();
    assert_eq!(changed.after.run_info.as_pb().image_username, "user");
    assert_eq!(db.store.desired_lrp(&guid("app1-v1")).await.unwrap().run_info.as_pb().image_password, "rotated");
}

/// Credentials left half set are refused and the transaction writes nothing.
pub async fn half_set_image_credentials_are_invalid_and_change_nothing(db: &TestDb) {
    let (stored, _) = db.store.desire_lrp(&desired("app1-v1", "cf-apps", 1), NOW_NS).await.unwrap();
    let update = DesiredLrpUpdate {
        image_username: Some("user".into()),
        annotation: Some("changed".into()),
        ..Default::default()
    };
    let err = db.store.update_desired_lrp(&guid("app1-v1"), &update, NOW_NS).await.unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
    assert_eq!(db.store.desired_lrp(&guid("app1-v1")).await.unwrap(), stored);
}

/// Scaling up creates UNCLAIMED instances for the new indices in the same transaction.
pub async fn growing_instances_creates_unclaimed_rows_for_new_indices_only(db: &TestDb) {
    db.store.desire_lrp(&desired("app1-v1", "cf-apps", 2), NOW_NS).await.unwrap();
    let update = DesiredLrpUpdate { instances: Some(5), ..Default::default() };
    let changed = db.store.update_desired_lrp(&guid("app1-v1"), &update, NOW_NS + 7).await.unwrap();
    assert_eq!(changed.before.scheduling.instances, 2);
    assert_eq!(changed.after.scheduling.instances, 5);
    let indices: Vec<i32> = changed.created.iter().map(|a| a.key.index).collect();
    assert_eq!(indices, [2, 3, 4]);
    assert!(changed.created.iter().all(|a| a.state == ActualLrpState::Unclaimed && a.since == NOW_NS + 7));
    assert_eq!(actual_count(db, "app1-v1").await, 5);
    // The same count again creates nothing.
    let changed = db.store.update_desired_lrp(&guid("app1-v1"), &update, NOW_NS).await.unwrap();
    assert!(changed.created.is_empty());
    assert_eq!(actual_count(db, "app1-v1").await, 5);
}

/// Scaling down changes the count only; stopping the extra instances is the caller's job.
pub async fn shrinking_instances_only_changes_the_count(db: &TestDb) {
    db.store.desire_lrp(&desired("app1-v1", "cf-apps", 4), NOW_NS).await.unwrap();
    let update = DesiredLrpUpdate { instances: Some(1), ..Default::default() };
    let changed = db.store.update_desired_lrp(&guid("app1-v1"), &update, NOW_NS).await.unwrap();
    assert_eq!(changed.after.scheduling.instances, 1);
    assert!(changed.created.is_empty());
    assert_eq!(actual_count(db, "app1-v1").await, 4);
    assert_eq!(db.store.scheduling_info(&guid("app1-v1")).await.unwrap().instances, 1);
    // Growing again before the extras were stopped reuses their rows and creates only the
    // indices that have none.
    let update = DesiredLrpUpdate { instances: Some(6), ..Default::default() };
    let changed = db.store.update_desired_lrp(&guid("app1-v1"), &update, NOW_NS).await.unwrap();
    let indices: Vec<i32> = changed.created.iter().map(|a| a.key.index).collect();
    assert_eq!(indices, [4, 5]);
    assert_eq!(actual_count(db, "app1-v1").await, 6);
}

/// Every operation on an absent guid is `NotFound` naming it.
pub async fn missing_lrps_are_not_found(db: &TestDb) {
    let g = guid("nothing-here");
    let is_not_found =
        |r: Result<(), Error>| matches!(r, Err(Error::NotFound { what: "desired lrp", key }) if key == "nothing-here");
    assert!(is_not_found(db.store.desired_lrp(&g).await.map(drop)));
    assert!(is_not_found(db.store.scheduling_info(&g).await.map(drop)));
    assert!(is_not_found(db.store.update_desired_lrp(&g, &DesiredLrpUpdate::default(), NOW_NS).await.map(drop)));
    assert!(is_not_found(db.store.remove_desired_lrp(&g).await.map(drop)));
    assert!(db.store.desired_lrps(&DesiredLrpFilter::default()).await.unwrap().is_empty());
}

/// Remove deletes the desired row and returns it; the actual rows stay for the caller.
pub async fn remove_returns_the_lrp_and_leaves_its_actual_lrps(db: &TestDb) {
    let (stored, _) = db.store.desire_lrp(&desired("app1-v1", "cf-apps", 2), NOW_NS).await.unwrap();
    db.store.desire_lrp(&desired("app2-v1", "cf-apps", 1), NOW_NS).await.unwrap();
    assert_eq!(db.store.remove_desired_lrp(&guid("app1-v1")).await.unwrap(), stored);
    assert!(matches!(db.store.desired_lrp(&guid("app1-v1")).await, Err(Error::NotFound { .. })));
    assert!(matches!(db.store.remove_desired_lrp(&guid("app1-v1")).await, Err(Error::NotFound { .. })));
    assert_eq!(guids_of(&db.store.desired_lrps(&DesiredLrpFilter::default()).await.unwrap()), ["app2-v1"]);
    assert_eq!(actual_count(db, "app1-v1").await, 2);
    // Desiring the guid again keeps the leftover rows and creates only the missing indices.
    let (_, created) = db.store.desire_lrp(&desired("app1-v1", "cf-apps", 3), NOW_NS).await.unwrap();
    let indices: Vec<i32> = created.iter().map(|a| a.key.index).collect();
    assert_eq!(indices, [2]);
    assert_eq!(actual_count(db, "app1-v1").await, 3);
}

/// Concurrent updates of the same row serialize on its lock: none is lost.
pub async fn concurrent_updates_of_one_lrp_lose_nothing(db: &TestDb) {
    db.store.desire_lrp(&desired("app1-v1", "cf-apps", 1), NOW_NS).await.unwrap();
    let mut handles = Vec::new();
    for i in 0..8 {
        let store = db.store.clone();
        handles.push(tokio::spawn(async move {
            let update = DesiredLrpUpdate { annotation: Some(format!("writer-{i}")), ..Default::default() };
            store.update_desired_lrp(&guid("app1-v1"), &update, NOW_NS).await
        }));
    }
    let mut indices = Vec::new();
    for handle in handles {
        let changed = handle.await.unwrap().unwrap();
        let (before, after) = (&changed.before.scheduling, &changed.after.scheduling);
        assert_eq!(after.modification_tag.index, before.modification_tag.index + 1);
        indices.push(changed.after.scheduling.modification_tag.index);
    }
    indices.sort_unstable();
    assert_eq!(indices, (1..=8).collect::<Vec<u32>>());
    let last = db.store.desired_lrp(&guid("app1-v1")).await.unwrap();
    assert_eq!(last.scheduling.modification_tag.index, 8);
    assert!(last.scheduling.annotation.starts_with("writer-"));
}
