//! `diego dev`: a whole cluster in one process on loopback: a BBS on a SQLite file under the data
//! directory, an auctioneer, N cell reps (default 3, `process` runtime) and the HTTP router
//! (`--router-address`, default 127.0.0.1:8081, or a free port when that one is taken; with
//! `--demo` the demo answers `curl -H 'Host: demo.local' http://ROUTER/`). Prints every address
//! it serves (gRPC and admin) and a next step; Ctrl-C or SIGTERM stops everything, releasing every
//! lease (so a restart leads at once), and leaves no container or child process running.
//!
//! One `diego dev` owns a data directory at a time: it holds an advisory lock on
//! `<data-dir>/diego-dev.pid`, which names its PID ([`lock_data_dir`]). `--verbose` shows the
//! components' logs on standard error.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use cell_rep::RuntimeKind;
use proto::pb::bbs::v1 as api;

use crate::cluster::{Cluster, ClusterSpec};
use crate::demo_rootfs::{DEMO_APP_IN_ROOTFS, prepare_demo_rootfs};
use crate::error::Error as CliError;

/// Flags of `diego dev`.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Number of cells.
    #[arg(long, default_value_t = 3)]
    pub cells: usize,
    /// Container runtime of the cells: process, runc or sim.
    #[arg(long, default_value = "process", value_parser = ["process", "runc", "sim"])]
    pub runtime: String,
    /// Also desire the demo app with 3 instances.
    #[arg(long)]
    pub demo: bool,
    /// Where the SQLite database and the containers live.
    #[arg(long, default_value = ".diego-dev")]
    pub data_dir: PathBuf,
    /// The BBS's gRPC address (what `--bbs-address` of the other commands defaults to).
    #[arg(long, default_value = "127.0.0.1:8889")]
    pub listen_address: String,
    /// Where the HTTP router listens [default: 127.0.0.1:8081, or a free port when it is taken].
    #[arg(long, value_name = "ADDR")]
    pub router_address: Option<String>,
    /// Memory of each cell in MB.
    #[arg(long, default_value_t = 4096)]
    pub memory_mb: i32,
    /// Another name (DNS or IP) the components' certificates are valid for, besides 127.0.0.1,
    /// ::1 and localhost (repeatable; applies when the certificates are first made).
    #[arg(long = "host", value_name = "H")]
    pub hosts: Vec<String>,
    /// Show the components' logs (info and above, or as RUST_LOG says) on standard error.
    #[arg(long, short = 'v')]
    pub verbose: bool,
}

/// How long the cluster may take to start before `diego dev` says why it may be waiting.
const SLOW_START: Duration = Duration::from_secs(2);

/// The file in the data directory that is locked while a `diego dev` runs, and names its PID.
pub const LOCK_FILE: &str = "diego-dev.pid";

/// What tracing shows with `--verbose` when RUST_LOG is not set: the components at info, their
/// libraries' chatter only from warn.
const VERBOSE_FILTER: &str = "info,sqlx=warn,h2=warn,hyper=warn,hyper_util=warn,tower=warn,rustls=warn";

