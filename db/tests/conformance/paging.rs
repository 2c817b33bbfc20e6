//! Conformance tests of the keyset-paged listings (`db::sql::page`): page boundaries anywhere
//! (inside an index, between presences), filters kept across pages, the cursor of a deleted row,
//! and a batch that ends in an undecodable row.

use db::Error;
use db::sql::actual_lrps::ActualLrpFilter;
use db::sql::desired_lrps::{DesiredLrpFilter, MAX_PAGED_GUIDS};
use db::sql::page::{ActualLrpCursor, Page};
use db::sql::tasks::TaskFilter;
use db::testing::TestDb;
use proto::models::{ActualLrp, ActualLrpKey, CellId, DomainName, ModificationTag, Presence, ProcessGuid, TaskGuid};

use super::NOW_NS;
use super::actual_lrps::{ikey, start_info};
use super::desired_lrps::desired;
use super::tasks::definition;

macro_rules! paging_tests {
    ($backend:expr) => {
        suite_module!(
            $backend,
            paging,
            [
                desired_lrp_pages_walk_every_view_in_guid_order,
                desired_lrp_pages_keep_the_filter,
                actual_lrp_pages_split_anywhere_and_keep_the_filter,
                task_pages_keep_the_filter,
                the_cursor_of_a_deleted_row_still_resumes,
                a_batch_ending_in_an_undecodable_row_is_not_the_last,
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

fn cell(s: &str) -> CellId {
    CellId::parse(s).unwrap()
}

async fn desire(db: &TestDb, process_guid: &str, domain_name: &str, instances: i32) {
    db.store.desire_lrp(&desired(process_guid, domain_name, instances), NOW_NS).await.unwrap();
}

/// Every desired LRP guid `filter` selects, read `limit` at a time, and the number of batches.
async fn desired_guids(db: &TestDb, filter: &DesiredLrpFilter, limit: usize) -> (Vec<String>, usize) {
    let (mut out, mut after, mut batches) = (Vec::new(), None::<String>, 0);
    loop {
        let page = db.store.desired_lrps_page(filter, after.as_deref(), limit).await.unwrap();
        assert!(page.items.len() <= limit);
        batches += 1;
        out.extend(page.items.iter().map(|lrp| lrp.scheduling.process_guid.to_string()));
        match page.resume_after {
            Some(key) => after = Some(key),
            None => return (out, batches),
        }
    }
}

/// Every actual LRP `filter` selects, read `limit` at a time.
async fn all_actual(db: &TestDb, filter: &ActualLrpFilter, limit: usize) -> Vec<ActualLrp> {
    let (mut out, mut after) = (Vec::new(), None::<ActualLrpCursor>);
    loop {
        let page = db.store.actual_lrps_page(filter, after.as_ref(), limit).await.unwrap();
        assert!(page.items.len() <= limit);
        out.extend(page.items);
        match page.resume_after {
            Some(key) => after = Some(key),
            None => return out,
        }
    }
}

/// Every task guid `filter` selects, read `limit` at a time.
async fn task_guids(db: &TestDb, filter: &TaskFilter, limit: usize) -> Vec<String> {
    let (mut out, mut after) = (Vec::new(), None::<String>);
    loop {
        let page = db.store.tasks_page(filter, after.as_deref(), limit).await.unwrap();
        assert!(page.items.len() <= limit);
        out.extend(page.items.iter().map(|t| t.task_guid.to_string()));
        match page.resume_after {
            Some(key) => after = Some(key),
            None => return out,
        }
    }
}

fn names<T>(page: &Page<T, String>, name: impl Fn(&T) -> String) -> (Vec<String>, Option<String>) {
    (page.items.iter().map(name).collect(), page.resume_after.clone())
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Seven LRPs desired out of order come back three at a time in guid order from all three views;
/// a full last batch says "resume", and the batch after it is empty and final.
pub async fn desired_lrp_pages_walk_every_view_in_guid_order(db: &TestDb) {
    for g in ["lrp-5", "lrp-2", "lrp-7", "lrp-1", "lrp-4", "lrp-6", "lrp-3"] {
        desire(db, g, "cf-apps", 1).await;
    }
    let all = DesiredLrpFilter::default();
    let expected = [
        (None, strings(&["lrp-1", "lrp-2", "lrp-3"]), Some("lrp-3")),
        (Some("lrp-3"), strings(&["lrp-4", "lrp-5", "lrp-6"]), Some("lrp-6")),
        (Some("lrp-6"), strings(&["lrp-7"]), None),
    ];
    for (after, items, resume) in expected {
        let resume = resume.map(str::to_owned);
        let page = db.store.desired_lrps_page(&all, after, 3).await.unwrap();
        assert_eq!(names(&page, |l| l.scheduling.process_guid.to_string()), (items.clone(), resume.clone()));
        let page = db.store.scheduling_infos_page(&all, after, 3).await.unwrap();
        assert_eq!(names(&page, |s| s.process_guid.to_string()), (items.clone(), resume.clone()));
        let page = db.store.routing_infos_page(&all, after, 3).await.unwrap();
        assert_eq!(names(&page, |(s, _)| s.process_guid.to_string()), (items, resume));
    }
    // The records are the ones the unpaged listing returns.
    let first = db.store.desired_lrps_page(&all, None, 100).await.unwrap();
    assert_eq!(first.items, db.store.desired_lrps(&all).await.unwrap());
    assert_eq!(first.resume_after, None);
    // Exactly `limit` rows left: the batch cannot know it is the last.
    let page = db.store.desired_lrps_page(&all, None, 7).await.unwrap();
    assert_eq!((page.items.len(), page.resume_after.as_deref()), (7, Some("lrp-7")));
    let page = db.store.desired_lrps_page(&all, Some("lrp-7"), 7).await.unwrap();
    assert_eq!((page.items.len(), page.resume_after), (0, None));
    // A limit of 0 still reads one row; one past the last guid reads nothing.
    assert_eq!(db.store.desired_lrps_page(&all, None, 0).await.unwrap().items.len(), 1);
    assert!(db.store.desired_lrps_page(&all, Some("zzz"), 3).await.unwrap().items.is_empty());
}

/// Domain, process guids and app guids select the same LRPs page by page as unpaged, whatever
/// the batch size; too long a guid list is invalid.
pub async fn desired_lrp_pages_keep_the_filter(db: &TestDb) {
    for (g, d) in [("app1-v1", "a"), ("app1-v2", "a"), ("app2-v1", "a"), ("other-1", "a"), ("app1-v3", "b")] {
        desire(db, g, d, 0).await;
    }
    let filters = [
        DesiredLrpFilter::default(),
        DesiredLrpFilter { domain: Some(domain("a")), ..Default::default() },
        DesiredLrpFilter { app_guids: vec!["app1".into()], ..Default::default() },
        DesiredLrpFilter {
            domain: Some(domain("a")),
            process_guids: vec![guid("other-1"), guid("app1-v3")],
            app_guids: vec!["app1".into()],
        },
        DesiredLrpFilter { process_guids: vec![guid("missing")], ..Default::default() },
    ];
    for filter in &filters {
        let expected: Vec<String> = db
            .store
            .desired_lrps(filter)
            .await
            .unwrap()
            .iter()
            .map(|l| l.scheduling.process_guid.to_string())
            .collect();
        for limit in 1..=3 {
            let (got, batches) = desired_guids(db, filter, limit).await;
            assert_eq!(got, expected, "{filter:?} by {limit}");
            assert_eq!(batches, expected.len() / limit + 1, "{filter:?} by {limit}");
        }
    }
    let (got, _) = desired_guids(db, &filters[3], 1).await;
    assert_eq!(got, ["app1-v1", "app1-v2", "other-1"]);
    let too_many = DesiredLrpFilter {
        process_guids: (0..=MAX_PAGED_GUIDS).map(|i| guid(&format!("g-{i}"))).collect(),
        ..Default::default()
    };
    let err = db.store.desired_lrps_page(&too_many, None, 10).await.unwrap_err();
    assert!(matches!(&err, Error::Invalid(e) if e.to_string().contains("process_guids")), "{err}");
}

/// Pages of any size split an LRP's indices and an index's presences, and together equal the
/// unpaged listing for every filter.
pub async fn actual_lrp_pages_split_anywhere_and_keep_the_filter(db: &TestDb) {
    let apps = domain("cf-apps");
    db.store.create_unclaimed_actual_lrps(&guid("pg-a"), &apps, &[0, 1, 2, 3, 4], NOW_NS).await.unwrap();
    db.store.create_unclaimed_actual_lrps(&guid("pg-b"), &apps, &[0, 1, 2], NOW_NS).await.unwrap();
    db.store.create_unclaimed_actual_lrps(&guid("pg-c"), &domain("other"), &[0, 10, 2], NOW_NS).await.unwrap();
    for (process_guid, cell_id, d) in [("pg-b", "cell-1", &apps), ("pg-c", "cell-2", &domain("other"))] {
        let k = ikey(&format!("{process_guid}-i0"), cell_id);
        let key = ActualLrpKey { process_guid: guid(process_guid), index: 0, domain: d.clone() };
        db.store.claim_actual_lrp(&guid(process_guid), 0, &k, NOW_NS).await.unwrap();
        db.store.start_actual_lrp(&key, &k, &start_info("10.0.0.1"), NOW_NS).await.unwrap();
    }
    // pg-b index 0 gets an EVACUATING copy beside its ordinary row.
    db.store
        .modify_index("test evacuate", &guid("pg-b"), 0, |rows| {
            let copy = rows.ordinary.clone().expect("ordinary row");
            rows.evacuating = Some(ActualLrp { modification_tag: ModificationTag::default(), ..copy });
            Ok(())
        })
        .await
        .unwrap();
    let filters = [
        ActualLrpFilter::default(),
        ActualLrpFilter { domain: Some(apps.clone()), ..Default::default() },
        ActualLrpFilter { cell_id: Some(cell("cell-1")), ..Default::default() },
        ActualLrpFilter { process_guid: Some(guid("pg-b")), ..Default::default() },
        ActualLrpFilter { process_guid: Some(guid("pg-b")), index: Some(0), ..Default::default() },
        ActualLrpFilter { process_guids: vec![guid("pg-c"), guid("pg-b"), guid("pg-c")], ..Default::default() },
        ActualLrpFilter { process_guids: vec![guid("pg-a")], index: Some(4), ..Default::default() },
    ];
    for filter in &filters {
        let expected = db.store.actual_lrps(filter).await.unwrap();
        for limit in [1, 2, 3, 4, 100] {
            assert_eq!(all_actual(db, filter, limit).await, expected, "{filter:?} by {limit}");
        }
    }
    let all = all_actual(db, &ActualLrpFilter::default(), 2).await;
    assert_eq!(all.len(), 12);
    // The two presences of pg-b index 0 sit next to each other, ordinary first.
    let pg_b: Vec<(i32, Presence)> =
        all.iter().filter(|l| l.key.process_guid.as_str() == "pg-b").map(|l| (l.key.index, l.presence)).collect();
    assert_eq!(
        pg_b,
        [(0, Presence::Ordinary), (0, Presence::Evacuating), (1, Presence::Ordinary), (2, Presence::Ordinary)]
    );
    // Indices in numeric order, not text order.
    let pg_c: Vec<i32> = all.iter().filter(|l| l.key.process_guid.as_str() == "pg-c").map(|l| l.key.index).collect();
    assert_eq!(pg_c, [0, 2, 10]);
    // A batch that stops between the two presences resumes at the evacuating row.
    let after = ActualLrpCursor { process_guid: "pg-b".into(), index: 0, presence: 0 };
    let page = db.store.actual_lrps_page(&ActualLrpFilter::default(), Some(&after), 1).await.unwrap();
    assert_eq!((page.items[0].key.index, page.items[0].presence), (0, Presence::Evacuating));
    assert_eq!(page.resume_after, Some(ActualLrpCursor { process_guid: "pg-b".into(), index: 0, presence: 1 }));
}

/// Domain and cell filters select the same tasks page by page as unpaged.
pub async fn task_pages_keep_the_filter(db: &TestDb) {
    for (g, d) in [("t-3", "cf-tasks"), ("t-1", "cf-tasks"), ("t-2", "other"), ("t-4", "cf-tasks"), ("t-5", "other")] {
        db.store.desire_task(&TaskGuid::parse(g).unwrap(), &domain(d), &definition(), NOW_NS).await.unwrap();
    }
    for (g, c) in [("t-1", "cell-a"), ("t-2", "cell-a"), ("t-3", "cell-b"), ("t-4", "cell-a")] {
        db.store.start_task(&TaskGuid::parse(g).unwrap(), &cell(c), NOW_NS).await.unwrap();
    }
    let filters = [
        TaskFilter::default(),
        TaskFilter { domain: Some(domain("cf-tasks")), cell_id: None },
        TaskFilter { domain: None, cell_id: Some(cell("cell-a")) },
        TaskFilter { domain: Some(domain("cf-tasks")), cell_id: Some(cell("cell-a")) },
        TaskFilter { domain: Some(domain("none")), cell_id: None },
    ];
    for filter in &filters {
        let expected: Vec<String> =
            db.store.tasks(filter).await.unwrap().iter().map(|t| t.task_guid.to_string()).collect();
        for limit in 1..=3 {
            assert_eq!(task_guids(db, filter, limit).await, expected, "{filter:?} by {limit}");
        }
    }
    assert_eq!(task_guids(db, &filters[3], 1).await, ["t-1", "t-4"]);
}

/// A cursor names a key, not a row: after its row is deleted the listing resumes right after
/// where it was, with nothing repeated or skipped.
pub async fn the_cursor_of_a_deleted_row_still_resumes(db: &TestDb) {
    for g in ["lrp-1", "lrp-2", "lrp-3", "lrp-4"] {
        desire(db, g, "cf-apps", 2).await;
    }
    let all = DesiredLrpFilter::default();
    let first = db.store.desired_lrps_page(&all, None, 2).await.unwrap();
    let cursor = first.resume_after.expect("more to come");
    assert_eq!(cursor, "lrp-2");
    db.store.remove_desired_lrp(&guid("lrp-2")).await.unwrap();
    let next = db.store.desired_lrps_page(&all, Some(&cursor), 2).await.unwrap();
    let got: Vec<&str> = next.items.iter().map(|l| l.scheduling.process_guid.as_str()).collect();
    assert_eq!(got, ["lrp-3", "lrp-4"]);

    // Actual LRPs: lrp-1 index 1 is the last row of the first batch; delete it.
    let any = ActualLrpFilter::default();
    let first = db.store.actual_lrps_page(&any, None, 2).await.unwrap();
    let cursor = first.resume_after.expect("more to come");
    assert_eq!(cursor, ActualLrpCursor { process_guid: "lrp-1".into(), index: 1, presence: 0 });
    db.store.delete_actual_lrp(&guid("lrp-1"), 1, Presence::Ordinary).await.unwrap();
    let next = db.store.actual_lrps_page(&any, Some(&cursor), 2).await.unwrap();
    let got: Vec<(&str, i32)> = next.items.iter().map(|l| (l.key.process_guid.as_str(), l.key.index)).collect();
    assert_eq!(got, [("lrp-2", 0), ("lrp-2", 1)]);

    // Tasks.
    for g in ["t-1", "t-2", "t-3"] {
        db.store.desire_task(&TaskGuid::parse(g).unwrap(), &domain("cf-tasks"), &definition(), NOW_NS).await.unwrap();
    }
    let first = db.store.tasks_page(&TaskFilter::default(), None, 2).await.unwrap();
    let cursor = first.resume_after.expect("more to come");
    assert_eq!(cursor, "t-2");
    db.store
        .backend()
        .query("DELETE FROM tasks WHERE guid = ?")
        .bind(cursor.clone())
        .execute(db.store.pool())
        .await
        .unwrap();
    let next = db.store.tasks_page(&TaskFilter::default(), Some(&cursor), 2).await.unwrap();
    let got: Vec<&str> = next.items.iter().map(|t| t.task_guid.as_str()).collect();
    assert_eq!((got, next.resume_after), (vec!["t-3"], None));
}

/// An undecodable row is skipped but still moves the cursor: a batch whose rows end in (or are
/// all) corrupt rows says "resume" rather than looking like the end of the listing.
pub async fn a_batch_ending_in_an_undecodable_row_is_not_the_last(db: &TestDb) {
    for g in ["t-1", "t-2", "t-3", "t-4"] {
        db.store.desire_task(&TaskGuid::parse(g).unwrap(), &domain("cf-tasks"), &definition(), NOW_NS).await.unwrap();
    }
    for g in ["t-2", "t-3"] {
        db.store
            .backend()
            .query("UPDATE tasks SET task_definition = ? WHERE guid = ?")
            .bind(vec![0x02u8, 0x00, 0xff, 0xff, 0xff])
            .bind(g.to_owned())
            .execute(db.store.pool())
            .await
            .unwrap();
    }
    let filter = TaskFilter::default();
    let page = db.store.tasks_page(&filter, Some("t-1"), 2).await.unwrap();
    assert!(page.items.is_empty());
    assert_eq!(page.resume_after.as_deref(), Some("t-3"));
    assert_eq!(task_guids(db, &filter, 2).await, ["t-1", "t-4"]);
    assert_eq!(task_guids(db, &filter, 1).await, ["t-1", "t-4"]);
}
