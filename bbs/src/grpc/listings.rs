//! The list RPCs of `Bbs`, one page each ([`crate::paging`]): each decodes its filter and page,
//! reads the store's keyset-paged listing (served by standbys too) and encodes the items until
//! the page is full. The streamed variants ([`stream_actual_lrps`],
//! [`stream_scheduling_infos`]) decode the same requests the same way and send the whole
//! listing ([`crate::paging::stream`]). Actual LRPs and scheduling infos, paged or streamed,
//! read the store's wire-form pages: rows become messages with no domain value in between (the
//! rep's per-cell fetch and the route emitters' lookups are of these).

use db::sql::actual_lrps::ActualLrpFilter;
use db::sql::page::{ActualLrpCursor, Page};
use db::sql::tasks::TaskFilter;
use proto::convert::routing_info_to_pb;
use proto::models::{CellId, CellPresence, DesiredLrp, DomainName, MetricTagValue, ProcessGuid, SchedulingInfo, Task};
use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;

use super::decode::{desired_filter, index, optional, process_guid};
use crate::Result;
use crate::controllers::Context;
use crate::paging::{CellCursor, DesiredCursor, PageRequest, StreamPage, TaskCursor, collect, stream};

/// The messages of a streamed listing.
pub(super) type Pages<P> = std::pin::Pin<Box<dyn futures::Stream<Item = Result<StreamPage<P>>> + Send>>;

/// One row of the routing view: the scheduling half and the metric tags.
type RoutingRow = (SchedulingInfo, std::collections::BTreeMap<String, MetricTagValue>);

/// The filter of an ActualLRPs request.
fn actual_filter(request: api::ActualLrPsRequest) -> Result<ActualLrpFilter> {
    Ok(ActualLrpFilter {
        domain: optional(request.domain, DomainName::parse)?,
        cell_id: optional(request.cell_id, CellId::parse)?,
        process_guid: optional(request.process_guid, ProcessGuid::parse)?,
        index: request.index.map(index).transpose()?,
        process_guids: request.process_guids.into_iter().map(process_guid).collect::<Result<_>>()?,
    })
}

/// The cursor after a wire actual LRP.
fn wire_actual_cursor(lrp: &pb::ActualLrp) -> ActualLrpCursor {
    let key = lrp.actual_lrp_key.as_ref();
    ActualLrpCursor {
        process_guid: key.map(|k| k.process_guid.clone()).unwrap_or_default(),
        index: key.map_or(0, |k| i64::from(k.index)),
        presence: i64::from(lrp.presence),
    }
}

/// StreamActualLRPs: the ActualLRPs listing, whole, as a stream of pages.
pub(super) fn stream_actual_lrps(ctx: &Context, request: api::ActualLrPsRequest) -> Result<Pages<pb::ActualLrp>> {
    let page = PageRequest::new(request.page_size, &request.page_token)?;
    let filter = std::sync::Arc::new(actual_filter(request)?);
    let store = ctx.reader().clone();
    let fetch = move |after: Option<ActualLrpCursor>, limit| {
        let (store, filter) = (store.clone(), filter.clone());
        async move { store.actual_lrps_wire_page(&filter, after.as_ref(), limit).await }
    };
    Ok(Box::pin(stream(page, fetch, wire_actual_cursor)))
}

/// StreamDesiredLRPSchedulingInfos: the DesiredLRPSchedulingInfos listing, whole, as a stream
/// of pages.
pub(super) fn stream_scheduling_infos(
    ctx: &Context,
    request: api::DesiredLrPsRequest,
) -> Result<Pages<pb::DesiredLrpSchedulingInfo>> {
    let page = PageRequest::new(request.page_size, &request.page_token)?;
    let filter = std::sync::Arc::new(desired_filter(request)?);
    let store = ctx.reader().clone();
    let fetch = move |after: Option<DesiredCursor>, limit| {
        let (store, filter) = (store.clone(), filter.clone());
        async move {
            store
                .scheduling_infos_wire_page(&filter, after.as_ref().map(|c| c.0.as_str()), limit)
                .await
                .map(|p| p.map_key(DesiredCursor))
        }
    };
    Ok(Box::pin(stream(page, fetch, wire_scheduling_cursor)))
}

/// The cursor after a wire scheduling info.
fn wire_scheduling_cursor(info: &pb::DesiredLrpSchedulingInfo) -> DesiredCursor {
    DesiredCursor(info.desired_lrp_key.as_ref().map(|k| k.process_guid.clone()).unwrap_or_default())
}

/// ActualLRPs: every presence, by (process guid, index, presence).
pub(super) async fn actual_lrps(ctx: &Context, request: api::ActualLrPsRequest) -> Result<api::ActualLrPsResponse> {
    let page = PageRequest::new(request.page_size, &request.page_token)?;
    let filter = actual_filter(request)?;
    let (filter, store) = (&filter, ctx.reader());
    let (actual_lrps, next_page_token) = collect(
        page,
        |after: Option<ActualLrpCursor>, limit| async move {
            store.actual_lrps_wire_page(filter, after.as_ref(), limit).await
        },
        wire_actual_cursor,
        std::convert::identity,
    )
    .await?;
    Ok(api::ActualLrPsResponse { actual_lrps, next_page_token })
}

