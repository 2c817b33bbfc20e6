//! Decoding requests into domain types: a field that fails its rule becomes an
//! [`Error::Invalid`] naming the field (INVALID_ARGUMENT on the wire), before anything is read
//! or written.

use db::sql::actual_lrps::StartInfo;
use db::sql::desired_lrps::DesiredLrpFilter;
use proto::convert::{instance_key_from_pb, net_info_from_pb};
use proto::models::{ActualLrpInstanceKey, ActualLrpKey, CellId, DomainName, ProcessGuid, TaskGuid, ValidationError};
use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;

use crate::{Error, Result};

pub(super) fn invalid(field: &str, rule: &str) -> Error {
    Error::Invalid(ValidationError::new(field, rule))
}

pub(super) fn process_guid(value: String) -> Result<ProcessGuid> {
    Ok(ProcessGuid::parse(value)?)
}

pub(super) fn task_guid(value: String) -> Result<TaskGuid> {
    Ok(TaskGuid::parse(value)?)
}

pub(super) fn cell_id(value: String) -> Result<CellId> {
    Ok(CellId::parse(value)?)
}

pub(super) fn optional<T>(
    value: String,
    parse: impl FnOnce(String) -> std::result::Result<T, ValidationError>,
) -> Result<Option<T>> {
    if value.is_empty() { Ok(None) } else { Ok(Some(parse(value)?)) }
}

pub(super) fn required_instance_key(key: Option<pb::ActualLrpInstanceKey>) -> Result<ActualLrpInstanceKey> {
    instance_key_from_pb(key)?.ok_or_else(|| invalid("actual_lrp_instance_key", "is required"))
}

pub(super) fn index(value: i32) -> Result<i32> {
    if value < 0 { Err(invalid("index", "must be >= 0")) } else { Ok(value) }
}

pub(super) fn desired_filter(request: api::DesiredLrPsRequest) -> Result<DesiredLrpFilter> {
    Ok(DesiredLrpFilter {
        domain: optional(request.domain, DomainName::parse)?,
        process_guids: request.process_guids.into_iter().map(process_guid).collect::<Result<_>>()?,
        app_guids: request.app_guids,
    })
}

/// A StartActualLRP's key, instance key and what it starts with: one home for the single call
/// and each item of StartActualLRPs.
pub(super) fn start_request(
    request: api::StartActualLrpRequest,
) -> Result<(ActualLrpKey, ActualLrpInstanceKey, StartInfo)> {
    let key = proto::convert::actual_lrp_key_from_pb(request.actual_lrp_key)?;
    let instance_key = required_instance_key(request.actual_lrp_instance_key)?;
    let start = start_info(
        request.actual_lrp_net_info,
        request.actual_lrp_internal_routes,
        request.metric_tags,
        request.routable,
        request.availability_zone,
    )?;
    Ok((key, instance_key, start))
}

pub(super) fn start_info(
    net_info: Option<pb::ActualLrpNetInfo>,
    routes: Vec<pb::ActualLrpInternalRoute>,
    metric_tags: std::collections::HashMap<String, String>,
    routable: Option<bool>,
    availability_zone: String,
) -> Result<StartInfo> {
    let net_info = net_info_from_pb(net_info)?.ok_or_else(|| invalid("actual_lrp_net_info", "is required"))?;
    if net_info.address.is_empty() {
        return Err(invalid("actual_lrp_net_info.address", "must not be empty"));
    }
    Ok(StartInfo {
        net_info,
        internal_routes: routes.into_iter().map(|r| r.hostname).collect(),
        metric_tags: metric_tags.into_iter().collect(),
        // An unset routable means true (Diego's StartActualLRP).
        routable: routable.unwrap_or(true),
        availability_zone,
    })
}
