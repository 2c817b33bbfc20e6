//! The cell rep: presence heartbeat, capacity accounting, container lifecycle through the
//! `process`, `runc` and `sim` runtimes, health checks, bulk sync with the BBS and evacuation.
//!
//! Not built yet: this crate is filled by the cell-rep issue. It holds no code that pretends to work.
