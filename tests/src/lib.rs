//! Whole-cluster integration tests: in-process clusters and fault scenarios, one suite per
//! backend.
//!
//! Not built yet: the harness is filled by the CLI / end-to-end issue.
