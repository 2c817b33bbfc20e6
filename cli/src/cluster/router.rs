//! The cluster's HTTP router (the `router` crate), as `diego dev` and the end-to-end suite run
//! it: identity `diego://reader/router`, the cluster's BBS, and with test timings a full sync
//! every 2 s.

use std::time::Duration;

use router::RouterConfig;
use svc::identity::Role;

use super::{Cluster, ClusterError, STOP_TIMEOUT, bind};

impl Cluster {
    /// Starts the HTTP router on `listen` (`127.0.0.1:0`: a free port); returns once it listens.
    /// Its routes follow once its first sync is done (well under a second on a small cluster).
    pub async fn start_router(&mut self, listen: &str) -> Result<(), ClusterError> {
        let http = bind(listen).await?;
        self.start_router_on(http).await
    }

    /// Starts the HTTP router on an already-bound listener (a restart on the same port).
    pub async fn start_router_on(&mut self, http: tokio::net::TcpListener) -> Result<(), ClusterError> {
        self.stop_router().await;
        let admin = bind("127.0.0.1:0").await?;
        let address = http.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let admin_address = admin.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let mut config = RouterConfig {
            bbs_address: self.bbs_address.clone(),
            tls: self.tls_for(Role::Reader, router::config::IDENTITY_NAME)?,
            ..RouterConfig::default()
        };
        if self.fast {
            config.sync_interval = Duration::from_secs(2);
            config.resync_interval = Duration::from_millis(200);
            config.communication_timeout = Duration::from_secs(5);
            config.connect_timeout = Duration::from_secs(2);
            config.request_timeout = Duration::from_secs(10);
        }
        (self.router_spec)(&mut config);
        let config =
            config.validate().map_err(|e| ClusterError::Config { component: "router", message: e.to_string() })?;
        let stop = self.shutdown.child_token();
        let run = router::run(config, router::Listeners { grpc: http, admin }, stop.clone());
        self.router_task = Some(tokio::spawn(async move {
            if let Err(e) = run.await {
                tracing::error!(error = %e, "the router stopped");
            }
        }));
        self.router_stop = Some(stop);
        self.router_address = Some(address);
        self.router_admin_address = Some(admin_address);
        Ok(())
    }

    /// Stops the router and returns once it has (or after 10 s).
    pub async fn stop_router(&mut self) {
        if let Some(stop) = self.router_stop.take() {
            stop.cancel();
        }
        if let Some(task) = self.router_task.take() {
            let _ = tokio::time::timeout(STOP_TIMEOUT, task).await;
        }
        self.router_address = None;
        self.router_admin_address = None;
    }
}
