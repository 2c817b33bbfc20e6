//! The sim runtime: its process model, its probes, and thousands of containers in one process.

use std::sync::Arc;
use std::time::Duration;

use cell_rep::actions::build;
use cell_rep::executor::{
    AllocationRequest, ContainerEvent, ContainerState, Executor, ExecutorConfig, Resources, RunRequest,
};
use cell_rep::runtime::sim::{SimConfig, SimRuntime};
use cell_rep::runtime::{ContainerRuntime, ContainerSpec, Probe, ProbeKind, ProcessRole, ProcessSpec, StopSignal};
use cell_rep::testing::{lrp_workload, workload};

const PATIENCE: Duration = Duration::from_secs(600);

fn spec(guid: &str, lifecycle: &str) -> ContainerSpec {
    ContainerSpec {
        guid: guid.into(),
        ports: vec![8080, 9090],
        workload: Some(workload(guid, lifecycle, "pg", 0)),
        ..ContainerSpec::default()
    }
}

fn process(role: ProcessRole) -> ProcessSpec {
    ProcessSpec { id: "p".into(), path: "/bin/app".into(), role: Some(role), ..ProcessSpec::default() }
}

fn tcp_probe() -> Probe {
    Probe {
        kind: ProbeKind::Tcp,
        address: "127.0.0.1".into(),
        container_port: 8080,
        host_port: 1,
        timeout: Duration::from_secs(1),
    }
}

#[tokio::test(start_paused = true)]
async fn sim_containers_become_healthy_after_the_configured_delay() {
    let sim = SimRuntime::new(SimConfig { healthy_after: Duration::from_secs(10), ..SimConfig::default() });
    let info = sim.create(spec("a", "lrp")).await.expect("create");
    assert_eq!(info.ports.len(), 2);
    assert_ne!(info.ports[0].host_port, info.ports[1].host_port);
    assert_eq!(
        sim.probe("a", tcp_probe()).await,
        Err("Failed to make TCP connection to port 8080: connection refused".to_owned())
    );
    let mut monitor = sim.spawn("a", process(ProcessRole::Monitor)).await.expect("spawn");
    assert_eq!(monitor.wait().await.code, 1);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(sim.probe("a", tcp_probe()).await, Ok(()));
    let mut monitor = sim.spawn("a", process(ProcessRole::Monitor)).await.expect("spawn");
    assert_eq!(monitor.wait().await.code, 0);
    assert!(sim.create(spec("a", "lrp")).await.is_err(), "duplicate guid");
}

#[tokio::test(start_paused = true)]
async fn sim_processes_follow_their_role_and_signals() {
    let sim = SimRuntime::new(SimConfig { task_duration: Duration::from_secs(5), ..SimConfig::default() });
    let handle = sim.handle();
    sim.create(spec("task", "task")).await.expect("create");
    sim.create(spec("lrp", "lrp")).await.expect("create");

    let mut setup = sim.spawn("lrp", process(ProcessRole::Setup)).await.expect("spawn");
    assert_eq!(setup.wait().await.code, 0);
    let mut task = sim.spawn("task", process(ProcessRole::Action)).await.expect("spawn");
    assert_eq!(task.wait().await.code, 0);

    let mut app = sim.spawn("lrp", process(ProcessRole::Action)).await.expect("spawn");
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(app.try_status(), None, "an lrp runs until stopped");
    app.signal(StopSignal::Terminate).expect("signal");
    assert_eq!(app.wait().await.code, 143);

    let mut app = sim.spawn("lrp", process(ProcessRole::Action)).await.expect("spawn");
    assert!(handle.crash("lrp", 42));
    assert_eq!(app.wait().await.code, 42);
    assert_eq!(handle.containers(), vec!["lrp".to_owned(), "task".to_owned()]);
    assert!(handle.lose("task"));
    assert_eq!(sim.list().await.expect("list"), vec!["lrp".to_owned()]);
    sim.destroy("lrp").await.expect("destroy");
    sim.destroy("lrp").await.expect("idempotent");
    assert!(sim.spawn("lrp", process(ProcessRole::Action)).await.is_err());
    assert_eq!(sim.host_path("lrp", "/tmp").expect("path"), None);
}

/// Thousands of sim containers across many sim cells fit in one process.
#[tokio::test(start_paused = true)]
async fn thousands_of_sim_containers_run_in_one_process() {
    const CELLS: usize = 20;
    const PER_CELL: usize = 150;
    let mut cells = Vec::new();
    for _ in 0..CELLS {
        let runtime = SimRuntime::new(SimConfig { healthy_after: Duration::from_secs(2), ..SimConfig::default() });
        let mut config =
            ExecutorConfig::new(Resources::new(1 << 20, 1 << 20, 256), std::env::temp_dir().join("cell-rep-sim-scale"));
        config.healthcheck_interval = Duration::from_millis(500);
        cells.push(Executor::new(config, Arc::new(runtime)));
    }
    let mut receivers: Vec<_> = cells.iter().map(Executor::subscribe).collect();
    for (c, cell) in cells.iter().enumerate() {
        for i in 0..PER_CELL {
            let guid = format!("cell{c}-instance{i}");
            let workload = lrp_workload("pg", i32::try_from(i).expect("small"), &guid);
            cell.reserve(&guid, AllocationRequest { memory_mb: 64, disk_mb: 64, workload }).expect("reserve");
            let request = RunRequest {
                action: build::run("/bin/app", &[]),
                checks: vec![build::tcp_check(8080, 0, 0)],
                ports: vec![8080],
                start_timeout: Duration::from_secs(60),
                ..RunRequest::default()
            };
            cell.run(&guid, request).expect("run");
        }
    }
    for rx in &mut receivers {
        let mut running = 0;
        tokio::time::timeout(PATIENCE, async {
            while running < PER_CELL {
                match rx.recv().await {
                    Ok(ContainerEvent::Running(_)) => running += 1,
                    Ok(ContainerEvent::Completed(c)) => panic!("{} completed: {:?}", c.guid, c.result),
                    Ok(_) => {}
                    Err(error) => panic!("events lost: {error}"),
                }
            }
        })
        .await
        .expect("every sim container becomes healthy");
    }
    let total: usize =
        cells.iter().map(|c| c.list().iter().filter(|c| c.state == ContainerState::Running).count()).sum();
    assert_eq!(total, CELLS * PER_CELL);
    for cell in &cells {
        cell.shutdown_and_wait().await;
        assert!(cell.list().is_empty());
    }
}
