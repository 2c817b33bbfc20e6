//! The database's raw capability, measured in the same run on the same database: the SQL the
//! BBS's reads boil down to, run straight on a `db::Store` pool (`fetch_all`, rows materialized,
//! nothing decoded), one statement at a time on a quiet system (after the trials). Every BBS
//! figure with an equivalent here is reported as a ratio to it.
//!
//! Next to them, [`run_quiet`] times the BBS's own reads one call at a time on the same quiet
//! system, which separates the BBS's cost over raw SQL from the queueing of the loaded trials.

use bbs::clock::{Clock, SystemClock};
use db::Store;
use db::sql::actual_lrps::SELECT_BY_CELL_SQL;
use db::sql::convergence::SNAPSHOT_SQL;
use proto::pb::bbs::v1 as api;

use crate::config::Config;
use crate::generator::{DOMAIN, Placement, cell_id};
use crate::listing;
use crate::progress::Progress;
use crate::stats::Recorder;
use crate::target::Clients;

/// Operation names of the baselines.
pub mod ops {
    /// `SELECT <every actual LRP column> FROM actual_lrps WHERE cell_id = ?`.
    pub const PER_CELL: &str = "RawSQL per-cell actual_lrps";
    /// [`PER_CELL`] during the trials, right after each rep's fetch, under the same load: how
    /// much of the loaded fetch's latency the database alone shows on a saturated machine.
    pub const PER_CELL_UNDER_LOAD: &str = "RawSQL per-cell actual_lrps (under load)";
    /// `SELECT <every actual LRP column> FROM actual_lrps`.
    pub const ACTUAL_SCAN: &str = "RawSQL scan actual_lrps";
    /// `SELECT <scheduling columns> FROM desired_lrps`.
    pub const SCHEDULING_SCAN: &str = "RawSQL scan desired scheduling";
    /// Both scans, one after the other (the route emitter's reads).
    pub const ROUTE_EMITTER: &str = "RawSQL scan actual + scheduling";
    /// [`SCHEDULING_SCAN`] during each trial, started with the nsync bulker's read, on a
    /// connection of its own: what the database alone takes for the bulker's rows on the
    /// saturated machine.
    pub const SCHEDULING_SCAN_UNDER_LOAD: &str = "RawSQL scan desired scheduling (under load)";
    /// [`ROUTE_EMITTER`] during each trial, started with the global route emitter's reads, on a
    /// connection of its own.
    pub const ROUTE_EMITTER_UNDER_LOAD: &str = "RawSQL scan actual + scheduling (under load)";
    /// The three statements of the convergence snapshot, one after the other.
    pub const CONVERGENCE: &str = "RawSQL convergence gather";
    /// `RepBulkFetching` through the BBS, one call at a time after the trials.
    pub const QUIET_PER_CELL: &str = "RepBulkFetching (quiet)";
    /// `NsyncBulkerFetching` through the BBS, one call at a time after the trials.
    pub const QUIET_NSYNC: &str = "NsyncBulkerFetching (quiet)";
    /// `FetchActualLRPsAndSchedulingInfos` through the BBS, one call at a time after the trials.
    pub const QUIET_ROUTE_EMITTER: &str = "FetchActualLRPsAndSchedulingInfos (quiet)";
}

/// The columns `DesiredLRPSchedulingInfos` reads (those of `db::sql::desired_lrps`, which keeps
/// them private).
const SCHEDULING_SQL: &str = "SELECT process_guid, domain, log_guid, annotation, instances, memory_mb, disk_mb, \
     max_pids, rootfs, routes, volume_placement, placement_tags, modification_tag_epoch, \
     modification_tag_index, update_strategy FROM desired_lrps";

/// The per-cell read without its filter: every column the BBS reads for an actual LRP.
fn actual_scan_sql() -> &'static str {
    SELECT_BY_CELL_SQL.strip_suffix(" WHERE cell_id = ?").unwrap_or(SELECT_BY_CELL_SQL)
}

async fn rows(store: &Store, sql: &str) -> Result<usize, sqlx::Error> {
    Ok(store.backend().query(sql).fetch_all(store.pool()).await?.len())
}

/// Both scans of the route emitter's reads, one after the other: their row counts.
async fn route_emitter_rows(store: &Store) -> Result<(usize, usize), sqlx::Error> {
    Ok((rows(store, actual_scan_sql()).await?, rows(store, SCHEDULING_SQL).await?))
}

/// Records a failure of `op` when a scan read `got` rows instead of `expected`.
fn check_rows(recorder: &Recorder, op: &'static str, got: usize, expected: usize) {
    if got != expected {
        recorder.fail(op, format!("{got} rows, expected {expected}"));
    }
}

/// The raw per-cell read of cell `c`, timed as `op`, its row count checked against `placement`.
pub async fn per_cell(store: &Store, placement: &Placement, c: usize, op: &'static str, recorder: &Recorder) {
    let query = store.backend().query(SELECT_BY_CELL_SQL).bind(cell_id(c));
    if let Ok(rows) = recorder.time(op, query.fetch_all(store.pool())).await
        && rows.len() != placement.lrps_of[c].len()
    {
        recorder.fail(op, format!("{}: {} rows, expected {}", cell_id(c), rows.len(), placement.lrps_of[c].len()));
    }
}

