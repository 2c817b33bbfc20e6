//! Conformance tests of the actual_lrps store operations (bbs.md 2.2, 3.1–3.4, 4.4, 5.4).
//! The tests live in one module per behaviour and are re-exported here, so the suite still
//! names them `actual_lrps::<test>` on every backend; the shared fixtures are below.

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

mod claim_and_start;
mod crash_and_removal;
mod create_and_list;
mod index_writes;
mod suspect;

pub use self::claim_and_start::*;
pub use self::crash_and_removal::*;
pub use self::create_and_list::*;
pub use self::index_writes::*;
pub use self::suspect::*;

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
