//! Fetching the state of every live cell for one auction (reference §1.4 steps 1–2).
//!
//! The live cells come from the BBS (`Cells`); each rep's `State` is fetched concurrently, each
//! bounded by the per-cell timeout, so one slow cell never holds the auction longer than that
//! timeout. Cells that fail to answer, answer too late, are evacuating or answer with another
//! cell's id are left out and logged. What remains is sorted by cell id, so the same cells
//! always reach `placement::solve` in the same order.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use crate::bbs_client::{BbsClient, CellPresence};
use crate::error::ClientError;
use crate::metrics;
use crate::placement::CellState;
use crate::rep_client::RepClient;

/// Why cells were left out of an auction, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeftOut {
    /// The `State` call failed (unreachable, or an unhealthy rep's error).
    pub failed: usize,
    /// The `State` call did not answer within the per-cell timeout.
    pub timed_out: usize,
    /// The cell said it is evacuating.
    pub evacuating: usize,
    /// The presence has no address, the same cell id appeared twice, or the state names
    /// another cell.
    pub invalid: usize,
}

impl LeftOut {
    /// All cells left out.
    pub fn total(&self) -> usize {
        self.failed + self.timed_out + self.evacuating + self.invalid
    }
}

/// The cells of one auction.
#[derive(Debug, Clone, Default)]
pub struct CellStates {
    /// The cells that answered and may take work, sorted by cell id.
    pub cells: Vec<CellState>,
    /// Each usable cell's rep address, by cell id.
    pub addresses: HashMap<String, String>,
    /// How many cells the BBS listed.
    pub listed: usize,
    /// Why the others were left out.
    pub left_out: LeftOut,
    /// How long the fetch took (listing plus states).
    pub duration: Duration,
}

enum Outcome {
    Usable(Box<CellState>),
    Failed,
    TimedOut,
    Evacuating,
    Invalid,
}

/// Lists the live cells and fetches every cell's state in parallel, each call bounded by
/// `timeout`. Fails only when the BBS cannot list the cells.
pub async fn fetch_cell_states(
    bbs: &dyn BbsClient,
    reps: &dyn RepClient,
    timeout: Duration,
) -> Result<CellStates, ClientError> {
    let started = Instant::now();
    let presences = bbs.cells().await?;
    let listed = presences.len();

    // One entry per cell id, keeping the first presence; sorted by id for determinism.
    let mut unique: BTreeMap<String, CellPresence> = BTreeMap::new();
    let mut left_out = LeftOut::default();
    for presence in presences {
        if presence.cell_id.is_empty() || presence.rep_address.trim().is_empty() {
            tracing::warn!(cell_id = %presence.cell_id, rep_address = %presence.rep_address, "leaving out a cell presence without an id or address");
            left_out.invalid += 1;
            continue;
        }
        if unique.contains_key(&presence.cell_id) {
            tracing::warn!(cell_id = %presence.cell_id, "leaving out a duplicate cell presence");
            left_out.invalid += 1;
            continue;
        }
        unique.insert(presence.cell_id.clone(), presence);
    }

    let outcomes = futures::future::join_all(unique.values().map(|presence| async move {
        let result = tokio::time::timeout(timeout, reps.state(&presence.cell_id, &presence.rep_address)).await;
        (presence, classify(presence, result, timeout))
    }))
    .await;

    let mut cells = Vec::with_capacity(outcomes.len());
    let mut addresses = HashMap::with_capacity(outcomes.len());
    for (presence, outcome) in outcomes {
        match outcome {
            Outcome::Usable(state) => {
                addresses.insert(state.cell_id.clone(), presence.rep_address.clone());
                cells.push(*state);
            }
            Outcome::Failed => left_out.failed += 1,
            Outcome::TimedOut => left_out.timed_out += 1,
            Outcome::Evacuating => left_out.evacuating += 1,
            Outcome::Invalid => left_out.invalid += 1,
        }
    }
    // `unique` iterates in id order and ids are unchanged, but sort anyway: the order is a
    // contract of this function, not an accident of the map.
    cells.sort_by(|a, b| a.cell_id.cmp(&b.cell_id));

    let duration = started.elapsed();
    metrics::record_fetch_states(duration, left_out.failed + left_out.timed_out);
    Ok(CellStates { cells, addresses, listed, left_out, duration })
}

fn classify(
    presence: &CellPresence,
    result: Result<Result<CellState, ClientError>, tokio::time::error::Elapsed>,
    timeout: Duration,
) -> Outcome {
    let cell_id = presence.cell_id.as_str();
    let mut state = match result {
        Ok(Ok(state)) => state,
        Ok(Err(e)) => {
            tracing::warn!(cell_id, rep_address = %presence.rep_address, error = %e, "leaving out a cell whose state could not be fetched");
            return Outcome::Failed;
        }
        Err(_) => {
            tracing::warn!(cell_id, rep_address = %presence.rep_address, timeout_ms = timeout.as_millis() as u64, "leaving out a cell that did not answer in time");
            return Outcome::TimedOut;
        }
    };
    if state.evacuating {
        tracing::info!(cell_id, "leaving out an evacuating cell");
        return Outcome::Evacuating;
    }
    if state.cell_id.is_empty() {
        state.cell_id = presence.cell_id.clone();
    } else if state.cell_id != presence.cell_id {
        tracing::warn!(cell_id, reported_cell_id = %state.cell_id, rep_address = %presence.rep_address, "leaving out a cell whose state names another cell");
        return Outcome::Invalid;
    }
    if state.zone.is_empty() {
        state.zone = presence.zone.clone();
    }
    Outcome::Usable(Box::new(state))
}
