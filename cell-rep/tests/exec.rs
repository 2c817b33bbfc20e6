//! `ContainerRuntime::exec` (`diego ssh`) in the process runtime on both limit paths (a cgroup
//! per container where the host offers one, rlimit wrappers otherwise, which is forced here), and
//! the sim's refusal: the command runs in the container's directory with the given environment,
//! on pipes or a terminal, counted against `max_pids`, and killed with its process group.

use std::path::PathBuf;
use std::time::Duration;

use cell_rep::exec::{ExecIo, ExecSession, ExecSpec, TtySize};
use cell_rep::runtime::process::{LimitMode, ProcessConfig, ProcessRuntime};
use cell_rep::runtime::sim::{SimConfig, SimRuntime};
use cell_rep::runtime::{ContainerRuntime, ContainerSpec, ProcessSpec, RuntimeError, StopSignal};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn scratch() -> PathBuf {
    std::env::temp_dir().join(format!("cell-rep-exec-{}", uuid::Uuid::new_v4().simple()))
}

fn spec(argv: &[&str]) -> ExecSpec {
    ExecSpec {
        argv: argv.iter().map(|s| (*s).to_owned()).collect(),
        env: vec![("MARK".into(), "from-the-instance".into())],
        dir: "/home/work".into(),
        ..ExecSpec::default()
    }
}

/// Everything the command writes to its pipes (or terminal) until it exits, and its exit code.
async fn collect(session: ExecSession, stdin: &[u8]) -> (String, String, i32) {
    let ExecSession { io, mut process } = session;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    match io {
        ExecIo::Pipes { stdin: mut input, mut stdout, mut stderr } => {
            input.write_all(stdin).await.expect("stdin");
            drop(input);
            stdout.read_to_end(&mut out).await.expect("stdout");
            stderr.read_to_end(&mut err).await.expect("stderr");
        }
        ExecIo::Tty(pty) => {
            pty.write_all(stdin).await.expect("stdin");
            let mut buf = [0u8; 4096];
            loop {
                match pty.read(&mut buf).await.expect("read") {
                    0 => break,
                    n => out.extend_from_slice(&buf[..n]),
                }
            }
        }
    }
    let code = tokio::time::timeout(Duration::from_secs(30), process.wait()).await.expect("exits").code;
    (String::from_utf8_lossy(&out).into_owned(), String::from_utf8_lossy(&err).into_owned(), code)
}

async fn exec_in_the_process_runtime(runtime: ProcessRuntime, root: PathBuf) {
    println!("limits: {:?}", runtime.limit_mode());
    let container = ContainerSpec { guid: "c1".into(), memory_mb: 64, max_pids: 3, ..ContainerSpec::default() };
    runtime.create(container).await.expect("create");
    let dir = runtime.container_dir("c1");

    let script = "pwd; echo $MARK; cat; echo oops >&2; exit 3";
    let session = runtime.exec("c1", spec(&["/bin/sh", "-c", script])).await.expect("exec");
    let (out, err, code) = collect(session, b"piped in\n").await;
    assert_eq!(out, format!("{}\nfrom-the-instance\npiped in\n", dir.join("home/work").display()));
    assert_eq!((err.as_str(), code), ("oops\n", 3));
    if let LimitMode::Rlimit { prlimit: Some(_), .. } = runtime.limit_mode() {
        // The container's memory limit applies: RLIMIT_AS of 64 MB plus the 128 MB headroom.
        let session = runtime.exec("c1", spec(&["/bin/sh", "-c", "ulimit -v"])).await.expect("exec");
        assert_eq!(collect(session, b"").await.0, format!("{}\n", 192 * 1024));
    }

    // A terminal of the given size, as the command's controlling terminal.
    let tty = ExecSpec { tty: Some(TtySize { columns: 91, rows: 17 }), ..spec(&["/bin/sh", "-c", "tty; stty size"]) };
    let session = runtime.exec("c1", tty).await.expect("exec");
    let (out, _, code) = collect(session, b"").await;
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("/dev/pts/") && out.contains("17 91"), "{out}");

    // The command counts against max_pids: with the container full, exec is refused.
    let sleeper = |id: &str| ProcessSpec {
        id: id.into(),
        path: "/bin/sh".into(),
        args: vec!["-c".into(), "exec sleep 1000".into()],
        ..ProcessSpec::default()
    };
    let mut app = Vec::new();
    for id in ["a", "b", "c"] {
        app.push(runtime.spawn("c1", sleeper(id)).await.expect("spawn"));
    }
    let refused = runtime.exec("c1", spec(&["true"])).await.expect_err("the container is full");
    assert!(matches!(refused, RuntimeError::Refused { .. }), "{refused}");
    assert!(refused.to_string().contains("max_pids 3 reached"), "{refused}");
    app.pop().expect("a process").signal(StopSignal::Kill).expect("kill");
    // Killing a session kills its process group.
    let session = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(session) = runtime.exec("c1", spec(&["/bin/sh", "-c", "sleep 1000 & wait"])).await {
                return session;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("room again after a kill");
    session.process.signal(StopSignal::Kill).expect("kill");
    // The background sleep dies too, or the pipes would stay open.
    let collected = tokio::time::timeout(Duration::from_secs(10), collect(session, b"")).await;
    let (_, _, code) = collected.expect("the whole group is gone");
    assert_eq!(code, 137);

    assert!(matches!(runtime.exec("nope", spec(&["true"])).await, Err(RuntimeError::NotFound { .. })));
    runtime.destroy("c1").await.expect("destroy");
    drop(runtime);
    let _ = std::fs::remove_dir_all(root);
}

#[tokio::test]
async fn exec_runs_in_the_container_with_its_limits() {
    let root = scratch();
    exec_in_the_process_runtime(ProcessRuntime::new(&root), root).await;
}

#[tokio::test]
async fn exec_runs_under_the_rlimit_wrappers_without_cgroups() {
    let root = scratch();
    let config = ProcessConfig { cgroup_parent: String::new(), ..ProcessConfig::new(&root) };
    exec_in_the_process_runtime(ProcessRuntime::with_config(config), root).await;
}

#[tokio::test]
async fn the_sim_runtime_has_no_exec() {
    let runtime = SimRuntime::new(SimConfig::default());
    runtime.create(ContainerSpec { guid: "c1".into(), ..ContainerSpec::default() }).await.expect("create");
    let refused = runtime.exec("c1", spec(&["true"])).await.expect_err("the sim runs no processes");
    assert_eq!(refused.to_string(), "unsupported by the sim runtime: exec (diego ssh)");
}
