//! How the process runtime enforces a container's `memory_mb`, `max_pids` and CPU weight.
//!
//! **cgroup v2, where usable.** At start the runtime looks for a cgroup2 mount offering the `pids`,
//! `memory` and `cpu` controllers, creates the configured parent (`diego-rs` by default) under it
//! and enables those controllers for its children. Each container then gets
//! `<parent>/<instance>-<guid>` with `pids.max`, `memory.max` (and `memory.swap.max` 0 where
//! present) and `cpu.weight` (runc's conversion of the shares `1024 × weight / 100`). Every process
//! joins it right after it is spawned (the workspace forbids the `unsafe` a pre-exec hook needs),
//! and processes that already share its process group are moved with it; `destroy` kills the
//! cgroup (`cgroup.kill`) and removes it. A process killed by SIGKILL while the cgroup's
//! `oom_kill` counter grew is reported as out of memory.
//!
//! **rlimits otherwise** (cgroup v1 hosts, containers without delegation), with weaker guarantees:
//! - memory: `RLIMIT_AS` of `memory_mb` plus a headroom (128 MiB by default), applied by running
//!   the program under `prlimit(1)`. It caps *address space*, not resident memory, and it is per
//!   process: a runaway allocation fails (`malloc` returns NULL, the program usually exits), but
//!   a container of several processes can use several times the limit, and programs that reserve
//!   large virtual ranges up front may need more headroom;
//! - pids: `RLIMIT_NPROC` is per *user* (and ignored for root), so it is not used. Instead the
//!   runtime refuses to spawn a process while the container's process groups already hold
//!   `max_pids` processes (counted in `/proc`). Processes forked inside the container are counted
//!   but not prevented;
//! - CPU weight: a weight below 100 runs the program under `nice(1)`, about one nice level per
//!   factor of 1.25 (the kernel's step between nice levels).
//!
//! Without `prlimit` or `nice` on `PATH` that limit is skipped with a warning.

use std::path::{Component, Path, PathBuf};

/// The controllers a usable cgroup2 parent must offer.
const CONTROLLERS: [&str; 3] = ["pids", "memory", "cpu"];

/// How limits are enforced; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitMode {
    /// One cgroup v2 per container under `parent`.
    Cgroup {
        /// The parent cgroup directory, e.g. `/sys/fs/cgroup/diego-rs`.
        parent: PathBuf,
    },
    /// rlimits, `nice` and counting; `reason` says why cgroups are not used.
    Rlimit {
        /// Why cgroup v2 is not usable here.
        reason: String,
        /// The `prlimit` binary, when found.
        prlimit: Option<PathBuf>,
        /// The `nice` binary, when found.
        nice: Option<PathBuf>,
    },
}

impl LimitMode {
    /// Whether containers get a cgroup.
    pub fn is_cgroup(&self) -> bool {
        matches!(self, LimitMode::Cgroup { .. })
    }
}

/// Decides the mode: cgroup v2 under `mount` (or the cgroup2 mount of `/proc/self/mountinfo`)
/// and `parent` when that works, rlimits otherwise. An empty `parent` disables cgroups.
pub fn detect(parent: &str, mount: Option<&Path>, instance: &str) -> LimitMode {
    match setup_parent(parent, mount, instance) {
        Ok(parent) => LimitMode::Cgroup { parent },
        Err(reason) => {
            let (prlimit, nice) = (find_on_path("prlimit"), find_on_path("nice"));
            tracing::info!(%reason, prlimit = ?prlimit, nice = ?nice, "cgroup v2 not usable; the process runtime limits containers with rlimits");
            LimitMode::Rlimit { reason, prlimit, nice }
        }
    }
}

