//! placeholder: actual_lrps
