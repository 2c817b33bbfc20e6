//! CPU time spent during a phase of a run: by the whole machine, by this process (the
//! simulator) and by the BBS when it runs as its own process (`--bbs-process`); what is left is
//! the database's and everything else's. On a machine whose cores the run saturates, wall times
//! move with whatever else the machine does, while the CPU a phase costs moves much less: an A/B
//! of a change that saves work shows here first (docs/performance.md).
//!
//! Linux only (`/proc`); elsewhere nothing is measured.

use serde::Serialize;

/// Cumulative CPU seconds at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    machine_s: f64,
    simulator_s: f64,
    bbs_s: Option<f64>,
}

/// CPU seconds spent between two [`Snapshot`]s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Spent {
    /// Busy time of every core together (user, system, interrupts, steal; not idle or I/O wait).
    pub machine_s: f64,
    /// This process: the simulated cells, bulkers and route emitters, and their clients.
    pub simulator_s: f64,
    /// The BBS process (user and system), when it runs as its own process.
    pub bbs_s: Option<f64>,
}

impl Spent {
    /// What neither the simulator nor the BBS process spent: the database, mostly.
    pub fn rest_s(&self) -> f64 {
        (self.machine_s - self.simulator_s - self.bbs_s.unwrap_or(0.0)).max(0.0)
    }

    /// The sum of several phases.
    pub fn total(spent: &[Spent]) -> Spent {
        Spent {
            machine_s: spent.iter().map(|s| s.machine_s).sum(),
            simulator_s: spent.iter().map(|s| s.simulator_s).sum(),
            // Known only when known for every phase.
            bbs_s: spent.iter().map(|s| s.bbs_s).sum(),
        }
    }
}

impl Snapshot {
    /// Now, with the BBS process `bbs_pid` if it runs as its own. `None` where `/proc` cannot
    /// be read.
    pub fn now(bbs_pid: Option<u32>) -> Option<Self> {
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let machine = machine_busy_ticks(&stat)? as f64 / ticks;
        let simulator = process_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)? as f64 / ticks;
        let bbs = bbs_pid
            .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
            .and_then(|stat| process_ticks(&stat))
            .map(|t| t as f64 / ticks);
        Some(Self { machine_s: machine, simulator_s: simulator, bbs_s: bbs })
    }

    /// What was spent from `earlier` to this snapshot.
    pub fn since(&self, earlier: &Snapshot) -> Spent {
        Spent {
            machine_s: self.machine_s - earlier.machine_s,
            simulator_s: self.simulator_s - earlier.simulator_s,
            bbs_s: match (self.bbs_s, earlier.bbs_s) {
                (Some(now), Some(then)) => Some(now - then),
                _ => None,
            },
        }
    }
}

/// The busy ticks of all cores in `/proc/stat`'s first line: user, nice, system, irq, softirq
/// and steal (guest time is already inside user).
fn machine_busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line.split_whitespace().skip(1).map(|f| f.parse().ok()).collect::<Option<_>>()?;
    let at = |i: usize| fields.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    Some(at(0) + at(1) + at(2) + at(5) + at(6) + at(7))
}

/// utime + stime of a `/proc/<pid>/stat` line. The command name (field 2) may hold spaces and
/// parentheses, so the fields are counted from its last `)`.
fn process_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 3.. of stat(5) start here: state is index 0, utime (field 14) index 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_busy_time_leaves_idle_and_io_wait_out() {
        let stat = "cpu  100 20 30 4000 50 6 7 8 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\nintr 1 2 3\n";
        assert_eq!(machine_busy_ticks(stat), Some(100 + 20 + 30 + 6 + 7 + 8));
        assert_eq!(machine_busy_ticks("intr 1 2\n"), None);
    }

    #[test]
    fn process_time_is_read_after_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (tokio (rt) worker) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 1 1 1";
        assert_eq!(process_ticks(stat), Some(300));
        assert_eq!(process_ticks("4242 (short) S 1"), None);
    }

    #[test]
    fn the_rest_is_what_neither_the_simulator_nor_the_bbs_spent() {
        let spent = Spent { machine_s: 10.0, simulator_s: 2.0, bbs_s: Some(5.0) };
        assert_eq!(spent.rest_s(), 3.0);
        let total = Spent::total(&[spent, spent]);
        assert_eq!(total, Spent { machine_s: 20.0, simulator_s: 4.0, bbs_s: Some(10.0) });
        assert_eq!(Spent::total(&[Spent { bbs_s: None, ..spent }, spent]).bbs_s, None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_snapshot_counts_this_process_and_the_machine() {
        let before = Snapshot::now(Some(std::process::id())).expect("/proc is readable");
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let spent = Snapshot::now(Some(std::process::id())).unwrap().since(&before);
        assert!(spent.simulator_s > 0.0, "{spent:?}");
        assert!(spent.machine_s >= spent.simulator_s * 0.5, "{spent:?}");
        assert_eq!(spent.bbs_s.map(|b| b > 0.0), Some(true), "{spent:?}");
    }
}
