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

on_every_backend!(a_removal_is_remembered_for_convergence);

async fn a_removal_is_remembered_for_convergence(backend: Backend) {
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
}
