//! End to end, on every backend: `diego ssh` (issue 18) runs commands inside a running instance
//! through the BBS (where the instance runs) and the cell's rep (`Exec/Run`, mutual TLS): in the
//! instance's working directory and environment, with standard input piped in, standard error
//! apart, the exit code passed back and, asked for, a terminal. Operators only: a reader is
//! refused by the rep. Unknown guids, indices that do not run and runtimes without exec (the
//! sim) are clear errors. The runc runtime, where runc is installed, runs the command in the
//! container (its pid namespace sees the app).

use std::time::Duration;

use cell_rep::RuntimeKind;
use cli::commands::ssh::{self, session};
use cli::error::Error;
use db::Backend;
use futures::StreamExt;
use proto::pb::models::v1 as pb;
use proto::pb::rep::v1::exec_client::ExecClient;
use proto::pb::rep::v1::{ExecInput, ExecStart, TerminalSize, exec_input, exec_output};
use svc::identity::Role;
use tests::cluster::Cluster;
use tests::eventually::eventually;
use tests::fixtures;
use tests::scratch::process_gone;
use tests::steps::{PATIENCE, desire, wait_running};
use tokio::sync::mpsc;

tests::on_every_backend!(ssh_runs_commands_inside_the_instance_for_operators_only);

/// What one session printed and how it ended.
#[derive(Debug)]
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `command` in `guid/index` as `diego ssh` does, with `stdin` as its input.
async fn ssh_as(
    cluster: &Cluster,
    security: svc::tls::Security,
    target: &str,
    command: &[&str],
    stdin: &[u8],
    tty: bool,
) -> Result<Ran, Error> {
    let (guid, index) = ssh::parse_target(target)?;
    let bbs = cli::client::Bbs::connect(&cluster.bbs_address, security.clone()).await?;
    let located = ssh::locate(&bbs, &guid, index).await?;
    let channel = ssh::connect_rep(&located.rep_address, security).await?;
    let (tx, rx) = mpsc::channel(4);
    if !stdin.is_empty() {
        tx.send(stdin.to_vec()).await.expect("queue stdin");
    }
    drop(tx);
    let start = ExecStart {
        process_guid: guid,
        index,
        instance_guid: located.instance_guid,
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        tty,
        size: Some(TerminalSize { columns: 100, rows: 30 }),
        term: String::new(),
    };
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let session = session::exec(channel, &located.rep_address, start, rx, None, &mut stdout, &mut stderr);
    let code = tokio::time::timeout(Duration::from_secs(60), session).await.expect("the session ends")?;
    Ok(Ran {
        code,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}

async fn ssh(cluster: &Cluster, target: &str, command: &[&str], stdin: &[u8], tty: bool) -> Result<Ran, Error> {
    ssh_as(cluster, cluster.operator_security().clone(), target, command, stdin, tty).await
}

/// An LRP whose main process runs in `/home/work` with `SSH_MARK` set, sleeping.
fn sleeper(guid: &str, instances: i32) -> pb::DesiredLrp {
    let mut action = fixtures::shell("exec sleep 100000");
    if let Some(pb::action::Action::RunAction(run)) = action.action.as_mut() {
        run.dir = "/home/work".into();
        run.env = vec![pb::EnvironmentVariable { name: "SSH_MARK".into(), value: format!("mark-of-{guid}") }];
    }
    fixtures::plain_lrp(guid, instances, action)
}

/// Starts `sleep` in `guid/0` through a raw `Exec/Run` call from a client with a runtime of its
/// own, reads its pid, then drops that runtime with the call still open (its connection closes
/// as when a `diego ssh` process dies); returns the pid.
async fn abandoned_session(cluster: &Cluster, guid: &str) -> u32 {
    let bbs = cli::client::Bbs::connect(&cluster.bbs_address, cluster.operator_security().clone()).await.expect("bbs");
    let located = ssh::locate(&bbs, guid, 0).await.expect("located");
    let security = cluster.operator_security().clone();
    let client = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async move {
            let channel = ssh::connect_rep(&located.rep_address, security).await.expect("rep");
            let start = ExecStart {
                instance_guid: located.instance_guid,
                command: vec!["/bin/sh".into(), "-c".into(), "echo $$; exec sleep 100000".into()],
                ..ExecStart::default()
            };
            let first = ExecInput { input: Some(exec_input::Input::Start(start)) };
            // The input stays open: only the client going away can end the session.
            let input = futures::stream::iter([first]).chain(futures::stream::pending());
            let mut output = ExecClient::new(channel).run(input).await.expect("run").into_inner();
            let message = output.message().await.expect("output").expect("a first message");
            let Some(exec_output::Output::Stdout(pid)) = message.output else {
                panic!("expected the pid: {message:?}")
            };
            String::from_utf8_lossy(&pid).trim().parse::<u32>().expect("a pid")
        })
        // The runtime drops here, with the call's connection.
    });
    tokio::task::spawn_blocking(move || client.join().expect("the client thread")).await.expect("joined")
}