/// Runs the cluster until Ctrl-C or SIGTERM: with mutual TLS, its CA and every certificate made
/// under `<data-dir>/tls/` on first start, unless `insecure_plaintext`.
pub async fn run(args: DevArgs, insecure_plaintext: bool) -> Result<(), CliError> {
    if args.verbose {
        show_logs();
    }
    // Listening from the start: a Ctrl-C while the cluster starts still stops it cleanly.
    let terminated = svc::signals::on_terminate();
    let runtime = match args.runtime.as_str() {
        "runc" => RuntimeKind::Runc,
        "sim" => RuntimeKind::Sim,
        _ => RuntimeKind::Process,
    };
    let data_dir = if args.data_dir.is_absolute() {
        args.data_dir.clone()
    } else {
        std::env::current_dir()
            .map_err(|e| CliError::Dev(format!("cannot read the current directory: {e}")))?
            .join(&args.data_dir)
    };
    std::fs::create_dir_all(&data_dir)
        .map_err(|e| CliError::Dev(format!("cannot create {}: {e}", data_dir.display())))?;
    // Held until this function returns; the OS drops it when the process dies.
    let _lock = lock_data_dir(&data_dir)?;
    let database_url = format!("sqlite://{}", data_dir.join("bbs.db").display());
    let mut spec = ClusterSpec::new(database_url, data_dir.join("cells"), args.cells, runtime);
    spec.bbs_listen = args.listen_address.clone();
    spec.cell_memory_mb = args.memory_mb;
    spec.fast = false;
    spec.tls_dir = (!insecure_plaintext).then(|| data_dir.join("tls"));
    spec.tls_hosts = args.hosts.clone();
    // Bound now, so the address printed is the one held (no other process takes it meanwhile).
    let router_listener = router_listener(args.router_address.as_deref()).await?;
    if runtime == RuntimeKind::Runc {
        // Runc cells offer the busybox rootfs and, with the demo app inside, the demo rootfs.
        let mut rootfs = std::collections::BTreeMap::new();
        let busybox = data_dir.join("rootfs").join("busybox");
        let busybox = cell_rep::rootfs::prepare_busybox_rootfs(&busybox, cell_rep::rootfs::HOST_BUSYBOX.as_ref())
            .map_err(|e| CliError::Dev(e.to_string()))?;
        rootfs.insert(cell_rep::config::DEFAULT_ROOTFS.to_owned(), busybox);
        if args.demo {
            let demo = data_dir.join("rootfs").join("demo");
            let demo = prepare_demo_rootfs(&demo, cell_rep::rootfs::HOST_BUSYBOX.as_ref(), &demo_app_path()?)
                .map_err(|e| CliError::Dev(e.to_string()))?;
            rootfs.insert("demo".to_owned(), demo);
        }
        spec.rep = std::sync::Arc::new(move |config| config.rootfs = rootfs.clone());
    }
    eprintln!(
        "starting a bbs, an auctioneer, {} {} cell(s) and a router in {} ...",
        args.cells,
        args.runtime,
        data_dir.display()
    );
    let start = Cluster::start(spec);
    tokio::pin!(start);
    let slow = tokio::time::sleep(SLOW_START);
    tokio::pin!(slow);
    let mut told = false;
    let mut cluster = loop {
        tokio::select! {
            cluster = &mut start => break cluster.map_err(|e| CliError::Dev(e.to_string()))?,
            _ = terminated.cancelled() => {
                eprintln!("stopped before the cluster was up");
                return Ok(());
            }
            () = &mut slow, if !told => {
                told = true;
                // Not silence: a killed run's leases (Ctrl-C releases them) block until they expire.
                eprintln!(
                    "still starting: if a diego dev on {} was killed, its leases expire within 15 s ...",
                    data_dir.display()
                );
            }
        }
    };
    cluster.start_router_on(router_listener).await.map_err(|e| CliError::Dev(e.to_string()))?;
    print_addresses(&cluster);
    match cluster.tls_dir() {
        Some(dir) => {
            let relative = dir.strip_prefix(std::env::current_dir().unwrap_or_default()).unwrap_or(dir);
            if relative == std::path::Path::new(crate::client::DEV_TLS_DIR) {
                println!("tls: mutual TLS; certificates in {} (diego commands run here use them)", dir.display());
            } else {
                println!(
                    "tls: mutual TLS; certificates in {0}; other commands need --tls-ca {0}/ca.pem --tls-cert {0}/operator.pem --tls-key {0}/operator-key.pem",
                    dir.display()
                );
            }
        }
        None => println!(
            "tls: OFF (--insecure-plaintext): any local process may do anything; other commands need --insecure-plaintext"
        ),
    }
    if args.demo {
        desire_demo(&cluster, runtime).await?;
        println!("demo: desired 3 instances of the demo app; watch them with 'diego lrp demo'");
        if let Some(router) = &cluster.router_address {
            println!("try: curl -H 'Host: {DEMO_HOST}' http://{router}/");
        }
    } else {
        println!("next: {}", hint(&cluster, runtime, &args.listen_address));
    }
    println!("press ctrl-c to stop");
    let _ = std::io::stdout().flush();
    terminated.cancelled().await;
    eprintln!("stopping ...");
    cluster.shutdown().await;
    Ok(())
}

/// The hostname the demo app is routed at.
pub const DEMO_HOST: &str = "demo.local";

/// The router's default address when none is given.
const DEFAULT_ROUTER_ADDRESS: &str = "127.0.0.1:8081";

/// The router's listener: on the address given, else on the default when it is free, else on a
/// free port (said on stderr), so a second cluster on the host still starts.
async fn router_listener(given: Option<&str>) -> Result<tokio::net::TcpListener, CliError> {
    let cannot =
        |address: &str, e: std::io::Error| CliError::Dev(format!("the router cannot listen on {address}: {e}"));
    if let Some(address) = given {
        return tokio::net::TcpListener::bind(address).await.map_err(|e| cannot(address, e));
    }
    match tokio::net::TcpListener::bind(DEFAULT_ROUTER_ADDRESS).await {
        Ok(listener) => Ok(listener),
        Err(e) => {
            eprintln!("the router's default address {DEFAULT_ROUTER_ADDRESS} is taken ({e}); using a free port");
            tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| cannot("127.0.0.1:0", e))
        }
    }
}

