//! The OCI `config.json` of a container bundle and the `process.json` of each exec, written with
//! serde_json. Pure functions of their inputs, tested without runc.
//!
//! Shape: the rootfs read-only, host network (no network namespace), private pid / ipc / uts /
//! mount namespaces, writable bind mounts for `/tmp` and `/home`, memory, pids and CPU-share
//! limits in `linux.resources`, and a fixed cgroups path so the OOM counter can be read.

use std::path::Path;

use serde_json::{Value, json};

/// The memory limit in bytes of `memory_mb` (MB × 2^20), or `None` when unlimited.
pub fn memory_limit_bytes(memory_mb: i32) -> Option<i64> {
    (memory_mb > 0).then(|| i64::from(memory_mb) * 1024 * 1024)
}

/// CPU shares from a 1-100 weight: `1024 × weight / 100`, at least 2 (the kernel's minimum).
pub fn cpu_shares(cpu_weight: u32) -> Option<u64> {
    (cpu_weight > 0).then(|| (1024 * u64::from(cpu_weight.min(100)) / 100).max(2))
}

/// The capabilities of an unprivileged container (runc's defaults) and of a privileged one.
fn capabilities(privileged: bool) -> Value {
    let mut caps = vec!["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    if privileged {
        caps.extend([
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_FOWNER",
            "CAP_FSETID",
            "CAP_SETGID",
            "CAP_SETUID",
            "CAP_SETPCAP",
            "CAP_NET_RAW",
            "CAP_SYS_CHROOT",
            "CAP_MKNOD",
            "CAP_SETFCAP",
            "CAP_SYS_ADMIN",
        ]);
    }
    json!({ "bounding": caps, "effective": caps, "permitted": caps, "ambient": caps })
}

/// Inputs of a bundle's `config.json`.
#[derive(Debug, Clone)]
pub struct BundleSpec<'a> {
    /// The container guid (hostname).
    pub guid: &'a str,
    /// The host directory of the rootfs, mounted read-only.
    pub rootfs: &'a Path,
    /// The init's executable inside the rootfs; runc checks it exists at create time, and it is
    /// never started (the container stays in `created` and processes are `runc exec`ed).
    pub init: &'a str,
    /// Host directory bind-mounted read-write at `/tmp`.
    pub tmp_dir: &'a Path,
    /// Host directory bind-mounted read-write at `/home`.
    pub home_dir: &'a Path,
    /// Memory limit in MB (0 = unlimited).
    pub memory_mb: i32,
    /// Pids limit (0 = unlimited).
    pub max_pids: i32,
    /// CPU weight 1-100 (0 = runc default).
    pub cpu_weight: u32,
    /// Whether to grant the extra capabilities.
    pub privileged: bool,
    /// The cgroups path, e.g. `/diego-rs/<instance>-<guid>`.
    pub cgroups_path: &'a str,
}

/// The bundle's `config.json`.
pub fn bundle_config(spec: &BundleSpec<'_>) -> Value {
    let mut resources = json!({ "devices": [{ "allow": false, "access": "rwm" }] });
    if let Some(limit) = memory_limit_bytes(spec.memory_mb) {
        resources["memory"] = json!({ "limit": limit });
    }
    if spec.max_pids > 0 {
        resources["pids"] = json!({ "limit": spec.max_pids });
    }
    if let Some(shares) = cpu_shares(spec.cpu_weight) {
        resources["cpu"] = json!({ "shares": shares });
    }
    let hostname: String = spec.guid.chars().take(63).collect();
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": [spec.init],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "capabilities": capabilities(spec.privileged),
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
            "noNewPrivileges": true
        },
        "root": { "path": spec.rootfs, "readonly": true },
        "hostname": hostname,
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
              "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
              "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
              "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs",
              "options": ["nosuid", "noexec", "nodev", "ro"] },
            { "destination": "/tmp", "type": "bind", "source": spec.tmp_dir,
              "options": ["rbind", "rw"] },
            { "destination": "/home", "type": "bind", "source": spec.home_dir,
              "options": ["rbind", "rw"] }
        ],
        "linux": {
            "cgroupsPath": spec.cgroups_path,
            "resources": resources,
            // No "network" namespace: the container shares the host's network, so the app
            // listens on its allocated host port directly.
            "namespaces": [{ "type": "pid" }, { "type": "ipc" }, { "type": "uts" }, { "type": "mount" }],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
                "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

/// Inputs of one exec's `process.json`.
#[derive(Debug, Clone)]
pub struct ExecSpec<'a> {
    /// Executable and arguments.
    pub args: Vec<String>,
    /// Environment, in order (a later duplicate wins, as runc passes them through).
    pub env: &'a [(String, String)],
    /// Working directory inside the container.
    pub cwd: &'a str,
    /// uid and gid.
    pub user: (u32, u32),
    /// Open-files limit.
    pub nofile: Option<u64>,
}

