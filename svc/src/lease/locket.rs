//! The Locket wire form of a lease, shared by every Locket client (the auctioneer lock, cell
//! presences).

use std::time::Duration;

use proto::pb::locket::v1 as locket_pb;

/// The resource `key` owned by `owner` with `value`, of type `type_code`.
pub fn resource(key: &str, owner: &str, value: &str, type_code: locket_pb::TypeCode) -> locket_pb::Resource {
    locket_pb::Resource {
        key: key.to_owned(),
        owner: owner.to_owned(),
        value: value.to_owned(),
        type_code: type_code as i32,
    }
}

/// A `Lock` of `resource` for `ttl`: whole seconds on the wire, rounded up so the lease
/// never lives shorter than asked (and at least one second).
pub fn lock_request(resource: locket_pb::Resource, ttl: Duration) -> locket_pb::LockRequest {
    let seconds = i64::try_from(ttl.as_millis().div_ceil(1000).max(1)).unwrap_or(i64::MAX);
    locket_pb::LockRequest { resource: Some(resource), ttl_in_seconds: seconds }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_go_on_the_wire_in_whole_seconds_rounded_up() {
        let resource = resource("cell-1", "owner", "{}", locket_pb::TypeCode::Presence);
        assert_eq!(resource.type_code, locket_pb::TypeCode::Presence as i32);
        assert_eq!(lock_request(resource.clone(), Duration::from_millis(1_500)).ttl_in_seconds, 2);
        assert_eq!(lock_request(resource.clone(), Duration::from_secs(15)).ttl_in_seconds, 15);
        assert_eq!(lock_request(resource, Duration::ZERO).ttl_in_seconds, 1);
    }
}
