//! The `max_pids` admission of the process runtime, one home for the container's own processes
//! and for `diego ssh` commands: a new process is admitted under the container's spawn lock, so
//! concurrent starts (a parallel action, several ssh sessions) see each other in the count, and
//! the lock is held until the new process group is adopted.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::OwnedMutexGuard;

use super::{ProcessRuntime, RuntimeError, limits};

/// What a start in a container needs to know of it: its limits, and the admission guard that
/// must be held until the new process is adopted.
pub(super) struct Admitted {
    pub memory_mb: i32,
    pub cpu_weight: u32,
    pub cgroup: Option<PathBuf>,
    pub _guard: OwnedMutexGuard<()>,
}

impl ProcessRuntime {
    /// Admits one more process into container `guid`, or refuses it when the container already
    /// runs `max_pids` processes. `known` says whether the container must be on record (a
    /// container recovered after a restart has no limits on record, and is admitted unlimited).
    pub(super) async fn admit(&self, guid: &str, known: bool) -> Result<Admitted, RuntimeError> {
        let (memory_mb, max_pids, cpu_weight, cgroup, spawning) = {
            let containers = self.lock();
            match containers.get(guid) {
                Some(c) => (c.memory_mb, c.max_pids, c.cpu_weight, c.cgroup.clone(), Arc::clone(&c.spawning)),
                None if known => return Err(RuntimeError::NotFound { guid: guid.to_owned() }),
                None => (0, 0, 0, None, Arc::default()),
            }
        };
        let guard = spawning.lock_owned().await;
        if max_pids > 0 {
            let running = match &cgroup {
                Some(cgroup) => limits::cgroup_pids(cgroup),
                None => limits::processes_in_groups(&self.pgids(guid)).len(),
            };
            if running >= usize::try_from(max_pids).unwrap_or(0) {
                return Err(RuntimeError::Refused {
                    guid: guid.to_owned(),
                    reason: format!("max_pids {max_pids} reached: the container already runs {running} processes"),
                });
            }
        }
        Ok(Admitted { memory_mb, cpu_weight, cgroup, _guard: guard })
    }

    /// Records process group `pid`, just started in container `guid`, in memory and in
    /// `<dir>/pgids`, dropping the groups that have no process left (finished monitor checks and
    /// ssh sessions): the record is as long as the container's live groups, not its history.
    /// Runs under the admission guard, so no other group of the container is being added.
    pub(super) async fn record_group(&self, guid: &str, dir: &Path, pid: i32) {
        let mut groups = limits::live_groups(&self.pgids(guid));
        groups.push(pid);
        if let Some(container) = self.lock().get_mut(guid) {
            container.pgids.clone_from(&groups);
        }
        let text: String = groups.iter().map(|g| format!("{g}\n")).collect();
        let temporary = dir.join("pgids.new");
        let written = match tokio::fs::write(&temporary, text).await {
            Ok(()) => tokio::fs::rename(&temporary, dir.join("pgids")).await,
            Err(error) => Err(error),
        };
        if let Err(error) = written {
            tracing::warn!(container_guid = guid, pid, %error, "recording a process group failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ContainerSpec, ProcessSpec};
    use super::*;
    use crate::runtime::ContainerRuntime;

    /// Many short-lived processes (monitor checks, ssh sessions) leave only the live groups on
    /// record: the record does not grow with the container's history.
    #[tokio::test]
    async fn finished_process_groups_are_dropped_from_the_record() {
        let root = std::env::temp_dir().join(format!("cell-rep-groups-{}", uuid::Uuid::new_v4().simple()));
        let runtime = ProcessRuntime::new(&root);
        runtime.create(ContainerSpec { guid: "g1".into(), ..ContainerSpec::default() }).await.expect("create");
        let check =
            |n: usize| ProcessSpec { id: format!("check-{n}"), path: "/bin/true".into(), ..ProcessSpec::default() };
        for n in 0..5 {
            let mut process = runtime.spawn("g1", check(n)).await.expect("spawn");
            assert_eq!(process.wait().await.code, 0);
        }
        let long = ProcessSpec {
            id: "main".into(),
            path: "/bin/sleep".into(),
            args: vec!["30".into()],
            ..ProcessSpec::default()
        };
        let main = runtime.spawn("g1", long).await.expect("spawn the long one");
        let last = runtime.spawn("g1", check(5)).await.expect("spawn");
        let recorded = std::fs::read_to_string(runtime.container_dir("g1").join("pgids")).expect("recorded");
        let recorded: Vec<&str> = recorded.lines().collect();
        // The long one (alive) and the last one (just added); the five finished checks are gone.
        assert!(recorded.len() <= 2, "only live groups are recorded: {recorded:?}");
        assert_eq!(runtime.pgids("g1").len(), recorded.len());
        drop((main, last));
        runtime.destroy("g1").await.expect("destroy");
        let _ = std::fs::remove_dir_all(&root);
    }
}
