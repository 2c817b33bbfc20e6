//! One entry per RPC of the Bbs, Locket, Rep and Auctioneer services: the server's codec
//! (`proto::codec::decode`, which bounds the request and decodes it with prost), then the
//! conversions its handler applies before it touches any state. Handlers' private helpers
//! (`bbs/src/grpc.rs`: `optional`, `index`, `start_info`, `desired_filter`;
//! `bbs/src/locket.rs`: `required_resource`, `lease_type`; `cell-rep/src/service.rs`: the
//! reservation checks) are mirrored here line for line over the same pub functions.
//!
//! `tests/regressions.rs` checks that this table names every method of the four services in
//! `proto::pb::FILE_DESCRIPTOR_SET`, so a new RPC cannot be forgotten.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use bbs::locket::LocketLimits;
use bbs::paging::{DesiredCursor, PageRequest, TaskCursor};
use db::sql::leases::{Lease, LeaseType};
use db::sql::page::ActualLrpCursor;
use prost::{Message, Name};
use proto::convert::{actual_lrp_key_from_pb, instance_key_from_pb, net_info_from_pb};
use proto::models::validation::{MAX_REASON_CHARS, truncate_reason};
use proto::models::{
    CellId, DesiredLrp, DesiredLrpUpdate, DomainName, ProcessGuid, TaskDefinition, TaskGuid, ValidationError,
};
use proto::pb::auctioneer::v1 as auction;
use proto::pb::bbs::v1 as api;
use proto::pb::locket::v1 as locket;
use proto::pb::models::v1 as pb;
use proto::pb::rep::v1 as rep;

/// One RPC: its gRPC path and what its server does with a request body.
pub struct Rpc {
    /// `/package.Service/Method`.
    pub path: &'static str,
    /// Decodes and converts one request body.
    pub run: fn(&[u8]),
}

/// The server's codec: `Some` when the request is accepted. Error statuses are formatted, as
/// tonic does when it answers.
fn decode<T: Message + Name + Default + PartialEq + std::fmt::Debug>(body: &[u8]) -> Option<T> {
    let mut buf = body;
    match proto::codec::decode::<T>(&mut buf) {
        Ok(Some(message)) => {
            crate::check_reencoded(&message);
            Some(message)
        }
        Ok(None) => None,
        Err(status) => {
            let _ = status.to_string();
            None
        }
    }
}

/// Errors are formatted as the handler's response would be.
fn done<T, E: std::fmt::Display>(result: Result<T, E>) {
    if let Err(e) = result {
        let _ = e.to_string();
    }
}

type BbsResult<T> = Result<T, bbs::Error>;

/// A batch's items, each run through the row of the Bbs method `single` (the batch handlers
/// convert each item as the single call does).
fn each<T: Message>(items: Option<Vec<T>>, single: &str) {
    let path = format!("/diego.bbs.v1.Bbs/{single}");
    let Some(row) = RPCS.iter().find(|rpc| rpc.path == path) else { return };
    items.into_iter().flatten().for_each(|item| (row.run)(&item.encode_to_vec()));
}

fn invalid(field: &str, rule: &str) -> bbs::Error {
    bbs::Error::Invalid(ValidationError::new(field, rule))
}

fn optional<T>(value: String, parse: impl FnOnce(String) -> Result<T, ValidationError>) -> BbsResult<Option<T>> {
    if value.is_empty() { Ok(None) } else { Ok(Some(parse(value)?)) }
}

fn index(value: i32) -> BbsResult<i32> {
    if value < 0 { Err(invalid("index", "must be >= 0")) } else { Ok(value) }
}

fn required_instance_key(key: Option<pb::ActualLrpInstanceKey>) -> BbsResult<proto::models::ActualLrpInstanceKey> {
    instance_key_from_pb(key)?.ok_or_else(|| invalid("actual_lrp_instance_key", "is required"))
}

/// What the store does with a reason before keeping it.
fn reason(text: &str) {
    let kept = truncate_reason(text);
    assert!(kept.chars().count() <= MAX_REASON_CHARS, "truncate_reason kept {} characters", kept.chars().count());
    if text.chars().count() <= MAX_REASON_CHARS {
        assert_eq!(kept, text, "truncate_reason changed a short reason");
    }
}

