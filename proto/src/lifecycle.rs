//! The lifecycle state machines of diego-rs as pure functions.
//!
//! Everything here decides; nothing here acts. There is no IO and no clock: time comes in as
//! nanoseconds since the epoch (`i64`, the unit Diego stores) or as a [`std::time::Duration`].
//! The db crate loads a row, asks the matching `decide` function what to do, then writes or
//! deletes the row inside the same transaction.
//!
//! - [`actual_lrp`]: the ActualLRP transition rules with presence and instance-key fencing
//!   (bbs.md 3.1, 3.3, 3.4).
//! - [`crash`]: the crash-count and restart back-off policy (bbs.md 3.2).
//! - [`task`]: the Task state machine (bbs.md 3.5).
//!
//! Not here: the row fields a transition sets or clears (instance key, net info, `since`,
//! modification tag), events, auctions and rep calls. Those belong to the db crate and the
//! controllers that call these functions.

pub mod actual_lrp;
pub mod crash;
pub mod task;
