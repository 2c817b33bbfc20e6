//! Cells protect themselves: the process runtime enforces `max_pids`, `memory_mb` and the CPU
//! weight, and the executor refuses, once and with a clear reason, work it could never exec.
//!
//! The limits take one of two paths (see `cell_rep::runtime::process::limits`): a cgroup v2 per
//! container where the host offers one, rlimits (`prlimit`, `nice`) and a process count
//! otherwise. Each test asserts the path this host takes and says which one it took.
//!
//! Needs `busybox` on `PATH` (Debian package `busybox-static`) and util-linux's `prlimit`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cell_rep::actions::build;
use cell_rep::executor::{
    AllocationRequest, ContainerEvent, Executor, ExecutorConfig, Resources, RunRequest, RunResult,
};
use cell_rep::runtime::process::{LimitMode, ProcessRuntime};
use cell_rep::runtime::{ContainerRuntime, ContainerSpec, ProcessSpec, RuntimeError, StopSignal};
use cell_rep::testing::{
    BbsCall, FakeBbs, TestCell, TestCellOptions, desired_lrp_with, eventually, lrp_work, task, task_work, workload,
};
use proto::models::{Presence, TaskDefinition};
use proto::pb::models::v1 as pb;
use tokio::sync::broadcast;

const PATIENCE: Duration = Duration::from_secs(60);

struct Cell {
    executor: Executor,
    runtime: Arc<ProcessRuntime>,
    events: broadcast::Receiver<ContainerEvent>,
    dir: PathBuf,
}

fn scratch() -> PathBuf {
    std::env::temp_dir().join(format!("cell-rep-limits-{}", uuid::Uuid::new_v4().simple()))
}

fn cell() -> Cell {
    let dir = scratch();
    let runtime = Arc::new(ProcessRuntime::new(&dir));
    println!("process runtime limits: {:?}", runtime.limit_mode());
    let mut config = ExecutorConfig::new(Resources::new(4096, 4096, 20), dir.join("executor"));
    config.graceful_stop = Duration::from_secs(1);
    let executor = Executor::new(config, runtime.clone());
    let events = executor.subscribe();
    Cell { executor, runtime, events, dir }
}

impl Cell {
    fn start(&self, guid: &str, lifecycle: &str, memory_mb: i32, request: RunRequest) {
        let workload = workload(guid, lifecycle, "pg", 0);
        self.executor.reserve(guid, AllocationRequest { memory_mb, disk_mb: 64, workload }).expect("reserve");
        self.executor.run(guid, request).expect("run");
    }

    /// Every event of `guid` up to and including its completion.
    async fn until_completed(&mut self, guid: &str) -> (Vec<ContainerEvent>, RunResult) {
        let events = &mut self.events;
        let seen = tokio::time::timeout(PATIENCE, async {
            let mut seen = Vec::new();
            loop {
                match events.recv().await {
                    Ok(event) if event.guid() == guid => {
                        let done = matches!(event, ContainerEvent::Completed(_));
                        seen.push(event);
                        if done {
                            return seen;
                        }
                    }
                    Ok(_) => {}
                    Err(error) => panic!("event stream broke: {error}"),
                }
            }
        })
        .await
        .expect("the container never completed");
        let result = seen.last().and_then(|e| e.container()).and_then(|c| c.result.clone()).expect("result");
        (seen, result)
    }

    async fn finish(self) {
        self.executor.shutdown_and_wait().await;
        let _ = tokio::fs::remove_dir_all(&self.dir).await;
    }
}

fn markers(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|entries| entries.count()).unwrap_or(0)
}

fn sleeper(id: &str) -> ProcessSpec {
    ProcessSpec { id: id.into(), path: "sleep".into(), args: vec!["30".into()], ..ProcessSpec::default() }
}