/// The bulk reads' raw scans, timed as [`ops::SCHEDULING_SCAN_UNDER_LOAD`] and (`global`: when
/// a global route emitter runs) [`ops::ROUTE_EMITTER_UNDER_LOAD`], at the same time, on `store`
/// (a pool of their own, so they wait for no other raw read's connection), each row count
/// checked against `expected`.
pub async fn scans_under_load(store: &Store, expected: usize, global: bool, recorder: &Recorder) {
    let check = |op, got| check_rows(recorder, op, got, expected);
    let scheduling = async {
        if let Ok(n) = recorder.time(ops::SCHEDULING_SCAN_UNDER_LOAD, rows(store, SCHEDULING_SQL)).await {
            check(ops::SCHEDULING_SCAN_UNDER_LOAD, n);
        }
    };
    let route_emitter = async {
        if !global {
            return;
        }
        if let Ok((a, s)) = recorder.time(ops::ROUTE_EMITTER_UNDER_LOAD, route_emitter_rows(store)).await {
            check(ops::ROUTE_EMITTER_UNDER_LOAD, a.min(s));
        }
    };
    futures::join!(scheduling, route_emitter);
}

/// Runs every baseline: the per-cell read once per cell per trial, the scans once per trial.
pub async fn run(config: &Config, store: &Store, placement: &Placement, recorder: &Recorder, progress: &Progress) {
    let samples = config.trials.max(3);
    let bar = progress.bar((config.cells * config.trials + samples * 4) as u64, "raw SQL baselines");
    for _ in 0..config.trials {
        for c in 0..config.cells {
            per_cell(store, placement, c, ops::PER_CELL, recorder).await;
            bar.inc(1);
        }
    }
    let check = |op, got| check_rows(recorder, op, got, config.desired_lrps);
    for _ in 0..samples {
        if let Ok(n) = recorder.time(ops::ACTUAL_SCAN, rows(store, actual_scan_sql())).await {
            check(ops::ACTUAL_SCAN, n);
        }
        bar.inc(1);
        if let Ok(n) = recorder.time(ops::SCHEDULING_SCAN, rows(store, SCHEDULING_SQL)).await {
            check(ops::SCHEDULING_SCAN, n);
        }
        bar.inc(1);
        if let Ok((a, s)) = recorder.time(ops::ROUTE_EMITTER, route_emitter_rows(store)).await {
            check(ops::ROUTE_EMITTER, a.min(s));
        }
        bar.inc(1);
        let gather = async {
            let desired = rows(store, SNAPSHOT_SQL[0]).await?;
            rows(store, SNAPSHOT_SQL[1]).await?;
            store.backend().query(SNAPSHOT_SQL[2]).bind(SystemClock.now_ns()).fetch_all(store.pool()).await?;
            Ok::<_, sqlx::Error>(desired)
        };
        if let Ok(n) = recorder.time(ops::CONVERGENCE, gather).await {
            check(ops::CONVERGENCE, n);
        }
        bar.inc(1);
    }
    bar.finish();
}

/// The BBS's own reads one call at a time on the quiet system (after the trials): the same
/// calls as the trials' per-cell fetch, bulker and route emitter, so the BBS's cost over raw SQL
/// shows without the queueing of the loaded trials. The per-cell fetch goes over the cell's own
/// connection, as in the trials.
pub async fn run_quiet(
    config: &Config,
    clients: &Clients,
    placement: &Placement,
    recorder: &Recorder,
    progress: &Progress,
) {
    let samples = config.trials.max(3);
    let bar = progress.bar((config.cells * config.trials + samples * 2) as u64, "BBS reads one at a time");
    let client = clients.bbs();
    for _ in 0..config.trials {
        for c in 0..config.cells {
            let request = api::ActualLrPsRequest { cell_id: cell_id(c), ..Default::default() };
            if let Ok(response) =
                recorder.time(ops::QUIET_PER_CELL, listing::actual_lrps(clients.cell(c), request)).await
            {
                let got = response.len();
                if got != placement.lrps_of[c].len() {
                    recorder.fail(
                        ops::QUIET_PER_CELL,
                        format!("{}: {got} actual LRPs, expected {}", cell_id(c), placement.lrps_of[c].len()),
                    );
                }
            }
            bar.inc(1);
        }
    }
    for _ in 0..samples {
        let request = api::DesiredLrPsRequest { domain: DOMAIN.into(), ..Default::default() };
        if let Ok(response) = recorder.time(ops::QUIET_NSYNC, listing::scheduling_infos(client.clone(), request)).await
        {
            let got = response.len();
            if got != config.desired_lrps {
                recorder.fail(ops::QUIET_NSYNC, format!("{got} scheduling infos, expected {}", config.desired_lrps));
            }
        }
        bar.inc(1);
        let c2 = client.clone();
        let both = async move {
            let actuals = listing::actual_lrps(c2.clone(), api::ActualLrPsRequest::default()).await?.len();
            let infos = listing::scheduling_infos(c2, api::DesiredLrPsRequest::default()).await?.len();
            Ok::<_, tonic::Status>(actuals.min(infos))
        };
        if let Ok(got) = recorder.time(ops::QUIET_ROUTE_EMITTER, both).await
            && got != config.desired_lrps
        {
            recorder.fail(ops::QUIET_ROUTE_EMITTER, format!("{got} rows, expected {}", config.desired_lrps));
        }
        bar.inc(1);
    }
    bar.finish();
}
