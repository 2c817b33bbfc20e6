//! A scratch directory a test shares with the `process` runtime's containers (marker and pid
//! files), and a check that a process is gone.

use std::path::PathBuf;

use proto::pb::models::v1 as pb;

/// A fresh directory under the system temp dir, removed when dropped.
pub struct Scratch(PathBuf);

impl Scratch {
    /// Creates it.
    pub fn new() -> Scratch {
        let dir = std::env::temp_dir().join(format!("diego-e2e-scratch-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    /// The path of `name` inside it.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// `SCRATCH=<dir>`, for a desired LRP's or task's environment.
    pub fn env(&self) -> Vec<pb::EnvironmentVariable> {
        vec![pb::EnvironmentVariable { name: "SCRATCH".into(), value: self.0.display().to_string() }]
    }

    /// The pid a container wrote to `name` (as `echo $$ > "$SCRATCH/name"`), once it is there.
    pub fn pid(&self, name: &str) -> Option<u32> {
        std::fs::read_to_string(self.path(name)).ok()?.trim().parse().ok()
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether process `pid` is gone (no such process, or a zombie nobody has reaped yet).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}
