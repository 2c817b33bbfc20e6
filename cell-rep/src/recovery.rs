//! The rep's `Recovery` gRPC service (issue 19): what this cell runs, for a BBS whose database
//! may have forgotten it. `Report` lists the LRP instances whose containers are running and
//! returns the desired LRPs the rep keeps (`RepContext::desired_of`) for the process guids
//! asked, so the BBS re-adopts the instances instead of starting them again and rebuilds the
//! desired LRPs it lost. Answers from memory, like every `Rep` call; asked to, it also kicks a
//! bulk sync, which re-creates the actual LRPs of the running instances the BBS lost.
//! Instances started before the rep kept desired LRPs (none: a restarted rep's containers are
//! gone) and desired LRPs changed since their instances started (routes, instance count) are
//! reported as the rep received them.

use std::collections::BTreeSet;
use std::sync::Arc;

use proto::error::ErrorCode;
use proto::pb::models::v1 as models_pb;
use proto::pb::rep::v1 as rep_pb;
use tokio::sync::Notify;
use tonic::{Request, Response, Status};

use crate::context::RepContext;
use crate::executor::ContainerState;
use crate::workload::Workload;

/// Most process guids one `Report` may ask the desired LRPs of (the wire's repeated limit).
pub const MAX_DESIRED_FOR: usize = 1024;

/// The `Recovery` service of one cell.
#[derive(Debug, Clone)]
pub struct RecoveryService {
    ctx: Arc<RepContext>,
    /// Wakes the bulk sync loop.
    bulk_sync: Arc<Notify>,
}

impl RecoveryService {
    /// The service over the rep's shared state; `bulk_sync` wakes its bulk sync loop.
    pub fn new(ctx: Arc<RepContext>, bulk_sync: Arc<Notify>) -> Self {
        Self { ctx, bulk_sync }
    }

    /// The running LRP instances, and the desired LRPs held for the guids in `desired_for`.
    pub fn report(&self, desired_for: &[String]) -> rep_pb::ReportResponse {
        let wanted: BTreeSet<&str> = desired_for.iter().map(String::as_str).collect();
        let mut sent: BTreeSet<String> = BTreeSet::new();
        let mut response = rep_pb::ReportResponse::default();
        for container in self.ctx.executor.list() {
            let Workload::Lrp(lrp) = &container.workload else { continue };
            if container.state != ContainerState::Running {
                continue;
            }
            response.instances.push(rep_pb::RunningInstance {
                actual_lrp_key: Some(models_pb::ActualLrpKey::from(lrp.key.clone())),
                instance_guid: lrp.instance_guid.to_string(),
            });
            let guid = lrp.key.process_guid.as_str();
            if wanted.contains(guid)
                && !sent.contains(guid)
                && let Some(desired) = self.ctx.desired_of(&container.guid)
            {
                sent.insert(guid.to_owned());
                response.desired_lrps.push(models_pb::DesiredLrp::from((*desired).clone()));
            }
        }
        response
    }
}

#[tonic::async_trait]
impl rep_pb::recovery_server::Recovery for RecoveryService {
    async fn report(
        &self,
        request: Request<rep_pb::ReportRequest>,
    ) -> Result<Response<rep_pb::ReportResponse>, Status> {
        let request = request.into_inner();
        if request.desired_for.len() > MAX_DESIRED_FOR {
            return Err(ErrorCode::InvalidRequest
                .to_status(format!("invalid request: at most {MAX_DESIRED_FOR} process guids in desired_for")));
        }
        let response = RecoveryService::report(self, &request.desired_for);
        if request.sync {
            self.bulk_sync.notify_one();
        }
        Ok(Response::new(response))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use proto::models::ActualLrpState;
    use proto::pb::rep::v1::recovery_server::Recovery;
    use tokio::sync::Notify;

    use super::*;
    use crate::testing::{FakeBbs, TestCell, desired_lrp, eventually, lrp_work};

    #[tokio::test]
    async fn a_report_lists_the_running_instances_and_the_desired_lrps_asked_for_and_can_kick_a_sync() {
        let bbs = Arc::new(FakeBbs::new());
        let desired = desired_lrp("web", 2, 64);
        bbs.desire_lrp(desired.clone());
        let cell = TestCell::start("cell-1", bbs.clone());
        assert!(cell.perform((0..2).map(|i| lrp_work(&desired, i)).collect(), Vec::new()).failed_lrps.is_empty());
        let running = || bbs.actual_lrps().iter().filter(|l| l.state == ActualLrpState::Running).count() == 2;
        tokio::time::timeout(Duration::from_secs(10), eventually(running)).await.expect("instances never ran");

        let kick = Arc::new(Notify::new());
        let service = RecoveryService::new(Arc::clone(&cell.ctx), Arc::clone(&kick));
        let report = service.report(&[]);
        let mut indices: Vec<i32> =
            report.instances.iter().map(|i| i.actual_lrp_key.as_ref().map_or(-1, |k| k.index)).collect();
        indices.sort_unstable();
        assert_eq!(indices, vec![0, 1]);
        assert!(report.desired_lrps.is_empty(), "no run info unless asked");

        let report = service.report(&["web".to_owned(), "other".to_owned()]);
        assert_eq!(report.desired_lrps.len(), 1, "once per process guid, only for what runs here");
        assert_eq!(report.desired_lrps[0].process_guid, "web");

        let asked = Request::new(rep_pb::ReportRequest { desired_for: vec![], sync: true });
        Recovery::report(&service, asked).await.expect("report");
        tokio::time::timeout(Duration::from_secs(1), kick.notified()).await.expect("a bulk sync was kicked");
        let too_many = rep_pb::ReportRequest { desired_for: vec!["x".into(); MAX_DESIRED_FOR + 1], sync: false };
        assert!(Recovery::report(&service, Request::new(too_many)).await.is_err());
    }
}
