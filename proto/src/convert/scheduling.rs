//! Scheduling info, metric tags, the update strategy and desired LRP updates.

use std::collections::{BTreeMap, HashMap};

use super::ids::modification_tag_from_pb;
use super::required;
use crate::models::validation::{validate_scheduling_info, validate_update};
use crate::models::{
    DesiredLrpUpdate, DomainName, MetricTagValue, ProcessGuid, SchedulingInfo, UpdateStrategy, ValidationError,
};
use crate::pb::models::v1 as pb;

impl TryFrom<pb::MetricTagValue> for MetricTagValue {
    type Error = ValidationError;

    /// Exactly one of a non-empty `static` and a known `dynamic` must be set.
    fn try_from(value: pb::MetricTagValue) -> Result<Self, Self::Error> {
        use pb::metric_tag_value::DynamicValue;
        crate::models::validation::check_pb_metric_tag(&value)?;
        Ok(match DynamicValue::try_from(value.dynamic) {
            Ok(DynamicValue::Index) => Self::Index,
            Ok(DynamicValue::InstanceGuid) => Self::InstanceGuid,
            Ok(DynamicValue::Invalid) | Err(_) => Self::Static(value.r#static),
        })
    }
}

impl From<MetricTagValue> for pb::MetricTagValue {
    fn from(value: MetricTagValue) -> Self {
        use pb::metric_tag_value::DynamicValue;
        match value {
            MetricTagValue::Static(s) => Self { r#static: s, dynamic: DynamicValue::Invalid as i32 },
            MetricTagValue::Index => Self { r#static: String::new(), dynamic: DynamicValue::Index as i32 },
            MetricTagValue::InstanceGuid => {
                Self { r#static: String::new(), dynamic: DynamicValue::InstanceGuid as i32 }
            }
        }
    }
}

/// A wire `metric_tags` map; errors name the tag (`metric_tags.index.dynamic`). Tags are
/// checked in name order so the error reported does not depend on hash order.
pub fn metric_tags_from_pb(
    tags: HashMap<String, pb::MetricTagValue>,
) -> Result<BTreeMap<String, MetricTagValue>, ValidationError> {
    let sorted: BTreeMap<String, pb::MetricTagValue> = tags.into_iter().collect();
    sorted
        .into_iter()
        .map(|(name, value)| match MetricTagValue::try_from(value) {
            Ok(value) => Ok((name, value)),
            Err(e) => Err(e.within(&format!("metric_tags.{name}"))),
        })
        .collect()
}

/// Domain metric tags as a wire map.
pub fn metric_tags_to_pb(tags: &BTreeMap<String, MetricTagValue>) -> HashMap<String, pb::MetricTagValue> {
    tags.iter().map(|(name, value)| (name.clone(), value.clone().into())).collect()
}

/// The `update_strategy` integer; unknown values are errors.
pub fn update_strategy_from_i32(value: i32) -> Result<UpdateStrategy, ValidationError> {
    UpdateStrategy::from_i32(value)
        .ok_or_else(|| ValidationError::new("update_strategy", "must be ROLLING or RECREATE"))
}

impl TryFrom<pb::DesiredLrpSchedulingInfo> for SchedulingInfo {
    type Error = ValidationError;

    /// Needs `desired_lrp_key` and `desired_lrp_resource`; checks
    /// [`validate_scheduling_info`].
    fn try_from(info: pb::DesiredLrpSchedulingInfo) -> Result<Self, Self::Error> {
        let key = required(info.desired_lrp_key, "desired_lrp_key")?;
        let resource = required(info.desired_lrp_resource, "desired_lrp_resource")?;
        let converted = Self {
            process_guid: ProcessGuid::parse(key.process_guid).map_err(|e| e.within("desired_lrp_key"))?,
            domain: DomainName::parse(key.domain).map_err(|e| e.within("desired_lrp_key"))?,
            log_guid: key.log_guid,
            annotation: info.annotation,
            instances: info.instances,
            memory_mb: resource.memory_mb,
            disk_mb: resource.disk_mb,
            max_pids: resource.max_pids,
            rootfs: resource.rootfs,
            routes: info.routes.into_iter().collect(),
            modification_tag: modification_tag_from_pb(info.modification_tag),
            volume_placement: info.volume_placement.map(|v| v.driver_names).unwrap_or_default(),
            placement_tags: info.placement_tags,
            update_strategy: update_strategy_from_i32(info.update_strategy)?,
        };
        validate_scheduling_info(&converted)?;
        Ok(converted)
    }
}

impl From<SchedulingInfo> for pb::DesiredLrpSchedulingInfo {
    fn from(info: SchedulingInfo) -> Self {
        Self {
            desired_lrp_key: Some(pb::DesiredLrpKey {
                process_guid: info.process_guid.into_string(),
                domain: info.domain.into_string(),
                log_guid: info.log_guid,
            }),
            annotation: info.annotation,
            instances: info.instances,
            desired_lrp_resource: Some(pb::DesiredLrpResource {
                memory_mb: info.memory_mb,
                disk_mb: info.disk_mb,
                rootfs: info.rootfs,
                max_pids: info.max_pids,
            }),
            routes: info.routes.into_iter().collect(),
            modification_tag: Some(info.modification_tag.into()),
            volume_placement: Some(pb::VolumePlacement { driver_names: info.volume_placement }),
            placement_tags: info.placement_tags,
            update_strategy: info.update_strategy.as_i32(),
        }
    }
}

impl TryFrom<pb::DesiredLrpUpdate> for DesiredLrpUpdate {
    type Error = ValidationError;

    /// `has_routes` / `has_metric_tags` select whether the maps replace the current ones; checks
    /// [`validate_update`].
    fn try_from(update: pb::DesiredLrpUpdate) -> Result<Self, Self::Error> {
        let metric_tags = if update.has_metric_tags { Some(metric_tags_from_pb(update.metric_tags)?) } else { None };
        let converted = Self {
            instances: update.instances,
            routes: update.has_routes.then(|| update.routes.into_iter().collect()),
            annotation: update.annotation,
            metric_tags,
            image_username: update.image_username,
            image_password: update.image_password,
        };
        validate_update(&converted)?;
        Ok(converted)
    }
}

impl From<DesiredLrpUpdate> for pb::DesiredLrpUpdate {
    fn from(update: DesiredLrpUpdate) -> Self {
        Self {
            instances: update.instances,
            has_routes: update.routes.is_some(),
            routes: update.routes.unwrap_or_default().into_iter().collect(),
            annotation: update.annotation,
            has_metric_tags: update.metric_tags.is_some(),
            metric_tags: update.metric_tags.as_ref().map(metric_tags_to_pb).unwrap_or_default(),
            image_username: update.image_username,
            image_password: update.image_password,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::ModificationTag;

    fn scheduling() -> SchedulingInfo {
        SchedulingInfo {
            process_guid: ProcessGuid::parse("web-1").unwrap(),
            domain: DomainName::parse("cf-apps").unwrap(),
            log_guid: "log-1".into(),
            annotation: "{\"app\":\"dora\"}".into(),
            instances: 4,
            memory_mb: 512,
            disk_mb: 1024,
            max_pids: 1024,
            rootfs: "preloaded:cflinuxfs4".into(),
            routes: [
                ("cf-router".to_owned(), br#"[{"hostnames":["dora.example"],"port":8080}]"#.to_vec()),
                ("internal-router".to_owned(), br#"[{"hostname":"dora.apps.internal"}]"#.to_vec()),
            ]
            .into(),
            modification_tag: ModificationTag { epoch: "epoch-1".into(), index: 3 },
            volume_placement: vec!["nfsv3driver".into()],
            placement_tags: vec!["isolation-1".into()],
            update_strategy: UpdateStrategy::Recreate,
        }
    }

    fn tags() -> BTreeMap<String, MetricTagValue> {
        [
            ("source_id".to_owned(), MetricTagValue::Static("guid-1".into())),
            ("index".to_owned(), MetricTagValue::Index),
            ("instance_id".to_owned(), MetricTagValue::InstanceGuid),
        ]
        .into()
    }

    #[test]
    fn scheduling_info_round_trips() {
        let wire = pb::DesiredLrpSchedulingInfo::from(scheduling());
        assert_eq!(wire.update_strategy, 1);
        assert_eq!(wire.desired_lrp_resource.as_ref().map(|r| r.memory_mb), Some(512));
        assert_eq!(SchedulingInfo::try_from(wire), Ok(scheduling()));
    }

    #[test]
    fn scheduling_info_needs_its_key_and_resource() {
        let wire = pb::DesiredLrpSchedulingInfo { desired_lrp_key: None, ..scheduling().into() };
        assert_eq!(SchedulingInfo::try_from(wire).unwrap_err().to_string(), "desired_lrp_key is required");
        let wire = pb::DesiredLrpSchedulingInfo { desired_lrp_resource: None, ..scheduling().into() };
        assert_eq!(SchedulingInfo::try_from(wire).unwrap_err().to_string(), "desired_lrp_resource is required");
    }

    #[test]
    fn scheduling_info_conversion_validates() {
        let wire = pb::DesiredLrpSchedulingInfo { instances: -1, ..scheduling().into() };
        assert_eq!(SchedulingInfo::try_from(wire).unwrap_err().to_string(), "instances must be >= 0");
        let wire = pb::DesiredLrpSchedulingInfo { update_strategy: 2, ..scheduling().into() };
        assert_eq!(
            SchedulingInfo::try_from(wire).unwrap_err().to_string(),
            "update_strategy must be ROLLING or RECREATE"
        );
        let mut wire = pb::DesiredLrpSchedulingInfo::from(scheduling());
        if let Some(key) = wire.desired_lrp_key.as_mut() {
            key.process_guid = "web 1".into();
        }
        assert_eq!(
            SchedulingInfo::try_from(wire).unwrap_err().to_string(),
            "desired_lrp_key.process_guid must match [A-Za-z0-9_-]+"
        );
    }

    #[test]
    fn metric_tags_round_trip() {
        let wire = metric_tags_to_pb(&tags());
        assert_eq!(wire.get("index").map(|v| v.dynamic), Some(1));
        assert_eq!(wire.get("source_id").map(|v| v.r#static.as_str()), Some("guid-1"));
        assert_eq!(metric_tags_from_pb(wire), Ok(tags()));
    }

    #[test]
    fn a_bad_wire_tag_is_named_in_the_error() {
        let mut wire = metric_tags_to_pb(&tags());
        wire.insert("zone".into(), pb::MetricTagValue { r#static: "z1".into(), dynamic: 2 });
        wire.insert("app".into(), pb::MetricTagValue::default());
        // Name order: "app" is reported before "zone".
        assert_eq!(
            metric_tags_from_pb(wire).unwrap_err().to_string(),
            "metric_tags.app.static must be set when dynamic is unset"
        );
    }

    #[test]
    fn update_round_trips_with_and_without_maps() {
        let full = DesiredLrpUpdate {
            instances: Some(2),
            routes: Some([("cf-router".to_owned(), b"[]".to_vec())].into()),
            annotation: Some("v2".into()),
            metric_tags: Some(tags()),
            image_username: Some("user".into()),
            image_password: Some("secret".into()),
        };
        let wire = pb::DesiredLrpUpdate::from(full.clone());
        assert!(wire.has_routes && wire.has_metric_tags);
        assert_eq!(DesiredLrpUpdate::try_from(wire), Ok(full));

        let sparse = DesiredLrpUpdate { instances: Some(0), ..Default::default() };
        let wire = pb::DesiredLrpUpdate::from(sparse.clone());
        assert!(!wire.has_routes && !wire.has_metric_tags);
        assert_eq!(DesiredLrpUpdate::try_from(wire), Ok(sparse));
    }

    #[test]
    fn empty_maps_with_their_flag_clear_routes_and_tags() {
        let wire = pb::DesiredLrpUpdate { has_routes: true, has_metric_tags: true, ..Default::default() };
        let update = DesiredLrpUpdate::try_from(wire).unwrap();
        assert_eq!(update.routes, Some(BTreeMap::new()));
        assert_eq!(update.metric_tags, Some(BTreeMap::new()));
    }

    #[test]
    fn update_conversion_validates() {
        let wire = pb::DesiredLrpUpdate { instances: Some(-3), ..Default::default() };
        assert_eq!(DesiredLrpUpdate::try_from(wire).unwrap_err().to_string(), "instances must be >= 0");
        let wire = pb::DesiredLrpUpdate {
            has_metric_tags: true,
            metric_tags: [("x".to_owned(), pb::MetricTagValue { r#static: String::new(), dynamic: 4 })].into(),
            ..Default::default()
        };
        assert_eq!(
            DesiredLrpUpdate::try_from(wire).unwrap_err().to_string(),
            "metric_tags.x.dynamic must be unset, INDEX or INSTANCE_GUID"
        );
    }
}