/// Installs a tracing subscriber writing to standard error: RUST_LOG's filter, or
/// [`VERBOSE_FILTER`]. Without `--verbose` none is installed and the components stay quiet.
fn show_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(VERBOSE_FILTER));
    // Colours only for a person at a terminal, not in a file or a pipe.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
}

/// Takes the advisory lock on `<dir>/diego-dev.pid` without waiting and writes this process's
/// PID into it; the returned file holds the lock until dropped. Another `diego dev` holding it
/// is refused at once, naming the PID the file gives. The OS releases the lock when its holder
/// exits however it exits, so a file left by a killed `diego dev` blocks nothing.
pub fn lock_data_dir(dir: &Path) -> Result<std::fs::File, CliError> {
    let path = dir.join(LOCK_FILE);
    let cannot = |what: &str, e: std::io::Error| CliError::Dev(format!("cannot {what} {}: {e}", path.display()));
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| cannot("open", e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "a process that has not written its pid yet".to_owned(),
                pid => format!("pid {pid}"),
            };
            return Err(CliError::Dev(format!(
                "{} is in use by another diego dev ({holder}, see {}): stop it, or give this one another --data-dir",
                dir.display(),
                path.display()
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(cannot("lock", e)),
    }
    file.set_len(0).map_err(|e| cannot("write", e))?;
    writeln!(file, "{}", std::process::id()).map_err(|e| cannot("write", e))?;
    Ok(file)
}

/// Every address the cluster serves: gRPC first (`bbs: ADDR` is the first line; scripts read
/// it), then the admin servers (`/healthz`, `/metrics`, plain HTTP on loopback), then the one
/// `/metrics` page of the whole cluster.
fn print_addresses(cluster: &Cluster) {
    println!("bbs: {}", cluster.bbs_address);
    if let Some(address) = &cluster.auctioneer_address {
        println!("auctioneer: {address}");
    }
    for rep in &cluster.reps {
        println!("cell {}: {}", rep.cell_id, rep.address);
    }
    if let Some(address) = &cluster.bbs_admin_address {
        println!("bbs admin: http://{address} (/healthz, /leader, /metrics)");
        println!("dashboard: http://{address}/ (cells, LRPs, tasks and events, live)");
    }
    if let Some(address) = &cluster.auctioneer_admin_address {
        println!("auctioneer admin: http://{address} (/healthz, /metrics)");
    }
    for rep in &cluster.reps {
        println!("cell {} admin: http://{} (/healthz, /metrics)", rep.cell_id, rep.admin_address);
    }
    if let Some(address) = &cluster.router_address {
        println!("router: http://{address} (routes by Host header; diego desire-lrp --route HOST)");
    }
    if let Some(address) = &cluster.router_admin_address {
        println!("router admin: http://{address} (/healthz, /routes, /metrics)");
    }
    if let Some(address) = &cluster.metrics_address {
        println!("metrics: http://{address}/metrics (the whole cluster: bbs_*, auctioneer_*, rep_*)");
    }
}

/// The next step printed without `--demo`: a command that desires one instance of an HTTP
/// server and shows it. Under `process` (and `sim`) the demo app next to this binary, by its
/// absolute path, so it runs on any host; under `runc` busybox's httpd, which the cells' busybox
/// rootfs has. With the flags another directory, address or plaintext needs.
fn hint(cluster: &Cluster, runtime: RuntimeKind, listen_address: &str) -> String {
    let command = match (runtime, demo_app_path()) {
        (RuntimeKind::Process | RuntimeKind::Sim, Ok(app)) => {
            format!("exec {}", shell_quote(&app.display().to_string()))
        }
        _ => "exec busybox httpd -f -p $PORT".to_owned(),
    };
    let mut flags = String::new();
    if listen_address != crate::DEFAULT_BBS_ADDRESS {
        flags.push_str(&format!(" --bbs-address {}", shell_quote(&cluster.bbs_address)));
    }
    match cluster.tls_dir() {
        None => flags.push_str(" --insecure-plaintext"),
        Some(dir) if !is_default_tls_dir(dir) => {
            let file = |name: &str| shell_quote(&dir.join(name).display().to_string());
            flags.push_str(&format!(
                " --tls-ca {} --tls-cert {} --tls-key {}",
                file("ca.pem"),
                file("operator.pem"),
                file("operator-key.pem")
            ));
        }
        Some(_) => {}
    }
    format!(
        "diego{flags} desire-lrp --guid hello --command {} --port 8080 && diego{flags} lrp hello",
        shell_quote(&command)
    )
}

/// Whether `dir` is where `diego` commands run in the current directory look for certificates.
fn is_default_tls_dir(dir: &Path) -> bool {
    let cwd = std::env::current_dir().unwrap_or_default();
    dir.strip_prefix(&cwd).is_ok_and(|relative| relative == Path::new(crate::client::DEV_TLS_DIR))
}

/// `text` as one POSIX shell word: as it is when it has only safe characters, single-quoted
/// otherwise.
pub fn shell_quote(text: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-:=@%+,".contains(c);
    if !text.is_empty() && text.chars().all(safe) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// Desires the demo app (the `diego-demo-app` binary next to this one) with 3 instances.
async fn desire_demo(cluster: &Cluster, runtime: RuntimeKind) -> Result<(), CliError> {
    // Under runc the app runs from the demo rootfs; elsewhere from the host.
    let (rootfs, path) = if runtime == RuntimeKind::Runc {
        ("preloaded:demo".to_owned(), DEMO_APP_IN_ROOTFS.to_owned())
    } else {
        ("preloaded:busybox".to_owned(), demo_app_path()?.display().to_string())
    };
    let lrp = proto::pb::models::v1::DesiredLrp {
        process_guid: "demo".into(),
        domain: "diego".into(),
        rootfs,
        instances: 3,
        memory_mb: 64,
        disk_mb: 64,
        ports: vec![8080],
        action: Some(proto::pb::models::v1::Action {
            action: Some(proto::pb::models::v1::action::Action::RunAction(proto::pb::models::v1::RunAction {
                path,
                user: "root".into(),
                log_source: "APP".into(),
                ..Default::default()
            })),
        }),
        check_definition: Some(proto::pb::models::v1::CheckDefinition {
            checks: vec![proto::pb::models::v1::Check {
                tcp_check: None,
                http_check: Some(proto::pb::models::v1::HttpCheck {
                    port: 8080,
                    path: "/health".into(),
                    request_timeout_ms: 1000,
                    interval_ms: 1000,
                }),
            }],
            ..Default::default()
        }),
        start_timeout_ms: 60_000,
        routes: demo_routes(),
        ..Default::default()
    };
    let mut client = cluster.bbs();
    match client.desire_lrp(api::DesireLrpRequest { desired_lrp: Some(lrp) }).await {
        Ok(_) => Ok(()),
        Err(status) if status.code() == tonic::Code::AlreadyExists => {
            // A previous `diego dev --demo` left it in the database; it keeps running.
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok(())
        }
        Err(status) => Err(CliError::from_status(&status, &cluster.bbs_address)),
    }
}

/// The demo's routes: [`DEMO_HOST`] to its port 8080.
fn demo_routes() -> std::collections::HashMap<String, Vec<u8>> {
    let route = crate::commands::validate::Route { hostname: DEMO_HOST.to_owned(), port: 8080 };
    std::collections::HashMap::from([(
        crate::commands::update::ROUTER.to_owned(),
        crate::commands::update::router_routes(&[route]),
    )])
}

/// `diego-demo-app` next to the running `diego` binary.
pub fn demo_app_path() -> Result<PathBuf, CliError> {
    let exe = std::env::current_exe().map_err(|e| CliError::Dev(format!("cannot locate the diego binary: {e}")))?;
    let demo = exe.with_file_name("diego-demo-app");
    if demo.exists() {
        Ok(demo)
    } else {
        Err(CliError::Dev(format!("{} not found: build it with 'cargo build -p cli'", demo.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_quote("/tmp/target/debug/diego-demo-app"), "/tmp/target/debug/diego-demo-app");
        assert_eq!(shell_quote("exec /a b/app"), "'exec /a b/app'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn a_locked_data_directory_is_refused_naming_the_holder_and_a_stale_file_is_not() {
        let dir = std::env::temp_dir().join(format!("diego-dev-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        // A file left by a process that died: no lock on it, whatever PID it names.
        std::fs::write(dir.join(LOCK_FILE), "999999\n").expect("stale file");
        let held = lock_data_dir(&dir).expect("a stale file does not block");
        let pid = std::process::id().to_string();
        assert_eq!(std::fs::read_to_string(dir.join(LOCK_FILE)).expect("pid file").trim(), pid);

        let refused = lock_data_dir(&dir).expect_err("the directory is held").to_string();
        assert!(refused.contains(&format!("pid {pid}")) && refused.contains("another diego dev"), "{refused}");

        drop(held);
        // A process another test forks (demo_rootfs runs `ldd`) holds a copy of every open file
        // descriptor between its fork and its exec, the lock's too: retry briefly, bounded.
        let mut again = lock_data_dir(&dir);
        for _ in 0..100 {
            if again.is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            again = lock_data_dir(&dir);
        }
        drop(again.expect("free once the holder is gone"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
