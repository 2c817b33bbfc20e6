//! Net info, actual LRPs and the `ActualLRPInfo` of instance-changed events.

use super::ids::{actual_lrp_key_from_pb, instance_key_from_pb, modification_tag_from_pb};
use crate::models::validation::validate_actual_lrp;
use crate::models::{ActualLrp, ActualLrpState, NetInfo, PortMapping, PreferredAddress, Presence, ValidationError};
use crate::pb::models::v1 as pb;

impl From<pb::PortMapping> for PortMapping {
    fn from(port: pb::PortMapping) -> Self {
        Self {
            container_port: port.container_port,
            host_port: port.host_port,
            container_tls_proxy_port: port.container_tls_proxy_port,
            host_tls_proxy_port: port.host_tls_proxy_port,
        }
    }
}

impl From<PortMapping> for pb::PortMapping {
    fn from(port: PortMapping) -> Self {
        Self {
            container_port: port.container_port,
            host_port: port.host_port,
            container_tls_proxy_port: port.container_tls_proxy_port,
            host_tls_proxy_port: port.host_tls_proxy_port,
        }
    }
}

impl From<pb::actual_lrp_net_info::PreferredAddress> for PreferredAddress {
    fn from(address: pb::actual_lrp_net_info::PreferredAddress) -> Self {
        use pb::actual_lrp_net_info::PreferredAddress as Wire;
        match address {
            Wire::Unknown => Self::Unknown,
            Wire::Instance => Self::Instance,
            Wire::Host => Self::Host,
        }
    }
}

impl From<PreferredAddress> for pb::actual_lrp_net_info::PreferredAddress {
    fn from(address: PreferredAddress) -> Self {
        match address {
            PreferredAddress::Unknown => Self::Unknown,
            PreferredAddress::Instance => Self::Instance,
            PreferredAddress::Host => Self::Host,
        }
    }
}

impl TryFrom<pb::ActualLrpNetInfo> for NetInfo {
    type Error = ValidationError;

    /// Refuses an unknown `preferred_address`.
    fn try_from(net: pb::ActualLrpNetInfo) -> Result<Self, Self::Error> {
        let preferred_address = pb::actual_lrp_net_info::PreferredAddress::try_from(net.preferred_address)
            .map_err(|_| ValidationError::new("preferred_address", "must be UNKNOWN, INSTANCE or HOST"))?
            .into();
        Ok(Self {
            address: net.address,
            ports: net.ports.into_iter().map(PortMapping::from).collect(),
            instance_address: net.instance_address,
            preferred_address,
            instance_ipv6_address: net.instance_ipv6_address,
        })
    }
}

impl From<NetInfo> for pb::ActualLrpNetInfo {
    fn from(net: NetInfo) -> Self {
        Self {
            address: net.address,
            ports: net.ports.into_iter().map(pb::PortMapping::from).collect(),
            instance_address: net.instance_address,
            preferred_address: pb::actual_lrp_net_info::PreferredAddress::from(net.preferred_address) as i32,
            instance_ipv6_address: net.instance_ipv6_address,
        }
    }
}

/// An optional `actual_lrp_net_info` field: absent or all-default (how Go clients send "no net
/// info") is `None`; errors are prefixed `actual_lrp_net_info.`.
pub fn net_info_from_pb(net: Option<pb::ActualLrpNetInfo>) -> Result<Option<NetInfo>, ValidationError> {
    match net {
        None => Ok(None),
        Some(net) if net == pb::ActualLrpNetInfo::default() => Ok(None),
        Some(net) => NetInfo::try_from(net).map(Some).map_err(|e| e.within("actual_lrp_net_info")),
    }
}

impl From<ActualLrpState> for pb::ActualLrpState {
    fn from(state: ActualLrpState) -> Self {
        match state {
            ActualLrpState::Unclaimed => Self::Unclaimed,
            ActualLrpState::Claimed => Self::Claimed,
            ActualLrpState::Running => Self::Running,
            ActualLrpState::Crashed => Self::Crashed,
        }
    }
}

/// The `state` integer of a wire actual LRP; 0 (invalid) and unknown values are errors.
pub fn actual_lrp_state_from_i32(state: i32) -> Result<ActualLrpState, ValidationError> {
    match pb::ActualLrpState::try_from(state) {
        Ok(pb::ActualLrpState::Unclaimed) => Ok(ActualLrpState::Unclaimed),
        Ok(pb::ActualLrpState::Claimed) => Ok(ActualLrpState::Claimed),
        Ok(pb::ActualLrpState::Running) => Ok(ActualLrpState::Running),
        Ok(pb::ActualLrpState::Crashed) => Ok(ActualLrpState::Crashed),
        Ok(pb::ActualLrpState::Invalid) | Err(_) => {
            Err(ValidationError::new("state", "must be one of UNCLAIMED, CLAIMED, RUNNING, CRASHED"))
        }
    }
}

