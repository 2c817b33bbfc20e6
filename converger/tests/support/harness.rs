//! Shared setup of the store-backed tests: a fresh database per test on one backend, cells as
//! presence leases, desired LRPs and instances in chosen states, and converger halves wired to a
//! recording `Effects` and a manual clock.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use converger::testing::{ManualClock, RecordingEffects};
use converger::{ConvergenceConfig, LostCells, LrpConvergence, StoreProvider, TaskConvergence};
use db::sql::actual_lrps::{IndexRows, StartInfo};
use db::sql::leases::LeaseType;
use db::testing::TestDb;
use db::{Backend, Store};
use proto::models::{
    ActualLrp, ActualLrpInstanceKey, ActualLrpState, CellId, DesiredLrp, DomainName, InstanceGuid, NetInfo, Presence,
    ProcessGuid,
};
use proto::pb::models::v1 as pb;

/// 2026-01-01T00:00:00Z, the time every test starts at.
pub const NOW: i64 = 1_767_225_600_000_000_000;
/// One second in nanoseconds.
pub const SEC: i64 = 1_000_000_000;

/// Stamps `async fn case(backend: Backend)` functions out as one test per backend.
#[macro_export]
macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(::db::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(::db::Backend::Postgres).await })*
        }
        mod mysql {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(::db::Backend::Mysql).await })*
        }
    };
}

/// A database plus converger halves for one test.
pub struct World {
    pub db: TestDb,
    pub effects: RecordingEffects,
    pub clock: ManualClock,
    pub lost: LostCells,
    pub config: ConvergenceConfig,
}

impl World {
    /// A world on `backend`, or `None` when the backend is not configured (the test is skipped).
    pub async fn new(backend: Backend) -> Option<World> {
        let db = TestDb::create(backend).await?;
        // The "fresh" domain never expires.
        db.store.upsert_domain(&domain("fresh"), Duration::ZERO, NOW).await.unwrap();
        Some(World {
            db,
            effects: RecordingEffects::new(),
            clock: ManualClock::new(NOW),
            lost: LostCells::default(),
            config: ConvergenceConfig::default(),
        })
    }

    pub fn store(&self) -> &Store {
        &self.db.store
    }

    /// LRP convergence over this world's store (or `provider`).
    pub fn lrp(&self) -> LrpConvergence {
        self.lrp_with(converger::fixed_store(self.db.store.clone()))
    }

    pub fn lrp_with(&self, provider: StoreProvider) -> LrpConvergence {
        LrpConvergence::new(
            provider,
            Arc::new(self.effects.clone()),
            Arc::new(self.clock.clone()),
            self.config.clone(),
            self.lost.clone(),
        )
    }

    /// Task convergence over this world's store (or `provider`).
    pub fn task(&self) -> TaskConvergence {
        self.task_with(converger::fixed_store(self.db.store.clone()))
    }

    pub fn task_with(&self, provider: StoreProvider) -> TaskConvergence {
        TaskConvergence::new(
            provider,
            Arc::new(self.effects.clone()),
            Arc::new(self.clock.clone()),
            self.config.clone(),
            self.lost.clone(),
        )
    }

