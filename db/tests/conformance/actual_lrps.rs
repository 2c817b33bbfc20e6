//! Conformance tests of the actual_lrps store operations.

macro_rules! actual_lrps_tests {
    ($backend:expr) => {
        suite_module!($backend, actual_lrps, []);
    };
}