fn setup_parent(parent: &str, mount: Option<&Path>, instance: &str) -> Result<PathBuf, String> {
    if parent.is_empty() {
        return Err("cgroups disabled (empty cgroup parent)".into());
    }
    let relative = Path::new(parent.trim_start_matches('/'));
    if relative.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(format!("cgroup parent {parent:?} is not a relative path"));
    }
    let mount = match mount {
        Some(mount) => mount.to_path_buf(),
        None => {
            let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            cgroup2_mount(&mountinfo).ok_or("no cgroup2 filesystem is mounted")?
        }
    };
    let offered = std::fs::read_to_string(mount.join("cgroup.controllers"))
        .map_err(|e| format!("cannot read {}/cgroup.controllers: {e}", mount.display()))?;
    let missing: Vec<&str> = CONTROLLERS.into_iter().filter(|c| !offered.split_whitespace().any(|o| o == *c)).collect();
    if !missing.is_empty() {
        return Err(format!(
            "the cgroup2 mount {} lacks the {} controller(s) (it offers: {})",
            mount.display(),
            missing.join(", "),
            offered.trim()
        ));
    }
    let parent_dir = mount.join(relative);
    std::fs::create_dir_all(&parent_dir).map_err(|e| format!("cannot create {}: {e}", parent_dir.display()))?;
    // Enable the controllers on the way down, the parent included, so its children get them.
    let mut dir = mount.clone();
    let mut levels = vec![dir.clone()];
    for part in relative.components() {
        dir.push(part);
        levels.push(dir.clone());
    }
    for level in &levels {
        for controller in CONTROLLERS {
            let file = level.join("cgroup.subtree_control");
            std::fs::write(&file, format!("+{controller}"))
                .map_err(|e| format!("cannot enable {controller} in {}: {e}", file.display()))?;
        }
    }
    // A probe child proves the limit files exist and are writable.
    let probe = parent_dir.join(format!("probe-{instance}"));
    std::fs::create_dir_all(&probe).map_err(|e| format!("cannot create {}: {e}", probe.display()))?;
    let probed = ["pids.max", "memory.max", "cpu.weight"]
        .iter()
        .try_for_each(|file| {
            let current = std::fs::read_to_string(probe.join(file)).map_err(|e| format!("{file}: {e}"))?;
            std::fs::write(probe.join(file), current.trim()).map_err(|e| format!("{file}: {e}"))
        })
        .map_err(|e| format!("cannot set limits in {}: {e}", probe.display()));
    let _ = std::fs::remove_dir(&probe);
    probed?;
    Ok(parent_dir)
}

/// The mount point of the first cgroup2 filesystem in a `/proc/<pid>/mountinfo` text.
pub fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (fields, fs) = line.split_once(" - ")?;
        if fs.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        fields.split_whitespace().nth(4).map(PathBuf::from)
    })
}

/// `name` in a directory of the rep's `PATH` (or the usual system directories).
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".into());
    search_path(name, &path)
}

/// `program` resolved the way `execvp` would with `path_env`: as given when it has a slash,
/// else the first executable file of that name in a `PATH` directory.
pub fn search_path(program: &str, path_env: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    path_env
        .split(':')
        .map(|dir| if dir.is_empty() { PathBuf::from(".") } else { PathBuf::from(dir) })
        .map(|dir| dir.join(program))
        .find(|candidate| executable(candidate))
}

/// `cpu.weight` (1-10000) for a Diego CPU weight (1-100), through the shares runc would set
/// (`1024 × weight / 100`) and runc's shares-to-weight conversion. `None` for 0.
pub fn cgroup_cpu_weight(cpu_weight: u32) -> Option<u64> {
    let shares = crate::runtime::runc::spec::cpu_shares(cpu_weight)?;
    Some(1 + (shares.saturating_sub(2) * 9999) / 262_142)
}

