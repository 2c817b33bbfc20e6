//! The auctioneer's metric names, declared once, and the helpers that record them. They go to
//! whatever `metrics` recorder the process installed; `admin.rs` installs the Prometheus one.
//!
//! Counters carry `kind = "lrp" | "task"`, mirroring Diego's `AuctioneerLRPAuctionsStarted`,
//! `AuctioneerTaskAuctionsFailed`, ... (reference §1.11).

use std::time::Duration;

/// Items (LRP instances or tasks) that entered an auction; label `kind`.
pub const AUCTIONS_STARTED: &str = "auctioneer_auctions_started_total";
/// Items placed on a cell that accepted them; label `kind`.
pub const AUCTIONS_PLACED: &str = "auctioneer_auctions_placed_total";
/// Items that fit nowhere, were refused by their cell, or whose cell could not be reached;
/// label `kind`.
pub const AUCTIONS_FAILED: &str = "auctioneer_auctions_failed_total";
/// Wall time of one auction, from drain to the last report to the BBS.
pub const AUCTION_DURATION: &str = "auctioneer_auction_duration_seconds";
/// Wall time of listing the cells and fetching their states.
pub const FETCH_STATES_DURATION: &str = "auctioneer_fetch_states_duration_seconds";
/// `State` calls that failed or timed out.
pub const FAILED_CELL_STATE_REQUESTS: &str = "auctioneer_failed_cell_state_requests_total";
/// 1 while this process holds the `auctioneer` lock, else 0.
pub const LOCK_HELD: &str = "auctioneer_lock_held";

/// Registers descriptions and units with the installed recorder.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(AUCTIONS_STARTED, "lrp instances and tasks that entered an auction");
    describe_counter!(AUCTIONS_PLACED, "lrp instances and tasks placed on a cell");
    describe_counter!(AUCTIONS_FAILED, "lrp instances and tasks that could not be placed");
    describe_histogram!(AUCTION_DURATION, Unit::Seconds, "duration of one auction");
    describe_histogram!(FETCH_STATES_DURATION, Unit::Seconds, "duration of listing cells and fetching their states");
    describe_counter!(FAILED_CELL_STATE_REQUESTS, "cell state requests that failed or timed out");
    describe_gauge!(LOCK_HELD, "1 while this auctioneer holds the auctioneer lock");
}

/// Records one cell-state fetch.
pub(crate) fn record_fetch_states(duration: Duration, failed_requests: usize) {
    metrics::histogram!(FETCH_STATES_DURATION).record(duration.as_secs_f64());
    if failed_requests > 0 {
        metrics::counter!(FAILED_CELL_STATE_REQUESTS).increment(failed_requests as u64);
    }
}

/// Records the items entering an auction.
pub(crate) fn record_started(lrps: usize, tasks: usize) {
    metrics::counter!(AUCTIONS_STARTED, "kind" => "lrp").increment(lrps as u64);
    metrics::counter!(AUCTIONS_STARTED, "kind" => "task").increment(tasks as u64);
}

/// Records the outcome of an auction.
pub(crate) fn record_outcome(placed: (usize, usize), failed: (usize, usize), duration: Duration) {
    metrics::counter!(AUCTIONS_PLACED, "kind" => "lrp").increment(placed.0 as u64);
    metrics::counter!(AUCTIONS_PLACED, "kind" => "task").increment(placed.1 as u64);
    metrics::counter!(AUCTIONS_FAILED, "kind" => "lrp").increment(failed.0 as u64);
    metrics::counter!(AUCTIONS_FAILED, "kind" => "task").increment(failed.1 as u64);
    metrics::histogram!(AUCTION_DURATION).record(duration.as_secs_f64());
}

/// Records whether the lock is held.
pub(crate) fn record_lock_held(held: bool) {
    metrics::gauge!(LOCK_HELD).set(if held { 1.0 } else { 0.0 });
}
