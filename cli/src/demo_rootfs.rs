//! The `demo` rootfs of `diego dev --runtime runc --demo`: the busybox rootfs plus the demo app at
//! `/bin/diego-demo-app` and the shared libraries it links (as `ldd` lists them), at the same
//! paths as on the host. The demo app is an ordinary dynamically linked Rust binary, so without
//! them the container's loader could not start it. Nothing is downloaded.

use std::path::{Path, PathBuf};

use cell_rep::rootfs::prepare_busybox_rootfs;

/// Where the demo app lives inside the demo rootfs.
pub const DEMO_APP_IN_ROOTFS: &str = "/bin/diego-demo-app";

/// Why the demo rootfs could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum DemoRootfsError {
    /// The busybox base could not be prepared.
    #[error(transparent)]
    Busybox(#[from] cell_rep::rootfs::RootfsError),
    /// A file could not be copied in.
    #[error("cannot copy {from} into the demo rootfs at {to}: {source}")]
    Copy {
        /// The host file.
        from: PathBuf,
        /// Its place in the rootfs.
        to: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
}

/// Prepares (or refreshes) the demo rootfs at `dir` from `busybox` and the demo binary `demo`,
/// and returns `dir`. The binary and its libraries are copied every time, so a rebuilt demo app
/// is picked up.
pub fn prepare_demo_rootfs(dir: &Path, busybox: &Path, demo: &Path) -> Result<PathBuf, DemoRootfsError> {
    prepare_busybox_rootfs(dir, busybox)?;
    copy_into(demo, &dir.join(DEMO_APP_IN_ROOTFS.trim_start_matches('/')))?;
    for library in shared_libraries(demo) {
        let relative = library.strip_prefix("/").unwrap_or(&library);
        copy_into(&library, &dir.join(relative))?;
    }
    Ok(dir.to_path_buf())
}

fn copy_into(from: &Path, to: &Path) -> Result<(), DemoRootfsError> {
    let error = |source| DemoRootfsError::Copy { from: from.to_path_buf(), to: to.to_path_buf(), source };
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(error)?;
    }
    // Replace rather than overwrite: a running container may have the old file mapped.
    let staging = to.with_extension("diego-tmp");
    std::fs::copy(from, &staging).map_err(error)?;
    std::fs::rename(&staging, to).map_err(error)
}

/// The absolute paths of the shared libraries (and loader) `binary` needs, from `ldd`; empty
/// for a static binary or when `ldd` is not there.
pub fn shared_libraries(binary: &Path) -> Vec<PathBuf> {
    match std::process::Command::new("ldd").arg(binary).output() {
        Ok(output) if output.status.success() => parse_ldd(&String::from_utf8_lossy(&output.stdout)),
        _ => Vec::new(),
    }
}

/// The library paths in `ldd` output: the target of `name => /path (addr)` lines and the path of
/// `/path (addr)` lines; virtual objects (`linux-vdso.so.1`) and unresolved names are skipped.
fn parse_ldd(output: &str) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    for line in output.lines() {
        let candidate = match line.split_once("=>") {
            Some((_, target)) => target.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = candidate.filter(|p| p.starts_with('/')) {
            let path = PathBuf::from(path);
            if !paths.contains(&path) {
                paths.push(path);
            }
        }
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_the_loader_and_resolved_libraries() {
        let output = "\tlinux-vdso.so.1 (0x00007ffd4a9f6000)\n\
            \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f1c1a0a0000)\n\
            \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f1c19ebf000)\n\
            \tlibmissing.so => not found\n\
            \t/lib64/ld-linux-x86-64.so.2 (0x00007f1c1a133000)\n";
        assert_eq!(
            parse_ldd(output),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert!(parse_ldd("\tnot a dynamic executable\n").is_empty());
    }

    #[test]
    fn the_demo_rootfs_holds_the_app_and_its_libraries() {
        let base = std::env::temp_dir().join(format!("diego-demo-rootfs-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&base).expect("temp dir");
        let busybox = base.join("busybox");
        std::fs::write(&busybox, b"#!/bin/true\n").expect("fake busybox");
        // Any dynamically linked host binary stands in for the demo app.
        let demo = Path::new("/bin/ls");
        let dir = base.join("rootfs");
        for _ in 0..2 {
            prepare_demo_rootfs(&dir, &busybox, demo).expect("prepared");
        }
        assert_eq!(std::fs::read(dir.join("bin/diego-demo-app")).unwrap(), std::fs::read(demo).unwrap());
        let libraries = shared_libraries(demo);
        assert!(!libraries.is_empty(), "ls is dynamically linked");
        for library in libraries {
            let inside = dir.join(library.strip_prefix("/").unwrap());
            assert!(inside.is_file(), "{} copied", inside.display());
        }
        assert!(dir.join("bin/busybox").is_file());
        let _ = std::fs::remove_dir_all(&base);
    }
}