/// The nice value approximating a CPU weight: `log1.25(100 / weight)`, 1-19. `None` for 0 and
/// for 100 or more (full weight: no change).
pub fn nice_for(cpu_weight: u32) -> Option<i32> {
    if cpu_weight == 0 || cpu_weight >= 100 {
        return None;
    }
    let levels = (100.0 / f64::from(cpu_weight)).ln() / 1.25f64.ln();
    // 0.0..=20.7 for weights 99..=1, so the cast cannot truncate meaningfully.
    #[allow(clippy::cast_possible_truncation)]
    let nice = levels.round() as i32;
    Some(nice.clamp(1, 19))
}

/// `RLIMIT_AS` in bytes for `memory_mb` plus `headroom_mb`; `None` when memory is unlimited.
pub fn address_space_bytes(memory_mb: i32, headroom_mb: u64) -> Option<u64> {
    let memory = u64::try_from(memory_mb).ok().filter(|m| *m > 0)?;
    Some(memory.saturating_add(headroom_mb).saturating_mul(1024 * 1024))
}

/// The limit files of a new container cgroup: `(file, value, required)`.
pub fn cgroup_settings(memory_mb: i32, max_pids: i32, cpu_weight: u32) -> Vec<(&'static str, String, bool)> {
    let mut settings = vec![("pids.max", if max_pids > 0 { max_pids.to_string() } else { "max".to_owned() }, true)];
    match crate::runtime::runc::spec::memory_limit_bytes(memory_mb) {
        Some(bytes) => {
            settings.push(("memory.max", bytes.to_string(), true));
            // Swap would let the container exceed its memory; not every kernel has the file.
            settings.push(("memory.swap.max", "0".to_owned(), false));
        }
        None => settings.push(("memory.max", "max".to_owned(), true)),
    }
    if let Some(weight) = cgroup_cpu_weight(cpu_weight) {
        settings.push(("cpu.weight", weight.to_string(), true));
    }
    settings
}

/// Creates container cgroup `dir` and writes its limits.
pub fn create_container_cgroup(dir: &Path, memory_mb: i32, max_pids: i32, cpu_weight: u32) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (file, value, required) in cgroup_settings(memory_mb, max_pids, cpu_weight) {
        match std::fs::write(dir.join(file), &value) {
            Ok(()) => {}
            Err(e) if required => return Err(std::io::Error::new(e.kind(), format!("{file} = {value}: {e}"))),
            Err(_) => {}
        }
    }
    Ok(())
}

/// Moves `pid` into cgroup `dir`, then every process of its process group (forked before it
/// moved) too.
pub fn join_cgroup(dir: &Path, pid: i32) -> std::io::Result<()> {
    std::fs::write(dir.join("cgroup.procs"), pid.to_string())?;
    for straggler in processes_in_groups(&[pid]) {
        if straggler != pid {
            let _ = std::fs::write(dir.join("cgroup.procs"), straggler.to_string());
        }
    }
    Ok(())
}

/// Processes in cgroup `dir` (`pids.current`).
pub fn cgroup_pids(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("pids.current")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

/// The `oom_kill` count of cgroup `dir`'s `memory.events`.
pub fn cgroup_oom_kills(dir: &Path) -> u64 {
    let text = std::fs::read_to_string(dir.join("memory.events")).unwrap_or_default();
    text.lines().find_map(|l| l.strip_prefix("oom_kill ").and_then(|n| n.trim().parse().ok())).unwrap_or(0)
}

/// Kills everything in cgroup `dir` and removes it, retrying while processes exit. `Ok` when
/// it does not exist.
pub async fn remove_cgroup(dir: &Path) -> std::io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if std::fs::write(dir.join("cgroup.kill"), "1").is_err() {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
    let mut attempt = 0;
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(_) if attempt < 100 => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The pids of every process whose process group is one of `pgids` (from `/proc/<pid>/stat`).
pub fn processes_in_groups(pgids: &[i32]) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| stat_pgid(&stat))
                .is_some_and(|pgid| pgids.contains(&pgid))
        })
        .collect()
}

