//! Whole-cluster test harness: [`cluster::Cluster`] starts a BBS, an auctioneer and N cell reps in
//! one process on loopback over a fresh test database, with every interval shortened by config,
//! and offers the faults the end-to-end suite needs (kill a rep, bring it back, evacuate one,
//! stop the auctioneer). [`eventually`] polls with bounded patience; [`steps`] are what the
//! tests do through the BBS and wait for; [`fixtures`] the desired LRPs and tasks they run.
//! [`hosts`] is the multi-host harness: hosts as network namespaces on a userspace switch, the
//! real binaries running in them (docs/multihost.md).

pub mod cluster;
pub mod eventually;
pub mod fixtures;
pub mod hosts;
pub mod probe;
pub mod routing;
pub mod scratch;
pub mod steps;

/// Runs each `async fn case(backend: db::Backend)` named as a test on SQLite, PostgreSQL and
/// MySQL (modules `sqlite`, `postgres`, `mysql`), each on a two-thread runtime.
#[macro_export]
macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() { super::$case(db::Backend::Sqlite).await } )* }
        mod postgres { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() { super::$case(db::Backend::Postgres).await } )* }
        mod mysql { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() { super::$case(db::Backend::Mysql).await } )* }
    };
}
