//! LRP and task convergence: a pure `plan(snapshot, now)` plus a thin executor, driven by
//! `tick()` on an interval and kicked early by events such as an expired cell presence.
//!
//! Not built yet: this crate is filled by the converger issue. It holds no code that pretends to work.