fn start_info(
    net_info: Option<pb::ActualLrpNetInfo>,
    routes: Vec<pb::ActualLrpInternalRoute>,
    metric_tags: HashMap<String, String>,
    routable: Option<bool>,
) -> BbsResult<()> {
    let net_info = net_info_from_pb(net_info)?.ok_or_else(|| invalid("actual_lrp_net_info", "is required"))?;
    if net_info.address.is_empty() {
        return Err(invalid("actual_lrp_net_info.address", "must not be empty"));
    }
    let _: Vec<String> = routes.into_iter().map(|r| r.hostname).collect();
    let _: std::collections::BTreeMap<String, String> = metric_tags.into_iter().collect();
    let _ = routable.unwrap_or(true);
    Ok(())
}

fn desired_filter(request: api::DesiredLrPsRequest) -> BbsResult<()> {
    PageRequest::<DesiredCursor>::new(request.page_size, &request.page_token)?;
    optional(request.domain, DomainName::parse)?;
    for guid in request.process_guids {
        ProcessGuid::parse(guid)?;
    }
    Ok(())
}

fn task_guid_request(body: &[u8]) {
    if let Some(r) = decode::<api::TaskGuidRequest>(body) {
        done(TaskGuid::parse(r.task_guid));
    }
}

fn by_process_guid(body: &[u8]) {
    if let Some(r) = decode::<api::DesiredLrpByProcessGuidRequest>(body) {
        done(ProcessGuid::parse(r.process_guid));
    }
}

fn actual_lrps(b: &[u8]) {
    let Some(r) = decode::<api::ActualLrPsRequest>(b) else { return };
    done((|| -> BbsResult<()> {
        PageRequest::<ActualLrpCursor>::new(r.page_size, &r.page_token)?;
        optional(r.domain, DomainName::parse)?;
        optional(r.cell_id, CellId::parse)?;
        optional(r.process_guid, ProcessGuid::parse)?;
        r.index.map(index).transpose()?;
        for guid in r.process_guids {
            ProcessGuid::parse(guid)?;
        }
        Ok(())
    })());
}

fn desired_lrps(body: &[u8]) {
    if let Some(r) = decode::<api::DesiredLrPsRequest>(body) {
        done(desired_filter(r));
    }
}

fn locket_limits() -> &'static LocketLimits {
    static LIMITS: OnceLock<LocketLimits> = OnceLock::new();
    LIMITS.get_or_init(LocketLimits::default)
}

fn lease_type(code: i32) -> Result<LeaseType, ValidationError> {
    match locket::TypeCode::try_from(code) {
        Ok(locket::TypeCode::Lock) => Ok(LeaseType::Lock),
        Ok(locket::TypeCode::Presence) => Ok(LeaseType::Presence),
        _ => Err(ValidationError::new("resource.type_code", "must be LOCK or PRESENCE")),
    }
}

/// `bbs/src/locket.rs`'s `required_resource` (sizes and NULs are the bounds' job).
fn required_resource(resource: Option<locket::Resource>) -> Result<locket::Resource, ValidationError> {
    let resource = resource.ok_or_else(|| ValidationError::new("resource", "is required"))?;
    for (field, value) in [("resource.key", &resource.key), ("resource.owner", &resource.owner)] {
        if value.is_empty() {
            return Err(ValidationError::new(field, "must not be empty"));
        }
    }
    if resource.key == bbs::leader::BBS_LOCK_KEY {
        return Err(ValidationError::new("resource.key", "must not be bbs"));
    }
    Ok(resource)
}

/// `Lock`: the resource and ttl checks, and, for a presence, what every BBS later does with
/// the value (`bbs::cells::parse_presence`, JSON into a `CellPresence`).
fn lock(body: &[u8]) {
    let Some(r) = decode::<locket::LockRequest>(body) else { return };
    let checked = required_resource(r.resource).and_then(|resource| {
        let lease_type = lease_type(resource.type_code)?;
        let ttl = locket_limits().check(&resource.key, lease_type, r.ttl_in_seconds)?;
        Ok((resource, lease_type, ttl))
    });
    let Ok((resource, lease_type, ttl)) = checked else { return };
    if lease_type == LeaseType::Presence {
        let lease = Lease {
            key: resource.key,
            owner: resource.owner,
            value: resource.value,
            lease_type,
            term: 1,
            ttl_ms: i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX),
            expires_at_ms: 0,
        };
        if let Some(presence) = bbs::cells::parse_presence(&lease) {
            let _ = pb::CellPresence::from(presence);
        }
    }
}

