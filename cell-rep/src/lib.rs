//! The cell rep runs the work placed on one cell and reports its lifecycle to the BBS: presence,
//! capacity, containers through the `process`, `runc` and `sim` runtimes, health checks, bulk
//! sync and evacuation. Comments here cite `reference N.N` or `reference §N.N`, meaning
//! docs/reference/auction-rep.md §N.N.
//!
//! - [`resources`]: pure capacity arithmetic (memory, disk, container slots).
//! - [`container`]: the container record, its run request and its lifecycle state machine;
//!   [`workload`]: what a container runs (an LRP instance or a task), typed.
//! - [`runtime`]: the `ContainerRuntime` seam and its `process`, `runc` and `sim` implementations.
//! - [`actions`]: the action tree (run, download, timeout, try, serial, parallel, ...) as steps.
//! - [`checks`]: declarative TCP / HTTP health checks and the startup, liveness and readiness loops;
//!   [`probe`]: the one network probe they run (a TCP connect or an HTTP GET from the host).
//! - [`executor`]: the in-memory container registry that reserves, runs, stops and deletes.
//!
//! The rep around the executor:
//!
//! - [`config`]: the TOML file and flags; [`rep`]: [`run`] and [`run_with`], which wire
//!   everything on listeners they are given (they bind nothing).
//! - [`service`] and [`server`]: the `Rep` gRPC service (`State`, `Perform`, stop, cancel,
//!   update, `Evacuate`, `Ping`) with health and reflection; [`recovery`]: the `Recovery`
//!   service (what the cell runs, for a BBS whose database forgot it).
//! - [`exec`]: the `Exec` service (`diego ssh`): a command or a shell inside an instance.
//! - [`context`]: what the parts share (cell identity, executor, BBS client, evacuation flag).
//! - [`generator`]: container events and bulk-sync passes → BBS lifecycle calls.
//! - [`logs`]: the application logs the runtimes capture, and the `Logs` gRPC service.
//! - [`bulk_sync`]: the periodic reconciliation with the BBS; [`evacuation`]: the drain.
//! - [`presence`]: the Locket cell presence; [`bbs_client`]: the BBS seam and its tonic client.
//! - [`admin`] (`/healthz`, `/metrics`), [`metrics`], [`rootfs`] (the default busybox rootfs),
//!   [`text`] (formatting helpers shared by actions, checks and the generator).
//! - `testing` (feature `testing`): the recording BBS fake and builders.

pub mod actions;
pub mod checks;
pub mod container;
pub mod executor;
pub mod probe;
pub mod resources;
pub mod runtime;
pub mod text;
pub mod workload;

pub mod admin;
pub mod bbs_client;
pub mod bulk_sync;
pub mod config;
pub mod context;
pub mod evacuation;
pub mod exec;
pub mod generator;
pub mod logs;
pub mod metrics;
pub mod presence;
pub mod recovery;
pub mod rep;
pub mod rootfs;
pub mod server;
pub mod service;
#[cfg(feature = "testing")]
pub mod testing;

pub use bbs_client::{BbsClient, BbsError, GrpcBbsClient};
pub use config::{ConfigOverrides, RepConfig, RuntimeKind};
pub use rep::{Deps, Listeners, RunError, run, run_with};
