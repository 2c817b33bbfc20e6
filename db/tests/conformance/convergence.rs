//! Conformance tests of the convergence store operations.

macro_rules! convergence_tests {
    ($backend:expr) => {
        suite_module!($backend, convergence, []);
    };
}
