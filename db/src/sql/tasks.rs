//! placeholder: tasks
