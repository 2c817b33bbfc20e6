//! Actual LRP keys and instance keys, modification tags and domains.

use super::required;
use crate::models::{
    ActualLrpInstanceKey, ActualLrpKey, CellId, Domain, DomainName, InstanceGuid, ModificationTag, ProcessGuid,
    ValidationError,
};
use crate::pb::models::v1 as pb;

impl TryFrom<pb::ActualLrpKey> for ActualLrpKey {
    type Error = ValidationError;

    /// Parses the process guid and domain and refuses a negative index.
    fn try_from(key: pb::ActualLrpKey) -> Result<Self, Self::Error> {
        let process_guid = ProcessGuid::parse(key.process_guid)?;
        if key.index < 0 {
            return Err(ValidationError::new("index", "must be >= 0"));
        }
        let domain = DomainName::parse(key.domain)?;
        Ok(Self { process_guid, index: key.index, domain })
    }
}

impl From<ActualLrpKey> for pb::ActualLrpKey {
    fn from(key: ActualLrpKey) -> Self {
        Self { process_guid: key.process_guid.into_string(), index: key.index, domain: key.domain.into_string() }
    }
}

/// A required `actual_lrp_key` field of a message, with errors prefixed `actual_lrp_key.`.
pub fn actual_lrp_key_from_pb(key: Option<pb::ActualLrpKey>) -> Result<ActualLrpKey, ValidationError> {
    ActualLrpKey::try_from(required(key, "actual_lrp_key")?).map_err(|e| e.within("actual_lrp_key"))
}

impl TryFrom<pb::ActualLrpInstanceKey> for ActualLrpInstanceKey {
    type Error = ValidationError;

    /// Both the instance guid and the cell id must be set.
    fn try_from(key: pb::ActualLrpInstanceKey) -> Result<Self, Self::Error> {
        Ok(Self { instance_guid: InstanceGuid::parse(key.instance_guid)?, cell_id: CellId::parse(key.cell_id)? })
    }
}

impl From<ActualLrpInstanceKey> for pb::ActualLrpInstanceKey {
    fn from(key: ActualLrpInstanceKey) -> Self {
        Self { instance_guid: key.instance_guid.into_string(), cell_id: key.cell_id.into_string() }
    }
}

/// An optional `actual_lrp_instance_key` field: absent or all-empty (how Go clients send "no
/// instance key") is `None`; a half-filled key is an error prefixed `actual_lrp_instance_key.`.
pub fn instance_key_from_pb(
    key: Option<pb::ActualLrpInstanceKey>,
) -> Result<Option<ActualLrpInstanceKey>, ValidationError> {
    match key {
        None => Ok(None),
        Some(key) if key.instance_guid.is_empty() && key.cell_id.is_empty() => Ok(None),
        Some(key) => ActualLrpInstanceKey::try_from(key).map(Some).map_err(|e| e.within("actual_lrp_instance_key")),
    }
}

impl From<pb::ModificationTag> for ModificationTag {
    fn from(tag: pb::ModificationTag) -> Self {
        Self { epoch: tag.epoch, index: tag.index }
    }
}

impl From<ModificationTag> for pb::ModificationTag {
    fn from(tag: ModificationTag) -> Self {
        Self { epoch: tag.epoch, index: tag.index }
    }
}

/// An optional `modification_tag` field; absent is the default tag.
pub(crate) fn modification_tag_from_pb(tag: Option<pb::ModificationTag>) -> ModificationTag {
    tag.map(ModificationTag::from).unwrap_or_default()
}

impl TryFrom<pb::Domain> for Domain {
    type Error = ValidationError;

    /// Parses the domain name.
    fn try_from(domain: pb::Domain) -> Result<Self, Self::Error> {
        Ok(Self { name: DomainName::parse(domain.domain)?, expire_time: domain.expire_time })
    }
}

