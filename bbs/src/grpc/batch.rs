//! The batch RPCs, DesireLRPs and StartActualLRPs: each item decoded as its single call decodes
//! it, the valid ones handed to the controller together, and one [`api::BatchResult`] per item
//! in request order. An item refused anywhere (decoding, the controller, the store) carries the
//! Diego error type, the gRPC code and the message its single call would have failed with.
//!
//! Whole-call refusals (nothing applied): not the leader or the database down, as for any
//! write; more than [`MAX_BATCH_ITEMS`] items (also bounded by the request limits before
//! decoding); more than [`MAX_BATCH_INSTANCES`] instances in one DesireLRPs; a StartActualLRPs
//! from a cell that names another cell's instance key in any item.

use proto::limits::{MAX_BATCH_INSTANCES, MAX_BATCH_ITEMS};
use proto::models::DesiredLrp;
use proto::pb::bbs::v1 as api;
use svc::authz::require_own_cell;
use svc::identity::Peer;
use tonic::Status;

use super::decode::{invalid, start_request};
use super::key_cell;
use crate::controllers::Context;
use crate::controllers::actual_lrps::ActualLrps;
use crate::controllers::desired_lrps::DesiredLrps;
use crate::{Error, Result};

/// DesireLRPs.
pub(super) async fn desire_lrps(ctx: &Context, request: api::DesireLrPsRequest) -> Result<api::BatchResponse> {
    let items = request.desired_lrps;
    check_count("desired_lrps", items.len())?;
    let instances: i64 = items.iter().map(|lrp| i64::from(lrp.instances.max(0))).sum();
    if instances > MAX_BATCH_INSTANCES {
        return Err(invalid("desired_lrps", &format!("must ask for at most {MAX_BATCH_INSTANCES} instances together")));
    }
    let decoded: Vec<Result<DesiredLrp>> = items
        .into_iter()
        .map(|lrp| DesiredLrp::try_from(lrp).map_err(|e| Error::from(e.within("desired_lrp"))))
        .collect();
    let (valid, slots) = split(decoded);
    let answers = DesiredLrps(ctx).desire_many(valid).await?;
    Ok(respond(slots, answers))
}

/// Refuses a StartActualLRPs in which a cell names any other cell's instance key.
pub(super) fn require_own_cells(peer: &Peer, request: &api::StartActualLrPsRequest) -> std::result::Result<(), Status> {
    request.starts.iter().try_for_each(|start| require_own_cell(peer, key_cell(&start.actual_lrp_instance_key)))
}

/// StartActualLRPs (after [`require_own_cells`]).
pub(super) async fn start_actual_lrps(
    ctx: &Context,
    request: api::StartActualLrPsRequest,
) -> Result<api::BatchResponse> {
    check_count("starts", request.starts.len())?;
    let decoded = request.starts.into_iter().map(start_request).collect();
    let (valid, slots) = split(decoded);
    let answers = ActualLrps(ctx).start_many(valid).await?;
    Ok(respond(slots, answers))
}

fn check_count(field: &str, items: usize) -> Result<()> {
    if items > MAX_BATCH_ITEMS {
        return Err(invalid(field, &format!("must have at most {MAX_BATCH_ITEMS} items")));
    }
    Ok(())
}

/// One slot per item: the decoding error of an item refused already, or `None` for one handed
/// on (its answer comes from the controller, in the same order).
type Slots = Vec<Option<Error>>;

fn split<T>(decoded: Vec<Result<T>>) -> (Vec<T>, Slots) {
    let mut valid = Vec::with_capacity(decoded.len());
    let slots = decoded
        .into_iter()
        .map(|item| match item {
            Ok(item) => {
                valid.push(item);
                None
            }
            Err(e) => Some(e),
        })
        .collect();
    (valid, slots)
}

/// The response: the decoding errors in their slots, the controller's answers in the others.
fn respond(slots: Slots, answers: Vec<Result<()>>) -> api::BatchResponse {
    let mut answers = answers.into_iter();
    let results = slots
        .into_iter()
        .map(|slot| {
            let outcome = match slot {
                Some(e) => Err(e),
                None => answers.next().unwrap_or_else(|| {
                    Err(Error::Refused {
                        code: proto::error::ErrorCode::Unknown,
                        message: "the batch left this item unanswered".into(),
                    })
                }),
            };
            api::BatchResult { error: outcome.err().map(batch_error) }
        })
        .collect();
    api::BatchResponse { results }
}

/// An item's error as its single call's status would carry it.
fn batch_error(e: Error) -> api::BatchError {
    let code = e.code();
    api::BatchError { r#type: code.name().to_owned(), code: code.grpc_code() as i32, message: e.to_string() }
}