/// DesiredLRPs: whole records, by process guid.
pub(super) async fn desired_lrps(ctx: &Context, request: api::DesiredLrPsRequest) -> Result<api::DesiredLrPsResponse> {
    let page = PageRequest::new(request.page_size, &request.page_token)?;
    let filter = desired_filter(request)?;
    let (filter, store) = (&filter, ctx.reader());
    let (desired_lrps, next_page_token) = collect(
        page,
        |after: Option<DesiredCursor>, limit| async move {
            store
                .desired_lrps_page(filter, after.as_ref().map(|c| c.0.as_str()), limit)
                .await
                .map(|p| p.map_key(DesiredCursor))
        },
        |lrp: &DesiredLrp| DesiredCursor(lrp.scheduling.process_guid.to_string()),
        pb::DesiredLrp::from,
    )
    .await?;
    Ok(api::DesiredLrPsResponse { desired_lrps, next_page_token })
}

/// DesiredLRPSchedulingInfos: the scheduling halves, by process guid.
pub(super) async fn scheduling_infos(
    ctx: &Context,
    request: api::DesiredLrPsRequest,
) -> Result<api::DesiredLrpSchedulingInfosResponse> {
    let page = PageRequest::new(request.page_size, &request.page_token)?;
    let filter = desired_filter(request)?;
    let (filter, store) = (&filter, ctx.reader());
    let (desired_lrp_scheduling_infos, next_page_token) = collect(
        page,
        |after: Option<DesiredCursor>, limit| async move {
            store
                .scheduling_infos_wire_page(filter, after.as_ref().map(|c| c.0.as_str()), limit)
                .await
                .map(|p| p.map_key(DesiredCursor))
        },
        wire_scheduling_cursor,
        std::convert::identity,
    )
    .await?;
    Ok(api::DesiredLrpSchedulingInfosResponse { desired_lrp_scheduling_infos, next_page_token })
}

/// DesiredLRPRoutingInfos: the routing view, by process guid.
pub(super) async fn routing_infos(
    ctx: &Context,
    request: api::DesiredLrPsRequest,
) -> Result<api::DesiredLrpRoutingInfosResponse> {
    let page = PageRequest::new(request.page_size, &request.page_token)?;
    let filter = desired_filter(request)?;
    let (filter, store) = (&filter, ctx.reader());
    let (desired_lrps, next_page_token) = collect(
        page,
        |after: Option<DesiredCursor>, limit| async move {
            store
                .routing_infos_page(filter, after.as_ref().map(|c| c.0.as_str()), limit)
                .await
                .map(|p| p.map_key(DesiredCursor))
        },
        |(info, _): &RoutingRow| DesiredCursor(info.process_guid.to_string()),
        |(info, tags): RoutingRow| routing_info_to_pb(&info, &tags),
    )
    .await?;
    Ok(api::DesiredLrpRoutingInfosResponse { desired_lrps, next_page_token })
}

/// Tasks: by task guid.
pub(super) async fn tasks(ctx: &Context, request: api::TasksRequest) -> Result<api::TasksResponse> {
    let page = PageRequest::new(request.page_size, &request.page_token)?;
    let filter = TaskFilter {
        domain: optional(request.domain, DomainName::parse)?,
        cell_id: optional(request.cell_id, CellId::parse)?,
    };
    let (filter, store) = (&filter, ctx.reader());
    let (tasks, next_page_token) = collect(
        page,
        |after: Option<TaskCursor>, limit| async move {
            store.tasks_page(filter, after.as_ref().map(|c| c.0.as_str()), limit).await.map(|p| p.map_key(TaskCursor))
        },
        |task: &Task| TaskCursor(task.task_guid.to_string()),
        pb::Task::from,
    )
    .await?;
    Ok(api::TasksResponse { tasks, next_page_token })
}

/// Cells: the live presences, by cell id. They are read whole from Locket's leases (a few
/// thousand at most), then paged like the store's listings.
pub(super) async fn cells(ctx: &Context, request: api::CellsRequest) -> Result<api::CellsResponse> {
    let page = PageRequest::new(request.page_size, &request.page_token)?;
    let mut live = crate::cells::live_cells(ctx.reader()).await?;
    live.sort_by(|a, b| a.cell_id.as_str().cmp(b.cell_id.as_str()));
    let live = &live;
    let (cells, next_page_token) = collect(
        page,
        |after: Option<CellCursor>, limit| {
            let rest: Vec<_> = live
                .iter()
                .filter(|cell| after.as_ref().is_none_or(|a| cell.cell_id.as_str() > a.0.as_str()))
                .take(limit.max(1))
                .cloned()
                .collect();
            let resume_after =
                (rest.len() == limit.max(1)).then(|| CellCursor(rest[rest.len() - 1].cell_id.to_string()));
            std::future::ready(Ok(Page { items: rest, resume_after }))
        },
        |cell: &CellPresence| CellCursor(cell.cell_id.to_string()),
        pb::CellPresence::from,
    )
    .await?;
    Ok(api::CellsResponse { cells, next_page_token })
}
