//! The `diego ssh` binary end to end, on the cluster `diego dev` runs (in process: a BBS over
//! SQLite, an auctioneer and a `process` cell): the remote exit code is diego's, standard input
//! is piped through, `-t` gets a terminal even from a pipe, and bad targets exit 1 or 2 with one
//! line. The backends and the rep's side are covered by `tests/tests/ssh.rs`.

#[path = "support/harness.rs"]
mod harness;

use std::process::Stdio;
use std::time::Duration;

use cell_rep::RuntimeKind;
use cli::cluster::{Cluster, ClusterSpec, OPERATOR_NAME};
use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;
use svc::identity::Role;
use tokio::io::AsyncWriteExt;

/// Runs `diego --bbs-address ADDR ARGS...` as the cluster's operator with `input` on its
/// standard input.
async fn diego(cluster: &Cluster, args: &[&str], input: &[u8]) -> harness::Run {
    let tls = cluster.tls_for(Role::Operator, OPERATOR_NAME).expect("the operator's certificate");
    let mut command = tokio::process::Command::new(harness::DIEGO);
    command
        .arg("--bbs-address")
        .arg(&cluster.bbs_address)
        .args(args)
        .env("DIEGO_TLS_CA", &tls.ca)
        .env("DIEGO_TLS_CERT", &tls.cert)
        .env("DIEGO_TLS_KEY", &tls.key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("cannot start diego");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input).await.expect("write stdin");
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("diego {args:?} did not finish within 60 s"))
        .expect("cannot run diego");
    let run = harness::Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    harness::assert_no_panic(&run.stderr);
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diego_ssh_exits_with_the_remote_code_and_pipes_standard_input() {
    let dir = harness::scratch("ssh");
    let database_url = format!("sqlite://{}", dir.join("bbs.db").display());
    let cluster = Cluster::start(ClusterSpec::new(database_url, dir.join("cells"), 1, RuntimeKind::Process))
        .await
        .expect("cluster starts");
    cluster.wait_for_cells(1).await.expect("a cell");
    diego(&cluster, &["desire-lrp", "--guid", "web", "--command", "exec sleep 3600"], b"").await.ok();
    let bbs = cluster.bbs();
    let mut running = false;
    for _ in 0..600 {
        let request = api::ActualLrPsRequest { process_guid: "web".into(), ..Default::default() };
        let instances = bbs.clone().actual_lr_ps(request).await.map(|r| r.into_inner().actual_lrps).unwrap_or_default();
        if instances.iter().any(|a| a.state == pb::ActualLrpState::Running as i32) {
            running = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(running, "web never ran");

    let out = diego(&cluster, &["ssh", "web", "--", "/bin/sh", "-c", "echo out; echo err >&2; exit 42"], b"").await;
    assert_eq!((out.code, out.stdout.as_str(), out.stderr.as_str()), (42, "out\n", "err\n"), "{out:?}");
    let out = diego(&cluster, &["ssh", "web/0", "--", "cat"], b"piped\nthrough\n").await;
    assert_eq!((out.code, out.stdout.as_str()), (0, "piped\nthrough\n"), "{out:?}");
    // No command and no terminal here: the shell reads its script from standard input.
    let out = diego(&cluster, &["ssh", "web"], b"echo $INSTANCE_INDEX; exit 3\n").await;
    assert_eq!((out.code, out.stdout.as_str()), (3, "0\n"), "{out:?}");
    let out = diego(&cluster, &["ssh", "-t", "web", "--", "tty"], b"").await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.starts_with("/dev/pts/"), "-t gets a terminal even from a pipe: {out:?}");

    let line = diego(&cluster, &["ssh", "nope", "--", "true"], b"").await.fails(1).to_owned();
    assert_eq!(line, "error: ResourceNotFound: no desired lrp \"nope\"; see 'diego lrps'");
    let line = diego(&cluster, &["ssh", "web/4", "--", "true"], b"").await.fails(1).to_owned();
    assert!(line.contains("index 4 of web is not running"), "{line}");
    let out = diego(&cluster, &["ssh", "web/x"], b"").await;
    assert_eq!(out.code, 2, "{out:?}");
    let out = diego(&cluster, &["ssh", "-t", "-T", "web"], b"").await;
    assert_eq!(out.code, 2, "{out:?}");
    cluster.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
