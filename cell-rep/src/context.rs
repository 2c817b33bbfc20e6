//! What every part of a running rep shares: the cell's identity and advert, the executor, the
//! BBS client, the one-way evacuation flag, the per-instance routing info that
//! `UpdateLRPInstance` changes, and the desired LRP each instance was started from.
//!
//! Not here: what to do with a container (see `generator`), the gRPC adapter (see `service`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use proto::models::{ActualLrpInstanceKey, ActualLrpKey, CellId, DesiredLrp, NetInfo, PortMapping, PreferredAddress};
use tokio::sync::watch;

use crate::bbs_client::{BbsClient, StartReports};
use crate::executor::{Container, Executor};
use crate::workload::LrpWorkload;

/// The one-way evacuation flag (reference 2.9: "the evacuating flag is one-way").
#[derive(Debug, Clone)]
pub struct EvacuationFlag {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for EvacuationFlag {
    fn default() -> Self {
        Self::new()
    }
}

impl EvacuationFlag {
    /// A flag that is not set.
    pub fn new() -> Self {
        Self { tx: Arc::new(watch::Sender::new(false)) }
    }

    /// Sets the flag; returns true if this call set it.
    pub fn start(&self) -> bool {
        self.tx.send_if_modified(|evacuating| !std::mem::replace(evacuating, true))
    }

    /// Whether the cell evacuates.
    pub fn is_set(&self) -> bool {
        *self.tx.borrow()
    }

    /// A receiver that sees the flag being set.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }

    /// Waits until the flag is set.
    pub async fn wait(&self) {
        let mut rx = self.subscribe();
        let _ = rx.wait_for(|evacuating| *evacuating).await;
    }
}

/// Routing details of an instance that `StartActualLRP` reports and `UpdateLRPInstance`
/// changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceInfo {
    /// Internal route hostnames.
    pub internal_routes: Vec<String>,
    /// Resolved metric tags.
    pub metric_tags: BTreeMap<String, String>,
}

/// An LRP container's identity: its key and its instance key on this cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LrpIdentity {
    /// Which index of which desired LRP.
    pub key: ActualLrpKey,
    /// This container on this cell.
    pub instance_key: ActualLrpInstanceKey,
}

/// The cell's static description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellInfo {
    /// The cell id.
    pub cell_id: CellId,
    /// Zone.
    pub zone: String,
    /// `host:port` of the gRPC server, as advertised.
    pub rep_address: String,
    /// The address reported in net info; empty means the runtime's.
    pub host_address: String,
    /// Preloaded rootfs names.
    pub rootfs_names: Vec<String>,
    /// Required placement tags.
    pub placement_tags: Vec<String>,
    /// Optional placement tags.
    pub optional_placement_tags: Vec<String>,
}

/// Shared state of one rep.
pub struct RepContext {
    /// The cell's description.
    pub cell: CellInfo,
    /// The containers.
    pub executor: Executor,
    /// The BBS.
    pub bbs: Arc<dyn BbsClient>,
    /// The cell's start reports to the BBS, coalesced.
    pub starts: StartReports,
    /// Set once evacuation starts.
    pub evacuation: EvacuationFlag,
    instances: Mutex<HashMap<String, InstanceInfo>>,
    /// The desired LRP each running LRP container was started from, by container guid: what
    /// the rep reports when the BBS lost it (issue 19 item 2, `recovery`).
    desired: Mutex<HashMap<String, Arc<DesiredLrp>>>,
}

impl std::fmt::Debug for RepContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepContext").field("cell", &self.cell).field("executor", &self.executor).finish_non_exhaustive()
    }
}

impl RepContext {
    /// A context for `cell`.
    pub fn new(cell: CellInfo, executor: Executor, bbs: Arc<dyn BbsClient>) -> Self {
        Self {
            cell,
            executor,
            starts: StartReports::new(Arc::clone(&bbs)),
            bbs,
            evacuation: EvacuationFlag::new(),
            instances: Mutex::new(HashMap::new()),
            desired: Mutex::new(HashMap::new()),
        }
    }

    fn instances(&self) -> MutexGuard<'_, HashMap<String, InstanceInfo>> {
        self.instances.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The routing info recorded for instance `guid`.
    pub fn instance_info(&self, guid: &str) -> InstanceInfo {
        self.instances().get(guid).cloned().unwrap_or_default()
    }

    /// Records routing info for instance `guid`.
    pub fn set_instance_info(&self, guid: &str, info: InstanceInfo) {
        self.instances().insert(guid.to_owned(), info);
    }

    /// Forgets instance `guid` (its container is gone).
    pub fn forget_instance(&self, guid: &str) {
        self.instances().remove(guid);
        self.desired_map().remove(guid);
    }

    fn desired_map(&self) -> MutexGuard<'_, HashMap<String, Arc<DesiredLrp>>> {
        self.desired.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps the desired LRP container `guid` runs an instance of.
    pub fn keep_desired(&self, guid: &str, desired: Arc<DesiredLrp>) {
        self.desired_map().insert(guid.to_owned(), desired);
    }

    /// The desired LRP container `guid` was started from, if this rep started it.
    pub fn desired_of(&self, guid: &str) -> Option<Arc<DesiredLrp>> {
        self.desired_map().get(guid).cloned()
    }

    /// The identity of an LRP instance on this cell.
    pub fn lrp_identity(&self, lrp: &LrpWorkload) -> LrpIdentity {
        LrpIdentity {
            key: lrp.key.clone(),
            instance_key: ActualLrpInstanceKey {
                instance_guid: lrp.instance_guid.clone(),
                cell_id: self.cell.cell_id.clone(),
            },
        }
    }

    /// Where a running container is reachable.
    pub fn net_info(&self, container: &Container) -> NetInfo {
        let address = [self.cell.host_address.as_str(), container.address.as_str()]
            .into_iter()
            .find(|a| !a.trim().is_empty())
            .unwrap_or("127.0.0.1")
            .to_owned();
        let instance_address =
            if container.internal_address.is_empty() { address.clone() } else { container.internal_address.clone() };
        NetInfo {
            address,
            ports: container
                .ports
                .iter()
                .map(|p| PortMapping { container_port: p.container_port, host_port: p.host_port, ..Default::default() })
                .collect(),
            instance_address,
            // Host networking everywhere: the host address and port are what reach the app.
            preferred_address: PreferredAddress::Host,
            instance_ipv6_address: String::new(),
        }
    }
}

/// The host part of `host:port` when it is a concrete address (not `0.0.0.0` or `[::]`).
pub fn concrete_host(address: &str) -> Option<String> {
    let host = match address.parse::<std::net::SocketAddr>() {
        Ok(addr) if addr.ip().is_unspecified() => return None,
        Ok(addr) => addr.ip().to_string(),
        Err(_) => address.rsplit_once(':').map_or(address, |(h, _)| h).to_owned(),
    };
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_evacuation_flag_is_one_way() {
        let flag = EvacuationFlag::new();
        assert!(!flag.is_set());
        assert!(flag.start());
        assert!(!flag.start());
        assert!(flag.is_set());
    }

    #[test]
    fn concrete_hosts_exclude_unspecified_addresses() {
        assert_eq!(concrete_host("10.0.0.5:1801").as_deref(), Some("10.0.0.5"));
        assert_eq!(concrete_host("0.0.0.0:1801"), None);
        assert_eq!(concrete_host("[::]:1801"), None);
        assert_eq!(concrete_host("cell-1.example:1801").as_deref(), Some("cell-1.example"));
    }
}
