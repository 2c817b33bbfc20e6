//! `diego ssh` in the process runtime: the command runs on the host like the container's own
//! processes: in the container directory's working directory, with the instance's environment
//! (and the same `PATH`, `HOME` and `TMPDIR` defaults), as the main process's user, inside the
//! container's cgroup or under its rlimit wrappers, counted against its `max_pids`, and recorded
//! with its process groups so destroying the container kills it too.

use std::ffi::OsString;
use std::sync::Arc;

use tokio::sync::watch;

use super::{
    DEFAULT_PATH, ExitStatus, ProcessRuntime, RuntimeError, RuntimeProcess, StopSignal, exit_code, join_inside, limits,
    resolve_program, run_as, signal_group, validate_guid,
};
use crate::exec::{ExecSession, ExecSpec, Launch, launch};
use crate::runtime::exec_limits::{ExecLimits, check_exec};

impl ProcessRuntime {
    /// Starts `spec` in container `guid` (see the module documentation).
    pub(super) async fn exec_inner(&self, guid: &str, spec: ExecSpec) -> Result<ExecSession, RuntimeError> {
        validate_guid(guid)?;
        let refused = |reason: String| RuntimeError::Refused { guid: guid.to_owned(), reason };
        let Some((path, args)) = spec.argv.split_first() else { return Err(refused("no command to run".into())) };
        if !self.lock().contains_key(guid) {
            return Err(RuntimeError::NotFound { guid: guid.to_owned() });
        }
        check_exec(path, args, &spec.env, ExecLimits::host()).map_err(|e| refused(e.to_string()))?;
        let dir = self.container_dir(guid);
        let cwd = if spec.dir.is_empty() { Some(dir.clone()) } else { join_inside(&dir, &spec.dir) };
        let cwd = cwd.ok_or_else(|| RuntimeError::Unsupported {
            runtime: "process",
            what: format!("working directory {:?}", spec.dir),
        })?;
        tokio::fs::create_dir_all(&cwd).await.map_err(Self::io("create working directory", guid))?;
        // Admitted last, just before the launch, so the spawn lock is held only while starting.
        let admitted = self.admit(guid, true).await?;
        let (memory_mb, cpu_weight, cgroup) = (admitted.memory_mb, admitted.cpu_weight, admitted.cgroup.clone());

        let mut env = vec![
            ("PATH".to_owned(), DEFAULT_PATH.to_owned()),
            ("HOME".to_owned(), dir.to_string_lossy().into_owned()),
            ("TMPDIR".to_owned(), dir.join("tmp").to_string_lossy().into_owned()),
        ];
        env.extend(spec.env.iter().cloned());
        let path_env = env.iter().rev().find(|(k, _)| k == "PATH").map_or(DEFAULT_PATH, |(_, v)| v.as_str());
        let program = resolve_program(&dir, path).await;
        let wrappers = self.wrappers(memory_mb, cpu_weight);
        let (program, mut argv): (OsString, Vec<OsString>) = if wrappers.is_empty() {
            (program.into_os_string(), Vec::new())
        } else {
            // The wrappers exec the program: resolve it with the instance's PATH first.
            let resolved = program.to_str().and_then(|p| limits::search_path(p, path_env));
            let resolved = resolved.ok_or_else(|| RuntimeError::Io {
                op: "exec command",
                guid: guid.to_owned(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            })?;
            (wrappers[0].clone(), wrappers[1..].iter().cloned().chain([resolved.into_os_string()]).collect())
        };
        argv.extend(args.iter().map(OsString::from));
        let user = run_as(&spec.user).await;
        let (mut child, io) = launch(Launch { program, args: argv, env, cwd: Some(cwd), user, tty: spec.tty })
            .map_err(Self::io("exec command", guid))?;
        let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
        self.adopt(guid, &dir, cgroup.as_deref(), pid, "move the command into the container cgroup").await?;
        drop(admitted);
        let (tx, rx) = watch::channel(None);
        let guid_owned = guid.to_owned();
        tokio::spawn(async move {
            let code = match child.wait().await {
                Ok(status) => exit_code(status),
                Err(error) => {
                    tracing::warn!(container_guid = %guid_owned, pid, %error, "waiting for an exec'd command failed");
                    255
                }
            };
            let _ = tx.send(Some(ExitStatus { code, out_of_memory: false }));
        });
        let signaller = Arc::new(move |signal: StopSignal| signal_group(pid, signal));
        Ok(ExecSession { io, process: RuntimeProcess::new(signaller, rx) })
    }
}
