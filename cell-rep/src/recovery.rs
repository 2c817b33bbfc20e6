//! The rep's `Recovery` gRPC service (issue 19): what this cell runs, for a BBS whose database
//! may have forgotten it. `Report` lists the LRP instances whose containers are running and
//! returns the desired LRPs the rep keeps (`RepContext::desired_of`) for the process guids
//! asked, so the BBS re-adopts the instances instead of starting them again and rebuilds the
//! desired LRPs it lost. Answers from memory, like every `Rep` call.

use std::collections::BTreeSet;
use std::sync::Arc;

use proto::error::ErrorCode;
use proto::pb::models::v1 as models_pb;
use proto::pb::rep::v1 as rep_pb;
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
}

impl RecoveryService {
    /// The service over the rep's shared state.
    pub fn new(ctx: Arc<RepContext>) -> Self {
        Self { ctx }
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
        Ok(Response::new(RecoveryService::report(self, &request.desired_for)))
    }
}
