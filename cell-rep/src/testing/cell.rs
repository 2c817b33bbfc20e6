//! [`TestCell`]: one rep's machinery on a runtime (the sim by default), driven by the test.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use proto::models::{ActualLrpState, CellId};
use proto::pb::rep::v1 as rep_pb;

use super::FakeBbs;
use crate::bbs_client::BbsClient;
use crate::bulk_sync::BulkSync;
use crate::context::{CellInfo, RepContext};
use crate::executor::{Container, Executor, ExecutorConfig, Resources};
use crate::generator::Generator;
use crate::runtime::sim::{SimConfig, SimHandle, SimRuntime};
use crate::service::RepService;

/// Polls `condition` every few milliseconds until it holds. Always wrap it in a timeout.
pub async fn eventually(mut condition: impl FnMut() -> bool) {
    while !condition() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A cell `cell-1` running `instances` instances of a desired LRP `web` (desired on `bbs`),
/// returned once every record is RUNNING. Panics after 10 s otherwise.
pub async fn running_cell(bbs: &Arc<FakeBbs>, instances: i32) -> TestCell {
    let desired = super::desired_lrp("web", instances, 64);
    bbs.desire_lrp(desired.clone());
    let cell = TestCell::start("cell-1", bbs.clone());
    let work = (0..instances).map(|i| super::lrp_work(&desired, i)).collect();
    assert!(cell.perform(work, Vec::new()).failed_lrps.is_empty());
    let running = || bbs.actual_lrps().iter().filter(|l| l.state == ActualLrpState::Running).count();
    tokio::time::timeout(Duration::from_secs(10), eventually(|| running() == instances as usize))
        .await
        .expect("instances never ran");
    cell
}

/// How to build a [`TestCell`].
#[derive(Debug, Clone)]
pub struct TestCellOptions {
    /// Total capacity.
    pub total: Resources,
    /// The sim runtime's tunables (healthy after 10 ms by default here).
    pub sim: SimConfig,
    /// The executor's preloaded rootfs map (empty: any `preloaded:` name passes).
    pub executor_rootfs: BTreeMap<String, std::path::PathBuf>,
    /// The executor's graceful stop interval.
    pub graceful_stop: Duration,
}

impl Default for TestCellOptions {
    fn default() -> Self {
        Self {
            total: Resources::new(4096, 4096, 16),
            sim: SimConfig { healthy_after: Duration::from_millis(10), ..SimConfig::default() },
            executor_rootfs: BTreeMap::new(),
            graceful_stop: Duration::from_secs(1),
        }
    }
}

/// One rep's machinery on the sim runtime with its generator consuming events, but no servers,
/// presence, bulk-sync loop or evacuator: tests drive those.
pub struct TestCell {
    /// The shared fake BBS.
    pub bbs: Arc<FakeBbs>,
    sim: Option<SimHandle>,
    /// The executor.
    pub executor: Executor,
    /// The shared state.
    pub ctx: Arc<RepContext>,
    /// The generator (its event loop runs).
    pub generator: Arc<Generator>,
    /// The `Rep` service.
    pub service: RepService,
    /// One bulk sync; call `tick()`.
    pub bulk_sync: BulkSync,
    stop: tokio_util::sync::CancellationToken,
}

impl std::fmt::Debug for TestCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCell").field("cell_id", &self.ctx.cell.cell_id).finish_non_exhaustive()
    }
}

impl TestCell {
    /// A cell `cell_id` in zone `z1` offering `preloaded:busybox`, with the default options.
    pub fn start(cell_id: &str, bbs: Arc<FakeBbs>) -> Self {
        Self::start_with(cell_id, bbs, TestCellOptions::default())
    }

    /// A cell with `options` on the sim runtime.
    ///
    /// # Panics
    ///
    /// When `cell_id` is not a valid cell id (a test bug).
    pub fn start_with(cell_id: &str, bbs: Arc<FakeBbs>, options: TestCellOptions) -> Self {
        let runtime = SimRuntime::new(options.sim.clone());
        let sim = runtime.handle();
        Self::start_on(cell_id, bbs, options, Arc::new(runtime), Some(sim))
    }

    /// A cell with `options` on `runtime` (`sim` is its handle when it is a sim runtime).
    ///
    /// # Panics
    ///
    /// When `cell_id` is not a valid cell id (a test bug).
    pub fn start_on(
        cell_id: &str,
        bbs: Arc<FakeBbs>,
        options: TestCellOptions,
        runtime: Arc<dyn crate::runtime::ContainerRuntime>,
        sim: Option<SimHandle>,
    ) -> Self {
        let data_dir = std::env::temp_dir().join(format!("cell-rep-test-{}", uuid::Uuid::new_v4()));
        let executor = Executor::new(
            ExecutorConfig {
                graceful_stop: options.graceful_stop,
                healthcheck_interval: Duration::from_millis(10),
                rootfs: options.executor_rootfs.clone(),
                ..ExecutorConfig::new(options.total, data_dir)
            },
            runtime,
        );
        #[allow(clippy::expect_used)]
        let cell = CellInfo {
            cell_id: CellId::parse(cell_id).expect("valid cell id"),
            zone: "z1".into(),
            rep_address: format!("{cell_id}.test:1801"),
            host_address: String::new(),
            rootfs_names: vec!["busybox".into()],
            placement_tags: Vec::new(),
            optional_placement_tags: Vec::new(),
        };
        let bbs_client: Arc<dyn BbsClient> = bbs.clone();
        let ctx = Arc::new(RepContext::new(cell, executor.clone(), bbs_client));
        let generator = Generator::new(Arc::clone(&ctx));
        let stop = tokio_util::sync::CancellationToken::new();
        let events = executor.subscribe();
        tokio::spawn(Arc::clone(&generator).run(events, Arc::new(tokio::sync::Notify::new()), stop.clone()));
        Self {
            bbs,
            sim,
            executor,
            service: RepService::new(Arc::clone(&generator)),
            bulk_sync: BulkSync::new(Arc::clone(&generator)),
            ctx,
            generator,
            stop,
        }
    }

    /// `Perform` of `lrps` and `tasks` through the service.
    pub fn perform(&self, lrps: Vec<rep_pb::Lrp>, tasks: Vec<rep_pb::Task>) -> rep_pb::PerformResponse {
        self.service.perform(rep_pb::Work { lrps, tasks })
    }

    /// Controls of the sim runtime (crash, unhealthy, lose).
    ///
    /// # Panics
    ///
    /// When the cell does not run on the sim runtime (a test bug).
    pub fn sim(&self) -> &SimHandle {
        #[allow(clippy::expect_used)]
        self.sim.as_ref().expect("this test cell runs on the sim runtime")
    }

    /// The containers now.
    pub fn containers(&self) -> Vec<Container> {
        self.executor.list()
    }

    /// The cell id.
    pub fn cell_id(&self) -> &str {
        self.ctx.cell.cell_id.as_str()
    }
}

impl Drop for TestCell {
    fn drop(&mut self) {
        self.stop.cancel();
        self.executor.shutdown();
    }
}