/// The `presence` integer of a wire actual LRP; unknown values are errors.
fn presence_from_i32(presence: i32) -> Result<Presence, ValidationError> {
    Presence::from_i32(presence)
        .ok_or_else(|| ValidationError::new("presence", "must be one of ORDINARY, EVACUATING, SUSPECT"))
}

impl TryFrom<pb::ActualLrp> for ActualLrp {
    type Error = ValidationError;

    /// Converts the keys, enums and optional parts, then checks the invariants of
    /// [`validate_actual_lrp`]. A missing `routable` is `false`.
    fn try_from(lrp: pb::ActualLrp) -> Result<Self, Self::Error> {
        let converted = Self {
            key: actual_lrp_key_from_pb(lrp.actual_lrp_key)?,
            instance_key: instance_key_from_pb(lrp.actual_lrp_instance_key)?,
            net_info: net_info_from_pb(lrp.actual_lrp_net_info)?,
            crash_count: lrp.crash_count,
            crash_reason: lrp.crash_reason,
            state: actual_lrp_state_from_i32(lrp.state)?,
            placement_error: lrp.placement_error,
            since: lrp.since,
            modification_tag: modification_tag_from_pb(lrp.modification_tag),
            presence: presence_from_i32(lrp.presence)?,
            internal_routes: lrp.actual_lrp_internal_routes.into_iter().map(|route| route.hostname).collect(),
            metric_tags: lrp.metric_tags.into_iter().collect(),
            routable: lrp.routable.unwrap_or(false),
            availability_zone: lrp.availability_zone,
        };
        validate_actual_lrp(&converted)?;
        Ok(converted)
    }
}

impl From<ActualLrp> for pb::ActualLrp {
    fn from(lrp: ActualLrp) -> Self {
        Self {
            actual_lrp_key: Some(lrp.key.into()),
            actual_lrp_instance_key: lrp.instance_key.map(Into::into),
            actual_lrp_net_info: lrp.net_info.map(Into::into),
            crash_count: lrp.crash_count,
            crash_reason: lrp.crash_reason,
            state: pb::ActualLrpState::from(lrp.state) as i32,
            placement_error: lrp.placement_error,
            since: lrp.since,
            modification_tag: Some(lrp.modification_tag.into()),
            presence: lrp.presence.as_i32(),
            actual_lrp_internal_routes: lrp
                .internal_routes
                .into_iter()
                .map(|hostname| pb::ActualLrpInternalRoute { hostname })
                .collect(),
            metric_tags: lrp.metric_tags.into_iter().collect(),
            routable: Some(lrp.routable),
            availability_zone: lrp.availability_zone,
        }
    }
}

