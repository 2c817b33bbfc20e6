//! `diego ssh` in the runc runtime: `runc exec` of a process spec into the container, like the
//! container's own processes (its namespaces, cgroup, rootfs and limits), with the instance's
//! environment, working directory and user. On a terminal the spec asks for one (`terminal`,
//! `consoleSize`): runc then makes a pseudo-terminal inside the container and copies it to and
//! from its own standard streams, which are the slave of the rep's terminal (so a resize of
//! the rep's terminal reaches runc as `SIGWINCH`, which runc passes on).

use std::ffi::OsString;
use std::sync::Arc;

use nix::sys::signal::Signal;
use serde_json::json;
use tokio::sync::watch;

use super::{ExitStatus, RuncRuntime, RuntimeError, RuntimeProcess, StopSignal, exit_code, resolve_user, send, spec};
use crate::exec::{ExecSession, ExecSpec, Launch, launch};
use crate::runtime::exec_limits::{ExecLimits, check_exec};

impl RuncRuntime {
    /// Starts `exec` in container `guid` (see the module documentation).
    pub(super) async fn exec_inner(&self, guid: &str, exec: ExecSpec) -> Result<ExecSession, RuntimeError> {
        let container =
            self.lock().get(guid).cloned().ok_or_else(|| RuntimeError::NotFound { guid: guid.to_owned() })?;
        let refused = |reason: String| RuntimeError::Refused { guid: guid.to_owned(), reason };
        let Some((path, args)) = exec.argv.split_first() else { return Err(refused("no command to run".into())) };
        check_exec(path, args, &exec.env, ExecLimits::host()).map_err(|e| refused(e.to_string()))?;
        let io = |op: &'static str| move |source| RuntimeError::Io { op, guid: guid.to_owned(), source };
        if !exec.dir.is_empty()
            && let Ok(Some(host_dir)) = crate::runtime::ContainerRuntime::host_path(self, guid, &exec.dir)
        {
            let _ = tokio::fs::create_dir_all(host_dir).await;
        }
        let user = resolve_user(&container.rootfs, &exec.user).await;
        let mut process_json = spec::exec_process(&spec::ExecSpec {
            args: exec.argv.clone(),
            env: &exec.env,
            cwd: &exec.dir,
            user,
            nofile: None,
        });
        if let Some(size) = exec.tty {
            process_json["terminal"] = json!(true);
            if size.columns > 0 && size.rows > 0 {
                process_json["consoleSize"] = json!({ "height": size.rows, "width": size.columns });
            }
        }
        let id = format!("ssh-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let exec_dir = container.bundle.join("exec");
        let process_path = exec_dir.join(format!("{id}.json"));
        let pid_path = exec_dir.join(format!("{id}.pid"));
        let json = serde_json::to_vec(&process_json).unwrap_or_default();
        tokio::fs::write(&process_path, json).await.map_err(io("write process.json"))?;

        let mut runc_args: Vec<OsString> = vec!["--root".into(), self.state_root().into_os_string(), "exec".into()];
        runc_args.extend(["--process".into(), process_path.clone().into_os_string()]);
        runc_args.extend(["--pid-file".into(), pid_path.clone().into_os_string(), guid.into()]);
        // runc itself runs with the rep's environment; the command gets the spec's.
        let launched = launch(Launch {
            program: self.config.runc_path.clone().into_os_string(),
            args: runc_args,
            env: std::env::vars().collect(),
            cwd: None,
            user: None,
            tty: exec.tty,
        });
        let (mut child, io) = launched.map_err(io("run runc exec"))?;
        let exec_pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
        let (tx, rx) = watch::channel(None);
        let guid_owned = guid.to_owned();
        let cleanup = [process_path, pid_path.clone()];
        tokio::spawn(async move {
            let code = match child.wait().await {
                Ok(status) => exit_code(status),
                Err(error) => {
                    tracing::warn!(container_guid = %guid_owned, %error, "waiting for runc exec failed");
                    255
                }
            };
            for file in cleanup {
                let _ = tokio::fs::remove_file(file).await;
            }
            let _ = tx.send(Some(ExitStatus { code, out_of_memory: false }));
        });
        let signaller = Arc::new(move |signal: StopSignal| match signal {
            StopSignal::Terminate => send(exec_pid, Signal::SIGTERM),
            // The command itself (pid from runc's pid file), then runc exec with it.
            StopSignal::Kill => {
                let pid = std::fs::read_to_string(&pid_path).ok().and_then(|s| s.trim().parse::<i32>().ok());
                if let Some(pid) = pid {
                    send(pid, Signal::SIGKILL)?;
                }
                send(exec_pid, Signal::SIGKILL)
            }
        });
        Ok(ExecSession { io, process: RuntimeProcess::new(signaller, rx) })
    }
}
