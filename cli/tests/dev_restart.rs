//! A sturdy `diego dev` (issue 17 item 2), from the real binary:
//!
//! - restarted on the same data directory after Ctrl-C, it leads at once (every lease was
//!   released) and the demo serves HTTP again within seconds (the restarted reps hand back the
//!   previous run's instances at once), not after the minute the issue saw;
//! - a second `diego dev` on the same directory fails within a second, naming the PID that
//!   holds it;
//! - it prints every address, and its one `/metrics` URL shows bbs_*, auctioneer_* and rep_*
//!   series, with `rep_containers{state="running"}` agreeing with `diego cells`;
//! - `--verbose` shows the components' logs, and without it they stay quiet;
//! - the next step it prints without `--demo`, run as printed, gives a running instance.

// A blocking test of child processes: std's clock is the right one for its deadlines.
#![allow(clippy::disallowed_types)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A `diego dev` child, killed when dropped so a failed assertion leaves no cluster running; its
/// stdout lines arrive on a channel (a reader thread), its stderr is read at the end.
struct Dev {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Option<ChildStderr>,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dev {
    /// Reads stdout until the line `press ctrl-c to stop`; the lines before it.
    fn wait_until_up(&mut self, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line == "press ctrl-c to stop" => return lines,
                Ok(line) => lines.push(line),
                Err(_) => panic!("diego dev was not up within {limit:?}; it printed {lines:?}"),
            }
        }
    }

    /// Sends SIGINT and waits for a clean exit; its standard error.
    fn interrupt(mut self) -> String {
        let status = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        let exit = loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                break exit;
            }
            assert!(Instant::now() < deadline, "diego dev did not stop after ctrl-c");
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut stderr = String::new();
        self.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        assert!(exit.success(), "diego dev exited {exit}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        stderr
    }
}

/// A directory of its own, where `diego dev` keeps `.diego-dev/` and `diego` commands find its
/// certificates.
struct Root(PathBuf);

