//! The JSON shapes `--json` prints for instances and tasks, built from the generated messages.
//! Field names follow the proto's (`process_guid`, `cell_id`, `crash_count`), enums print as
//! their proto names (`RUNNING`), and nested keys are flattened so `jq` filters stay short.

use proto::pb::models::v1 as pb;
use serde::Serialize;

use crate::lrp_file::action_summary;

/// The proto name of an actual LRP state (`UNCLAIMED`, `RUNNING`).
pub fn lrp_state(state: i32) -> &'static str {
    pb::ActualLrpState::try_from(state).map_or("INVALID", |s| s.as_str_name())
}

/// The proto name of a presence (`ORDINARY`, `EVACUATING`, `SUSPECT`).
pub fn presence(value: i32) -> &'static str {
    pb::Presence::try_from(value).map_or("ORDINARY", |p| p.as_str_name())
}

/// The proto name of a task state (`PENDING`, `COMPLETED`).
pub fn task_state(state: i32) -> &'static str {
    pb::task::State::try_from(state).map_or("INVALID", |s| s.as_str_name())
}

/// One port mapping of a running instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortView {
    /// The port inside the container.
    pub container_port: u32,
    /// The port on the cell's address.
    pub host_port: u32,
}

/// One actual LRP instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceView {
    /// The desired LRP.
    pub process_guid: String,
    /// The index.
    pub index: i32,
    /// The domain.
    pub domain: String,
    /// `UNCLAIMED`, `CLAIMED`, `RUNNING` or `CRASHED`.
    pub state: &'static str,
    /// `ORDINARY`, `EVACUATING` or `SUSPECT`.
    pub presence: &'static str,
    /// Empty until claimed.
    pub instance_guid: String,
    /// Empty until claimed.
    pub cell_id: String,
    /// The cell's address, once running.
    pub address: String,
    /// The port mappings, once running.
    pub ports: Vec<PortView>,
    /// Crashes so far.
    pub crash_count: i32,
    /// The last crash's reason.
    pub crash_reason: String,
    /// Why the auctioneer could not place it.
    pub placement_error: String,
    /// Nanoseconds since the Unix epoch of the last state change.
    pub since: i64,
}

impl InstanceView {
    /// The view of an actual LRP.
    pub fn new(lrp: &pb::ActualLrp) -> InstanceView {
        let key = lrp.actual_lrp_key.clone().unwrap_or_default();
        let instance = lrp.actual_lrp_instance_key.clone().unwrap_or_default();
        let net = lrp.actual_lrp_net_info.clone().unwrap_or_default();
        InstanceView {
            process_guid: key.process_guid,
            index: key.index,
            domain: key.domain,
            state: lrp_state(lrp.state),
            presence: presence(lrp.presence),
            instance_guid: instance.instance_guid,
            cell_id: instance.cell_id,
            address: net.address,
            ports: net
                .ports
                .iter()
                .map(|p| PortView { container_port: p.container_port, host_port: p.host_port })
                .collect(),
            crash_count: lrp.crash_count,
            crash_reason: lrp.crash_reason.clone(),
            placement_error: lrp.placement_error.clone(),
            since: lrp.since,
        }
    }

    /// `address:host_port->container_port`, comma separated; empty without net info.
    pub fn endpoints(&self) -> String {
        if self.address.is_empty() {
            return String::new();
        }
        if self.ports.is_empty() {
            return self.address.clone();
        }
        let parts: Vec<String> =
            self.ports.iter().map(|p| format!("{}:{}->{}", self.address, p.host_port, p.container_port)).collect();
        parts.join(",")
    }

    /// Whether the auctioneer could not place it: UNCLAIMED with a placement error.
    pub fn unplaceable(&self) -> bool {
        self.state == "UNCLAIMED" && !self.placement_error.is_empty()
    }

    /// The state for people, with the presence when it is not ordinary: `RUNNING (EVACUATING)`;
    /// an unplaceable instance reads `UNPLACEABLE`, not as waiting to start.
    pub fn state_label(&self) -> String {
        let state = if self.unplaceable() { "UNPLACEABLE" } else { self.state };
        if self.presence == "ORDINARY" { state.to_owned() } else { format!("{state} ({})", self.presence) }
    }
}

/// One task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskView {
    /// The task's guid.
    pub task_guid: String,
    /// Its domain.
    pub domain: String,
    /// `PENDING`, `RUNNING`, `COMPLETED` or `RESOLVING`.
    pub state: &'static str,
    /// The cell running it, once started.
    pub cell_id: String,
    /// Reserved memory.
    pub memory_mb: i32,
    /// Reserved disk.
    pub disk_mb: i32,
    /// Root filesystem.
    pub rootfs: String,
    /// The command, summarised from its action.
    pub command: String,
    /// Where completion is POSTed.
    pub completion_callback_url: String,
    /// Whether it failed (when completed).
    pub failed: bool,
    /// Why it failed.
    pub failure_reason: String,
    /// Its result file's contents.
    pub result: String,
    /// Times cells rejected it.
    pub rejection_count: i32,
    /// The last rejection's reason.
    pub rejection_reason: String,
    /// Nanoseconds since the Unix epoch.
    pub created_at: i64,
    /// Nanoseconds since the Unix epoch.
    pub updated_at: i64,
}

impl TaskView {
    /// The view of a task.
    pub fn new(task: &pb::Task) -> TaskView {
        let def = task.task_definition.clone().unwrap_or_default();
        TaskView {
            task_guid: task.task_guid.clone(),
            domain: task.domain.clone(),
            state: task_state(task.state),
            cell_id: task.cell_id.clone(),
            memory_mb: def.memory_mb,
            disk_mb: def.disk_mb,
            rootfs: def.root_fs,
            command: def.action.as_ref().map(action_summary).unwrap_or_default(),
            completion_callback_url: def.completion_callback_url,
            failed: task.failed,
            failure_reason: task.failure_reason.clone(),
            result: task.result.clone(),
            rejection_count: task.rejection_count,
            rejection_reason: task.rejection_reason.clone(),
            created_at: task.created_at,
            updated_at: task.updated_at,
        }
    }

    /// The outcome for a table: `succeeded`, `failed: REASON`, or the rejection reason.
    pub fn outcome(&self) -> String {
        match self.state {
            "COMPLETED" | "RESOLVING" if self.failed => format!("failed: {}", self.failure_reason),
            "COMPLETED" | "RESOLVING" => "succeeded".to_owned(),
            _ if !self.rejection_reason.is_empty() => format!("rejected: {}", self.rejection_reason),
            _ => String::new(),
        }
    }
}
