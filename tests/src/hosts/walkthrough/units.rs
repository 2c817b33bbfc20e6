//! `systemctl enable --now`: a unit file's `[Service]` settings carried out in the host's
//! namespaces, and the units stopped at the end as systemd stops them.

use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use super::super::Process;
use super::{PATH, Walkthrough};

/// A unit started by `systemctl enable --now`.
#[derive(Debug)]
pub(super) struct Unit {
    pub(super) host: String,
    pub(super) name: String,
    pub(super) process: Process,
    /// Its TimeoutStopSec.
    pub(super) stop_within: Duration,
}

impl Walkthrough<'_> {
    /// Stops the units as systemd stops them: SIGTERM to the main process, the last started
    /// first; each must exit cleanly (status 0, or by the signal) within its TimeoutStopSec, and
    /// the cells' apps must be gone with their rep.
    pub(super) async fn stop_units(&mut self) {
        while let Some(mut unit) = self.units.pop() {
            let what = format!("stopping {}.service on {}", unit.name, unit.host);
            let pid = i32::try_from(unit.process.pid()).unwrap_or_else(|_| panic!("{what}: pid"));
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM)
                .unwrap_or_else(|e| panic!("{what}: SIGTERM: {e}"));
            let deadline = Instant::now() + unit.stop_within;
            let status = loop {
                if let Some(status) = unit.process.child.try_wait().unwrap_or_else(|e| panic!("{what}: {e}")) {
                    break status;
                }
                assert!(Instant::now() < deadline, "{what}: still running after {:?}", unit.stop_within);
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            let by_term = std::os::unix::process::ExitStatusExt::signal(&status) == Some(15);
            assert!(status.success() || by_term, "{what}: it exited with {status}");
            self.report.checks += 1;
        }
        let apps = self.app_uids();
        assert!(apps.is_empty(), "the apps outlived their rep: uids {apps:?}");
        self.report.checks += 1;
    }

    /// `systemctl enable --now UNIT`, as systemd would start it.
    pub(super) async fn enable(&mut self, host: &str, unit: &str, context: &str) {
        let unit = unit.strip_suffix(".service").unwrap_or(unit);
        let path = self.roots[host].path(&format!("/etc/systemd/system/{unit}.service"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{context}: Unit file {unit}.service does not exist ({e})"));
        let service = ServiceSection::parse(&text).unwrap_or_else(|e| panic!("{context}: {unit}.service: {e}"));
        let user = service.get("User").unwrap_or("root").to_owned();
        let group = service.get("Group").unwrap_or(&user).to_owned();
        for dir in service.get("StateDirectory").unwrap_or_default().split_whitespace() {
            let mode = service.get("StateDirectoryMode").unwrap_or("0755");
            let path = format!("/var/lib/{dir}");
            let parent = Path::new(&path).parent().map(|p| p.display().to_string()).unwrap_or_default();
            let make = format!("mkdir -p {parent} && install -d -m {mode} -o {user} -g {group} {path}");
            self.must(host, &make, &format!("{context}: {unit}.service's StateDirectory")).await;
        }
        let exec: Vec<String> = service
            .get("ExecStart")
            .unwrap_or_else(|| panic!("{context}: {unit}.service has no ExecStart"))
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        assert!(
            exec.iter().all(|w| !w.contains(['"', '\'', '$', '%'])) && !exec[0].starts_with(['-', '@', '+', '!']),
            "{context}: {unit}.service's ExecStart needs more than splitting at spaces: {exec:?}"
        );
        let pid = self.roots[host].pid.to_string();
        let mut args: Vec<String> =
            ["--target", &pid, "--mount", "--", "env", "-i", "-C", service.get("WorkingDirectory").unwrap_or("/")]
                .map(str::to_owned)
                .to_vec();
        args.push(format!("PATH={PATH}"));
        for assignments in service.all("Environment") {
            args.extend(assignments.trim_matches('"').split_whitespace().map(str::to_owned));
        }
        let umask = service.get("UMask").unwrap_or("0022");
        args.extend(["sh".into(), "-c".into(), format!("umask {umask} && exec \"$@\""), "sh".into()]);
        // Limits as root, before the user is taken on (as systemd does): raising one takes root.
        if let Some(limit) = service.get("LimitNOFILE") {
            let mut limit: u64 = limit.parse().unwrap_or_else(|_| panic!("{context}: LimitNOFILE={limit}"));
            // Raising the hard limit takes CAP_SYS_RESOURCE, which a test machine may not give.
            let hard = open_files_hard_limit();
            if hard.is_some_and(|hard| hard < limit) {
                let hard = hard.unwrap_or(limit);
                self.report.notes.push(format!(
                    "{host}: {unit}.service's LimitNOFILE={limit} lowered to {hard}, this process's hard limit"
                ));
                limit = hard;
            }
            args.extend(["prlimit".into(), format!("--nofile={limit}:{limit}"), "--".into()]);
        }
        if user != "root" || group != "root" {
            args.extend(
                ["setpriv", &format!("--reuid={user}"), &format!("--regid={group}"), "--init-groups", "--"]
                    .map(str::to_owned),
            );
        }
        args.extend(exec);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let name = format!("{host}-{unit}");
        let process = self.net.spawn(host, &name, Path::new("nsenter"), &args, &[]);
        self.report.notes.push(format!(
            "{host}: {unit}.service started as {user}:{group}; not emulated: {}",
            service.unemulated().join(", ")
        ));
        let stop_within = service.get("TimeoutStopSec").map_or(Duration::from_secs(90), |t| {
            let seconds = t.strip_suffix('s').unwrap_or(t);
            Duration::from_secs(seconds.parse().unwrap_or_else(|_| panic!("{context}: TimeoutStopSec={t}")))
        });
        self.units.push(Unit { host: host.to_owned(), name: unit.to_owned(), process, stop_within });
    }
}

/// This process's hard limit of open files (`None`: unlimited or unknown).
fn open_files_hard_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(4)?.parse().ok()
}

/// A unit file's `[Service]` settings.
#[derive(Debug, Default)]
struct ServiceSection {
    settings: Vec<(String, String)>,
}

/// The `[Service]` settings a started unit honours.
const EMULATED: [&str; 10] = [
    "ExecStart",
    "User",
    "Group",
    "Environment",
    "UMask",
    "StateDirectory",
    "StateDirectoryMode",
    "LimitNOFILE",
    "WorkingDirectory",
    "TimeoutStopSec",
];

impl ServiceSection {
    fn parse(text: &str) -> Result<ServiceSection, String> {
        let mut section = "";
        let mut settings = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.starts_with('[') {
                section = line;
                continue;
            }
            if section == "[Service]" {
                let (key, value) = line.split_once('=').ok_or_else(|| format!("not a setting: {line}"))?;
                settings.push((key.trim().to_owned(), value.trim().to_owned()));
            }
        }
        if settings.is_empty() {
            return Err("no [Service] section".into());
        }
        Ok(ServiceSection { settings })
    }

    /// The last value of `key`.
    fn get(&self, key: &str) -> Option<&str> {
        self.settings.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Every value of `key`.
    fn all(&self, key: &str) -> Vec<&str> {
        self.settings.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }

    /// The settings not in [`EMULATED`].
    fn unemulated(&self) -> Vec<&str> {
        let mut keys: Vec<&str> =
            self.settings.iter().map(|(k, _)| k.as_str()).filter(|k| !EMULATED.contains(k)).collect();
        keys.dedup();
        keys
    }
}
