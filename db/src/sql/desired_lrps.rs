//! placeholder: desired_lrps