/// `cell-rep/src/service.rs`'s `reserve_lrp` up to the executor.
fn reserve_lrp(lrp: &rep::Lrp) -> Result<(), String> {
    let key = lrp.actual_lrp_key.as_ref().ok_or("actual_lrp_key is required")?;
    ProcessGuid::parse(key.process_guid.as_str()).map_err(|e| e.to_string())?;
    DomainName::parse(key.domain.as_str()).map_err(|e| e.to_string())?;
    if key.index < 0 {
        return Err("index must not be negative".into());
    }
    let constraint = lrp.placement_constraint.clone().unwrap_or_default();
    let _ = serde_json::to_string(&constraint.placement_tags);
    Ok(())
}

/// `cell-rep/src/service.rs`'s `reserve_task` up to the executor.
fn reserve_task(task: &rep::Task) -> Result<(), String> {
    TaskGuid::parse(task.task_guid.as_str()).map_err(|e| e.to_string())?;
    DomainName::parse(task.domain.as_str()).map_err(|e| e.to_string())?;
    Ok(())
}

fn perform(body: &[u8]) {
    let Some(mut work) = decode::<rep::Work>(body) else { return };
    work.lrps.sort_by_key(|lrp| std::cmp::Reverse(lrp.resource.as_ref().map_or(0, |r| r.memory_mb)));
    for lrp in &work.lrps {
        done(reserve_lrp(lrp));
    }
    for task in &work.tasks {
        done(reserve_task(task));
    }
}

