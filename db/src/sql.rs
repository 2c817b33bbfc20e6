//! Hand-written SQL, one module per table. Each module adds methods to [`crate::Store`] and keeps
//! its row structs and conversions to it.

pub mod actual_lrps;
pub mod convergence;
pub mod desired_lrps;
pub mod domains;
pub mod encryption;
pub mod leases;
pub mod page;
pub mod retire;
pub mod statistics;
pub mod tasks;
