//! placeholder: convergence