/// Those of `pgids` that still have a process (one scan of `/proc`).
pub fn live_groups(pgids: &[i32]) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return pgids.to_vec() };
    let present: std::collections::HashSet<i32> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()))
        .filter_map(|pid| stat_pgid(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?))
        .collect();
    pgids.iter().copied().filter(|g| present.contains(g)).collect()
}

/// The process group of a `/proc/<pid>/stat` line (the field after the state, past the
/// parenthesised command, which may contain spaces).
pub fn stat_pgid(stat: &str) -> Option<i32> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    let _state = fields.next()?;
    let _ppid = fields.next()?;
    fields.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cgroup2_mount_is_found_in_mountinfo() {
        let hybrid = "35 24 0:30 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount(hybrid), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        let unified = "29 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(cgroup2_mount(unified), Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(cgroup2_mount("35 24 0:30 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n"), None);
    }

    #[test]
    fn a_mount_without_the_controllers_is_not_usable() {
        let dir = std::env::temp_dir().join(format!("cell-rep-cgroup-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("cgroup.controllers"), "hugetlb\n").expect("write");
        let mode = detect("diego-rs", Some(&dir), "t");
        let LimitMode::Rlimit { reason, .. } = mode else { panic!("cgroups chosen on a mount without controllers") };
        assert!(reason.contains("lacks the pids, memory, cpu controller(s)"), "{reason}");
        assert!(matches!(detect("", Some(&dir), "t"), LimitMode::Rlimit { .. }));
        assert!(matches!(detect("../escape", Some(&dir), "t"), LimitMode::Rlimit { .. }));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn cgroup_limits_follow_the_container_spec() {
        let settings = cgroup_settings(64, 10, 50);
        let value = |file: &str| settings.iter().find(|(f, _, _)| *f == file).map(|(_, v, _)| v.as_str());
        assert_eq!(value("pids.max"), Some("10"));
        assert_eq!(value("memory.max"), Some("67108864"));
        assert_eq!(value("memory.swap.max"), Some("0"));
        // 50 → 512 shares → runc's weight 20.
        assert_eq!(value("cpu.weight"), Some("20"));
        let unlimited = cgroup_settings(0, 0, 0);
        assert_eq!(unlimited.len(), 2);
        assert!(unlimited.iter().all(|(_, v, _)| v == "max"));
        assert_eq!(cgroup_cpu_weight(100), Some(39));
        assert_eq!(cgroup_cpu_weight(1), Some(1));
    }

    #[test]
    fn nice_levels_follow_the_weight() {
        assert_eq!(nice_for(0), None);
        assert_eq!(nice_for(100), None);
        assert_eq!(nice_for(80), Some(1));
        assert_eq!(nice_for(50), Some(3));
        assert_eq!(nice_for(10), Some(10));
        assert_eq!(nice_for(1), Some(19));
    }

    #[test]
    fn the_address_space_limit_adds_the_headroom() {
        assert_eq!(address_space_bytes(0, 128), None);
        assert_eq!(address_space_bytes(-1, 128), None);
        assert_eq!(address_space_bytes(32, 128), Some(160 * 1024 * 1024));
    }

    #[test]
    fn the_process_group_is_read_past_the_command() {
        assert_eq!(stat_pgid("123 (sh) S 1 123 123 0 -1"), Some(123));
        assert_eq!(stat_pgid("77 (a b) c) R 5 70 70 0"), Some(70));
        let own = std::fs::read_to_string("/proc/self/stat").expect("stat");
        assert_eq!(stat_pgid(&own), Some(nix::unistd::getpgrp().as_raw()));
    }

    #[test]
    fn programs_are_found_like_execvp_finds_them() {
        assert_eq!(search_path("/no/such", "/bin"), Some(PathBuf::from("/no/such")));
        assert_eq!(search_path("sh", "/nonexistent:/bin"), Some(PathBuf::from("/bin/sh")));
        assert_eq!(search_path("no-such-program-xyz", "/bin:/usr/bin"), None);
    }
}
