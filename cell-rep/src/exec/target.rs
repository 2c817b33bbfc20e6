//! Which container a `diego ssh` request names, and the context its command runs in: the
//! environment, working directory and user of the instance's main process (its first run
//! action), built the way the executor builds them (`executor::env`, `actions::run`).

use proto::pb::models::v1 as pb;

use super::session::{ExecSpec, TtySize};
use crate::container::Container;
use crate::executor::{instance_env, network_env};
use crate::runtime::ContainerInfo;
use crate::workload::Workload;

/// The shell a request without a command runs.
pub const DEFAULT_SHELL: &str = "/bin/sh";

/// Why no container can run the request's command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Neither a process guid nor an instance guid was given.
    #[error("name the instance: a process guid and index, or an instance guid")]
    Missing,
    /// No LRP instance of this cell matches.
    #[error("no instance {0} runs on this cell")]
    NotFound(String),
    /// The instance exists but is not running (yet, or any more).
    #[error("instance {what} is {state}, not running")]
    NotRunning {
        /// The instance asked for.
        what: String,
        /// Its container's state.
        state: String,
    },
}

/// The running LRP container `start` names among `containers`.
pub fn find<'a>(
    containers: &'a [Container],
    start: &proto::pb::rep::v1::ExecStart,
) -> Result<&'a Container, TargetError> {
    let what = if !start.instance_guid.is_empty() {
        start.instance_guid.clone()
    } else if !start.process_guid.is_empty() {
        format!("{}/{}", start.process_guid, start.index)
    } else {
        return Err(TargetError::Missing);
    };
    let found = containers.iter().find(|c| {
        let Workload::Lrp(lrp) = &c.workload else { return false };
        let guid_matches = start.instance_guid.is_empty() || lrp.instance_guid.as_str() == start.instance_guid;
        let key_matches = start.process_guid.is_empty()
            || (lrp.key.process_guid.as_str() == start.process_guid && lrp.key.index == start.index);
        guid_matches && key_matches
    });
    let container = found.ok_or_else(|| TargetError::NotFound(what.clone()))?;
    if !container.state.is_created() || container.run_request.is_none() {
        return Err(TargetError::NotRunning { what, state: container.state.to_string() });
    }
    Ok(container)
}

/// The first run action of a tree, depth first: the instance's main process.
pub fn main_run_action(action: &pb::Action) -> Option<&pb::RunAction> {
    use pb::action::Action as A;
    match action.action.as_ref()? {
        A::RunAction(run) => Some(run),
        A::TimeoutAction(t) => t.action.as_deref().and_then(main_run_action),
        A::EmitProgressAction(e) => e.action.as_deref().and_then(main_run_action),
        A::TryAction(t) => t.action.as_deref().and_then(main_run_action),
        A::ParallelAction(p) => p.actions.iter().find_map(main_run_action),
        A::SerialAction(s) => s.actions.iter().find_map(main_run_action),
        A::CodependentAction(c) => c.actions.iter().find_map(main_run_action),
        A::DownloadAction(_) | A::UploadAction(_) => None,
    }
}

