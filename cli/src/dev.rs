//! `diego dev`: a whole cluster in one process on loopback: a BBS on a SQLite file under the data
//! directory, an auctioneer, and N cell reps (default 3, `process` runtime). Prints the addresses
//! and a next step; Ctrl-C stops everything and leaves no container or child process running.

use std::path::PathBuf;
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
    /// Memory of each cell in MB.
    #[arg(long, default_value_t = 4096)]
    pub memory_mb: i32,
    /// Another name (DNS or IP) the components' certificates are valid for, besides 127.0.0.1,
    /// ::1 and localhost (repeatable; applies when the certificates are first made).
    #[arg(long = "host", value_name = "H")]
    pub hosts: Vec<String>,
}

/// Runs the cluster until Ctrl-C or SIGTERM: with mutual TLS, its CA and every certificate made
/// under `<data-dir>/tls/` on first start, unless `insecure_plaintext`.
pub async fn run(args: DevArgs, insecure_plaintext: bool) -> Result<(), CliError> {
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
    let database_url = format!("sqlite://{}", data_dir.join("bbs.db").display());
    let mut spec = ClusterSpec::new(database_url, data_dir.join("cells"), args.cells, runtime);
    spec.bbs_listen = args.listen_address.clone();
    spec.cell_memory_mb = args.memory_mb;
    spec.fast = false;
    spec.tls_dir = (!insecure_plaintext).then(|| data_dir.join("tls"));
    spec.tls_hosts = args.hosts.clone();
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
        "starting a bbs, an auctioneer and {} {} cell(s) in {} ...",
        args.cells,
        args.runtime,
        data_dir.display()
    );
    let cluster = Cluster::start(spec).await.map_err(|e| CliError::Dev(e.to_string()))?;
    println!("bbs: {}", cluster.bbs_address);
    if let Some(address) = &cluster.auctioneer_address {
        println!("auctioneer: {address}");
    }
    for rep in &cluster.reps {
        println!("cell {}: {}", rep.cell_id, rep.address);
    }
    // Every admin server renders the process's one recorder: each page shows every component's
    // series (bbs_*, auctioneer_*, rep_* by cell_id).
    if let Some(address) = &cluster.bbs_admin_address {
        println!("metrics: http://{address}/metrics");
    }
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
    } else {
        println!(
            "next: diego desire-lrp --guid hello --command 'exec busybox httpd -f -p $PORT' --port 8080 && diego lrp hello"
        );
    }
    println!("press ctrl-c to stop");
    svc::signals::terminated().await;
    eprintln!("stopping ...");
    cluster.shutdown().await;
    Ok(())
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
