//! RemoveDesiredLRP, on every backend: the removal is remembered for convergence, so that a pass
//! that finds the record gone while the reps still report its instances does not rebuild it
//! (`bbs::removed`; the converger's side is `recovery_tick::a_desired_lrp_removed_lately_...`).

#[macro_use]
mod common;

use bbs::grpc::BbsService;
use common::Harness;
use db::Backend;
use proto::models::ProcessGuid;
use proto::pb::bbs::v1 as api;
use proto::pb::bbs::v1::bbs_server::Bbs;
use tonic::Request;

on_every_backend!(a_removal_is_remembered_for_convergence_until_the_guid_is_desired_again);

async fn a_removal_is_remembered_for_convergence_until_the_guid_is_desired_again(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    let bbs = BbsService::new(h.ctx.clone(), tokio_util::sync::CancellationToken::new());
    for guid in ["web", "kept"] {
        bbs.desire_lrp(Request::new(api::DesireLrpRequest { desired_lrp: Some(common::shell_lrp(guid, 2)) }))
            .await
            .unwrap();
    }
    let web = ProcessGuid::parse("web").unwrap();
    assert!(!h.ctx.removed_lately.contains(&web), "remembered before its removal");

    bbs.remove_desired_lrp(Request::new(api::RemoveDesiredLrpRequest { process_guid: "web".into() })).await.unwrap();

    assert!(h.ctx.removed_lately.contains(&web), "the removal is not remembered");
    assert!(!h.ctx.removed_lately.contains(&ProcessGuid::parse("kept").unwrap()));

    // Desired again, alone or in a batch: a later loss of the record is a loss again.
    bbs.desire_lrp(Request::new(api::DesireLrpRequest { desired_lrp: Some(common::shell_lrp("web", 2)) }))
        .await
        .unwrap();
    assert!(!h.ctx.removed_lately.contains(&web), "remembered after it was desired again");
    bbs.remove_desired_lrp(Request::new(api::RemoveDesiredLrpRequest { process_guid: "web".into() })).await.unwrap();
    assert!(h.ctx.removed_lately.contains(&web));
    let batch = api::DesireLrPsRequest { desired_lrps: vec![common::shell_lrp("web", 2)] };
    let response = bbs.desire_lr_ps(Request::new(batch)).await.unwrap().into_inner();
    assert!(response.results[0].error.is_none(), "{:?}", response.results[0].error);
    assert!(!h.ctx.removed_lately.contains(&web), "remembered after a batch desired it again");
}