/// The probe reported from a fork bomb: a `parallel_action` of 200 runs in a container allowed
/// 10 processes starts none of them (and certainly not 200 host processes); the container fails
/// with the refusal.
#[tokio::test]
async fn a_parallel_action_of_200_runs_starts_at_most_max_pids_processes() {
    let mut cell = cell();
    let started = cell.dir.join("started");
    std::fs::create_dir_all(&started).expect("marker dir");
    let script = format!("touch {}/$$; sleep 30", started.display());
    let runs = (0..200).map(|_| build::sh(&script)).collect();
    let request = RunRequest { action: build::parallel(runs), max_pids: 10, ..RunRequest::default() };
    cell.start("bomb", "lrp", 64, request);

    let (events, result) = cell.until_completed("bomb").await;
    assert!(result.failed);
    assert!(!result.retryable, "every cell would refuse it the same way");
    assert_eq!(result.failure_reason, "refusing to start 200 processes at once: more than max_pids 10");
    assert!(!events.iter().any(|e| matches!(e, ContainerEvent::Running(_))), "it never ran");
    // Give any process that did start time to leave its marker.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let count = markers(&started);
    assert!(count <= 10, "{count} host processes started");
    assert_eq!(count, 0, "the refusal comes before any process starts");
    cell.finish().await;
}

