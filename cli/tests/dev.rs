//! `diego dev --demo`: a whole cluster from the real binary; 3 demo instances RUNNING and
//! answering HTTP; `diego lrp demo` shows them; Ctrl-C (SIGINT) exits 0 and leaves no process
//! running in the cluster's data directory.

// A blocking test of a child process: std's clock is the right one for its deadlines.
#![allow(clippy::disallowed_types)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Processes whose working directory is inside `dir`.
fn processes_in(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(cwd) = std::fs::read_link(entry.path().join("cwd"))
            && cwd.starts_with(dir)
        {
            found.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    found
}

/// Whether `diego dev --runtime runc` can run here (root, runc, busybox-static); panics when it
/// must (`DIEGO_TEST_REQUIRE_RUNC`, set by CI) but cannot.
fn runc_ready() -> bool {
    let mut missing = Vec::new();
    if !cell_rep::runtime::runc::runc_available(std::path::Path::new("runc")) {
        missing.push("runc is not on PATH (apt-get install runc)");
    }
    if !std::path::Path::new(cell_rep::rootfs::HOST_BUSYBOX).is_file() {
        missing.push("no /bin/busybox (apt-get install busybox-static)");
    }
    // /proc/self belongs to the process's effective uid.
    let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").expect("/proc/self"));
    if uid != 0 {
        missing.push("not running as root");
    }
    if missing.is_empty() {
        return true;
    }
    let required = std::env::var_os("DIEGO_TEST_REQUIRE_RUNC").is_some();
    assert!(!required, "DIEGO_TEST_REQUIRE_RUNC is set but the runc demo cannot run: {}", missing.join("; "));
    println!("skipping the runc demo: {}", missing.join("; "));
    false
}

/// The runc containers left in a `diego dev` data directory (every cell's runc state root).
fn runc_containers_in(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for cell in std::fs::read_dir(dir.join("cells")).into_iter().flatten().flatten() {
        let root = cell.path().join("runc").join("root");
        if !root.is_dir() {
            continue;
        }
        let out = Command::new("runc").arg("--root").arg(&root).args(["list", "-q"]).output().expect("runc list");
        found.extend(String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned));
    }
    found
}

#[test]
fn diego_dev_demo_runs_three_instances_and_stops_cleanly() {
    demo_runs_three_instances_and_stops_cleanly("process");
}

#[test]
fn diego_dev_demo_runs_under_runc_too() {
    if runc_ready() {
        demo_runs_three_instances_and_stops_cleanly("runc");
    }
}