/// Resizes a terminal session's terminal to 132x50, then lets its command print the size.
async fn resized_terminal(cluster: &Cluster, guid: &str) -> String {
    let security = cluster.operator_security().clone();
    let bbs = cli::client::Bbs::connect(&cluster.bbs_address, security.clone()).await.expect("bbs");
    let located = ssh::locate(&bbs, guid, 0).await.expect("located");
    let channel = ssh::connect_rep(&located.rep_address, security).await.expect("rep");
    let (resize_tx, resizes) = mpsc::channel(1);
    let (stdin_tx, stdin) = mpsc::channel(1);
    let start = ExecStart {
        instance_guid: located.instance_guid,
        command: vec!["/bin/sh".into(), "-c".into(), "read line; stty size".into()],
        tty: true,
        size: Some(TerminalSize { columns: 80, rows: 24 }),
        ..ExecStart::default()
    };
    let driver = tokio::spawn(async move {
        resize_tx.send(TerminalSize { columns: 132, rows: 50 }).await.expect("resize");
        // The resize is sent before the line that lets the command go on.
        tokio::time::sleep(Duration::from_millis(300)).await;
        stdin_tx.send(b"go\r".to_vec()).await.expect("stdin");
        // Both stay open until the session ends.
        std::future::pending::<()>().await;
        drop((resize_tx, stdin_tx));
    });
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let session = session::exec(channel, &located.rep_address, start, stdin, Some(resizes), &mut out, &mut err);
    let code = tokio::time::timeout(Duration::from_secs(60), session).await.expect("ends").expect("ssh");
    driver.abort();
    assert_eq!(code, 0);
    String::from_utf8_lossy(&out).into_owned()
}

