//! Each host's files and terminal: a mount namespace with overlayfs layers, and one `sh` session
//! for the whole guide.

use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::time::Instant;

use super::super::{Network, Process};
use super::{COMMAND_LIMIT, LAYERED, PATH, Walkthrough, sh_quote};

/// What a command printed.
#[derive(Debug, Clone)]
pub struct Output {
    /// Its exit status.
    pub status: i32,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl Output {
    pub(super) fn describe(&self) -> String {
        format!("status {}, stdout {:?}, stderr {:?}", self.status, self.stdout.trim(), self.stderr.trim())
    }
}

/// One host's operator session: a `sh` in the host's namespaces, fed one command at a time.
#[derive(Debug)]
pub(super) struct Shell {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// Where each command's output goes.
    io: PathBuf,
    log: PathBuf,
    count: u64,
}

impl Shell {
    pub(super) async fn start(host: &HostRoot) -> io::Result<Shell> {
        let io = host.dir.join("io");
        std::fs::create_dir_all(&io)?;
        let log = host.scratch.join(format!("{}-shell.log", host.name));
        let mut child = tokio::process::Command::new("nsenter")
            .args(["--target", &host.pid.to_string(), "--mount", "--net", "--"])
            .args(["env", "-i", "-C", "/root", "HOME=/root", "USER=root", "LOGNAME=root", "SHELL=/bin/sh"])
            .args(["LANG=C.UTF-8", &format!("PATH={PATH}"), "sh"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().ok_or_else(|| io::Error::other("no stdin"))?;
        let stdout = BufReader::new(child.stdout.take().ok_or_else(|| io::Error::other("no stdout"))?);
        Ok(Shell { child, stdin, stdout, io, log, count: 0 })
    }

    /// Runs `command` in the session (cd, variables and exports stay), its stdin /dev/null.
    async fn run(&mut self, command: &str) -> Result<Output, String> {
        self.count += 1;
        let marker = format!("__walkthrough_{}_done", self.count);
        let (out, err) = (self.io.join("stdout"), self.io.join("stderr"));
        let script = format!(
            "{{\n{command}\n}} </dev/null >{} 2>{}\necho \"{marker} $?\"\n",
            sh_quote(&out.display().to_string()),
            sh_quote(&err.display().to_string())
        );
        let shell_log = || std::fs::read_to_string(&self.log).unwrap_or_default();
        self.stdin
            .write_all(script.as_bytes())
            .await
            .map_err(|e| format!("the shell is gone ({e}): {}", shell_log()))?;
        self.stdin.flush().await.map_err(|e| format!("the shell is gone ({e})"))?;
        let deadline = Instant::now() + COMMAND_LIMIT;
        let status = loop {
            let mut line = String::new();
            let read = tokio::time::timeout_at(deadline, self.stdout.read_line(&mut line))
                .await
                .map_err(|_| format!("it did not finish within {COMMAND_LIMIT:?}"))?;
            match read {
                Ok(0) | Err(_) => {
                    let status = self.child.try_wait().ok().flatten();
                    return Err(format!("the shell exited ({status:?}): {}", shell_log()));
                }
                Ok(_) => {}
            }
            if let Some(status) = line.trim().strip_prefix(&marker) {
                break status.trim().parse().unwrap_or(-1);
            }
        };
        let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
        Ok(Output { status, stdout: read(&out), stderr: read(&err) })
    }
}

/// A host's own view of the files: a mount namespace with [`LAYERED`] as overlayfs layers, held
/// by a process of the host.
#[derive(Debug)]
pub(super) struct HostRoot {
    pub(super) name: String,
    pub(super) ip: Ipv4Addr,
    pub(super) netns: String,
    /// `<scratch>/hosts/<name>`: the layers and the session's output.
    dir: PathBuf,
    scratch: PathBuf,
    pub(super) holder: Process,
    /// The holder's pid: `nsenter --target` it, or reach its files under `/proc/<pid>/root`.
    pub(super) pid: u32,
}

impl HostRoot {
    /// Makes the layers (placing `files` in the host's /root first) and the namespace.
    pub(super) async fn start(net: &Network, name: &str, files: &[&Path]) -> HostRoot {
        let dir = net.scratch().join("hosts").join(name);
        let mut script = String::from("set -e\n");
        for layered in LAYERED {
            let key = layered.trim_start_matches('/').replace('/', "-");
            let (upper, work) = (dir.join("upper").join(&key), dir.join("work").join(&key));
            for d in [&upper, &work] {
                std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
            }
            if layered == "/root" {
                for file in files {
                    let to = upper.join(file.file_name().unwrap_or_default());
                    std::fs::hard_link(file, &to)
                        .or_else(|_| std::fs::copy(file, &to).map(drop))
                        .unwrap_or_else(|e| panic!("{} to {}: {e}", file.display(), to.display()));
                }
            }
            script.push_str(&format!(
                "mount -t overlay overlay -o lowerdir={layered},upperdir={},workdir={} {layered}\n",
                upper.display(),
                work.display()
            ));
        }
        let ready = dir.join("ready");
        script.push_str(&format!("touch {}\nexec sleep infinity\n", sh_quote(&ready.display().to_string())));
        let mut holder = net.spawn(
            name,
            &format!("{name}-mounts"),
            Path::new("unshare"),
            &["--mount", "--propagation", "private", "sh", "-c", &script],
            &[],
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ready.exists() {
            assert!(holder.alive(), "{name}: the mount namespace could not be made: see {name}-mounts.log");
            assert!(Instant::now() < deadline, "{name}: the mount namespace was not ready within 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let host = net.host(name);
        let pid = holder.pid();
        HostRoot {
            name: name.to_owned(),
            ip: host.ip,
            netns: host.netns().to_owned(),
            dir,
            scratch: net.scratch().to_owned(),
            holder,
            pid,
        }
    }

    /// `path` of the host, as this process reaches it.
    pub(super) fn path(&self, path: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{path}", self.pid))
    }
}

impl Walkthrough<'_> {
    /// The host whose address is `ip`.
    pub(super) fn host_at(&self, ip: &str) -> &HostRoot {
        self.roots.values().find(|r| r.ip.to_string() == ip).unwrap_or_else(|| panic!("no host has the address {ip}"))
    }

    /// Runs `text` in `host`'s session.
    /// Each command and its output go to `<scratch>/<host>-session.log` as well.
    pub(super) async fn shell(&mut self, host: &str, text: &str) -> Result<Output, String> {
        let shell = self.shells.get_mut(host).unwrap_or_else(|| panic!("no session on {host}"));
        let result = shell.run(text).await;
        let entry = match &result {
            Ok(out) => format!("$ {text}\n{}{}[status {}]\n", out.stdout, out.stderr, out.status),
            Err(e) => format!("$ {text}\n[{e}]\n"),
        };
        let log = self.net.scratch().join(format!("{host}-session.log"));
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| std::io::Write::write_all(&mut f, entry.as_bytes()));
        if let Err(e) = appended {
            eprintln!("multihost: {}: {e}", log.display());
        }
        result
    }

    /// Runs `text` in `host`'s session and requires it to succeed.
    pub(super) async fn must(&mut self, host: &str, text: &str, context: &str) -> Output {
        match self.shell(host, text).await {
            Ok(out) if out.status == 0 => out,
            Ok(out) => panic!("{context}: `{text}` on {host} failed: {}", out.describe()),
            Err(e) => panic!("{context}: `{text}` on {host}: {e}"),
        }
    }
}
