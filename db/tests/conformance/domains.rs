//! Conformance tests of the domains store operations.

macro_rules! domains_tests {
    ($backend:expr) => {
        suite_module!($backend, domains, []);
    };
}
