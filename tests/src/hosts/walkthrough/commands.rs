//! One command of the guide carried out on a host, as written or by its rule; the operator's
//! edits of the unpacked configurations; the checks of the app the guide starts.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::time::Instant;

use super::super::relay::Relay;
use super::classify::check_paths;
use super::host::Output;
use super::{
    Block, GUIDE, GuideCommand, Kind, PATH, READY_WITHIN, Walkthrough, classify, expected_answer, replace_word, rule,
    sh_quote,
};

impl Walkthrough<'_> {
    /// The uids of the `diego-demo-app` processes in the cells' namespaces.
    pub(super) fn app_uids(&self) -> Vec<String> {
        let mut uids = Vec::new();
        for cell in self.guide.cells() {
            let netns = self.net.host(cell).netns().to_owned();
            let pids =
                std::process::Command::new("ip").args(["netns", "pids", &netns]).output().expect("ip netns pids");
            for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                // A zombie has no memory: an app that has exited but is not yet reaped is gone.
                if comm.trim() == "diego-demo-app" && status.lines().any(|l| l.starts_with("VmRSS:")) {
                    let uid =
                        status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|u| u.split_whitespace().next());
                    uids.push(uid.unwrap_or_default().to_owned());
                }
            }
        }
        uids
    }

    /// The guide's address → the test host's, for every host.
    fn addresses(&self) -> Vec<(String, String)> {
        self.guide.hosts.iter().map(|h| (h.address.to_string(), self.net.host(&h.name).ip.to_string())).collect()
    }

    /// `text` with the guide's addresses replaced by the test's.
    fn with_addresses(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for (written, actual) in self.addresses() {
            text = text.replace(&written, &actual);
        }
        text
    }

    /// `text` with the guide's version (in the tarball's name) replaced by the release's.
    fn with_version(&self, text: &str) -> String {
        text.replace("diego-rs-0.1.0-", &format!("{}-", self.release.name.trim_end_matches("-x86_64-linux-musl")))
    }

    /// Carries out one command of the guide on `host`.
    pub(super) async fn command(&mut self, host: &str, block: &Block, command: &GuideCommand) {
        let context = format!("{GUIDE}:{} ({}, on {host})", command.line, block.section);
        let layered = check_paths(&command.text).unwrap_or_else(|e| panic!("{context}: `{}`: {e}", command.text));
        let addressed = self.with_addresses(&command.text);
        let text = self.with_version(&addressed);
        for (kind, applied) in [
            (Kind::Files, layered > 0),
            (Kind::Addresses, addressed != command.text),
            (Kind::Version, text != addressed),
        ] {
            if applied {
                *self.report.per_rule.entry(kind).or_default() += 1;
            }
        }
        let kind = classify(&text).unwrap_or_else(|| {
            panic!(
                "{context}: no rule of the walkthrough's table (tests/src/hosts/walkthrough.rs, RULES) covers `{}`: \
                 run it as written or add a translation",
                command.text
            )
        });
        eprintln!("multihost: deploy guide: {host}$ {text}");
        *self.report.per_rule.entry(kind).or_default() += 1;
        let mut as_written = rule(kind).as_written;
        match kind {
            Kind::AsWritten => {
                self.must(host, &text, &context).await;
            }
            Kind::Packages => self.packages(host, &text, &context).await,
            Kind::AddUser => {
                let user = text.split_whitespace().last().unwrap_or_default().to_owned();
                if self.shell(host, &format!("id {user}")).await.is_ok_and(|o| o.status == 0) {
                    self.report.notes.push(format!("{host}: `useradd ... {user}` skipped: the user exists here"));
                    as_written = false;
                } else {
                    self.must(host, &text, &context).await;
                }
            }
            Kind::Postgres => {
                let server = &self.database.server;
                let mut env = format!("PGHOST=127.0.0.1 PGPORT=5432 PGUSER={}", sh_quote(&server.user));
                if let Some(password) = &server.password {
                    env.push_str(&format!(" PGPASSWORD={}", sh_quote(password)));
                }
                let translated = format!("{env} {}", replace_word(&text, "diego", &self.database.name));
                self.must(host, &translated, &context).await;
            }
            Kind::DaemonReload | Kind::Journal => {}
            Kind::EnableNow => {
                let units: Vec<String> = text.split_whitespace().skip(3).map(str::to_owned).collect();
                for unit in units {
                    self.enable(host, &unit, &context).await;
                }
            }
            Kind::Scp => {
                let words: Vec<&str> = text.split_whitespace().collect();
                let (target, files) = words[1..].split_last().unwrap_or_else(|| panic!("{context}: no files"));
                assert!(files.iter().all(|f| !f.starts_with('-')), "{context}: scp options are not translated");
                let (ip, dir) = target
                    .strip_prefix("root@")
                    .and_then(|t| t.split_once(':'))
                    .unwrap_or_else(|| panic!("{context}: bad scp target {target}"));
                let to = self.host_at(ip).path(dir);
                let translated = format!("cp {} {}", files.join(" "), sh_quote(&to.display().to_string()));
                self.must(host, &translated, &context).await;
            }
            Kind::Ssh => {
                let rest = text.strip_prefix("ssh root@").unwrap_or_default();
                let (ip, remote) = rest.split_once(' ').unwrap_or_else(|| panic!("{context}: no remote command"));
                let remote = remote.trim();
                assert!(
                    remote.len() > 1
                        && remote.starts_with('\'')
                        && remote.ends_with('\'')
                        && !remote[1..remote.len() - 1].contains('\''),
                    "{context}: the remote command should be one '...' word"
                );
                let pid = self.host_at(ip).pid;
                let translated = format!(
                    "nsenter --target {pid} --mount --net -- env -i -C /root HOME=/root USER=root LOGNAME=root \
                     PATH={PATH} sh -c {remote}"
                );
                self.must(host, &translated, &context).await;
            }
            Kind::Readiness => {
                let expected = expected_answer(&text)
                    .unwrap_or_else(|| {
                        panic!("{context}: a readiness check must say its answer in a `# \"...\"` comment")
                    })
                    .to_owned();
                let what = format!("{context}: `{text}` to answer {expected:?}");
                self.until(host, &text, &what, |out| (out.status == 0 && out.stdout.trim() == expected).then_some(()))
                    .await;
                self.report.checks += 1;
            }
            Kind::Cells => {
                let cells: Vec<String> = self.guide.cells().iter().map(|c| (*c).to_owned()).collect();
                let what = format!("{context}: `diego cells` to list {cells:?} in zone z1");
                self.until(host, &text, &what, |out| {
                    let listed = |cell: &str| {
                        out.stdout.lines().any(|l| {
                            let words: Vec<&str> = l.split_whitespace().collect();
                            words.contains(&cell) && words.contains(&"z1")
                        })
                    };
                    (out.status == 0 && cells.iter().all(|c| listed(c))).then_some(())
                })
                .await;
                self.report.checks += 1;
            }
            Kind::LrpRunning => self.lrp_running(host, &text, &context).await,
            Kind::Files | Kind::Addresses | Kind::Version | Kind::Tarball => {
                unreachable!("classify never answers {kind:?}")
            }
        }
        if as_written {
            self.report.run += 1;
        } else {
            self.report.translated += 1;
        }
    }

    /// Runs `text` in `host`'s session until `done` accepts its output, for up to
    /// [`READY_WITHIN`]; fails at once when a unit has exited.
    async fn until<T>(&mut self, host: &str, text: &str, what: &str, mut done: impl FnMut(&Output) -> Option<T>) -> T {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let last = self.shell(host, text).await.unwrap_or_else(|e| panic!("{what}: {e}"));
            if let Some(value) = done(&last) {
                return value;
            }
            for root in self.roots.values_mut() {
                assert!(root.holder.alive(), "{what}: the mount namespace of {} is gone", root.name);
            }
            for unit in &mut self.units {
                if !unit.process.alive() {
                    let log = self.net.scratch().join(format!("{}.log", unit.process.name));
                    panic!(
                        "{what}: unit {} on {} exited; its log:\n{}",
                        unit.name,
                        unit.host,
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
            }
            assert!(Instant::now() < deadline, "{what}: not within {READY_WITHIN:?}; last: {}", last.describe());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `apt-get install -y PACKAGE...`: each must be installed here; postgresql gets the relay.
    async fn packages(&mut self, host: &str, text: &str, context: &str) {
        for package in text.split_whitespace().skip(3) {
            let query = format!("dpkg-query -W -f='${{Status}}' {package}");
            let installed = self.shell(host, &query).await.is_ok_and(|o| o.stdout.trim() == "install ok installed");
            if installed {
                self.report.checks += 1;
            } else {
                self.report.notes.push(format!("{host}: package {package} is not installed on this machine"));
            }
            if package == "postgresql" {
                let root = &self.roots[host];
                let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 5432));
                let relay = Relay::start(Some(&root.netns), listen, None, self.database.server.address)
                    .await
                    .unwrap_or_else(|e| panic!("{context}: cannot relay {host}'s 127.0.0.1:5432: {e}"));
                self.relays.push(relay);
                self.report.notes.push(format!(
                    "{host}: PostgreSQL is the test server at {}, relayed to the host's 127.0.0.1:5432",
                    self.database.server.address
                ));
            }
        }
    }

    /// The operator's edits of `host`'s unpacked config/: the test's addresses for the guide's,
    /// and the guide database's name in bbs.toml's database_url.
    pub(super) async fn edit_configs(&mut self, host: &str) {
        let context = format!("the operator's edits of config/*.toml on {host}");
        let mut sed = String::from("sed -i");
        for (written, actual) in self.addresses() {
            sed.push_str(&format!(" -e 's/{}/{actual}/g'", written.replace('.', r"\.")));
        }
        let name = self.database.name.clone();
        sed.push_str(&format!(" -e '/^database_url = /s/\\bdiego\\b/{name}/g' config/*.toml"));
        self.must(host, &sed, &context).await;
        let left = self.shell(host, r"grep -n '10\.0\.0\.' config/*.toml").await.unwrap_or_else(|e| panic!("{e}"));
        assert!(left.status == 1, "{context}: addresses the guide does not list are left: {}", left.stdout);
        let url = self.must(host, "grep '^database_url = ' config/bbs.toml", &context).await;
        assert_eq!(
            url.stdout.trim(),
            format!("database_url = \"postgres://{name}:CHANGE-ME@127.0.0.1:5432/{name}\""),
            "{context}: bbs.toml's database_url"
        );
    }

    /// `diego lrp GUID` until every instance runs, then what the guide says of them: each answers
    /// `/env` with its index at `CELL:HOSTPORT`, and runs as `nobody`.
    async fn lrp_running(&mut self, host: &str, text: &str, context: &str) {
        let what = format!("{context}: `{text}` to show every instance RUNNING");
        let instances = self.until(host, text, &what, |out| running_instances(&out.stdout)).await;
        self.report.checks += 1;
        let cells: Vec<String> = self.guide.cells().iter().map(|c| self.net.host(c).ip.to_string()).collect();
        for (index, address) in &instances {
            let (ip, port) = address.split_once(':').unwrap_or_else(|| panic!("{context}: address {address}"));
            assert!(cells.iter().any(|c| c == ip), "{context}: instance {index} at {address} is not on a cell");
            let curl = format!("curl -s --max-time 10 http://{ip}:{port}/env");
            let out = self.must(host, &curl, &format!("{context}: the app's /env")).await;
            let env: serde_json::Value = serde_json::from_str(&out.stdout)
                .unwrap_or_else(|e| panic!("{context}: /env of instance {index} is not JSON ({e}): {}", out.stdout));
            assert_eq!(env["INSTANCE_INDEX"], serde_json::json!(index.to_string()), "{context}: /env of {address}");
            let object = env.as_object().map(|o| o.keys().any(|k| k.starts_with("CF_INSTANCE_")));
            assert_eq!(object, Some(true), "{context}: /env of {address} has no CF_INSTANCE_* variables: {env}");
            self.report.checks += 1;
        }
        // The app's processes, found by name in the cells' namespaces, run as nobody.
        let uids = self.app_uids();
        let nobody = self.must(host, "id -u nobody", context).await.stdout.trim().to_owned();
        assert_eq!(uids.len(), instances.len(), "{context}: diego-demo-app processes on the cells: uids {uids:?}");
        assert!(uids.iter().all(|u| *u == nobody), "{context}: the app runs as uids {uids:?}, not nobody ({nobody})");
        self.report.checks += 1;
    }
}

