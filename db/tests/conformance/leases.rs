//! Conformance tests of the leases store operations.

macro_rules! leases_tests {
    ($backend:expr) => {
        suite_module!($backend, leases, []);
    };
}
