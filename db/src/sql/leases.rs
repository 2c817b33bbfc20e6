//! placeholder: leases
