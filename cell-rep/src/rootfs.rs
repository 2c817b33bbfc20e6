//! The default `busybox` rootfs of a runc cell with no `--rootfs` given (docs/architecture.md,
//! "Command lines"): a directory with the machine's static busybox as `/bin/busybox`, a link
//! per applet, the directories a container needs and a passwd file with `root` and `vcap`.
//! Preparing is idempotent, so every start re-checks it cheaply.

use std::path::{Path, PathBuf};

/// Where the machine's busybox-static lives (Debian's `busybox-static` package).
pub const HOST_BUSYBOX: &str = "/bin/busybox";

/// The applets linked into `/bin` (the ones apps, health checks and tests use).
const APPLETS: &[&str] = &[
    "sh", "ash", "cat", "cp", "date", "echo", "env", "false", "grep", "head", "hostname", "httpd", "id", "kill", "ls",
    "mkdir", "mv", "nc", "ps", "pwd", "rm", "seq", "sleep", "sort", "tail", "tee", "test", "touch", "tr", "true",
    "uname", "wc", "wget", "whoami", "yes", "dd", "printf", "expr", "timeout",
];

/// Why the rootfs could not be prepared.
#[derive(Debug, thiserror::Error)]
#[error("cannot prepare the busybox rootfs at {path}: {source}")]
pub struct RootfsError {
    /// The path being written.
    pub path: PathBuf,
    /// The IO error.
    pub source: std::io::Error,
}

/// Prepares (or re-checks) a busybox rootfs at `dir` from `busybox` and returns `dir`.
pub fn prepare_busybox_rootfs(dir: &Path, busybox: &Path) -> Result<PathBuf, RootfsError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RootfsError { path, source }
    };
    for sub in ["bin", "tmp", "home/vcap", "etc", "proc", "dev", "sys", "root"] {
        let path = dir.join(sub);
        std::fs::create_dir_all(&path).map_err(io(&path))?;
    }
    let target = dir.join("bin/busybox");
    let stale = match (std::fs::metadata(busybox), std::fs::metadata(&target)) {
        (Ok(source), Ok(existing)) => source.len() != existing.len(),
        (Ok(_), Err(_)) => true,
        (Err(e), _) => return Err(io(busybox)(e)),
    };
    if stale {
        std::fs::copy(busybox, &target).map_err(io(&target))?;
    }
    for applet in APPLETS {
        let link = dir.join("bin").join(applet);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink("busybox", &link).map_err(io(&link))?;
        }
    }
    let passwd = dir.join("etc/passwd");
    if !passwd.exists() {
        std::fs::write(&passwd, "root:x:0:0:root:/root:/bin/sh\nvcap:x:2000:2000:vcap:/home/vcap:/bin/sh\n")
            .map_err(io(&passwd))?;
    }
    let group = dir.join("etc/group");
    if !group.exists() {
        std::fs::write(&group, "root:x:0:\nvcap:x:2000:\n").map_err(io(&group))?;
    }
    Ok(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rootfs_is_prepared_idempotently_from_a_busybox_binary() {
        let base = std::env::temp_dir().join(format!("cell-rep-rootfs-{}", uuid::Uuid::new_v4()));
        let fake_busybox = base.join("busybox-bin");
        std::fs::create_dir_all(&base).expect("temp dir");
        std::fs::write(&fake_busybox, b"#!/bin/true\n").expect("fake busybox");
        let dir = base.join("rootfs");
        for _ in 0..2 {
            let prepared = prepare_busybox_rootfs(&dir, &fake_busybox).expect("prepared");
            assert_eq!(prepared, dir);
        }
        assert!(dir.join("bin/busybox").is_file());
        assert_eq!(std::fs::read_link(dir.join("bin/sh")).expect("link"), PathBuf::from("busybox"));
        assert!(std::fs::read_to_string(dir.join("etc/passwd")).expect("passwd").contains("vcap"));
        let missing = prepare_busybox_rootfs(&base.join("other"), &base.join("no-such-busybox"));
        assert!(missing.is_err());
        let _ = std::fs::remove_dir_all(&base);
    }
}