/// A child process killed when dropped, so a failed assertion leaves no cluster running.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn demo_runs_three_instances_and_stops_cleanly(runtime: &str) {
    // As the README has it: `diego dev` in a directory keeps its data (and certificates) in
    // `.diego-dev/` there, and `diego` commands run in that directory find the certificates.
    let root = std::env::temp_dir().join(format!("diego-dev-test-{runtime}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let dir = root.join(".diego-dev");
    let bbs = format!("127.0.0.1:{}", svc::ports::free_port().unwrap());
    let router = format!("127.0.0.1:{}", svc::ports::free_port().unwrap());
    let diego = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_diego"));
        command.current_dir(&root);
        for name in ["DIEGO_BBS_ADDRESS", "DIEGO_TLS_CA", "DIEGO_TLS_CERT", "DIEGO_TLS_KEY"] {
            command.env_remove(name);
        }
        command
    };
    let mut dev = KillOnDrop(
        diego()
            .args(["dev", "--demo", "--cells", "2", "--runtime", runtime])
            .args(["--listen-address", &bbs, "--router-address", &router])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start diego dev"),
    );
    let mut stdout = BufReader::new(dev.0.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert_eq!(first.trim(), format!("bbs: {bbs}"), "the first line names the bbs");

    // `diego lrp demo` shows 3 RUNNING instances.
    let deadline = Instant::now() + Duration::from_secs(60);
    let instances = loop {
        let out = diego().args(["--bbs-address", &bbs, "lrp", "demo", "--json"]).output().unwrap();
        if out.status.success() {
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let running: Vec<serde_json::Value> =
                json["instances"].as_array().unwrap().iter().filter(|i| i["state"] == "RUNNING").cloned().collect();
            if running.len() == 3 {
                break running;
            }
        }
        assert!(Instant::now() < deadline, "the demo never had 3 RUNNING instances");
        std::thread::sleep(Duration::from_millis(200));
    };
    let table = diego().args(["--bbs-address", &bbs, "lrp", "demo"]).output().unwrap();
    assert!(table.status.success());
    // Mutual TLS is on: the certificates were made on first start, and plaintext gets nowhere.
    for file in ["ca.pem", "ca-key.pem", "operator.pem", "operator-key.pem", "bbs.pem", "auctioneer.pem", "cell-0.pem"]
    {
        assert!(dir.join("tls").join(file).exists(), "{file} in {}", dir.display());
    }
    let plain = diego().args(["--bbs-address", &bbs, "--insecure-plaintext", "lrps"]).output().unwrap();
    assert_eq!(plain.status.code(), Some(3), "{plain:?}");
    assert_eq!(String::from_utf8_lossy(&table.stdout).matches("RUNNING").count(), 3);

    // The curl it printed answers through the router, from every instance in turn.
    let curl = loop {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "diego dev printed no curl line");
        if let Some(command) = line.trim().strip_prefix("try: ") {
            break command.to_owned();
        }
    };
    assert_eq!(curl, format!("curl -H 'Host: demo.local' http://{router}/"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut answered = std::collections::BTreeSet::new();
    while answered.len() < 3 {
        let out = Command::new("sh").args(["-c", &curl]).output().expect("sh and curl");
        let body = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if out.status.success() && body.contains("diego demo app") {
            answered.insert(body);
        }
        assert!(Instant::now() < deadline, "{curl} did not answer from 3 instances: {answered:?}, last {out:?}");
    }

    // Each answers HTTP on its host port.
    for instance in &instances {
        let address =
            instance["address"].as_str().or_else(|| instance["net_info"]["address"].as_str()).unwrap_or("127.0.0.1");
        let port = instance["ports"][0]["host_port"].as_u64().or_else(|| instance["host_port"].as_u64());
        let Some(port) = port else { panic!("no host port in {instance}") };
        let mut stream = std::net::TcpStream::connect((address, port as u16)).expect("the instance listens");
        stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let mut body = String::new();
        stream.read_to_string(&mut body).unwrap();
        assert!(body.contains("diego demo app"), "{body}");
    }
    if runtime == "process" {
        readme_walk_through(&diego, &bbs, &router);
    }

    // Ctrl-C: a clean exit and nothing left running.
    let status = Command::new("kill").args(["-INT", &dev.0.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = dev.0.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "diego dev did not stop after ctrl-c");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    dev.0.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(exit.success(), "diego dev exited {exit}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(processes_in(&dir), Vec::<String>::new(), "processes left running in the cluster's directory");
    if runtime == "runc" {
        assert_eq!(runc_containers_in(&dir), Vec::<String>::new(), "runc containers left behind");
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// One HTTP/1.0 request to `address:port`; the whole response.
fn http(address: &str, port: u16, request: &str) -> String {
    let mut stream = std::net::TcpStream::connect((address, port)).expect("the instance listens");
    stream.write_all(request.as_bytes()).unwrap();
    let mut body = String::new();
    let _ = stream.read_to_string(&mut body);
    body
}

/// The README's walk-through, command for command, against the running `diego dev --demo` (over
/// mutual TLS with the certificates it made): an instance's environment through the router,
/// scaling to 5, a crash through the router and its restart, the logs, a command inside an
/// instance, the event stream, a task, the cells.
fn readme_walk_through(diego: &dyn Fn() -> Command, bbs: &str, router: &str) {
    let run = |args: &[&str]| {
        let out = diego().args(["--bbs-address", bbs]).args(args).output().unwrap();
        assert!(out.status.success(), "diego {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let (address, port) = router.rsplit_once(':').expect("the router's host:port");
    let port: u16 = port.parse().expect("the router's port");
    // curl -H 'Host: demo.local' http://127.0.0.1:8081/env
    let env = http(address, port, "GET /env HTTP/1.0\r\nHost: demo.local\r\n\r\n");
    assert!(env.contains("INSTANCE_INDEX") && env.contains("CF_INSTANCE_"), "{env}");
    // diego scale demo 5
    run(&["scale", "demo", "5"]);
    let running = |lrp: &serde_json::Value| {
        lrp["instances"].as_array().map_or(0, |all| all.iter().filter(|i| i["state"] == "RUNNING").count())
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while running(&serde_json::from_str(&run(&["lrp", "demo", "--json"])).unwrap()) < 5 {
        assert!(Instant::now() < deadline, "the demo never had 5 RUNNING instances");
        std::thread::sleep(Duration::from_millis(200));
    }
    // curl -X POST -H 'Host: demo.local' http://127.0.0.1:8081/crash: the instance that answers
    // crashes and comes back (crash count 1).
    let _ = http(address, port, "POST /crash HTTP/1.0\r\nHost: demo.local\r\nContent-Length: 0\r\n\r\n");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lrp: serde_json::Value = serde_json::from_str(&run(&["lrp", "demo", "--json"])).unwrap();
        let crashed = lrp["instances"].as_array().is_some_and(|all| all.iter().any(|i| i["crash_count"] == 1));
        if crashed && running(&lrp) == 5 {
            break;
        }
        assert!(Instant::now() < deadline, "the crashed instance never came back: {lrp}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // diego logs demo: what the instances printed, the crash included.
    let logs = run(&["logs", "demo"]);
    assert!(logs.contains("listening on port") && logs.contains("crashing on request"), "{logs}");
    // diego ssh demo/0 -- printenv INSTANCE_INDEX: runs inside instance 0.
    assert_eq!(run(&["ssh", "demo/0", "--", "printenv", "INSTANCE_INDEX"]), "0\n");
    // diego events: it follows the stream (a line per event) until stopped.
    let mut events = diego()
        .args(["--bbs-address", bbs, "events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("diego events");
    std::thread::sleep(Duration::from_millis(300));
    run(&["scale", "demo", "4"]);
    let mut line = String::new();
    BufReader::new(events.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(!line.trim().is_empty(), "an event line");
    let _ = events.kill();
    let _ = events.wait();
    // diego desire-task --guid hello --command 'echo hi > out' --result-file out && diego task hello
    run(&["desire-task", "--guid", "hello", "--command", "echo hi > out", "--result-file", "out"]);
    assert!(run(&["task", "hello"]).contains("hello"));
    // diego cells
    let cells = run(&["cells"]);
    assert!(cells.contains("cell-0") && cells.contains("cell-1"), "{cells}");
    // diego status: this BBS leads, the cells, the demo, the task.
    let status = run(&["status"]);
    for expected in ["(this one)", "cell-0", "cell-1", "LRPS (1)", "TASKS (1)"] {
        assert!(status.contains(expected), "status lacks {expected}: {status}");
    }
}
