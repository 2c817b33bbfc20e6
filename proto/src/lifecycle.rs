//! The lifecycle state machines of diego-rs as pure functions.
//!
//! Everything here decides; nothing here acts. There is no IO and no clock: time comes in as
//! nanoseconds since the epoch (`i64`, the unit Diego stores) or as a [`std::time::Duration`].
//! Storage (the db crate, the rep's fake BBS) locks the rows, asks the matching `apply_*` or
//! `decide` function what to do and writes the difference inside the same transaction.
//!
//! - [`actual_lrp`]: the ActualLRP lifecycle: the transition table with presence and
//!   instance-key fencing, the rows of one index, every ordinary and evacuation call as a pure
//!   function on those rows, and the one refusal type (bbs.md 3.1, 3.3, 3.4).
//! - [`crash`]: the crash-count and restart back-off policy (bbs.md 3.2).
//! - [`task`]: the Task state machine (bbs.md 3.5).
//!
//! Not here: modification tags, events, auctions and rep calls. Those belong to the db crate and
//! the controllers that call these functions.

pub mod actual_lrp;
pub mod crash;
pub mod task;
