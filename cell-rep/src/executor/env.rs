//! The environment of a container's processes (reference §3.3, `rep/conversion_helpers.go`,
//! `depot/steps/run_step.go`), built from the container's workload and the ports the runtime
//! allocated.
//!
//! Order: instance variables, the request's env, each run action's env, then the networking
//! variables; a later duplicate wins. With host networking the app must listen on its host port,
//! so `PORT` (last) is the host port of the first container port.

use serde::Serialize;

use crate::runtime::ContainerInfo;
use crate::workload::Workload;

/// `INSTANCE_GUID`, `INSTANCE_INDEX`, `CF_INSTANCE_GUID`, `CF_INSTANCE_INDEX` for LRP containers;
/// nothing for tasks.
pub fn instance_env(workload: &Workload) -> Vec<(String, String)> {
    let Workload::Lrp(lrp) = workload else { return Vec::new() };
    let instance_guid = lrp.instance_guid.as_str();
    let index = lrp.key.index.to_string();
    vec![
        ("INSTANCE_GUID".into(), instance_guid.into()),
        ("INSTANCE_INDEX".into(), index.clone()),
        ("CF_INSTANCE_GUID".into(), instance_guid.into()),
        ("CF_INSTANCE_INDEX".into(), index),
    ]
}

#[derive(Serialize)]
struct PortEntry {
    external: u32,
    internal: u32,
}

/// `CF_INSTANCE_IP`, `CF_INSTANCE_INTERNAL_IP`, `CF_INSTANCE_PORT`, `CF_INSTANCE_ADDR`,
/// `CF_INSTANCE_PORTS` and, when there are ports, `PORT`. With no ports, port and address are
/// empty and the list is `[]`.
pub fn network_env(info: &ContainerInfo) -> Vec<(String, String)> {
    let first = info.ports.first();
    let port = first.map(|m| m.host_port.to_string()).unwrap_or_default();
    let addr = first.map(|m| format!("{}:{}", info.host_ip, m.host_port)).unwrap_or_default();
    let ports: Vec<PortEntry> =
        info.ports.iter().map(|m| PortEntry { external: m.host_port, internal: m.container_port }).collect();
    let ports_json = serde_json::to_string(&ports).unwrap_or_else(|_| "[]".into());
    let mut env = vec![
        ("CF_INSTANCE_IP".into(), info.host_ip.clone()),
        ("CF_INSTANCE_INTERNAL_IP".into(), info.internal_ip.clone()),
        ("CF_INSTANCE_PORT".into(), port.clone()),
        ("CF_INSTANCE_ADDR".into(), addr),
        ("CF_INSTANCE_PORTS".into(), ports_json),
    ];
    if !port.is_empty() {
        env.push(("PORT".into(), port));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::PortMapping;
    use crate::workload::{lrp_workload, task_workload};

    fn lookup<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
        env.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    #[test]
    fn lrps_get_instance_variables_from_their_workload() {
        let env = instance_env(&lrp_workload("pg", 3, "ig-1"));
        assert_eq!(lookup(&env, "INSTANCE_INDEX"), Some("3"));
        assert_eq!(lookup(&env, "CF_INSTANCE_INDEX"), Some("3"));
        assert_eq!(lookup(&env, "INSTANCE_GUID"), Some("ig-1"));
        assert_eq!(lookup(&env, "CF_INSTANCE_GUID"), Some("ig-1"));
    }

    #[test]
    fn tasks_get_no_instance_variables() {
        assert!(instance_env(&task_workload("t1")).is_empty());
    }

    #[test]
    fn networking_variables_use_the_first_host_port() {
        let info = ContainerInfo {
            host_ip: "127.0.0.1".into(),
            internal_ip: "127.0.0.1".into(),
            ports: vec![
                PortMapping { container_port: 8080, host_port: 61001 },
                PortMapping { container_port: 2222, host_port: 61002 },
            ],
        };
        let env = network_env(&info);
        assert_eq!(lookup(&env, "PORT"), Some("61001"));
        assert_eq!(lookup(&env, "CF_INSTANCE_PORT"), Some("61001"));
        assert_eq!(lookup(&env, "CF_INSTANCE_ADDR"), Some("127.0.0.1:61001"));
        assert_eq!(lookup(&env, "CF_INSTANCE_IP"), Some("127.0.0.1"));
        assert_eq!(lookup(&env, "CF_INSTANCE_INTERNAL_IP"), Some("127.0.0.1"));
        assert_eq!(
            lookup(&env, "CF_INSTANCE_PORTS"),
            Some(r#"[{"external":61001,"internal":8080},{"external":61002,"internal":2222}]"#)
        );
    }

    #[test]
    fn no_ports_means_empty_port_and_address() {
        let info = ContainerInfo { host_ip: "127.0.0.1".into(), internal_ip: "127.0.0.1".into(), ports: vec![] };
        let env = network_env(&info);
        assert_eq!(lookup(&env, "CF_INSTANCE_PORT"), Some(""));
        assert_eq!(lookup(&env, "CF_INSTANCE_ADDR"), Some(""));
        assert_eq!(lookup(&env, "CF_INSTANCE_PORTS"), Some("[]"));
        assert_eq!(lookup(&env, "PORT"), None);
    }
}
