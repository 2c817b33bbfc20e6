//! The store conformance suite: generic behaviour tests that every backend must pass. Each
//! submodule holds `pub async fn test_name(db: &TestDb)` functions plus a `<module>_tests!`
//! macro listing them; [`conformance_suite!`] stamps all of them out for one backend, each test
//! on its own freshly created database.

#![allow(dead_code)]

/// Stamps out `#[tokio::test]` wrappers for the listed tests of one module.
macro_rules! suite_module {
    ($backend:expr, $module:ident, [$($test:ident),* $(,)?]) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    if let Some(db) = ::db::testing::TestDb::create($backend).await {
                        crate::conformance::$module::$test(&db).await;
                    }
                }
            )*
        }
    };
}

#[macro_use]
pub mod domains;
#[macro_use]
pub mod leases;
#[macro_use]
pub mod desired_lrps;
#[macro_use]
pub mod tasks;
#[macro_use]
pub mod actual_lrps;
#[macro_use]
pub mod convergence;
#[macro_use]
pub mod schema;
#[macro_use]
pub mod values;
#[macro_use]
pub mod paging;
#[macro_use]
pub mod encryption;
#[macro_use]
pub mod retire;
#[macro_use]
pub mod group_commit;
#[macro_use]
pub mod batches;
#[macro_use]
pub mod plans;

/// Every conformance test, for one backend.
macro_rules! conformance_suite {
    ($backend:expr) => {
        schema_tests!($backend);
        domains_tests!($backend);
        leases_tests!($backend);
        desired_lrps_tests!($backend);
        tasks_tests!($backend);
        actual_lrps_tests!($backend);
        convergence_tests!($backend);
        paging_tests!($backend);
        values_tests!($backend);
        encryption_tests!($backend);
        retire_tests!($backend);
        group_commit_tests!($backend);
        batches_tests!($backend);
        plans_tests!($backend);
    };
}

/// A fixed "now" for tests that pass time explicitly: 2026-01-01T00:00:00Z in nanoseconds.
pub const NOW_NS: i64 = 1_767_225_600_000_000_000;