/// An exec's `process.json`. Capabilities are left out so the container's apply.
pub fn exec_process(spec: &ExecSpec<'_>) -> Value {
    let mut env: Vec<String> = Vec::with_capacity(spec.env.len() + 1);
    if !spec.env.iter().any(|(k, _)| k == "PATH") {
        env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    // runc keeps the first of duplicate names; keep only the last one of each so later wins.
    for (i, (key, value)) in spec.env.iter().enumerate() {
        if !spec.env[i + 1..].iter().any(|(k, _)| k == key) {
            env.push(format!("{key}={value}"));
        }
    }
    let nofile = spec.nofile.unwrap_or(1024);
    json!({
        "terminal": false,
        "user": { "uid": spec.user.0, "gid": spec.user.1 },
        "args": spec.args,
        "env": env,
        "cwd": if spec.cwd.is_empty() { "/" } else { spec.cwd },
        "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile }],
        "noNewPrivileges": true
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> BundleSpec<'static> {
        BundleSpec {
            guid: "guid-1",
            rootfs: Path::new("/rootfs/busybox"),
            init: "/bin/sh",
            tmp_dir: Path::new("/b/rw/tmp"),
            home_dir: Path::new("/b/rw/home"),
            memory_mb: 64,
            max_pids: 100,
            cpu_weight: 50,
            privileged: false,
            cgroups_path: "/diego-rs/x-guid-1",
        }
    }

    #[test]
    fn the_bundle_has_limits_a_read_only_root_and_no_network_namespace() {
        let config = bundle_config(&spec());
        assert_eq!(config["root"]["path"], "/rootfs/busybox");
        assert_eq!(config["root"]["readonly"], true);
        assert_eq!(config["linux"]["resources"]["memory"]["limit"], 64 * 1024 * 1024);
        assert_eq!(config["linux"]["resources"]["pids"]["limit"], 100);
        assert_eq!(config["linux"]["resources"]["cpu"]["shares"], 512);
        assert_eq!(config["linux"]["cgroupsPath"], "/diego-rs/x-guid-1");
        let namespaces = config["linux"]["namespaces"].as_array().expect("namespaces");
        assert!(namespaces.iter().all(|n| n["type"] != "network"));
        assert_eq!(config["process"]["args"][0], "/bin/sh");
    }

    #[test]
    fn unlimited_resources_are_left_out() {
        let mut unlimited = spec();
        unlimited.memory_mb = 0;
        unlimited.max_pids = 0;
        unlimited.cpu_weight = 0;
        let config = bundle_config(&unlimited);
        assert!(config["linux"]["resources"].get("memory").is_none());
        assert!(config["linux"]["resources"].get("pids").is_none());
        assert!(config["linux"]["resources"].get("cpu").is_none());
    }

    #[test]
    fn cpu_shares_scale_with_weight() {
        assert_eq!(cpu_shares(100), Some(1024));
        assert_eq!(cpu_shares(1), Some(10));
        assert_eq!(cpu_shares(500), Some(1024));
        assert_eq!(cpu_shares(0), None);
    }

    #[test]
    fn exec_env_keeps_the_last_duplicate_and_adds_a_path() {
        let env = vec![
            ("PORT".to_owned(), "1".to_owned()),
            ("A".to_owned(), "b".to_owned()),
            ("PORT".to_owned(), "2".to_owned()),
        ];
        let process =
            exec_process(&ExecSpec { args: vec!["/bin/sh".into()], env: &env, cwd: "", user: (0, 0), nofile: None });
        let env: Vec<&str> = process["env"].as_array().expect("env").iter().filter_map(Value::as_str).collect();
        assert!(env[0].starts_with("PATH="));
        assert_eq!(&env[1..], ["A=b", "PORT=2"]);
        assert_eq!(process["cwd"], "/");
    }
}