/// Below the tree check, the runtime itself counts: once a container holds `max_pids`
/// processes (forked ones included), another spawn is refused until one exits.
#[tokio::test]
async fn the_process_runtime_refuses_a_process_beyond_max_pids() {
    let dir = scratch();
    let runtime = ProcessRuntime::new(&dir);
    let spec = |guid: &str| ContainerSpec { guid: guid.into(), max_pids: 3, memory_mb: 64, ..ContainerSpec::default() };
    runtime.create(spec("pids")).await.expect("create");
    let mut running = Vec::new();
    for i in 0..3 {
        running.push(runtime.spawn("pids", sleeper(&format!("sleep-{i}"))).await.expect("within max_pids"));
    }
    let refused = runtime.spawn("pids", sleeper("sleep-3")).await.expect_err("a 4th process is refused");
    assert!(matches!(refused, RuntimeError::Refused { .. }), "{refused:?}");
    assert_eq!(refused.to_string(), "max_pids 3 reached: the container already runs 3 processes");

    running[0].signal(StopSignal::Kill).expect("kill");
    running[0].wait().await;
    let mut again = runtime.spawn("pids", sleeper("sleep-4")).await.expect("room again after an exit");
    again.signal(StopSignal::Kill).expect("kill");
    again.wait().await;

    // Processes a process forks count too.
    runtime.create(spec("forks")).await.expect("create");
    let forking = ProcessSpec {
        id: "forking".into(),
        path: "/bin/sh".into(),
        args: vec!["-c".into(), "sleep 30 & sleep 30 & wait".into()],
        ..ProcessSpec::default()
    };
    let _forking = runtime.spawn("forks", forking).await.expect("one process");
    let refused = tokio::time::timeout(PATIENCE, async {
        loop {
            match runtime.spawn("forks", sleeper("late")).await {
                Err(error) => return error,
                Ok(mut process) => {
                    // The forks were not counted yet: undo and look again.
                    process.signal(StopSignal::Kill).expect("kill");
                    process.wait().await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    })
    .await
    .expect("the forked processes are counted");
    assert_eq!(refused.to_string(), "max_pids 3 reached: the container already runs 3 processes");

    runtime.destroy("pids").await.expect("destroy");
    runtime.destroy("forks").await.expect("destroy");
    let _ = tokio::fs::remove_dir_all(&dir).await;
}

/// Where cgroups are usable, the kernel stops forks at `pids.max` too.
#[tokio::test]
async fn forks_beyond_max_pids_fail_in_a_cgroup() {
    let dir = scratch();
    let runtime = ProcessRuntime::new(&dir);
    let LimitMode::Cgroup { parent } = runtime.limit_mode().clone() else {
        println!("cgroup v2 not usable here ({:?}); forks are counted, not prevented", runtime.limit_mode());
        return;
    };
    runtime
        .create(ContainerSpec { guid: "forker".into(), max_pids: 5, ..ContainerSpec::default() })
        .await
        .expect("create");
    // The process joins its cgroup just after it started: wait for that, then fork 20 sleepers.
    // busybox sh gives up at the first fork the kernel refuses.
    let script = "while ! grep -q -- -forker /proc/$$/cgroup; do sleep 0.05; done; \
                  for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do sleep 30 >/dev/null 2>&1 & done; \
                  touch forked; wait";
    let spec = ProcessSpec {
        id: "forker".into(),
        path: "busybox".into(),
        args: vec!["sh".into(), "-c".into(), script.into()],
        ..ProcessSpec::default()
    };
    let mut process = runtime.spawn("forker", spec).await.expect("spawn");
    let status = tokio::time::timeout(PATIENCE, process.wait()).await.expect("the shell gave up");
    assert_ne!(status.code, 0, "20 forks succeeded in a container limited to 5 processes");
    assert!(!runtime.container_dir("forker").join("forked").exists(), "the fork loop did not finish");
    let recorded = std::fs::read_to_string(runtime.container_dir("forker").join("cgroup")).expect("cgroup recorded");
    let cgroup = PathBuf::from(recorded.trim());
    assert!(cgroup.starts_with(&parent), "{} is under {}", cgroup.display(), parent.display());
    assert_eq!(std::fs::read_to_string(cgroup.join("pids.max")).expect("pids.max").trim(), "5");
    let current: usize =
        std::fs::read_to_string(cgroup.join("pids.current")).expect("pids.current").trim().parse().expect("n");
    assert!(current <= 5, "{current} processes in a container limited to 5");
    runtime.destroy("forker").await.expect("destroy");
    assert!(!cgroup.exists(), "destroy removes the cgroup");
    let _ = tokio::fs::remove_dir_all(&dir).await;
}

/// A process allocating far beyond `memory_mb` is killed (cgroup) or fails to allocate
/// (`RLIMIT_AS`); either way the task fails.
#[tokio::test]
async fn a_process_allocating_beyond_memory_mb_is_killed_or_fails() {
    let mut cell = cell();
    let request = RunRequest {
        action: build::run("busybox", &["dd", "if=/dev/zero", "of=/dev/null", "bs=512M", "count=1"]),
        log_source: "TASK".into(),
        ..RunRequest::default()
    };
    cell.start("hog", "task", 32, request);
    let (_, result) = cell.until_completed("hog").await;
    assert!(result.failed, "a 512 MB allocation in a 32 MB container succeeded");
    match cell.runtime.limit_mode() {
        LimitMode::Cgroup { .. } => {
            assert_eq!(result.failure_reason, "TASK: Exited with status 137 (out of memory)");
        }
        LimitMode::Rlimit { prlimit, .. } => {
            assert!(prlimit.is_some(), "prlimit (util-linux) is needed for the rlimit path");
            // busybox reports "memory exhausted" and exits 1.
            assert_eq!(result.failure_reason, "TASK: Exited with status 1");
        }
    }
    cell.finish().await;
}

/// The limits a process actually runs under: its cgroup's files, or its own rlimit and nice
/// value as the kernel reports them.
#[tokio::test]
async fn processes_run_under_the_containers_memory_pids_and_cpu_limits() {
    let mut cell = cell();
    // In a cgroup, the process joins it just after it started: wait for that to show.
    let wait_for_cgroup = if cell.runtime.limit_mode().is_cgroup() {
        "while ! grep -q -- -limited /proc/$$/cgroup; do sleep 0.05; done; "
    } else {
        ""
    };
    let script = format!(
        "{wait_for_cgroup}cat /proc/$$/limits > limits.txt; cat /proc/$$/cgroup > cgroup.txt; \
         read -r stat < /proc/$$/stat; set -- $stat; echo ${{19}} > nice.txt"
    );
    let request = RunRequest {
        action: build::run("busybox", &["sh", "-c", &script]),
        max_pids: 7,
        cpu_weight: 50,
        ..RunRequest::default()
    };
    cell.start("limited", "task", 32, request);
    let (_, result) = cell.until_completed("limited").await;
    assert!(!result.failed, "{result:?}");
    let dir = cell.runtime.container_dir("limited");
    let read = |file: &str| std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    match cell.runtime.limit_mode().clone() {
        LimitMode::Cgroup { parent } => {
            let own = read("cgroup.txt");
            let relative = own.lines().find_map(|l| l.strip_prefix("0::")).expect("a cgroup v2 line").trim().to_owned();
            assert!(relative.ends_with("-limited"), "{relative}");
            let cgroup = parent.join(Path::new(&relative).file_name().expect("name"));
            let value = |file: &str| std::fs::read_to_string(cgroup.join(file)).expect(file).trim().to_owned();
            assert_eq!(value("memory.max"), (32 * 1024 * 1024).to_string());
            assert_eq!(value("pids.max"), "7");
            assert_eq!(value("cpu.weight"), "20");
            cell.executor.delete("limited").await.expect("delete");
            assert!(!cgroup.exists(), "deleting the container removes its cgroup");
        }
        LimitMode::Rlimit { reason, .. } => {
            println!("rlimit path: {reason}");
            let limits = read("limits.txt");
            let address_space = limits.lines().find(|l| l.starts_with("Max address space")).expect("line");
            let fields: Vec<&str> = address_space.split_whitespace().collect();
            // 32 MB plus the default 128 MB headroom, soft and hard.
            let want = (160u64 * 1024 * 1024).to_string();
            assert_eq!(fields[3..5], [want.as_str(), want.as_str()], "{address_space}");
            // Weight 50 is about 3 nice levels below full weight.
            assert_eq!(read("nice.txt").trim(), "3");
        }
    }
    cell.finish().await;
}

/// The probe reported from a 1 MB environment value: the LRP fails once, before any process
/// starts, naming the variable and the limit, instead of crash-looping on
/// "Argument list too long". The completion is not retryable, so the rep reports a crash with
/// this reason (never a start).
#[tokio::test]
async fn a_one_megabyte_environment_value_fails_once_with_a_clear_reason() {
    let mut cell = cell();
    let marker = cell.dir.join("started");
    let request = RunRequest {
        env: vec![("BIG".into(), "x".repeat(1 << 20))],
        action: build::sh(&format!("touch {}; sleep 30", marker.display())),
        ..RunRequest::default()
    };
    cell.start("big-env", "lrp", 64, request);
    let (events, result) = cell.until_completed("big-env").await;
    assert!(result.failed);
    assert!(!result.retryable);
    assert_eq!(
        result.failure_reason,
        "environment too large to exec: variable \"BIG\" is 1048581 bytes, limit 131072 bytes per variable"
    );
    assert!(!events.iter().any(|e| matches!(e, ContainerEvent::Running(_))), "it never ran");
    // Nothing retries behind the result: no further event until it is deleted.
    let quiet = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            match cell.events.recv().await {
                Ok(event) if event.guid() == "big-env" => return event,
                Ok(_) => {}
                Err(error) => panic!("event stream broke: {error}"),
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "unexpected event after the failure: {quiet:?}");
    assert!(!marker.exists(), "no process started");
    cell.finish().await;
}

/// A NUL byte cannot be passed to exec: the task fails naming the variable.
#[tokio::test]
async fn a_nul_byte_in_the_environment_fails_the_task_with_a_clear_reason() {
    let mut cell = cell();
    let request = RunRequest {
        env: vec![("GOOD".into(), "1".into()), ("BAD".into(), "x\0y".into())],
        action: build::sh("echo should not run"),
        ..RunRequest::default()
    };
    cell.start("nul-env", "task", 64, request);
    let (_, result) = cell.until_completed("nul-env").await;
    assert!(result.failed);
    assert!(!result.retryable, "a task is failed with the reason, not re-placed");
    assert_eq!(
        result.failure_reason,
        "environment variable \"BAD\" contains a NUL byte, which cannot be passed to exec"
    );
    cell.finish().await;
}

/// Through the rep: an LRP instance whose environment holds a value over `MAX_ARG_STRLEN` is
/// reported to the BBS as a crash with the reason, never as started, and its container is
/// deleted; the next placement (the BBS's restart) is refused the same way without a process
/// ever starting. How often the BBS restarts it is its crash policy's business. (A 1 MB value
/// no longer gets this far: the desired LRP's environment must total at most 512 KiB. A single
/// 200 KB value fits that total, and no exec accepts it.)
#[tokio::test]
async fn through_the_rep_an_environment_value_over_max_arg_strlen_crashes_the_instance_with_the_reason() {
    let bbs = Arc::new(FakeBbs::new());
    let dir = scratch();
    let marker = dir.join("started");
    let desired = desired_lrp_with("big-env", 1, 64, |d| {
        d.environment_variables = vec![pb::EnvironmentVariable { name: "BIG".into(), value: "x".repeat(200_000) }];
        d.action = Some(build::sh(&format!("touch {}; sleep 30", marker.display())));
    });
    bbs.desire_lrp(desired.clone());
    let runtime = Arc::new(ProcessRuntime::new(&dir));
    let cell = TestCell::start_on("cell-1", bbs.clone(), TestCellOptions::default(), runtime, None);
    let want = "environment too large to exec: variable \"BIG\" is 200005 bytes, limit 131072 bytes per variable";
    let crashes =
        |bbs: &FakeBbs| bbs.calls().into_iter().filter(|c| matches!(c, BbsCall::Crash { .. })).collect::<Vec<_>>();

    for placement in 1..=2 {
        let response = cell.perform(vec![lrp_work(&desired, 0)], Vec::new());
        assert!(response.failed_lrps.is_empty(), "placement {placement} is accepted");
        tokio::time::timeout(PATIENCE, bbs.wait_until(|b| crashes(b).len() == placement))
            .await
            .expect("the instance is reported crashed");
        tokio::time::timeout(PATIENCE, eventually(|| cell.containers().is_empty()))
            .await
            .expect("the container is deleted");
        let BbsCall::Crash { reason, .. } = &crashes(&bbs)[placement - 1] else { unreachable!() };
        assert_eq!(reason, want);
        let lrp = bbs.actual_lrp("big-env", 0, Presence::Ordinary).expect("actual lrp");
        assert_eq!(lrp.crash_reason, want);
        assert_eq!(lrp.crash_count, i32::try_from(placement).expect("small"));
    }
    assert!(bbs.calls().iter().all(|c| c.started().is_empty()), "never reported running");
    assert!(!marker.exists(), "no process started");
    drop(cell);
    let _ = tokio::fs::remove_dir_all(&dir).await;
}

/// Through the rep: a task whose environment holds a NUL byte completes failed with the reason
/// (it is not rejected for another cell to try).
#[tokio::test]
async fn through_the_rep_a_nul_byte_in_the_environment_fails_the_task() {
    let bbs = Arc::new(FakeBbs::new());
    let dir = scratch();
    let mut bad = task("nul-task", 64);
    let mut definition = bad.definition.clone().into_pb();
    definition.environment_variables = vec![pb::EnvironmentVariable { name: "BAD".into(), value: "x\0y".into() }];
    bad.definition = TaskDefinition::try_from(definition).expect("the model accepts it; exec does not");
    bbs.desire_task(bad.clone());
    let runtime = Arc::new(ProcessRuntime::new(&dir));
    let cell = TestCell::start_on("cell-1", bbs.clone(), TestCellOptions::default(), runtime, None);
    let response = cell.perform(Vec::new(), vec![task_work(&bad)]);
    assert!(response.failed_tasks.is_empty());
    let completed = |bbs: &FakeBbs| {
        bbs.calls().into_iter().find_map(|c| match c {
            BbsCall::CompleteTask(completion) => Some(completion),
            _ => None,
        })
    };
    tokio::time::timeout(PATIENCE, bbs.wait_until(|b| completed(b).is_some())).await.expect("the task completes");
    let completion = completed(&bbs).expect("completion");
    assert!(completion.failed);
    assert_eq!(
        completion.failure_reason,
        "environment variable \"BAD\" contains a NUL byte, which cannot be passed to exec"
    );
    assert!(!bbs.calls().iter().any(|c| matches!(c, BbsCall::RejectTask(..))), "not handed to another cell");
    drop(cell);
    let _ = tokio::fs::remove_dir_all(&dir).await;
}

/// Limits change nothing about a program that cannot run: the spawn itself fails, as it does
/// without them.
#[tokio::test]
async fn a_missing_program_fails_the_spawn_under_limits_too() {
    let dir = scratch();
    let runtime = ProcessRuntime::new(&dir);
    let spec = ContainerSpec { guid: "missing".into(), memory_mb: 64, cpu_weight: 10, ..ContainerSpec::default() };
    runtime.create(spec).await.expect("create");
    for path in ["/no/such/program", "no-such-program-on-path"] {
        let process = ProcessSpec { id: "p".into(), path: path.into(), ..ProcessSpec::default() };
        let error = runtime.spawn("missing", process).await.expect_err("nothing to run");
        assert_eq!(error.to_string(), "spawn process for missing: No such file or directory (os error 2)");
    }
    runtime.destroy("missing").await.expect("destroy");
    let _ = tokio::fs::remove_dir_all(&dir).await;
}
