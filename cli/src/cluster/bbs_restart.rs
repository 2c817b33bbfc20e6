//! The BBS this cluster started: spawned from its checked configuration, and restarted on the
//! same addresses as when its process is restarted (the end-to-end suite's "restart the BBS
//! leader": the router, the reps and the auctioneer must find it again).

use bbs::config::BbsConfig;
use svc::config::Valid;
use tokio::net::TcpListener;

use super::{Cluster, ClusterError, STOP_TIMEOUT, bind};

impl Cluster {
    /// Runs the BBS of `config` on `grpc` and `admin` until `bbs_stop`.
    pub(super) fn spawn_bbs(&mut self, config: Valid<BbsConfig>, grpc: TcpListener, admin: TcpListener) {
        self.bbs_config = Some(config.clone());
        let run = bbs::run(config, bbs::Listeners { grpc, admin }, bbs::Overrides::default(), self.bbs_stop.clone());
        self.bbs_task = Some(tokio::spawn(async move {
            if let Err(e) = run.await {
                tracing::error!(error = %e, "the bbs stopped");
            }
        }));
    }

    /// Stops the BBS this cluster started (it releases its lease and ends every event stream)
    /// and starts it again on the same gRPC and admin addresses; returns once it leads. Errors
    /// when this cluster did not start the BBS ([`Cluster::join`]).
    pub async fn restart_bbs(&mut self) -> Result<(), ClusterError> {
        let Some(config) = self.bbs_config.clone() else {
            return Err(ClusterError::Config {
                component: "bbs",
                message: "this cluster did not start the bbs".into(),
            });
        };
        self.bbs_stop.cancel();
        if let Some(task) = self.bbs_task.take() {
            let _ = tokio::time::timeout(STOP_TIMEOUT, task).await;
        }
        self.bbs_stop = self.shutdown.child_token();
        let grpc = bind(&self.bbs_address).await?;
        let admin = bind(self.bbs_admin_address.as_deref().unwrap_or("127.0.0.1:0")).await?;
        self.spawn_bbs(config, grpc, admin);
        self.wait_for_bbs().await
    }
}