/// Every RPC of the four services, in proto order.
pub static RPCS: &[Rpc] = &[
    // diego.bbs.v1.Bbs
    Rpc { path: "/diego.bbs.v1.Bbs/Ping", run: |b| _ = decode::<api::PingRequest>(b) },
    Rpc { path: "/diego.bbs.v1.Bbs/Domains", run: |b| _ = decode::<api::DomainsRequest>(b) },
    Rpc {
        path: "/diego.bbs.v1.Bbs/UpsertDomain",
        run: |b| {
            if let Some(r) = decode::<api::UpsertDomainRequest>(b) {
                done(DomainName::parse(r.domain));
                let _ = Duration::from_secs(u64::from(r.ttl));
            }
        },
    },
    Rpc { path: "/diego.bbs.v1.Bbs/Cells", run: |b| _ = decode::<api::CellsRequest>(b) },
    Rpc { path: "/diego.bbs.v1.Bbs/ActualLRPs", run: actual_lrps },
    Rpc { path: "/diego.bbs.v1.Bbs/StreamActualLRPs", run: actual_lrps },
    Rpc {
        path: "/diego.bbs.v1.Bbs/ClaimActualLRP",
        run: |b| {
            let Some(r) = decode::<api::ClaimActualLrpRequest>(b) else { return };
            done((|| -> BbsResult<()> {
                ProcessGuid::parse(r.process_guid)?;
                required_instance_key(r.actual_lrp_instance_key)?;
                index(r.index)?;
                Ok(())
            })());
        },
    },
    Rpc {
        path: "/diego.bbs.v1.Bbs/StartActualLRP",
        run: |b| {
            let Some(r) = decode::<api::StartActualLrpRequest>(b) else { return };
            done((|| -> BbsResult<()> {
                actual_lrp_key_from_pb(r.actual_lrp_key)?;
                required_instance_key(r.actual_lrp_instance_key)?;
                start_info(r.actual_lrp_net_info, r.actual_lrp_internal_routes, r.metric_tags, r.routable)
            })());
        },
    },
    // A batch: each start as StartActualLRP's handler converts it.
    Rpc {
        path: "/diego.bbs.v1.Bbs/StartActualLRPs",
        run: |b| each(decode::<api::StartActualLrPsRequest>(b).map(|r| r.starts), "StartActualLRP"),
    },
    Rpc {
        path: "/diego.bbs.v1.Bbs/CrashActualLRP",
        run: |b| {
            let Some(r) = decode::<api::CrashActualLrpRequest>(b) else { return };
            done((|| -> BbsResult<()> {
                actual_lrp_key_from_pb(r.actual_lrp_key)?;
                required_instance_key(r.actual_lrp_instance_key)?;
                reason(&r.error_message);
                Ok(())
            })());
        },
    },
    Rpc {
        path: "/diego.bbs.v1.Bbs/FailActualLRP",
        run: |b| {
            let Some(r) = decode::<api::FailActualLrpRequest>(b) else { return };
            done(actual_lrp_key_from_pb(r.actual_lrp_key).map(|_| reason(&r.error_message)));
        },
    },
    Rpc {
        path: "/diego.bbs.v1.Bbs/RemoveActualLRP",
        run: |b| {
            let Some(r) = decode::<api::RemoveActualLrpRequest>(b) else { return };
            done((|| -> BbsResult<()> {
                ProcessGuid::parse(r.process_guid)?;
                instance_key_from_pb(r.actual_lrp_instance_key)?;
                index(r.index)?;
                Ok(())
            })());
        },
    },
    Rpc {
        path: "/diego.bbs.v1.Bbs/RetireActualLRP",
        run: |b| {
            if let Some(r) = decode::<api::RetireActualLrpRequest>(b) {
                done(actual_lrp_key_from_pb(r.actual_lrp_key));
            }
        },
    },
    Rpc {
        path: "/diego.bbs.v1.Bbs/EvacuateClaimedActualLRP",
        run: |b| {
            let Some(r) = decode::<api::EvacuateClaimedActualLrpRequest>(b) else { return };
            done((|| -> BbsResult<()> {
                actual_lrp_key_from_pb(r.actual_lrp_key)?;
                required_instance_key(r.actual_lrp_instance_key)?;
                Ok(())
            })());
        },
    },
    Rpc {
        path: "/diego.bbs.v1.Bbs/EvacuateRunningActualLRP",
        run: |b| {
            let Some(r) = decode::<api::EvacuateRunningActualLrpRequest>(b) else { return };
            done((|| -> BbsResult<()> {
                actual_lrp_key_from_pb(r.actual_lrp_key)?;
                required_instance_key(r.actual_lrp_instance_key)?;
                start_info(r.actual_lrp_net_info, r.actual_lrp_internal_routes, r.metric_tags, r.routable)
            })());
        },
    },
    Rpc {
        path: "/diego.bbs.v1.Bbs/EvacuateStoppedActualLRP",
        run: |b| {
            let Some(r) = decode::<api::EvacuateStoppedActualLrpRequest>(b) else { return };
            done((|| -> BbsResult<()> {
                actual_lrp_key_from_pb(r.actual_lrp_key)?;
                required_instance_key(r.actual_lrp_instance_key)?;
                Ok(())
            })());
        },
    },
    Rpc {
        path: "/diego.bbs.v1.Bbs/EvacuateCrashedActualLRP",
        run: |b| {
            let Some(r) = decode::<api::EvacuateCrashedActualLrpRequest>(b) else { return };
            done((|| -> BbsResult<()> {
                actual_lrp_key_from_pb(r.actual_lrp_key)?;
                required_instance_key(r.actual_lrp_instance_key)?;
                reason(&r.error_message);
                Ok(())
            })());
        },
    },
    Rpc {
        path: "/diego.bbs.v1.Bbs/RemoveEvacuatingActualLRP",
        run: |b| {
            let Some(r) = decode::<api::RemoveEvacuatingActualLrpRequest>(b) else { return };
            done((|| -> BbsResult<()> {
                actual_lrp_key_from_pb(r.actual_lrp_key)?;
                required_instance_key(r.actual_lrp_instance_key)?;
                Ok(())
            })());
        },
    },
    Rpc { path: "/diego.bbs.v1.Bbs/DesiredLRPs", run: desired_lrps },
    Rpc { path: "/diego.bbs.v1.Bbs/DesiredLRPByProcessGuid", run: by_process_guid },
    Rpc { path: "/diego.bbs.v1.Bbs/DesiredLRPSchedulingInfos", run: desired_lrps },
    Rpc { path: "/diego.bbs.v1.Bbs/StreamDesiredLRPSchedulingInfos", run: desired_lrps },
    Rpc { path: "/diego.bbs.v1.Bbs/DesiredLRPSchedulingInfoByProcessGuid", run: by_process_guid },
    Rpc { path: "/diego.bbs.v1.Bbs/DesiredLRPRoutingInfos", run: desired_lrps },
    Rpc {
        path: "/diego.bbs.v1.Bbs/DesireLRP",
        run: |b| {
            let Some(r) = decode::<api::DesireLrpRequest>(b) else { return };
            let Some(lrp) = r.desired_lrp else { return };
            match DesiredLrp::try_from(lrp) {
                Ok(lrp) => crate::check_desired_lrp(&lrp),
                Err(e) => drop(e.within("desired_lrp").to_string()),
            }
        },
    },
    // A batch: each desired LRP as DesireLRP's handler converts it.
    Rpc {
        path: "/diego.bbs.v1.Bbs/DesireLRPs",
        run: |b| {
            let lrps = decode::<api::DesireLrPsRequest>(b).map(|r| r.desired_lrps);
            each(
                lrps.map(|l| l.into_iter().map(|d| api::DesireLrpRequest { desired_lrp: Some(d) }).collect()),
                "DesireLRP",
            )
        },
    },
    Rpc {
        path: "/diego.bbs.v1.Bbs/UpdateDesiredLRP",
        run: |b| {
            let Some(r) = decode::<api::UpdateDesiredLrpRequest>(b) else { return };
            done((|| -> BbsResult<()> {
                ProcessGuid::parse(r.process_guid)?;
                let update = r.update.ok_or_else(|| invalid("update", "is required"))?;
                let update = DesiredLrpUpdate::try_from(update).map_err(|e| e.within("update"))?;
                let _ = pb::DesiredLrpUpdate::from(update);
                Ok(())
            })());
        },
    },
    Rpc {
        path: "/diego.bbs.v1.Bbs/RemoveDesiredLRP",
        run: |b| {
            if let Some(r) = decode::<api::RemoveDesiredLrpRequest>(b) {
                done(ProcessGuid::parse(r.process_guid));
            }
        },
    },
    Rpc {
        path: "/diego.bbs.v1.Bbs/Tasks",
        run: |b| {
            let Some(r) = decode::<api::TasksRequest>(b) else { return };
            done((|| -> BbsResult<()> {
                PageRequest::<TaskCursor>::new(r.page_size, &r.page_token)?;
                optional(r.domain, DomainName::parse)?;
                optional(r.cell_id, CellId::parse)?;
                Ok(())
            })());
        },
    },
    Rpc {
        path: "/diego.bbs.v1.Bbs/TaskByGuid",
        run: |b| {
            if let Some(r) = decode::<api::TaskByGuidRequest>(b) {
                done(TaskGuid::parse(r.task_guid));
            }
        },
    },
    Rpc {
        path: "/diego.bbs.v1.Bbs/DesireTask",
        run: |b| {
            let Some(r) = decode::<api::DesireTaskRequest>(b) else { return };
            done((|| -> BbsResult<()> {
                TaskGuid::parse(r.task_guid)?;
                DomainName::parse(r.domain)?;
                let definition = r.task_definition.ok_or_else(|| invalid("task_definition", "is required"))?;
                let definition = TaskDefinition::try_from(definition).map_err(|e| e.within("task_definition"))?;
                crate::check_task_definition(&definition);
                Ok(())
            })());
        },
    },
    Rpc {
        path: "/diego.bbs.v1.Bbs/StartTask",
        run: |b| {
            let Some(r) = decode::<api::StartTaskRequest>(b) else { return };
            done(TaskGuid::parse(r.task_guid).and_then(|_| CellId::parse(r.cell_id)));
        },
    },
    Rpc { path: "/diego.bbs.v1.Bbs/CancelTask", run: task_guid_request },
    Rpc {
        path: "/diego.bbs.v1.Bbs/RejectTask",
        run: |b| {
            let Some(r) = decode::<api::RejectTaskRequest>(b) else { return };
            done(TaskGuid::parse(r.task_guid).map(|_| reason(&r.rejection_reason)));
        },
    },
    Rpc {
        path: "/diego.bbs.v1.Bbs/CompleteTask",
        run: |b| {
            let Some(r) = decode::<api::CompleteTaskRequest>(b) else { return };
            done((|| -> BbsResult<()> {
                TaskGuid::parse(r.task_guid)?;
                CellId::parse(r.cell_id)?;
                reason(&r.failure_reason);
                Ok(())
            })());
        },
    },
    Rpc { path: "/diego.bbs.v1.Bbs/ResolvingTask", run: task_guid_request },
    Rpc { path: "/diego.bbs.v1.Bbs/DeleteTask", run: task_guid_request },
    // The cell id only filters the stream (compared as a string).
    Rpc {
        path: "/diego.bbs.v1.Bbs/SubscribeToInstanceEvents",
        run: |b| {
            decode::<api::SubscribeToInstanceEventsRequest>(b);
        },
    },
    Rpc {
        path: "/diego.bbs.v1.Bbs/SubscribeToTaskEvents",
        run: |b| {
            decode::<api::SubscribeToTaskEventsRequest>(b);
        },
    },
    // diego.locket.v1.Locket
    Rpc { path: "/diego.locket.v1.Locket/Lock", run: lock },
    Rpc {
        path: "/diego.locket.v1.Locket/Release",
        run: |b| {
            if let Some(r) = decode::<locket::ReleaseRequest>(b) {
                done(required_resource(r.resource));
            }
        },
    },
    Rpc {
        path: "/diego.locket.v1.Locket/Fetch",
        run: |b| {
            if let Some(r) = decode::<locket::FetchRequest>(b) {
                let _ = r.key.is_empty();
            }
        },
    },
    Rpc {
        path: "/diego.locket.v1.Locket/FetchAll",
        run: |b| {
            if let Some(r) = decode::<locket::FetchAllRequest>(b) {
                done(lease_type(r.type_code));
            }
        },
    },
    // diego.rep.v1.Rep
    Rpc { path: "/diego.rep.v1.Rep/State", run: |b| _ = decode::<rep::StateRequest>(b) },
    Rpc { path: "/diego.rep.v1.Rep/Perform", run: perform },
    Rpc {
        path: "/diego.rep.v1.Rep/StopLRPInstance",
        run: |b| {
            if let Some(r) = decode::<rep::StopLrpInstanceRequest>(b) {
                // The executor looks the instance guid up as given.
                let _ = r.instance_guid.trim().is_empty() || r.process_guid.trim().is_empty();
            }
        },
    },
    Rpc {
        path: "/diego.rep.v1.Rep/CancelTask",
        run: |b| {
            if let Some(r) = decode::<rep::CancelTaskRequest>(b) {
                let _ = r.task_guid.trim().is_empty();
            }
        },
    },
    Rpc {
        path: "/diego.rep.v1.Rep/UpdateLRPInstance",
        run: |b| {
            if let Some(r) = decode::<rep::UpdateLrpInstanceRequest>(b) {
                let _: Vec<String> =
                    r.internal_routes.into_iter().map(|r| r.hostname).filter(|h| !h.is_empty()).collect();
                let _: std::collections::BTreeMap<String, String> = r.metric_tags.into_iter().collect();
            }
        },
    },
    Rpc { path: "/diego.rep.v1.Rep/Evacuate", run: |b| _ = decode::<rep::EvacuateRequest>(b) },
    Rpc { path: "/diego.rep.v1.Rep/Ping", run: |b| _ = decode::<rep::PingRequest>(b) },
    // diego.rep.v1.Recovery, Logs and Exec (the rep's other services): decoded as their services do
    Rpc { path: "/diego.rep.v1.Recovery/Report", run: |b| _ = decode::<rep::ReportRequest>(b) },
    Rpc { path: "/diego.rep.v1.Logs/Stream", run: |b| _ = decode::<rep::LogsRequest>(b) },
    Rpc { path: "/diego.rep.v1.Exec/Run", run: |b| _ = decode::<rep::ExecInput>(b) },
    // diego.auctioneer.v1.Auctioneer
    Rpc {
        path: "/diego.auctioneer.v1.Auctioneer/RequestLRPAuctions",
        run: |b| {
            // As the service: room in a default batch first, then the expansion.
            if let Some(r) = decode::<auction::RequestLrpAuctionsRequest>(b) {
                let (items, bytes) = auctioneer::service::lrp_expansion(&r.lrp_start_requests);
                if auctioneer::AuctionBatch::new().check_room(items, bytes).is_ok() {
                    done(auctioneer::service::lrp_work(r.lrp_start_requests));
                }
            }
        },
    },
    Rpc {
        path: "/diego.auctioneer.v1.Auctioneer/RequestTaskAuctions",
        run: |b| {
            if let Some(r) = decode::<auction::RequestTaskAuctionsRequest>(b) {
                let (items, bytes) = auctioneer::service::task_expansion(&r.task_start_requests);
                if auctioneer::AuctionBatch::new().check_room(items, bytes).is_ok() {
                    done(auctioneer::service::task_work(r.task_start_requests));
                }
            }
        },
    },
];
