//! Whole listings over the list RPCs. The bulk reads (every scheduling info the nsync bulker and
//! the route emitters read, and every actual LRP a global route emitter reads) use the streamed
//! RPCs (StreamDesiredLRPSchedulingInfos, StreamActualLRPs: the BBS sends the whole listing as
//! bounded pages over one stream); a per-cell read (`cell_id` set, what a rep's bulker makes)
//! and every read when `BENCHMARK_BBS_LISTINGS=unary` is set follow the paged unary RPCs, page
//! after page until the token is empty, as an older client does. A BBS without the streams
//! (UNIMPLEMENTED), or whose role table does not list them yet (PERMISSION_DENIED: the unary
//! call then answers with its own rule), is read page by page too. The timed operation is the
//! whole read either way.

use futures::StreamExt;
use proto::pb::bbs::v1 as api;
use proto::pb::bbs::v1::bbs_client::BbsClient;
use proto::pb::models::v1 as pb;
use tonic::transport::Channel;

/// The environment variable that selects the unary listings for the bulk reads
/// (`BENCHMARK_BBS_LISTINGS=unary`), to compare them with the streamed ones on the same data.
pub const LISTINGS_ENV: &str = "BENCHMARK_BBS_LISTINGS";

/// Whether the bulk reads use the streamed RPCs (the default) rather than the unary pages.
pub fn streaming() -> bool {
    std::env::var(LISTINGS_ENV).map_or(true, |value| value != "unary")
}

/// Whether a stream's refusal sends the read to the unary listing (see the module docs).
fn fall_back(status: &tonic::Status) -> bool {
    matches!(status.code(), tonic::Code::Unimplemented | tonic::Code::PermissionDenied)
}

/// Every actual LRP `request` selects: streamed when it reads across cells (see the module
/// docs), else page by page.
pub async fn actual_lrps(
    client: BbsClient<Channel>,
    request: api::ActualLrPsRequest,
) -> Result<Vec<pb::ActualLrp>, tonic::Status> {
    if request.cell_id.is_empty() && streaming() {
        match actual_lrps_streamed(client.clone(), request.clone()).await {
            Err(status) if fall_back(&status) => {}
            result => return result,
        }
    }
    actual_lrps_paged(client, request).await
}

/// Every actual LRP `request` selects, through the unary ActualLRPs page by page.
pub async fn actual_lrps_paged(
    mut client: BbsClient<Channel>,
    mut request: api::ActualLrPsRequest,
) -> Result<Vec<pb::ActualLrp>, tonic::Status> {
    let mut all = Vec::new();
    loop {
        let page = client.actual_lr_ps(request.clone()).await?.into_inner();
        all.extend(page.actual_lrps);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        request.page_token = page.next_page_token;
    }
}

/// Every actual LRP `request` selects, through StreamActualLRPs.
pub async fn actual_lrps_streamed(
    mut client: BbsClient<Channel>,
    request: api::ActualLrPsRequest,
) -> Result<Vec<pb::ActualLrp>, tonic::Status> {
    let mut stream = client.stream_actual_lr_ps(request).await?.into_inner();
    let mut all = Vec::new();
    while let Some(message) = stream.next().await {
        all.extend(message?.actual_lrps);
    }
    Ok(all)
}

/// Every live cell.
pub async fn cells(mut client: BbsClient<Channel>) -> Result<Vec<pb::CellPresence>, tonic::Status> {
    let (mut all, mut request) = (Vec::new(), api::CellsRequest::default());
    loop {
        let page = client.cells(request.clone()).await?.into_inner();
        all.extend(page.cells);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        request.page_token = page.next_page_token;
    }
}

/// Every scheduling info `request` selects: streamed unless `BENCHMARK_BBS_LISTINGS=unary`.
pub async fn scheduling_infos(
    client: BbsClient<Channel>,
    request: api::DesiredLrPsRequest,
) -> Result<Vec<pb::DesiredLrpSchedulingInfo>, tonic::Status> {
    if streaming() {
        match scheduling_infos_streamed(client.clone(), request.clone()).await {
            Err(status) if fall_back(&status) => {}
            result => return result,
        }
    }
    scheduling_infos_paged(client, request).await
}

/// Every scheduling info `request` selects, through the unary DesiredLRPSchedulingInfos page
/// by page.
pub async fn scheduling_infos_paged(
    mut client: BbsClient<Channel>,
    mut request: api::DesiredLrPsRequest,
) -> Result<Vec<pb::DesiredLrpSchedulingInfo>, tonic::Status> {
    let mut all = Vec::new();
    loop {
        let page = client.desired_lrp_scheduling_infos(request.clone()).await?.into_inner();
        all.extend(page.desired_lrp_scheduling_infos);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        request.page_token = page.next_page_token;
    }
}

/// Every scheduling info `request` selects, through StreamDesiredLRPSchedulingInfos.
pub async fn scheduling_infos_streamed(
    mut client: BbsClient<Channel>,
    request: api::DesiredLrPsRequest,
) -> Result<Vec<pb::DesiredLrpSchedulingInfo>, tonic::Status> {
    let mut stream = client.stream_desired_lrp_scheduling_infos(request).await?.into_inner();
    let mut all = Vec::new();
    while let Some(message) = stream.next().await {
        all.extend(message?.desired_lrp_scheduling_infos);
    }
    Ok(all)
}
