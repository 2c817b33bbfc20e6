//! The actual LRP invariants of bbs.md 2.2. Mirrors `ActualLRP.Validate` in cloudfoundry/bbs
//! `models/actual_lrp.go`, plus the presence rules the evacuation and suspect paths rely on.

use super::check_reason;
use crate::models::{ActualLrp, ActualLrpState, Presence, ValidationError};

/// Validates the state-dependent shape of an actual LRP:
///
/// - UNCLAIMED: no instance key, no net info, presence ORDINARY;
/// - CLAIMED: an instance key, no net info, no placement error;
/// - RUNNING: an instance key, net info with a non-empty address, no placement error;
/// - CRASHED: no instance key, no net info;
/// - an EVACUATING row is RUNNING; a SUSPECT row is RUNNING or CLAIMED;
/// - `crash_reason` and `placement_error` are at most 1024 characters, and the index is >= 0.
pub fn validate_actual_lrp(lrp: &ActualLrp) -> Result<(), ValidationError> {
    if lrp.key.index < 0 {
        return Err(ValidationError::new("actual_lrp_key.index", "must be >= 0"));
    }
    let state = lrp.state.as_str();
    let forbid_instance_key = || -> Result<(), ValidationError> {
        if lrp.instance_key.is_some() {
            return Err(ValidationError::new(
                "actual_lrp_instance_key",
                format!("must not be set when state is {state}"),
            ));
        }
        Ok(())
    };
    let require_instance_key = || -> Result<(), ValidationError> {
        if lrp.instance_key.is_none() {
            return Err(ValidationError::new("actual_lrp_instance_key", format!("is required when state is {state}")));
        }
        Ok(())
    };
    let forbid_net_info = || -> Result<(), ValidationError> {
        if lrp.net_info.is_some() {
            return Err(ValidationError::new("actual_lrp_net_info", format!("must not be set when state is {state}")));
        }
        Ok(())
    };
    let forbid_placement_error = || -> Result<(), ValidationError> {
        if !lrp.placement_error.trim().is_empty() {
            return Err(ValidationError::new("placement_error", format!("must be empty when state is {state}")));
        }
        Ok(())
    };
    match lrp.state {
        ActualLrpState::Unclaimed => {
            forbid_instance_key()?;
            forbid_net_info()?;
            if lrp.presence != Presence::Ordinary {
                return Err(ValidationError::new("presence", "must be ORDINARY when state is UNCLAIMED"));
            }
        }
        ActualLrpState::Claimed => {
            require_instance_key()?;
            forbid_net_info()?;
            forbid_placement_error()?;
        }
        ActualLrpState::Running => {
            require_instance_key()?;
            if lrp.net_info.as_ref().is_none_or(|net| net.address.is_empty()) {
                return Err(ValidationError::new("actual_lrp_net_info.address", "is required when state is RUNNING"));
            }
            forbid_placement_error()?;
        }
        ActualLrpState::Crashed => {
            forbid_instance_key()?;
            forbid_net_info()?;
        }
    }
    match (lrp.presence, lrp.state) {
        (Presence::Evacuating, state) if state != ActualLrpState::Running => {
            return Err(ValidationError::new("state", "must be RUNNING when presence is EVACUATING"));
        }
        (Presence::Suspect, ActualLrpState::Unclaimed | ActualLrpState::Crashed) => {
            return Err(ValidationError::new("state", "must be RUNNING or CLAIMED when presence is SUSPECT"));
        }
        _ => {}
    }
    check_reason("crash_reason", &lrp.crash_reason)?;
    check_reason("placement_error", &lrp.placement_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{
        ActualLrpInstanceKey, ActualLrpKey, CellId, DomainName, InstanceGuid, NetInfo, PortMapping, PreferredAddress,
        ProcessGuid,
    };

    fn key() -> ActualLrpKey {
        ActualLrpKey {
            process_guid: ProcessGuid::parse("web-1").unwrap(),
            index: 2,
            domain: DomainName::parse("cf-apps").unwrap(),
        }
    }

    fn instance_key() -> ActualLrpInstanceKey {
        ActualLrpInstanceKey {
            instance_guid: InstanceGuid::parse("ig-1").unwrap(),
            cell_id: CellId::parse("cell-1").unwrap(),
        }
    }

    fn net_info() -> NetInfo {
        NetInfo {
            address: "10.0.0.5".into(),
            ports: vec![PortMapping { container_port: 8080, host_port: 61000, ..Default::default() }],
            instance_address: "10.255.0.7".into(),
            preferred_address: PreferredAddress::Host,
            instance_ipv6_address: String::new(),
        }
    }

    fn unclaimed() -> ActualLrp {
        let mut lrp = ActualLrp::new_unclaimed(key(), "epoch-1", 1_000);
        lrp.placement_error = "found no compatible cell".into();
        lrp
    }

    fn claimed() -> ActualLrp {
        let mut lrp = ActualLrp::new_unclaimed(key(), "epoch-1", 1_000);
        lrp.state = ActualLrpState::Claimed;
        lrp.instance_key = Some(instance_key());
        lrp
    }

    fn running() -> ActualLrp {
        let mut lrp = claimed();
        lrp.state = ActualLrpState::Running;
        lrp.net_info = Some(net_info());
        lrp.routable = true;
        lrp
    }

    fn crashed() -> ActualLrp {
        let mut lrp = ActualLrp::new_unclaimed(key(), "epoch-1", 1_000);
        lrp.state = ActualLrpState::Crashed;
        lrp.crash_count = 3;
        lrp.crash_reason = "exit status 137".into();
        lrp
    }

    rule_test!(index_is_not_negative: validate_actual_lrp, unclaimed(),
        |v| v.key.index = -1 => "actual_lrp_key.index must be >= 0");
    rule_test!(unclaimed_has_no_instance_key: validate_actual_lrp, unclaimed(),
        |v| v.instance_key = Some(instance_key())
        => "actual_lrp_instance_key must not be set when state is UNCLAIMED");
    rule_test!(unclaimed_has_no_net_info: validate_actual_lrp, unclaimed(),
        |v| v.net_info = Some(net_info()) => "actual_lrp_net_info must not be set when state is UNCLAIMED");
    rule_test!(unclaimed_is_ordinary: validate_actual_lrp, unclaimed(),
        |v| v.presence = Presence::Suspect => "presence must be ORDINARY when state is UNCLAIMED");
    rule_test!(claimed_has_an_instance_key: validate_actual_lrp, claimed(),
        |v| v.instance_key = None => "actual_lrp_instance_key is required when state is CLAIMED");
    rule_test!(claimed_has_no_net_info: validate_actual_lrp, claimed(),
        |v| v.net_info = Some(net_info()) => "actual_lrp_net_info must not be set when state is CLAIMED");
    rule_test!(claimed_has_no_placement_error: validate_actual_lrp, claimed(),
        |v| v.placement_error = "no cell".into() => "placement_error must be empty when state is CLAIMED");
    rule_test!(running_has_an_instance_key: validate_actual_lrp, running(),
        |v| v.instance_key = None => "actual_lrp_instance_key is required when state is RUNNING");
    rule_test!(running_has_net_info: validate_actual_lrp, running(),
        |v| v.net_info = None => "actual_lrp_net_info.address is required when state is RUNNING");
    rule_test!(running_has_a_net_info_address: validate_actual_lrp, running(),
        |v| v.net_info = Some(NetInfo { address: String::new(), ..net_info() })
        => "actual_lrp_net_info.address is required when state is RUNNING");
    rule_test!(running_has_no_placement_error: validate_actual_lrp, running(),
        |v| v.placement_error = "no cell".into() => "placement_error must be empty when state is RUNNING");
    rule_test!(crashed_has_no_instance_key: validate_actual_lrp, crashed(),
        |v| v.instance_key = Some(instance_key()) => "actual_lrp_instance_key must not be set when state is CRASHED");
    rule_test!(crashed_has_no_net_info: validate_actual_lrp, crashed(),
        |v| v.net_info = Some(net_info()) => "actual_lrp_net_info must not be set when state is CRASHED");
    rule_test!(evacuating_is_running: validate_actual_lrp, with_presence(Presence::Evacuating, running()),
        |v| { v.state = ActualLrpState::Claimed; v.net_info = None; }
        => "state must be RUNNING when presence is EVACUATING");
    rule_test!(suspect_is_running_or_claimed: validate_actual_lrp, with_presence(Presence::Suspect, claimed()),
        |v| { v.state = ActualLrpState::Crashed; v.instance_key = None; }
        => "state must be RUNNING or CLAIMED when presence is SUSPECT");
    rule_test!(crash_reason_is_at_most_1024_chars: validate_actual_lrp, crashed(),
        |v| v.crash_reason = "c".repeat(1025) => "crash_reason must be at most 1024 characters");
    rule_test!(placement_error_is_at_most_1024_chars: validate_actual_lrp, unclaimed(),
        |v| v.placement_error = "p".repeat(1025) => "placement_error must be at most 1024 characters");

    #[test]
    fn suspect_running_and_suspect_claimed_rows_are_valid() {
        assert_eq!(validate_actual_lrp(&with_presence(Presence::Suspect, running())), Ok(()));
        assert_eq!(validate_actual_lrp(&with_presence(Presence::Suspect, claimed())), Ok(()));
    }

    fn with_presence(presence: Presence, mut lrp: ActualLrp) -> ActualLrp {
        lrp.presence = presence;
        lrp
    }
}