impl From<Domain> for pb::Domain {
    fn from(domain: Domain) -> Self {
        Self { domain: domain.name.into_string(), expire_time: domain.expire_time }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ActualLrpKey {
        ActualLrpKey {
            process_guid: ProcessGuid::parse("web-1").unwrap(),
            index: 3,
            domain: DomainName::parse("cf-apps").unwrap(),
        }
    }

    fn instance_key() -> ActualLrpInstanceKey {
        ActualLrpInstanceKey {
            instance_guid: InstanceGuid::parse("5d2c-4a1f").unwrap(),
            cell_id: CellId::parse("cell-z1-0").unwrap(),
        }
    }

    #[test]
    fn actual_lrp_key_round_trips() {
        let wire = pb::ActualLrpKey::from(key());
        assert_eq!(wire.process_guid, "web-1");
        assert_eq!(ActualLrpKey::try_from(wire), Ok(key()));
    }

    #[test]
    fn actual_lrp_key_refuses_a_bad_guid_a_negative_index_and_an_empty_domain() {
        let wire = pb::ActualLrpKey::from(key());
        let bad_guid = pb::ActualLrpKey { process_guid: "web/1".into(), ..wire.clone() };
        assert_eq!(
            actual_lrp_key_from_pb(Some(bad_guid)).unwrap_err().to_string(),
            "actual_lrp_key.process_guid must match [A-Za-z0-9_-]+"
        );
        let negative = pb::ActualLrpKey { index: -1, ..wire.clone() };
        assert_eq!(
            actual_lrp_key_from_pb(Some(negative)).unwrap_err().to_string(),
            "actual_lrp_key.index must be >= 0"
        );
        let no_domain = pb::ActualLrpKey { domain: String::new(), ..wire.clone() };
        assert_eq!(
            actual_lrp_key_from_pb(Some(no_domain)).unwrap_err().to_string(),
            "actual_lrp_key.domain must not be empty"
        );
        assert_eq!(actual_lrp_key_from_pb(Some(wire)), Ok(key()));
    }

    #[test]
    fn a_missing_actual_lrp_key_is_required() {
        assert_eq!(actual_lrp_key_from_pb(None).unwrap_err().to_string(), "actual_lrp_key is required");
    }

    #[test]
    fn instance_key_round_trips() {
        let wire = pb::ActualLrpInstanceKey::from(instance_key());
        assert_eq!(wire.cell_id, "cell-z1-0");
        assert_eq!(ActualLrpInstanceKey::try_from(wire.clone()), Ok(instance_key()));
        assert_eq!(instance_key_from_pb(Some(wire)), Ok(Some(instance_key())));
    }

    #[test]
    fn an_absent_or_all_empty_instance_key_is_none() {
        assert_eq!(instance_key_from_pb(None), Ok(None));
        assert_eq!(instance_key_from_pb(Some(pb::ActualLrpInstanceKey::default())), Ok(None));
    }

    #[test]
    fn a_half_filled_instance_key_is_refused() {
        let no_cell = pb::ActualLrpInstanceKey { instance_guid: "ig".into(), cell_id: String::new() };
        assert_eq!(
            instance_key_from_pb(Some(no_cell)).unwrap_err().to_string(),
            "actual_lrp_instance_key.cell_id must not be empty"
        );
        let no_guid = pb::ActualLrpInstanceKey { instance_guid: String::new(), cell_id: "c".into() };
        assert_eq!(
            instance_key_from_pb(Some(no_guid)).unwrap_err().to_string(),
            "actual_lrp_instance_key.instance_guid must not be empty"
        );
    }

    #[test]
    fn modification_tag_round_trips_and_defaults_when_absent() {
        let tag = ModificationTag { epoch: "e-1".into(), index: 7 };
        let wire = pb::ModificationTag::from(tag.clone());
        assert_eq!(wire.index, 7);
        assert_eq!(ModificationTag::from(wire.clone()), tag);
        assert_eq!(modification_tag_from_pb(Some(wire)), tag);
        assert_eq!(modification_tag_from_pb(None), ModificationTag::default());
    }

    #[test]
    fn domain_round_trips_and_needs_a_name() {
        let domain = Domain { name: DomainName::parse("cf-apps").unwrap(), expire_time: i64::MAX };
        let wire = pb::Domain::from(domain.clone());
        assert_eq!(wire.expire_time, i64::MAX);
        assert_eq!(Domain::try_from(wire), Ok(domain));
        assert_eq!(
            Domain::try_from(pb::Domain { domain: String::new(), expire_time: 1 }).unwrap_err().to_string(),
            "domain must not be empty"
        );
    }
}
