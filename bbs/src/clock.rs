//! The injected wall clock: stored timestamps (`since`, `created_at`, ...) come from here, so tests
//! control them. Durations and timers use `tokio::time`. The clock lives in the service toolkit,
//! shared with the converger and every other component.

pub use svc::clock::{Clock, ManualClock, SystemClock};