    /// Gives `cell` a live presence (an hour long).
    pub async fn cell_up(&self, cell: &str) {
        let presence = format!(r#"{{"cell_id":"{cell}","rep_address":"127.0.0.1:1800"}}"#);
        self.store()
            .acquire_lease(cell, &format!("rep-{cell}"), &presence, LeaseType::Presence, Duration::from_secs(3600))
            .await
            .unwrap();
    }

    /// Removes `cell`'s presence; with `reported`, tells convergence it expired.
    pub async fn cell_down(&self, cell: &str, reported: bool) {
        self.store().release_lease(cell, &format!("rep-{cell}")).await.unwrap();
        if reported {
            self.lost.report(CellId::parse(cell).unwrap());
        }
    }

    /// Desires `instances` of `process_guid` in `domain_name` at NOW (rows UNCLAIMED).
    pub async fn desire(&self, process_guid: &str, domain_name: &str, instances: i32) {
        self.store().desire_lrp(&desired(process_guid, domain_name, instances), NOW).await.unwrap();
    }

    /// Claims and starts index `index` of `process_guid` on `cell`.
    pub async fn run(&self, process_guid: &str, index: i32, cell: &str) {
        let rows = self.rows(process_guid, index).await;
        let key = rows.ordinary.expect("an ordinary row to run").key;
        let instance = ikey(&format!("ig-{process_guid}-{index}-{cell}"), cell);
        self.store().claim_actual_lrp(&guid(process_guid), index, &instance, NOW).await.unwrap();
        self.store().start_actual_lrp(&key, &instance, &start_info(), NOW).await.unwrap();
    }

    /// Claims index `index` of `process_guid` on `cell`.
    pub async fn claim(&self, process_guid: &str, index: i32, cell: &str) {
        let instance = ikey(&format!("ig-{process_guid}-{index}-{cell}"), cell);
        self.store().claim_actual_lrp(&guid(process_guid), index, &instance, NOW).await.unwrap();
    }

    /// Sets the rows of an index directly (test setup only).
    pub async fn set(&self, process_guid: &str, index: i32, f: impl Fn(&mut IndexRows) + Send + Sync) {
        self.store()
            .modify_index("test setup", &guid(process_guid), index, |rows| {
                f(rows);
                Ok(())
            })
            .await
            .unwrap();
    }

    /// Makes the ordinary row of an index CRASHED with `count` crashes at `since`.
    pub async fn crash(&self, process_guid: &str, index: i32, count: i32, since: i64) {
        self.set(process_guid, index, move |rows| {
            let o = rows.ordinary.as_mut().unwrap();
            o.state = ActualLrpState::Crashed;
            o.instance_key = None;
            o.net_info = None;
            o.crash_count = count;
            o.since = since;
        })
        .await;
    }

    pub async fn rows(&self, process_guid: &str, index: i32) -> IndexRows {
        self.store().actual_lrp_index(&guid(process_guid), index).await.unwrap()
    }

    /// (state, cell) of a row, for compact assertions.
    pub async fn row(&self, process_guid: &str, index: i32, presence: Presence) -> Option<(ActualLrpState, String)> {
        let rows = self.rows(process_guid, index).await;
        rows.get(presence)
            .map(|r| (r.state, r.instance_key.as_ref().map(|k| k.cell_id.to_string()).unwrap_or_default()))
    }

    pub async fn count_rows(&self) -> i64 {
        self.store()
            .backend()
            .query_scalar::<i64>("SELECT COUNT(*) FROM actual_lrps")
            .fetch_one(self.store().pool())
            .await
            .unwrap()
    }
}

pub fn guid(s: &str) -> ProcessGuid {
    ProcessGuid::parse(s).unwrap()
}

pub fn domain(s: &str) -> DomainName {
    DomainName::parse(s).unwrap()
}

pub fn ikey(instance: &str, cell: &str) -> ActualLrpInstanceKey {
    ActualLrpInstanceKey {
        instance_guid: InstanceGuid::parse(instance).unwrap(),
        cell_id: CellId::parse(cell).unwrap(),
    }
}

pub fn start_info() -> StartInfo {
    StartInfo {
        net_info: NetInfo { address: "10.0.0.1".into(), ..Default::default() },
        routable: true,
        ..Default::default()
    }
}

/// A RUNNING copy of `row` on `cell` (for hand-built suspect / evacuating rows).
pub fn running_on(row: &ActualLrp, cell: &str) -> ActualLrp {
    ActualLrp {
        state: ActualLrpState::Running,
        instance_key: Some(ikey(&format!("ig-{}-{}-{cell}", row.key.process_guid, row.key.index), cell)),
        net_info: Some(NetInfo { address: "10.0.0.2".into(), ..Default::default() }),
        modification_tag: Default::default(),
        ..row.clone()
    }
}

/// A desired LRP built from the wire, as the BBS receives it.
pub fn desired(process_guid: &str, domain_name: &str, instances: i32) -> DesiredLrp {
    DesiredLrp::try_from(pb::DesiredLrp {
        process_guid: process_guid.into(),
        domain: domain_name.into(),
        rootfs: "preloaded:cflinuxfs4".into(),
        instances,
        memory_mb: 256,
        disk_mb: 1024,
        max_pids: 100,
        log_guid: "log-guid".into(),
        action: Some(pb::Action {
            action: Some(pb::action::Action::RunAction(pb::RunAction {
                path: "/home/vcap/app/start".into(),
                user: "vcap".into(),
                ..Default::default()
            })),
        }),
        placement_tags: vec!["zone-a".into()],
        ..Default::default()
    })
    .unwrap()
}
