//! The ActualLRP lifecycle in one home (bbs.md 3.1 to 3.4): the transition table, the rows of one
//! index, every call as a pure function on those rows, and the one refusal type.
//!
//! - [`table`]: [`decide`], the transition rules with presence and instance-key fencing, for one
//!   row and one [`Command`];
//! - [`rows`]: [`IndexRows`], the ordinary, evacuating and suspect instance of one
//!   (process guid, index), and which of them a request addresses;
//! - [`instance`]: the fields each target state sets or clears ([`instance::run`] is the one
//!   builder of a RUNNING instance);
//! - [`apply`]: the ordinary calls (claim, start, crash, fail, remove, unclaim, delete, retire,
//!   and convergence's suspect-and-replace and promote);
//! - [`evacuate`]: the evacuation calls of a draining rep;
//! - [`refusal`]: [`Refusal`], the error every call fails with (a Diego error code and a message
//!   naming the row).
//!
//! Storage runs these the same way everywhere: lock the index's rows, let one `apply_*` function
//! change a copy, write the difference (the db crate's `Store::modify_index`; the rep's fake BBS
//! does the same in memory). Side effects (events, auctions, rep stop requests) belong to the
//! BBS controllers.

pub mod apply;
pub mod evacuate;
pub mod instance;
pub mod refusal;
pub mod rows;
pub mod table;

pub use self::apply::{
    apply_claim, apply_crash, apply_delete, apply_fail, apply_promote, apply_remove, apply_retire, apply_start,
    apply_suspect_and_replace, apply_unclaim,
};
pub use self::evacuate::{
    Desired, RunningOutcome, apply_evacuate_claimed, apply_evacuate_crashed, apply_evacuate_running,
    apply_evacuate_stopped, apply_remove_evacuating, every_instance_running,
};
pub use self::instance::{CrashOutcome, StartInfo};
pub use self::refusal::{Refusal, judge};
pub use self::rows::IndexRows;
pub use self::table::{Command, KeyMatch, Verdict, decide, valid_combination};

#[cfg(test)]
mod tests;