/// What to run in `container`: `command` (the shell when empty) with the environment,
/// working directory and user of its main process, plus `TERM` on a terminal.
pub fn spec_for(container: &Container, command: Vec<String>, tty: Option<TtySize>, term: &str) -> ExecSpec {
    let mut env = instance_env(&container.workload);
    let mut dir = String::new();
    let mut user = String::new();
    if let Some(request) = &container.run_request {
        env.extend(request.env.iter().cloned());
        if let Some(run) = main_run_action(&request.action) {
            env.extend(run.env.iter().map(|e| (e.name.clone(), e.value.clone())));
            dir.clone_from(&run.dir);
            user.clone_from(&run.user);
        }
    }
    let info = ContainerInfo {
        host_ip: container.address.clone(),
        internal_ip: container.internal_address.clone(),
        ports: container.ports.clone(),
    };
    env.extend(network_env(&info));
    if tty.is_some() {
        let term = if term.is_empty() { "xterm" } else { term };
        env.push(("TERM".into(), term.to_owned()));
    }
    let argv = if command.is_empty() { vec![DEFAULT_SHELL.to_owned()] } else { command };
    ExecSpec { argv, env, dir, user, tty }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proto::pb::rep::v1::ExecStart;

    use super::*;
    use crate::container::{ContainerState, PortMapping, RunRequest};
    use crate::resources::Resources;
    use crate::workload::{lrp_workload, task_workload};

    fn container(guid: &str, workload: Workload, state: ContainerState) -> Container {
        let run = pb::RunAction {
            path: "/bin/app".into(),
            dir: "/home/app".into(),
            user: "vcap".into(),
            env: vec![pb::EnvironmentVariable { name: "FROM_ACTION".into(), value: "1".into() }],
            ..Default::default()
        };
        let action = pb::Action { action: Some(pb::action::Action::RunAction(run)) };
        let serial = pb::Action {
            action: Some(pb::action::Action::SerialAction(pb::SerialAction {
                actions: vec![
                    pb::Action { action: Some(pb::action::Action::DownloadAction(pb::DownloadAction::default())) },
                    action,
                ],
                ..Default::default()
            })),
        };
        Container {
            guid: guid.into(),
            state,
            workload,
            allocation: Resources::new(64, 64, 1),
            ports: vec![PortMapping { container_port: 8080, host_port: 61000 }],
            address: "10.0.0.1".into(),
            internal_address: "10.0.0.1".into(),
            routable: true,
            result: None,
            reserved_at: tokio::time::Instant::now(),
            run_request: Some(Arc::new(RunRequest {
                env: vec![("FROM_LRP".into(), "2".into())],
                action: serial,
                ..RunRequest::default()
            })),
        }
    }

    fn start(process_guid: &str, index: i32, instance_guid: &str) -> ExecStart {
        ExecStart {
            process_guid: process_guid.into(),
            index,
            instance_guid: instance_guid.into(),
            ..ExecStart::default()
        }
    }

    #[test]
    fn instances_are_found_by_key_or_instance_guid_and_must_run() {
        let containers = vec![
            container("t1", task_workload("t1"), ContainerState::Running),
            container("ig-0", lrp_workload("web", 0, "ig-0"), ContainerState::Running),
            container("ig-1", lrp_workload("web", 1, "ig-1"), ContainerState::Initializing),
        ];
        assert_eq!(find(&containers, &start("web", 0, "")).map(|c| c.guid.as_str()), Ok("ig-0"));
        assert_eq!(find(&containers, &start("", 0, "ig-0")).map(|c| c.guid.as_str()), Ok("ig-0"));
        assert_eq!(find(&containers, &start("web", 0, "ig-0")).map(|c| c.guid.as_str()), Ok("ig-0"));
        // A key and an instance guid that disagree name nothing.
        assert_eq!(find(&containers, &start("web", 1, "ig-0")).err(), Some(TargetError::NotFound("ig-0".into())));
        assert_eq!(find(&containers, &start("web", 2, "")).err(), Some(TargetError::NotFound("web/2".into())));
        assert_eq!(find(&containers, &start("", 0, "")).err(), Some(TargetError::Missing));
        // Tasks are not LRP instances.
        assert_eq!(find(&containers, &start("", 0, "t1")).err(), Some(TargetError::NotFound("t1".into())));
        assert_eq!(
            find(&containers, &start("web", 1, "")).err(),
            Some(TargetError::NotRunning { what: "web/1".into(), state: "initializing".into() })
        );
    }

    #[test]
    fn the_command_gets_the_main_process_context() {
        let c = container("ig-3", lrp_workload("web", 3, "ig-3"), ContainerState::Running);
        let spec = spec_for(&c, Vec::new(), None, "");
        assert_eq!(spec.argv, [DEFAULT_SHELL]);
        assert_eq!((spec.dir.as_str(), spec.user.as_str()), ("/home/app", "vcap"));
        let lookup = |key: &str| spec.env.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        assert_eq!(lookup("INSTANCE_INDEX"), Some("3"));
        assert_eq!(lookup("CF_INSTANCE_GUID"), Some("ig-3"));
        assert_eq!(lookup("FROM_LRP"), Some("2"));
        assert_eq!(lookup("FROM_ACTION"), Some("1"));
        assert_eq!(lookup("PORT"), Some("61000"));
        assert_eq!(lookup("TERM"), None);
        let tty = spec_for(&c, vec!["top".into()], Some(TtySize { columns: 80, rows: 24 }), "");
        assert_eq!(tty.argv, ["top"]);
        assert_eq!(tty.env.last(), Some(&("TERM".to_owned(), "xterm".to_owned())));
    }
}