fn refusal(result: Result<Ran, Error>) -> (String, String) {
    match result {
        Err(Error::Refused { kind, message }) => (kind, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn ssh_runs_commands_inside_the_instance_for_operators_only(backend: Backend) {
    let Some(cluster) = Cluster::start(backend, 1, RuntimeKind::Process, |_| {}).await else { return };
    desire(&cluster, sleeper("shell-app", 2)).await;
    let running = wait_running(&cluster, "shell-app", 2).await;
    let second = running.iter().find(|a| a.actual_lrp_key.as_ref().is_some_and(|k| k.index == 1)).expect("index 1");
    let instance_guid = second.actual_lrp_instance_key.as_ref().expect("instance key").instance_guid.clone();

    // The instance's context: its working directory, its environment and the app's own vars.
    // The command's process group is the container's: recorded with it (destroying the
    // container kills it too), just after it started.
    let script = "pwd; printenv INSTANCE_INDEX; printenv CF_INSTANCE_GUID; printenv SSH_MARK; for i in 1 2 3 4 5 6 7 8 9 10; do grep -qx $$ ../../pgids && echo recorded && break; sleep 0.2; done";
    let ran = ssh(&cluster, "shell-app/1", &["/bin/sh", "-c", script], b"", false).await.expect("ssh");
    assert_eq!(ran.code, 0, "{ran:?}");
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert!(lines[0].ends_with(&format!("/{instance_guid}/home/work")), "the instance's working directory: {ran:?}");
    assert_eq!(lines[1..4], ["1", instance_guid.as_str(), "mark-of-shell-app"], "{ran:?}");
    assert_eq!(lines.get(4), Some(&"recorded"), "the command is one of the container's processes: {ran:?}");

    // Exit codes, standard error apart, standard input piped through.
    let ran = ssh(&cluster, "shell-app", &["/bin/sh", "-c", "echo oops >&2; exit 7"], b"", false).await.expect("ssh");
    assert_eq!((ran.code, ran.stdout.as_str(), ran.stderr.as_str()), (7, "", "oops\n"));
    let input = b"hello\nfrom stdin\n".repeat(5000);
    let ran = ssh(&cluster, "shell-app/0", &["cat"], &input, false).await.expect("ssh");
    assert_eq!(ran.code, 0);
    assert_eq!(ran.stdout.as_bytes(), input.as_slice(), "stdin comes back through cat whole");
    let ran = ssh(&cluster, "shell-app", &["/bin/sh", "-c", "kill -9 $$"], b"", false).await.expect("ssh");
    assert_eq!(ran.code, 137, "a signal's exit code is 128 + N");

    // A terminal: the command's standard streams are a pseudo-terminal of the given size.
    let ran = ssh(&cluster, "shell-app", &["/bin/sh", "-c", "tty; stty size"], b"", true).await.expect("ssh");
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(ran.stdout.starts_with("/dev/pts/"), "{ran:?}");
    assert!(ran.stdout.contains("30 100"), "the terminal has the client's size: {ran:?}");
    assert!(ran.stderr.is_empty(), "a terminal has one output stream: {ran:?}");
    let resized = resized_terminal(&cluster, "shell-app").await;
    assert!(resized.contains("50 132"), "a resize reaches the terminal: {resized:?}");
    // The default command is the shell, here reading its script from standard input.
    let ran = ssh(&cluster, "shell-app", &[], b"echo $SSH_MARK; exit 4\n", false).await.expect("ssh");
    assert_eq!((ran.code, ran.stdout.as_str()), (4, "mark-of-shell-app\n"));

    // A client that goes away has its command killed.
    let pid = abandoned_session(&cluster, "shell-app").await;
    eventually("the abandoned command is killed", PATIENCE, || async move { process_gone(pid).then_some(()) }).await;

    // Clear errors: an unknown guid, an index that does not run.
    let (kind, message) = refusal(ssh(&cluster, "no-such-app", &["true"], b"", false).await);
    assert_eq!(kind, "ResourceNotFound");
    assert!(message.contains("no desired lrp \"no-such-app\""), "{message}");
    let (kind, message) = refusal(ssh(&cluster, "shell-app/5", &["true"], b"", false).await);
    assert_eq!(kind, "ResourceNotFound");
    assert!(message.contains("index 5 of shell-app is not running"), "{message}");

    // Operators only: a reader may find the instance but the rep refuses the command.
    let reader = cluster.tls_for(Role::Reader, "auditor").expect("certificate").security().expect("loads");
    let (kind, message) = refusal(ssh_as(&cluster, reader, "shell-app", &["true"], b"", false).await);
    assert_eq!(kind, "PermissionDenied", "{message}");
    cluster.shutdown().await;
}

/// A cell runs at most `DEFAULT_MAX_CONCURRENT` sessions at once; the next is refused until one
/// ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cell_bounds_its_concurrent_sessions() {
    let Some(cluster) = Cluster::start(Backend::Sqlite, 1, RuntimeKind::Process, |_| {}).await else { return };
    desire(&cluster, sleeper("busy-app", 1)).await;
    wait_running(&cluster, "busy-app", 1).await;
    let security = cluster.operator_security().clone();
    let bbs = cli::client::Bbs::connect(&cluster.bbs_address, security.clone()).await.expect("bbs");
    let located = ssh::locate(&bbs, "busy-app", 0).await.expect("located");
    let mut held = Vec::new();
    for _ in 0..cell_rep::exec::DEFAULT_MAX_CONCURRENT {
        let (located, security) = (located.clone(), security.clone());
        held.push(tokio::spawn(async move {
            let channel = ssh::connect_rep(&located.rep_address, security).await.expect("rep");
            // Input that never ends keeps `cat` running.
            let (_stdin, rx) = mpsc::channel::<Vec<u8>>(1);
            let start =
                ExecStart { instance_guid: located.instance_guid, command: vec!["cat".into()], ..ExecStart::default() };
            let (mut out, mut err) = (Vec::new(), Vec::new());
            session::exec(channel, &located.rep_address, start, rx, None, &mut out, &mut err).await
        }));
    }
    let refused = eventually("the cell's sessions are all taken", PATIENCE, || async {
        match ssh(&cluster, "busy-app", &["true"], b"", false).await {
            Err(Error::Refused { kind, message }) if kind == "ResourceExhausted" => Some(message),
            _ => None,
        }
    })
    .await;
    assert!(refused.contains("too many exec sessions"), "{refused}");
    // One client goes away: its session ends and frees a place.
    held.pop().expect("a session").abort();
    let ran = eventually("a place frees up", PATIENCE, || async {
        ssh(&cluster, "busy-app", &["/bin/sh", "-c", "exit 9"], b"", false).await.ok()
    })
    .await;
    assert_eq!(ran.code, 9);
    for session in held {
        session.abort();
    }
    cluster.shutdown().await;
}

/// The sim runtime runs no processes: `diego ssh` says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sim_runtime_has_no_exec() {
    let Some(cluster) = Cluster::start(Backend::Sqlite, 1, RuntimeKind::Sim, |_| {}).await else { return };
    desire(&cluster, sleeper("sim-app", 1)).await;
    wait_running(&cluster, "sim-app", 1).await;
    let (kind, message) = refusal(ssh(&cluster, "sim-app", &["true"], b"", false).await);
    assert_eq!(kind, "Unsupported", "{message}");
    assert!(message.contains("unsupported by the sim runtime"), "{message}");
    cluster.shutdown().await;
}

/// Whether runc tests can run here (root, runc, busybox); panics when they must (CI) but cannot.
fn runc_ready() -> bool {
    let mut missing = Vec::new();
    if !cell_rep::runtime::runc::runc_available(std::path::Path::new("runc")) {
        missing.push("runc is not on PATH (apt-get install runc)");
    }
    if !std::path::Path::new(cell_rep::rootfs::HOST_BUSYBOX).is_file() {
        missing.push("no /bin/busybox (apt-get install busybox-static)");
    }
    let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").expect("/proc/self"));
    if uid != 0 {
        missing.push("not running as root");
    }
    if missing.is_empty() {
        return true;
    }
    let required = std::env::var_os("DIEGO_TEST_REQUIRE_RUNC").is_some();
    assert!(!required, "DIEGO_TEST_REQUIRE_RUNC is set but the runc ssh test cannot run: {}", missing.join("; "));
    println!("skipping the runc ssh test: {}", missing.join("; "));
    false
}

/// In the runc runtime the command runs in the container: its own pid namespace, where the
/// app's process is visible and the host's are not; a terminal works there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_runc_the_command_runs_in_the_container() {
    if !runc_ready() {
        return;
    }
    let Some(cluster) = Cluster::start(Backend::Sqlite, 1, RuntimeKind::Runc, |_| {}).await else { return };
    desire(&cluster, sleeper("runc-app", 1)).await;
    wait_running(&cluster, "runc-app", 1).await;
    let script = "cat /proc/1/cmdline; echo; for p in /proc/[0-9]*; do cat $p/cmdline; echo; done; pwd; echo $SSH_MARK";
    let ran = ssh(&cluster, "runc-app", &["/bin/sh", "-c", script], b"", false).await.expect("ssh");
    assert_eq!(ran.code, 0, "{ran:?}");
    let host_init = std::fs::read_to_string("/proc/1/cmdline").unwrap_or_default();
    let first = ran.stdout.lines().next().unwrap_or_default();
    assert_ne!(first, host_init, "pid 1 is the container's, not the host's: {ran:?}");
    assert!(ran.stdout.lines().any(|l| l.starts_with("/bin/busybox\x00sh\x00-c\x00exec sleep 100000") || l.starts_with("sleep\x00100000")), "the app runs in the same pid namespace: {ran:?}");
    assert!(ran.stdout.contains("/home/work\nmark-of-runc-app\n"), "{ran:?}");
    let ran = ssh(&cluster, "runc-app", &["/bin/sh", "-c", "tty; exit 3"], b"", true).await.expect("ssh");
    assert_eq!(ran.code, 3, "{ran:?}");
    assert!(ran.stdout.starts_with("/dev/pts/"), "{ran:?}");
    cluster.shutdown().await;
}