/// From `diego lrp` output: every instance's (index, `ip:port`) once each desired instance is
/// RUNNING with a `ip:port->container` address, else `None`.
pub fn running_instances(output: &str) -> Option<Vec<(i32, String)>> {
    let counts = output.lines().find_map(|l| l.strip_prefix("instances:"))?;
    let words: Vec<&str> = counts.split_whitespace().collect();
    let (running, desired): (usize, usize) = match words.as_slice() {
        [running, "running", "/", desired, "desired"] => (running.parse().ok()?, desired.parse().ok()?),
        _ => return None,
    };
    if desired == 0 || running != desired {
        return None;
    }
    let mut lines = output.lines().skip_while(|l| !l.starts_with("INDEX"));
    lines.next()?;
    let mut instances = Vec::new();
    for line in lines.take_while(|l| !l.trim().is_empty()) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [index, "RUNNING", _cell, address, ..] = words.as_slice() else { return None };
        let endpoint = address.split_once("->")?.0;
        instances.push((index.parse().ok()?, endpoint.to_owned()));
    }
    (instances.len() == desired).then_some(instances)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_running_instances_are_read_from_diego_lrp() {
        let output = "process guid:  demo\ninstances:     2 running / 2 desired\n\n\
                      INDEX  STATE    CELL    ADDRESS                  CRASHES  SINCE  DETAILS\n\
                      0      RUNNING  cell-1  10.1.1.12:61000->8080    0        3s\n\
                      1      RUNNING  cell-1  10.1.1.12:61001->8080    0        3s\n";
        assert_eq!(running_instances(output), Some(vec![(0, "10.1.1.12:61000".into()), (1, "10.1.1.12:61001".into())]));
        assert_eq!(running_instances(&output.replace("2 running", "1 running")), None);
    }
}
