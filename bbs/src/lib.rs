//! The BBS: the leader-elected gRPC API (`diego.bbs.v1.Bbs` and `diego.locket.v1.Locket`) over
//! the `db` store.
//!
//! - [`config`]: the configuration file and its validation.
//! - [`leader`]: leader election on the `bbs` lease, with fencing.
//! - [`controllers`]: the lifecycle rules, one module per resource, independent of gRPC.
//! - [`grpc`]: the thin gRPC adapters; [`server`] assembles the tonic server.
//! - [`events`], [`lrp_events`]: the event hub and the instance-event calculator.
//! - [`clients`]: outbound calls to the auctioneer and reps, behind traits.
//! - [`callbacks`]: task completion callbacks.
//! - [`paging`]: the list RPCs' pages (size caps and continuation tokens).
//! - [`admin`]: `/healthz`, `/leader`, `/metrics` and the read-only [`dashboard`] at `/`.

pub mod admin;
pub mod callbacks;
pub mod cells;
pub mod clients;
pub mod clock;
pub mod config;
pub mod controllers;
pub mod convergence;
pub mod dashboard;
pub mod encryption;
mod error;
pub mod events;
pub mod grpc;
pub mod leader;
pub mod locket;
pub mod lrp_events;
pub mod paging;
pub mod removed;
mod run;
pub mod server;

pub use error::{Error, Result};
pub use run::{Listeners, Overrides, RunError, run};