/// The mutable fields of an actual LRP, as the `before` / `after` of an
/// `ActualLRPInstanceChangedEvent`.
pub fn actual_lrp_info_to_pb(lrp: &ActualLrp) -> pb::ActualLrpInfo {
    pb::ActualLrpInfo {
        actual_lrp_net_info: lrp.net_info.clone().map(Into::into),
        crash_count: lrp.crash_count,
        crash_reason: lrp.crash_reason.clone(),
        state: pb::ActualLrpState::from(lrp.state) as i32,
        placement_error: lrp.placement_error.clone(),
        since: lrp.since,
        modification_tag: Some(lrp.modification_tag.clone().into()),
        presence: lrp.presence.as_i32(),
        routable: Some(lrp.routable),
        availability_zone: lrp.availability_zone.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{
        ActualLrpInstanceKey, ActualLrpKey, CellId, DomainName, InstanceGuid, ModificationTag, ProcessGuid,
    };

    fn net_info() -> NetInfo {
        NetInfo {
            address: "10.0.16.4".into(),
            ports: vec![
                PortMapping { container_port: 8080, host_port: 61001, ..Default::default() },
                PortMapping {
                    container_port: 2222,
                    host_port: 61002,
                    container_tls_proxy_port: 61443,
                    host_tls_proxy_port: 61003,
                },
            ],
            instance_address: "10.255.3.9".into(),
            preferred_address: PreferredAddress::Instance,
            instance_ipv6_address: "fd00::9".into(),
        }
    }

    fn running() -> ActualLrp {
        ActualLrp {
            key: ActualLrpKey {
                process_guid: ProcessGuid::parse("web-1").unwrap(),
                index: 1,
                domain: DomainName::parse("cf-apps").unwrap(),
            },
            instance_key: Some(ActualLrpInstanceKey {
                instance_guid: InstanceGuid::parse("ig-1").unwrap(),
                cell_id: CellId::parse("cell-z1-0").unwrap(),
            }),
            net_info: Some(net_info()),
            crash_count: 2,
            crash_reason: "exit status 1".into(),
            state: ActualLrpState::Running,
            placement_error: String::new(),
            since: 1_700_000_000_000_000_000,
            modification_tag: ModificationTag { epoch: "epoch-1".into(), index: 4 },
            presence: Presence::Evacuating,
            internal_routes: vec!["web-1.apps.internal".into()],
            metric_tags: [("app_name".to_owned(), "dora".to_owned())].into(),
            routable: true,
            availability_zone: "z1".into(),
        }
    }

    #[test]
    fn net_info_round_trips() {
        let wire = pb::ActualLrpNetInfo::from(net_info());
        assert_eq!(wire.preferred_address, 1);
        assert_eq!(NetInfo::try_from(wire.clone()), Ok(net_info()));
        assert_eq!(net_info_from_pb(Some(wire)), Ok(Some(net_info())));
    }

    #[test]
    fn an_absent_or_empty_net_info_is_none() {
        assert_eq!(net_info_from_pb(None), Ok(None));
        assert_eq!(net_info_from_pb(Some(pb::ActualLrpNetInfo::default())), Ok(None));
    }

    #[test]
    fn an_unknown_preferred_address_is_refused() {
        let wire = pb::ActualLrpNetInfo { preferred_address: 3, ..net_info().into() };
        assert_eq!(
            net_info_from_pb(Some(wire)).unwrap_err().to_string(),
            "actual_lrp_net_info.preferred_address must be UNKNOWN, INSTANCE or HOST"
        );
    }

    #[test]
    fn every_preferred_address_round_trips() {
        for address in [PreferredAddress::Unknown, PreferredAddress::Instance, PreferredAddress::Host] {
            let wire = pb::actual_lrp_net_info::PreferredAddress::from(address);
            assert_eq!(PreferredAddress::from(wire), address);
        }
    }

    #[test]
    fn actual_lrp_round_trips() {
        let wire = pb::ActualLrp::from(running());
        assert_eq!(wire.state, 3);
        assert_eq!(wire.presence, 1);
        assert_eq!(wire.routable, Some(true));
        assert_eq!(ActualLrp::try_from(wire), Ok(running()));
    }

    #[test]
    fn an_unclaimed_actual_lrp_round_trips_without_keys_or_net_info() {
        let key = running().key;
        let lrp = ActualLrp::new_unclaimed(key, "epoch-2", 5);
        let wire = pb::ActualLrp::from(lrp.clone());
        assert_eq!(wire.actual_lrp_instance_key, None);
        assert_eq!(wire.actual_lrp_net_info, None);
        assert_eq!(ActualLrp::try_from(wire), Ok(lrp));
    }

    #[test]
    fn every_state_round_trips() {
        for state in ActualLrpState::ALL {
            let wire = pb::ActualLrpState::from(state) as i32;
            assert_eq!(actual_lrp_state_from_i32(wire), Ok(state));
        }
    }

    #[test]
    fn an_invalid_or_unknown_state_is_refused() {
        for state in [0, 5, -1] {
            let wire = pb::ActualLrp { state, ..running().into() };
            assert_eq!(
                ActualLrp::try_from(wire).unwrap_err().to_string(),
                "state must be one of UNCLAIMED, CLAIMED, RUNNING, CRASHED"
            );
        }
    }

    #[test]
    fn an_unknown_presence_is_refused() {
        let wire = pb::ActualLrp { presence: 3, ..running().into() };
        assert_eq!(
            ActualLrp::try_from(wire).unwrap_err().to_string(),
            "presence must be one of ORDINARY, EVACUATING, SUSPECT"
        );
    }

    #[test]
    fn a_missing_key_is_required() {
        let wire = pb::ActualLrp { actual_lrp_key: None, ..running().into() };
        assert_eq!(ActualLrp::try_from(wire).unwrap_err().to_string(), "actual_lrp_key is required");
    }

    #[test]
    fn a_missing_routable_is_false() {
        let wire = pb::ActualLrp { routable: None, ..running().into() };
        assert!(!ActualLrp::try_from(wire).unwrap().routable);
    }

    #[test]
    fn conversion_checks_the_state_invariants() {
        let wire = pb::ActualLrp { actual_lrp_net_info: None, ..running().into() };
        assert_eq!(
            ActualLrp::try_from(wire).unwrap_err().to_string(),
            "actual_lrp_net_info.address is required when state is RUNNING"
        );
    }

    #[test]
    fn actual_lrp_info_carries_the_mutable_fields() {
        let info = actual_lrp_info_to_pb(&running());
        let wire = pb::ActualLrp::from(running());
        assert_eq!(info.actual_lrp_net_info, wire.actual_lrp_net_info);
        assert_eq!(info.state, wire.state);
        assert_eq!(info.presence, wire.presence);
        assert_eq!(info.modification_tag, wire.modification_tag);
        assert_eq!(info.crash_reason, "exit status 1");
        assert_eq!(info.since, wire.since);
        assert_eq!(info.routable, Some(true));
        assert_eq!(info.availability_zone, "z1");
    }
}
