//! Whole listings over the paged list RPCs. The BBS stops each page before 3.5 MiB and hands
//! back a `next_page_token`, so the simulated reps, nsync bulker and route emitters read page
//! after page until the token is empty; the timed operation is the whole read, as a real client
//! makes it.

use proto::pb::bbs::v1 as api;
use proto::pb::bbs::v1::bbs_client::BbsClient;
use proto::pb::models::v1 as pb;
use tonic::transport::Channel;

/// Every actual LRP `request` selects.
pub async fn actual_lrps(
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

/// Every scheduling info `request` selects.
pub async fn scheduling_infos(
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
