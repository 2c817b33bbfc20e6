//! The `bbs` binary's start: a refused configuration is one line on stderr and exit code 64, and
//! `--data-dir` names a directory that is created when it does not exist; a listen address in use
//! is one line and exit code 69; a log output nobody reads does not stop it.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A fresh directory under the system's temporary one (not created).
fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("bbs-startup-{name}-{}", uuid::Uuid::new_v4()))
}

/// Runs `bbs` with `args`; returns the exit code and stderr.
fn bbs(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_bbs")).args(args).output().expect("run bbs");
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn a_refused_configuration_is_one_line_and_exit_64() {
    let dir = scratch("config");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, toml) in [("unknown.toml", "no_such_field = 1\n"), ("zero.toml", "lock_ttl = \"0s\"\n")] {
        let file = dir.join(name);
        std::fs::write(&file, toml).unwrap();
        let (code, stderr) = bbs(&["--config", file.to_str().unwrap()]);
        assert_eq!(code, Some(64), "{name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name}: one line, not {stderr:?}");
        assert!(stderr.starts_with("bbs: "), "{stderr}");
    }
    let (code, stderr) = bbs(&["--config", dir.join("missing.toml").to_str().unwrap()]);
    assert_eq!(code, Some(64), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `GET path` on `port`: the status line and body, or None while nothing answers.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

/// Whether the admin server on `admin_port` answers `/leader` with 200 within 30 s.
fn wait_for_leader(admin_port: u16) -> bool {
    for _ in 0..300 {
        if http_get(admin_port, "/leader").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// The three TLS flags of the test PKI's certificate for `role` named `name`.
fn tls_flags(role: svc::identity::Role, name: &str) -> Vec<String> {
    let tls = svc::pki::Pki::for_tests().test_tls(role, name);
    let path = |p: std::path::PathBuf| p.display().to_string();
    vec!["--tls-ca".into(), path(tls.ca), "--tls-cert".into(), path(tls.cert), "--tls-key".into(), path(tls.key)]
}

/// The `bbs` command of a leader on SQLite in `data_dir`, listening on `grpc` and `admin`, with
/// the test PKI's certificate.
fn bbs_on(data_dir: &std::path::Path, grpc: u16, admin: u16) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bbs"));
    command
        .args(["--data-dir", data_dir.to_str().unwrap()])
        .args(["--listen-address", &format!("127.0.0.1:{grpc}")])
        .args(["--admin-address", &format!("127.0.0.1:{admin}")])
        .args(tls_flags(svc::identity::Role::Bbs, ""));
    command
}

#[test]
fn without_certificates_it_refuses_to_start_naming_tls() {
    let root = scratch("no-tls");
    let dir = root.to_str().unwrap();
    let (code, stderr) = bbs(&["--data-dir", dir, "--listen-address", "127.0.0.1:0", "--admin-address", "127.0.0.1:0"]);
    assert_eq!(code, Some(64), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("tls") && stderr.contains("--insecure-plaintext"), "{stderr}");
    // A named file that is not there is refused naming it.
    let mut flags = tls_flags(svc::identity::Role::Bbs, "");
    let missing = root.join("nowhere.pem").display().to_string();
    flags[3] = missing.clone();
    let mut args: Vec<&str> =
        vec!["--data-dir", dir, "--listen-address", "127.0.0.1:0", "--admin-address", "127.0.0.1:0"];
    args.extend(flags.iter().map(String::as_str));
    let (code, stderr) = bbs(&args);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains(&missing), "{stderr}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn data_dir_is_created_when_it_does_not_exist() {
    let root = scratch("data-dir");
    let data_dir = root.join("some").join("new").join("dir");
    assert!(!data_dir.exists());
    let (grpc, admin) = (svc::ports::free_port().unwrap(), svc::ports::free_port().unwrap());
    let mut child =
        bbs_on(&data_dir, grpc, admin).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("start bbs");
    let leads = wait_for_leader(admin);
    let exited = child.try_wait().ok().flatten();
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    let _ = child.kill();
    let output = child.wait_with_output().expect("bbs output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(exited.is_none(), "bbs exited with {exited:?}: {stderr}");
    assert!(leads, "bbs never led on its new data dir: {stderr}");
    assert!(data_dir.join("bbs.db").exists(), "the SQLite file is in the new directory");
    // svc::tune_memory ran: no transparent huge pages (kernels before 6.x have no such line).
    if let Some(line) = status.lines().find(|l| l.starts_with("THP_enabled:")) {
        assert!(line.ends_with('0'), "the bbs process keeps transparent huge pages: {line:?}");
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// A log output nobody reads (a full pipe, a disk stuck behind a checkpoint) costs log lines,
/// never the process: its workers hand lines to the writer thread and go on serving.
#[test]
fn a_stuck_log_output_does_not_stop_the_bbs() {
    let root = scratch("stuck-log");
    let (grpc, admin) = (svc::ports::free_port().unwrap(), svc::ports::free_port().unwrap());
    let mut child = bbs_on(&root, grpc, admin)
        // Every refused TLS handshake is a debug line: a thousand fill the pipe's 64 KiB.
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start bbs");
    // The pipe's reading end stays open and is never read.
    let _unread = child.stdout.take();
    let leads = wait_for_leader(admin);
    let grpc_address = std::net::SocketAddr::from(([127, 0, 0, 1], grpc));
    for _ in 0..1_000 {
        // A stalled server stops accepting: its backlog fills and a connect would wait minutes.
        let Ok(mut junk) = std::net::TcpStream::connect_timeout(&grpc_address, Duration::from_secs(1)) else {
            break;
        };
        let _ = junk.write_all(b"GET / HTTP/1.0\r\n\r\n");
    }
    let mut answered = 0;
    for _ in 0..100 {
        if !http_get(admin, "/healthz").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
            break;
        }
        answered += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let exited = child.try_wait().ok().flatten();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&root);
    assert!(exited.is_none(), "bbs exited with {exited:?}");
    assert!(leads, "bbs never led");
    assert_eq!(answered, 100, "the bbs stopped answering once its log output was full");
}

#[test]
fn a_listen_address_in_use_is_one_line_and_exit_69() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let root = scratch("taken");
    let mut args =
        vec!["--data-dir", root.to_str().unwrap(), "--listen-address", &address, "--admin-address", "127.0.0.1:0"];
    let tls = tls_flags(svc::identity::Role::Bbs, "");
    args.extend(tls.iter().map(String::as_str));
    let (code, stderr) = bbs(&args);
    assert_eq!(code, Some(69), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("bbs: cannot listen on ") && last.contains(&address), "{stderr}");
    let _ = std::fs::remove_dir_all(&root);
}
