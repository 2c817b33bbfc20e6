//! placeholder: domains
