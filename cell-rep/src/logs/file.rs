//! A container's log file, rotated by size: `<guid>.log`, then `<guid>.log.1` (the previous
//! one), up to `<guid>.log.<rotations>`; older ones are deleted. Disk use per container is at
//! most `(rotations + 1) × max_bytes` plus one line. A file that cannot be written is given up
//! (with one warning) rather than retried on every line.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// One container's rotated log file.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    rotations: usize,
    file: Option<File>,
    size: u64,
    failed: bool,
}

impl RotatingFile {
    /// A file at `path`, created on the first line.
    pub fn new(path: PathBuf, max_bytes: u64, rotations: usize) -> Self {
        Self { path, max_bytes, rotations, file: None, size: 0, failed: false }
    }

    /// The current file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of rotation `n` (1 is the newest).
    pub fn rotated(&self, n: usize) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Appends `line` and a newline, rotating first when the file would exceed its size.
    pub fn write_line(&mut self, line: &str) {
        if self.failed {
            return;
        }
        let len = line.len() as u64 + 1;
        if self.size > 0 && self.size + len > self.max_bytes {
            self.rotate();
        }
        if self.file.is_none() {
            match File::create(&self.path) {
                Ok(file) => {
                    self.file = Some(file);
                    self.size = 0;
                }
                Err(error) => return self.fail(&error),
            }
        }
        let Some(file) = self.file.as_mut() else { return };
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        match file.write_all(&buf) {
            Ok(()) => self.size += len,
            Err(error) => self.fail(&error),
        }
    }

    fn rotate(&mut self) {
        self.file = None;
        self.size = 0;
        if self.rotations == 0 {
            let _ = std::fs::remove_file(&self.path);
            return;
        }
        let _ = std::fs::remove_file(self.rotated(self.rotations));
        for n in (1..self.rotations).rev() {
            let _ = std::fs::rename(self.rotated(n), self.rotated(n + 1));
        }
        let _ = std::fs::rename(&self.path, self.rotated(1));
    }

    fn fail(&mut self, error: &std::io::Error) {
        tracing::warn!(path = %self.path.display(), %error, "cannot write the log file; lines stay in memory only");
        self.failed = true;
        self.file = None;
    }

    /// Deletes the file and its rotations.
    pub fn remove(&mut self) {
        self.file = None;
        self.failed = true;
        let _ = std::fs::remove_file(&self.path);
        for n in 1..=self.rotations {
            let _ = std::fs::remove_file(self.rotated(n));
        }
    }
}
