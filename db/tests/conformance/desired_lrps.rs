//! Conformance tests of the desired_lrps store operations.

macro_rules! desired_lrps_tests {
    ($backend:expr) => {
        suite_module!($backend, desired_lrps, []);
    };
}
