//! Conformance tests of the tasks store operations.

macro_rules! tasks_tests {
    ($backend:expr) => {
        suite_module!($backend, tasks, []);
    };
}