impl Root {
    fn new(name: &str) -> Self {
        let root = std::env::temp_dir().join(format!("diego-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        Self(root)
    }

    fn diego(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_diego"));
        command.current_dir(&self.0);
        for name in ["DIEGO_BBS_ADDRESS", "DIEGO_TLS_CA", "DIEGO_TLS_CERT", "DIEGO_TLS_KEY", "RUST_LOG"] {
            command.env_remove(name);
        }
        command
    }

    fn dev(&self, args: &[&str]) -> Dev {
        let mut child = self
            .diego()
            .arg("dev")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start diego dev");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stderr = child.stderr.take();
        Dev { child, lines, stderr }
    }

    /// `diego --bbs-address BBS ARGS`, which must succeed; its standard output.
    fn run(&self, bbs: &str, args: &[&str]) -> String {
        let out = self.diego().args(["--bbs-address", bbs]).args(args).output().unwrap();
        assert!(out.status.success(), "diego {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `GET path` over HTTP/1.0 to `address`; the whole response, or `None` if nothing answers.
fn http_get(address: &str, path: &str) -> Option<String> {
    let address: std::net::SocketAddr = address.parse().ok()?;
    let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    Some(body)
}

/// The `host:port` of every RUNNING instance of `guid`.
fn running_addresses(root: &Root, bbs: &str, guid: &str) -> Vec<String> {
    let out = root.diego().args(["--bbs-address", bbs, "lrp", guid, "--json"]).output().unwrap();
    if !out.status.success() {
        return Vec::new();
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["state"] == "RUNNING")
        .filter_map(|i| {
            let address = i["address"].as_str().or_else(|| i["net_info"]["address"].as_str()).unwrap_or("127.0.0.1");
            let port = i["ports"][0]["host_port"].as_u64().or_else(|| i["host_port"].as_u64())?;
            Some(format!("{address}:{port}"))
        })
        .collect()
}

/// Polls until an instance of `guid` answers `GET /` with `expect` in its body; how long that took.
fn wait_until_served(root: &Root, bbs: &str, guid: &str, expect: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        for address in running_addresses(root, bbs, guid) {
            if http_get(&address, "/").is_some_and(|body| body.contains(expect)) {
                return started.elapsed();
            }
        }
        assert!(started.elapsed() < limit, "no instance of {guid} served within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value after `prefix` on the printed line that starts with it.
fn printed<'a>(lines: &'a [String], prefix: &str) -> &'a str {
    let line = lines.iter().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix:?} in {lines:?}"));
    &line[prefix.len()..]
}

/// `rep_containers{cell_id="C",state="running"} N` of a Prometheus page, by cell.
fn running_containers(page: &str) -> BTreeMap<String, i64> {
    page.lines()
        .filter(|l| l.starts_with("rep_containers{") && l.contains("state=\"running\""))
        .filter_map(|l| {
            let cell = l.split("cell_id=\"").nth(1)?.split('"').next()?.to_owned();
            let value = l.rsplit(' ').next()?.parse::<f64>().ok()?;
            Some((cell, value as i64))
        })
        .collect()
}

/// `diego cells --json`: the containers each cell's instances and tasks take, by cell.
fn cells_containers(root: &Root, bbs: &str) -> BTreeMap<String, i64> {
    let cells: serde_json::Value = serde_json::from_str(&root.run(bbs, &["cells", "--json"])).unwrap();
    cells
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["cell_id"].as_str().unwrap().to_owned(), c["used"]["containers"].as_i64().unwrap()))
        .collect()
}

/// The whole-cluster page: every component's series, and the cells' running containers as
/// `diego cells` counts them.
fn check_metrics(root: &Root, bbs: &str, url: &str) {
    let address = url.strip_prefix("http://").and_then(|rest| rest.strip_suffix("/metrics")).expect("an http url");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let page = http_get(address, "/metrics").expect("the metrics url answers");
        for prefix in ["bbs_", "auctioneer_", "rep_"] {
            assert!(page.lines().any(|l| l.starts_with(prefix)), "no {prefix}* series on {url}:\n{page}");
        }
        let (from_metrics, from_cells) = (running_containers(&page), cells_containers(root, bbs));
        if from_metrics == from_cells && from_cells.values().sum::<i64>() == 3 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "rep_containers{{state=\"running\"}} {from_metrics:?} disagrees with diego cells {from_cells:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_restarted_dev_serves_again_within_seconds_and_owns_its_directory() {
    let root = Root::new("dev-restart");
    let bbs = format!("127.0.0.1:{}", svc::ports::free_port().unwrap());
    let args = ["--demo", "--cells", "2", "--listen-address", bbs.as_str()];

    let mut first = root.dev(&args);
    let lines = first.wait_until_up(Duration::from_secs(60));
    assert_eq!(lines[0], format!("bbs: {bbs}"), "the first line names the bbs");
    for prefix in ["auctioneer: ", "cell cell-0: ", "cell cell-1: ", "bbs admin: http://", "auctioneer admin: http://"]
    {
        assert!(lines.iter().any(|l| l.starts_with(prefix)), "no {prefix:?} in {lines:?}");
    }
    // The dashboard line names the BBS admin address, which serves the page.
    let dashboard = printed(&lines, "dashboard: http://");
    let dashboard = dashboard.split(' ').next().unwrap().trim_end_matches('/');
    assert!(
        http_get(dashboard, "/").is_some_and(|r| r.contains("200") && r.contains("diego-rs BBS dashboard")),
        "the dashboard at {dashboard}"
    );
    for cell in ["cell-0", "cell-1"] {
        let admin = printed(&lines, &format!("cell {cell} admin: http://"));
        let admin = admin.split(' ').next().unwrap();
        assert!(http_get(admin, "/healthz").is_some_and(|r| r.contains("200")), "{cell} admin at {admin}");
    }
    let served = wait_until_served(&root, &bbs, "demo", "diego demo app", Duration::from_secs(60));
    println!("first start: the demo served {served:?} after the addresses were printed");
    let url = printed(&lines, "metrics: ").split(' ').next().unwrap().to_owned();
    check_metrics(&root, &bbs, &url);
    let quiet = first.interrupt();
    assert!(!quiet.contains(" INFO "), "without --verbose the components stay quiet: {quiet}");

    // The restart: it leads at once (the leases were released), then the demo serves within
    // seconds. The old path took a polling interval (30 s) to remove the dead records and a
    // convergence interval (30 s) to replace them; a lease left behind cost its TTL (15 s).
    let restarted = Instant::now();
    let mut second = root.dev(&[&args[..], &["--verbose"]].concat());
    let lines = second.wait_until_up(Duration::from_secs(60));
    let up = restarted.elapsed();
    let served = wait_until_served(&root, &bbs, "demo", "diego demo app", Duration::from_secs(60));
    println!("restart: up in {up:?}; the demo served {served:?} after the addresses were printed");
    assert!(up < Duration::from_secs(10), "the restart waited {up:?} to lead: a lease was left behind");
    // Issue 17's bound: the demo serves again within 5 s of the restart (measured ~0.7 s).
    assert!(up + served < Duration::from_secs(5), "the demo served again only {:?} after the restart", up + served);
    assert_eq!(lines[0], format!("bbs: {bbs}"));

    // A second `diego dev` on the same directory (another port) is refused at once.
    let other = format!("127.0.0.1:{}", svc::ports::free_port().unwrap());
    let started = Instant::now();
    let out = root.diego().args(["dev", "--cells", "1", "--listen-address", &other]).output().unwrap();
    let refused_in = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("a second diego dev was refused in {refused_in:?}: {stderr}");
    assert!(!out.status.success(), "a second diego dev on the same directory must fail: {out:?}");
    assert!(stderr.contains(&format!("pid {}", second.child.id())), "the error names the holder's pid: {stderr}");
    assert!(refused_in < Duration::from_secs(1), "refused only after {refused_in:?}");

    // --verbose: the components' logs on standard error.
    let logs = second.interrupt();
    assert!(logs.contains(" INFO ") && logs.contains("became the bbs leader"), "{logs}");
    assert!(logs.contains("rep starting") && logs.contains("released the lease"), "{logs}");
}

#[test]
fn the_next_step_printed_without_demo_runs_an_instance() {
    let root = Root::new("dev-hint");
    let bbs = format!("127.0.0.1:{}", svc::ports::free_port().unwrap());
    let dev = {
        let mut dev = root.dev(&["--cells", "1", "--listen-address", &bbs]);
        let lines = dev.wait_until_up(Duration::from_secs(60));
        let hint = printed(&lines, "next: ").to_owned();
        (dev, hint)
    };
    let (dev, hint) = dev;
    let demo_app = Path::new(env!("CARGO_BIN_EXE_diego")).with_file_name("diego-demo-app");
    assert!(hint.contains(&demo_app.display().to_string()), "the hint runs the demo app by its path: {hint}");
    assert!(!hint.contains("busybox"), "{hint}");

    // Run as printed, with `diego` on the PATH, in the directory `diego dev` ran in.
    let bin = Path::new(env!("CARGO_BIN_EXE_diego")).parent().unwrap().to_owned();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut shell = Command::new("/bin/sh");
    shell.args(["-c", &hint]).current_dir(&root.0).env("PATH", path);
    for name in ["DIEGO_BBS_ADDRESS", "DIEGO_TLS_CA", "DIEGO_TLS_CERT", "DIEGO_TLS_KEY"] {
        shell.env_remove(name);
    }
    let out = shell.output().unwrap();
    assert!(out.status.success(), "{hint}: {out:?}");
    wait_until_served(&root, &bbs, "hello", "diego demo app", Duration::from_secs(60));
    dev.interrupt();
}

#[test]
fn a_sigkilled_dev_leaves_no_lock_and_sigterm_stops_cleanly() {
    let root = Root::new("dev-killed");
    let pid_file = root.0.join(".diego-dev").join("diego-dev.pid");
    let bbs = format!("127.0.0.1:{}", svc::ports::free_port().unwrap());
    let args = ["--cells", "1", "--runtime", "sim", "--listen-address", bbs.as_str()];
    let mut killed = root.dev(&args);
    killed.wait_until_up(Duration::from_secs(60));
    // SIGKILL: nothing is released, and the pid file stays behind naming a dead process.
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap().trim(), killed.child.id().to_string());

    // The file does not block the next one; only the killed run's leases make it wait, for at
    // most their TTL (15 s).
    let started = Instant::now();
    let mut next = root.dev(&args);
    next.wait_until_up(Duration::from_secs(60));
    println!("after a SIGKILL, the next diego dev was up in {:?}", started.elapsed());
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap().trim(), next.child.id().to_string());
    // It did not wait in silence.
    let mut said = [0u8; 512];
    let read = next.stderr.as_mut().unwrap().read(&mut said).unwrap();
    let said = String::from_utf8_lossy(&said[..read]);
    assert!(said.contains("its leases expire"), "{said}");

    // SIGTERM stops it as Ctrl-C does.
    let status = Command::new("kill").args(["-TERM", &next.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = next.child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "diego dev did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exit.success(), "diego dev exited {exit} after SIGTERM");

    // Every lease was released: the next one is up at once.
    let started = Instant::now();
    let mut last = root.dev(&args);
    last.wait_until_up(Duration::from_secs(60));
    let up = started.elapsed();
    println!("after a SIGTERM, the next diego dev was up in {up:?}");
    assert!(up < Duration::from_secs(10), "it waited {up:?} to lead: a lease was left behind");
    last.interrupt();
}
